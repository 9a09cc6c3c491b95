//! The daemon as systemd sees it: READY=1 only once the port accepts connections, STOPPING=1
//! and exit 0 on SIGTERM with in-flight requests finished, SIGHUP keeps serving, a port in
//! use is one clear line and a non-zero exit, and memory stays flat while a 2 GiB blob streams.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ready_is_sent_only_when_the_port_accepts_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").expect("write");
    let child = Command::new(BIN)
        .arg("--sysconfig")
        .arg(&empty)
        .arg("--config")
        .arg(&empty)
        .args(["--address", "127.0.0.1", "--port", "0", "--storage-path"])
        .arg(dir.path().join("data"))
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // Killed on drop, so a failed assertion leaves no daemon behind.
    let mut child = KillOnDrop(child);
    let mut buf = [0u8; 4096];
    let mut port = None;
    let mut messages = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while port.is_none() && Instant::now() < deadline {
        let n = sock.recv(&mut buf).expect("notification");
        let msg = String::from_utf8_lossy(&buf[..n]).to_string();
        messages.push(msg.clone());
        if msg.lines().any(|l| l == "READY=1") {
            let status = msg
                .lines()
                .find_map(|l| l.strip_prefix("STATUS="))
                .expect("status with ready");
            let addr = status.rsplit(' ').next().expect("addr");
            port = addr.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
        }
    }
    let port = port.unwrap_or_else(|| panic!("no READY=1 in {messages:?}"));
    // At this very moment the port must accept and answer.
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("port accepts at READY=1");
    conn.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut resp = String::new();
    conn.read_to_string(&mut resp).expect("read");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        messages
            .iter()
            .any(|m| m.contains("STATUS=checking storage")),
        "{messages:?}"
    );
    // The watchdog pings (WATCHDOG_USEC=0.4 s → every 0.2 s).
    let mut watchdog = false;
    for _ in 0..20 {
        let n = sock.recv(&mut buf).expect("notification");
        if String::from_utf8_lossy(&buf[..n]).contains("WATCHDOG=1") {
            watchdog = true;
            break;
        }
    }
    assert!(watchdog, "no WATCHDOG=1");
    // SIGTERM: STOPPING=1 then exit 0.
    unsafe_kill(child.0.id() as i32, 15);
    let mut stopping = false;
    for _ in 0..50 {
        let Ok(n) = sock.recv(&mut buf) else { break };
        if String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1") {
            stopping = true;
            break;
        }
    }
    assert!(stopping, "no STOPPING=1");
    let st = child.0.wait().expect("wait");
    assert!(st.success(), "exit status {st:?}");
}

#[test]
fn a_port_in_use_is_one_clear_line_and_a_failure() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let out = Server::builder().port(port).run_to_end();
    assert!(!out.ok);
    let err = &out.stderr;
    let line = err
        .lines()
        .find(|l| l.starts_with("docker-registry: "))
        .expect("one clear line");
    assert!(
        line.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(line.contains("in use"), "{err}");
}

#[test]
fn unwritable_storage_fails_before_ready_saying_so_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").expect("write");
    let storage = file.join("sub");
    let out = Server::builder().storage(&storage).run_to_end();
    assert!(!out.ok);
    let err = &out.stderr;
    assert_eq!(err.matches("storage is not writable").count(), 1, "{err}");
    assert_eq!(
        err.matches(&*storage.to_string_lossy()).count(),
        1,
        "the path once: {err}"
    );
    assert!(err.contains("--storage-path"), "{err}");
    assert!(
        err.contains("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY"),
        "{err}"
    );
}

#[test]
fn the_startup_line_names_the_storage_and_where_it_was_set() {
    let s = Server::start();
    let line = s
        .log_text()
        .lines()
        .find(|l| l.contains("listening on"))
        .map(str::to_owned)
        .expect("startup line");
    assert!(
        line.contains(&format!(
            "data in {}, set by command line (--storage-path);",
            s.storage.display()
        )),
        "{line}"
    );
    assert!(!line.contains("(("), "{line}");
    assert!(!line.contains("))"), "{line}");
}

#[test]
fn sigterm_lets_an_in_flight_upload_finish_and_exits_zero() {
    let mut s = Server::start();
    let c = client();
    let r = c
        .post(s.url("/v2/slow/blobs/uploads/"))
        .send()
        .expect("post");
    let loc = r.headers()["location"].to_str().expect("loc").to_owned();
    // A raw connection streams a chunked PATCH slowly; SIGTERM arrives in the middle.
    let mut conn = TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    write!(
        conn,
        "PATCH {loc} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .expect("head");
    conn.write_all(b"5\r\nhello\r\n").expect("chunk");
    std::thread::sleep(Duration::from_millis(300));
    unsafe_kill(s.pid(), 15);
    std::thread::sleep(Duration::from_millis(300));
    // New connections are refused now, but the in-flight request completes.
    conn.write_all(b"6\r\n world\r\n0\r\n\r\n")
        .expect("last chunk");
    let mut resp = [0u8; 1024];
    let n = conn.read(&mut resp).expect("response");
    let text = String::from_utf8_lossy(&resp[..n]);
    assert!(text.starts_with("HTTP/1.1 202"), "{text}");
    assert!(text.to_ascii_lowercase().contains("range: 0-10"), "{text}");
    drop(conn);
    let st = s
        .signal_and_wait(0)
        .or_else(|| s.child.try_wait().ok().flatten());
    let deadline = Instant::now() + Duration::from_secs(25);
    let mut status = st;
    while status.is_none() && Instant::now() < deadline {
        status = s.child.try_wait().expect("try_wait");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = status.expect("exited");
    assert!(status.success(), "{status:?}\n{}", s.log_text());
}

#[test]
fn sighup_reloads_without_dropping_connections() {
    let (s, c) = server_and_client();
    c.get(s.url("/v2/")).expect_status(200);
    unsafe_kill(s.pid(), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.log_text().contains("SIGHUP: configuration reloaded") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        s.log_text().contains("SIGHUP: configuration reloaded"),
        "{}",
        s.log_text()
    );
    // The same pooled keep-alive connection still works.
    c.get(s.url("/v2/")).expect_status(200);
}

#[test]
fn sighup_applies_a_new_log_level_from_the_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yml = dir.path().join("config.yml");
    let write = |level: &str| {
        std::fs::write(&yml, format!("version: 0.1\nlog:\n  level: {level}\nstorage:\n  filesystem:\n    rootdirectory: {}\n", dir.path().join("data").display()))
            .expect("write config");
    };
    write("info");
    let s = Server::builder()
        .arg("--config")
        .arg(yml.display().to_string())
        .start();
    let c = client();
    let count_access = |s: &Server| {
        s.log_text()
            .lines()
            .filter(|l| l.contains("GET /v2/_catalog"))
            .count()
    };
    c.get(s.url("/v2/_catalog")).send().expect("get");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(count_access(&s), 1, "{}", s.log_text());
    write("warn");
    unsafe_kill(s.pid(), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.log_text().contains("SIGHUP: reloading") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The new level applies right after that line.
    std::thread::sleep(Duration::from_millis(300));
    c.get(s.url("/v2/_catalog")).send().expect("get");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        count_access(&s),
        1,
        "access lines must stop at level warn:\n{}",
        s.log_text()
    );
    // A broken file on reload keeps the running configuration and says so.
    std::fs::write(&yml, "version: 0.1\nlog: [unclosed\n").expect("write");
    unsafe_kill(s.pid(), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.log_text().contains("not reloaded") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        s.log_text().contains("configuration not reloaded"),
        "{}",
        s.log_text()
    );
    c.get(s.url("/v2/")).expect_status(200);
}

/// Generates a deterministic stream of `len` bytes, hashing it as it is read.
struct Pattern {
    left: u64,
    counter: u64,
    hasher: std::sync::Arc<std::sync::Mutex<sha2::Sha256>>,
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = (buf.len() as u64).min(self.left) as usize;
        for chunk in buf[..n].chunks_mut(8) {
            let v = self
                .counter
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
            self.counter += 1;
        }
        self.hasher.lock().expect("hasher").update(&buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

#[test]
fn memory_stays_flat_while_a_2_gib_blob_streams_in_and_out() {
    use sha2::Digest;
    const SIZE: u64 = 2 << 30;
    let (s, c) = server_and_client();
    let idle = s.rss_kib();
    let r = c
        .post(s.url("/v2/big/blobs/uploads/"))
        .send()
        .expect("post");
    let loc = r.headers()["location"].to_str().expect("loc").to_owned();
    let hasher = std::sync::Arc::new(std::sync::Mutex::new(sha2::Sha256::new()));
    let body = reqwest::blocking::Body::sized(
        Pattern {
            left: SIZE,
            counter: 0,
            hasher: hasher.clone(),
        },
        SIZE,
    );
    let start = Instant::now();
    c.patch(s.url(&loc)).body(body).expect_status(202);
    let push_secs = start.elapsed().as_secs_f64();
    let hex: String = hasher
        .lock()
        .expect("h")
        .clone()
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let d = format!("sha256:{hex}");
    c.put(s.url(&format!(
        "{}?digest={d}",
        r.headers()["location"].to_str().expect("loc")
    )))
    .expect_status(201);
    let peak_push = s.peak_rss_kib();
    // Stream it back and hash it.
    let mut r = c
        .get(s.url(&format!("/v2/big/blobs/{d}")))
        .send()
        .expect("get");
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    assert_eq!(total, SIZE);
    let back: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(back, hex);
    let peak = s.peak_rss_kib();
    eprintln!(
        "2 GiB blob: idle RSS {} KiB, peak after push {} KiB, peak after pull {} KiB, push {:.1} s ({:.0} MB/s)",
        idle,
        peak_push,
        peak,
        push_secs,
        SIZE as f64 / push_secs / 1e6
    );
    assert!(peak < 100 * 1024, "peak RSS {peak} KiB is not flat");
}
