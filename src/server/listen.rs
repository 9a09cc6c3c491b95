//! Socket activation: take over the listening socket systemd passes in (`LISTEN_FDS`,
//! `LISTEN_PID`, see sd_listen_fds(3)) instead of binding one, so `docker-registry.socket`
//! can own the port (80/443 without any capability, connections queued across restarts).
//! Without those variables, or when they are meant for another process, the daemon binds
//! the configured address itself.

use nix::sys::socket::{getsockopt, sockopt, SockType};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// The listener systemd handed over, if any.
///
/// Exactly one stream socket is accepted: the serve loop has one listener, and a
/// `ListenStream=5000` line already gives one dual-stack socket. Anything else is a
/// misconfigured socket unit, refused with a message that says how to fix it rather than
/// silently ignored (the operator would otherwise find the daemon on another port).
pub fn inherited() -> Result<Option<tokio::net::TcpListener>, String> {
    // `false`: leave the variables in place. Unsetting them would race with the runtime's
    // threads reading the environment, and LISTEN_PID keeps any child from using them.
    let fds: Vec<RawFd> = sd_notify::listen_fds_with_names(false)
        .map_err(|e| format!("cannot read the sockets systemd passed (LISTEN_FDS): {e}"))?
        .map(|(fd, _name)| fd)
        .collect();
    match fds.as_slice() {
        [] => Ok(None),
        [fd] => adopt(*fd).map(Some),
        more => Err(format!(
            "systemd passed {} sockets (LISTEN_FDS); docker-registry serves exactly one: \
             keep a single ListenStream= line in docker-registry.socket",
            more.len()
        )),
    }
}

fn adopt(fd: RawFd) -> Result<tokio::net::TcpListener, String> {
    // SAFETY: sd_listen_fds(3) hands the descriptors from SD_LISTEN_FDS_START on to this
    // process (LISTEN_PID matched); nothing else in the daemon knows about them, and
    // `inherited` is called once, so this is the only owner.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let what = |e: nix::Error| format!("socket {fd} passed by systemd is not usable: {e}");
    if getsockopt(&owned, sockopt::SockType).map_err(what)? != SockType::Stream {
        return Err(format!(
            "socket {fd} passed by systemd is not a stream socket: use ListenStream= (TCP) in docker-registry.socket"
        ));
    }
    if !getsockopt(&owned, sockopt::AcceptConn).map_err(what)? {
        return Err(format!("socket {fd} passed by systemd is not listening"));
    }
    let listener = std::net::TcpListener::from(owned);
    // A Unix stream socket passes the checks above but has no IP address to serve HTTP on.
    listener.local_addr().map_err(|e| {
        format!("socket {fd} passed by systemd is not a TCP socket ({e}): use ListenStream=[ADDRESS:]PORT")
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot make socket {fd} passed by systemd non-blocking: {e}"))?;
    tokio::net::TcpListener::from_std(listener)
        .map_err(|e| format!("cannot serve on socket {fd} passed by systemd: {e}"))
}
