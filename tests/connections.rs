//! Connections that cannot starve the daemon, through the real binary on real sockets: a
//! socket that sends nothing (or half a request head, or idles after a request) is closed at
//! its timeout while other clients are served; idle sockets past the open-file limit leave
//! normal clients served; a client past its share of connections is answered 503 with
//! `Retry-After`. Another loopback address (127.0.0.2) stands for another client. (A
//! stalled upload body is in `robustness.rs`, with the other interrupted uploads.)

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// A connection to the daemon from `from`, given up after 2 s (a full backlog would
/// otherwise hold `connect` for minutes).
fn connect_from(from: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    use nix::sys::socket::{
        bind, connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn,
    };
    use nix::sys::time::TimeVal;
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::SendTimeout, &TimeVal::new(2, 0))?;
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(from, 0)),
    )?;
    let to = SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
    connect(fd.as_raw_fd(), &to)?;
    Ok(TcpStream::from(fd))
}

/// A client that gives up after 10 s (a hang fails the test instead of stalling it), from
/// `from`.
fn client_from(from: Ipv4Addr) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .local_address(IpAddr::V4(from))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Reads until the daemon closes the connection (or `limit` passes); returns what it sent
/// and when it closed, measured from `since`.
fn until_closed(mut s: &TcpStream, since: Instant, limit: Duration) -> (String, Option<Duration>) {
    s.set_read_timeout(Some(limit)).expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into(), Some(since.elapsed())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (String::from_utf8_lossy(&got).into(), Some(since.elapsed()))
            }
            Err(_) => return (String::from_utf8_lossy(&got).into(), None),
        }
    }
}

fn assert_between(what: &str, took: Option<Duration>, low: f64, high: f64) {
    let took = took.unwrap_or_else(|| panic!("{what}: still open"));
    let secs = took.as_secs_f64();
    assert!(
        (low..high).contains(&secs),
        "{what}: closed after {secs:.2}s"
    );
    eprintln!("{what}: closed after {secs:.2}s");
}

#[test]
fn a_silent_socket_a_half_sent_head_and_an_idle_keep_alive_are_closed_at_their_timeouts() {
    let s = Server::builder()
        .args_from(&["--header-timeout", "2s", "--idle-timeout", "3s"])
        .start();
    let opened = Instant::now();
    let silent = TcpStream::connect(s.host()).expect("connect");
    let mut half = TcpStream::connect(s.host()).expect("connect");
    half.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")
        .expect("half a head");
    let mut kept = TcpStream::connect(s.host()).expect("connect");
    kept.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("request");
    // Other clients are served all along, each on a new connection.
    while opened.elapsed() < Duration::from_millis(1500) {
        client_from(Ipv4Addr::LOCALHOST)
            .get(s.url("/v2/"))
            .expect_status(200);
        std::thread::sleep(Duration::from_millis(100));
    }
    let limit = Duration::from_secs(10);
    assert_between(
        "a silent socket",
        until_closed(&silent, opened, limit).1,
        1.9,
        3.5,
    );
    assert_between(
        "half a request head",
        until_closed(&half, opened, limit).1,
        1.9,
        3.5,
    );
    // The keep-alive connection got its answer, then idled for 3 s.
    let (answer, closed) = until_closed(&kept, opened, limit);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_between("an idle keep-alive connection", closed, 2.9, 4.5);
}

#[test]
fn idle_sockets_past_the_open_file_limit_leave_normal_clients_served() {
    if !have(&[PRLIMIT]) {
        return;
    }
    // 256 descriptors: room for (256 - 128) / 2 = 64 connections.
    let s = Server::builder()
        .under(&["prlimit", "--nofile=256"])
        .start();
    // More idle sockets than the daemon has descriptors, from another address; the kernel
    // completes their handshakes whether or not the daemon accepts them.
    let idle: Vec<TcpStream> = (0..400)
        .filter_map(|_| connect_from(ATTACKER, s.port).ok())
        .collect();
    assert!(idle.len() > 256, "only {} sockets opened", idle.len());
    // Until the daemon has taken the flood off its backlog (its descriptors stop changing):
    // a client arriving during the flood may be closed unanswered, as the flood is.
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", s.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let settling = Instant::now();
    let mut last = fds();
    while settling.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(300));
        let now = fds();
        if now == last {
            break;
        }
        last = now;
    }
    let c = client_from(Ipv4Addr::LOCALHOST);
    for _ in 0..20 {
        let asked = Instant::now();
        c.get(s.url("/v2/")).expect_status(200);
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "{:?}",
            asked.elapsed()
        );
    }
    // A new connection each time, too (each one makes room by closing an idle socket).
    for _ in 0..5 {
        client_from(Ipv4Addr::LOCALHOST)
            .get(s.url("/v2/"))
            .expect_status(200);
    }
    let open = fds();
    assert!(open < 256, "{open} descriptors open");
    assert!(
        !s.log_text().contains("accept failed"),
        "the daemon ran out of descriptors:\n{}",
        s.log_text()
    );
    drop(idle);
}

#[test]
fn a_client_past_its_share_of_connections_is_answered_503_with_retry_after() {
    let s = Server::builder()
        .args_from(&["--max-connections-per-client", "4"])
        .start();
    let mine: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(s.host()).expect("connect"))
        .collect();
    let mut fifth = TcpStream::connect(s.host()).expect("connect");
    let asked = Instant::now();
    fifth
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("request");
    let (answer, closed) = until_closed(&fifth, asked, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\r\nRetry-After: 2\r\n"), "{answer}");
    assert!(answer.contains("\"UNAVAILABLE\""), "{answer}");
    assert!(
        closed.is_some_and(|t| t < Duration::from_secs(2)),
        "{closed:?}"
    );
    // Another client is served meanwhile, and this one again once it closes a connection.
    // (Its answer kept unread until the end, as its connection.)
    let _answer = client_from(ATTACKER).get(s.url("/v2/")).expect_status(200);
    drop(mine);
    let mut served = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !served && Instant::now() < deadline {
        served = client_from(Ipv4Addr::LOCALHOST)
            .get(s.url("/v2/"))
            .send()
            .is_ok_and(|r| r.status() == 200);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(served, "not served again after closing its connections");
}
