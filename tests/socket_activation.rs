//! Socket activation (docker-registry.socket): the daemon serves on the listening socket
//! systemd passes in (LISTEN_FDS/LISTEN_PID) instead of binding its configured port, and
//! refuses a socket it cannot serve HTTP on. `systemd-socket-activate` (Debian's `systemd`
//! package) passes the socket exactly as systemd does and starts the daemon on the first
//! connection.

mod common;

use common::{free_port, have, BIN, SOCKET_ACTIVATE};
use std::io::Read;
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The daemon behind `systemd-socket-activate`; killed by PID when dropped.
struct Activated {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Activated {
    fn start(activate_args: &[&str], daemon_port: u16) -> Activated {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "").expect("empty config");
        let child = Command::new(SOCKET_ACTIVATE.program)
            .args(activate_args)
            .arg(BIN)
            .arg("--sysconfig")
            .arg(&empty)
            .arg("--config")
            .arg(&empty)
            .args(["--address", "127.0.0.1", "--port", &daemon_port.to_string()])
            .arg("--storage-path")
            .arg(dir.path().join("data"))
            .arg("serve")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start systemd-socket-activate");
        Activated { child, _dir: dir }
    }

    /// Waits (bounded) for the process to exit; returns its status and stderr.
    fn wait_exit(&mut self, limit: Duration) -> Option<(std::process::ExitStatus, String)> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return Some((status, err));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn stop(&mut self) -> Option<(std::process::ExitStatus, String)> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        self.wait_exit(Duration::from_secs(30))
    }
}

impl Drop for Activated {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serves_on_the_socket_systemd_passes_not_on_the_configured_port() {
    if !have(&[SOCKET_ACTIVATE]) {
        return;
    }
    let socket_port = free_port();
    let configured_port = free_port();
    let mut daemon = Activated::start(
        &["-l", &format!("127.0.0.1:{socket_port}")],
        configured_port,
    );

    // The first connection is what starts the daemon; it waits in the socket's queue
    // until the daemon takes the socket over and accepts it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let response = loop {
        match common::client()
            .get(format!("http://127.0.0.1:{socket_port}/v2/"))
            .send()
        {
            Ok(r) => break r,
            Err(e) if Instant::now() < deadline => {
                eprintln!("not yet: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("no answer on the activated socket: {e}"),
        }
    };
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", configured_port)).is_err(),
        "the daemon also bound its configured port {configured_port}"
    );

    let (status, log) = daemon.stop().expect("the daemon stops on SIGTERM");
    assert!(status.success(), "exit status {status:?}; log:\n{log}");
    assert!(
        log.contains(&format!("listening on http://127.0.0.1:{socket_port}")),
        "the log names the inherited socket's address:\n{log}"
    );
}

#[test]
fn refuses_a_datagram_socket_with_a_message_saying_what_to_use() {
    if !have(&[SOCKET_ACTIVATE]) {
        return;
    }
    let socket_port = free_port();
    let mut daemon = Activated::start(
        &["--datagram", "-l", &format!("127.0.0.1:{socket_port}")],
        free_port(),
    );
    // A datagram is what makes systemd-socket-activate start the daemon.
    let sender = UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    let deadline = Instant::now() + Duration::from_secs(20);
    let exited = loop {
        let _ = sender.send_to(b"x", ("127.0.0.1", socket_port));
        if let Some(exit) = daemon.wait_exit(Duration::from_millis(200)) {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not refuse the datagram socket"
        );
    };
    let (status, log) = exited;
    assert_eq!(status.code(), Some(1), "log:\n{log}");
    assert!(log.contains("not a stream socket"), "log:\n{log}");
    assert!(
        log.contains("ListenStream="),
        "the message says what to use:\n{log}"
    );
}
