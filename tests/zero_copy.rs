//! Zero-copy blob pulls (`sendfile` on plain HTTP/1.1), through real clients: every byte
//! pulled is compared with what was pushed, whole and in ranges, across the 8 MiB windows the
//! server sends at a time; HEAD, keep-alive and pipelining on one connection, a rate-limited
//! curl, skopeo, a client that stops reading or goes away, a blob deleted while it is sent,
//! and HTTP/2 (which must not take this path); by default, clients on the same host are
//! served through buffers. The server runs with debug logging, which names each blob sent by
//! sendfile, so the tests also know which path served them.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
/// What the server sends per placeholder frame; blobs here cross several.
const WINDOW: usize = 8 * MIB;

/// Deterministic bytes that differ everywhere (a wrong offset or a zeroed page shows).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = rng::Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&rng.next().to_le_bytes());
    }
    v.truncate(len);
    v
}

/// A server that sends blobs with sendfile to every plain HTTP/1.1 client (by default it
/// does for clients on other hosts only, and these tests' clients are on this one).
fn builder() -> ServerBuilder {
    Server::builder().args_from(&["--log-level", "debug", "--sendfile", "always"])
}

fn start() -> Server {
    builder().delete_enabled().start()
}

/// How many blob responses the server has sent by sendfile so far.
fn sendfile_count(s: &Server) -> usize {
    s.log_text().matches("go by sendfile").count()
}

/// The sendfile count once it reaches `n` or 5 s have passed: a response reaches the client
/// before its log line reaches the harness (through a pipe and a thread), so counting at
/// once can come up short.
fn sendfile_count_reaching(s: &Server, n: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    while sendfile_count(s) < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    sendfile_count(s)
}

/// Checks that the server sent exactly `n` responses by sendfile (waiting for the log).
fn assert_sendfiles(s: &Server, n: usize) {
    assert_eq!(sendfile_count_reaching(s, n), n, "{}", s.log_text());
}

/// One HTTP/1.1 response read off a connection: status, headers (lower-case names), body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response; for a HEAD there is no body whatever Content-Length says.
fn read_reply(r: &mut BufReader<TcpStream>, head: bool) -> Reply {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).expect("header line");
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').expect("header");
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let mut reply = Reply {
        status,
        headers,
        body: Vec::new(),
    };
    if !head {
        let len: usize = reply
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .expect("content-length");
        reply.body = vec![0; len];
        r.read_exact(&mut reply.body).expect("body");
    }
    reply
}

fn send(s: &mut TcpStream, method: &str, path: &str, extra: &str) {
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: registry\r\n{extra}\r\n"
    )
    .expect("request");
}

/// curl with `options`, writing the body of `url` to `out`.
fn curl(options: &[&str], out: &std::path::Path, url: &str) -> Command {
    let mut c = Command::new("curl");
    c.arg("-sSf").args(options).arg("-o").arg(out).arg(url);
    c
}

fn connect(s: &Server) -> (TcpStream, BufReader<TcpStream>) {
    let c = TcpStream::connect(s.host()).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let r = BufReader::with_capacity(1 << 16, c.try_clone().expect("clone"));
    (c, r)
}

#[test]
fn pulled_blobs_are_the_pushed_bytes_whole_and_in_every_kind_of_range() {
    let s = start();
    let c = client();
    // Two whole windows and a part, an odd length.
    let data = pattern(2 * WINDOW + 3 * MIB + 12_345, 1);
    let d = push_blob(&c, &s, "zc/ranges", &data);
    let url = s.url(&format!("/v2/zc/ranges/blobs/{d}"));

    let r = c.get(&url).send().expect("GET");
    assert_eq!(r.status(), 200);
    assert_eq!(r.content_length(), Some(data.len() as u64));
    let body = r.bytes().expect("body");
    assert!(body == data, "the whole blob differs from what was pushed");

    let n = data.len();
    let ranges: Vec<(String, usize, usize)> = vec![
        ("bytes=0-0".into(), 0, 0),
        ("bytes=100-4195".into(), 100, 4195),
        // Across the first window's end.
        (
            format!("bytes={}-{}", WINDOW - 1000, WINDOW + 1000),
            WINDOW - 1000,
            WINDOW + 1000,
        ),
        // Exactly the second window.
        (
            format!("bytes={}-{}", WINDOW, 2 * WINDOW - 1),
            WINDOW,
            2 * WINDOW - 1,
        ),
        // From inside the first window to the end: crosses two window ends.
        (format!("bytes={}-", 5 * MIB + 7), 5 * MIB + 7, n - 1),
        ("bytes=-70000".into(), n - 70_000, n - 1),
        // An end past the blob is cut to the blob.
        (format!("bytes={}-{}", n - 10, n + 1000), n - 10, n - 1),
    ];
    for (range, from, to) in ranges {
        let r = c.get(&url).header("range", &range).send().expect("GET");
        assert_eq!(r.status(), 206, "{range}");
        assert_eq!(
            r.headers()["content-range"].to_str().ok(),
            Some(format!("bytes {from}-{to}/{n}").as_str()),
            "{range}"
        );
        let body = r.bytes().expect("body");
        assert!(body == data[from..=to], "{range}: wrong bytes");
    }
    let r = c
        .get(&url)
        .header("range", format!("bytes={n}-"))
        .send()
        .expect("GET");
    assert_eq!(r.status(), 416);

    let r = c.head(&url).send().expect("HEAD");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"].to_str().ok(),
        Some(n.to_string().as_str())
    );
    assert!(r.bytes().expect("body").is_empty());
    // The whole GET and the 7 ranges; the refused range and the HEAD send no blob.
    assert_sendfiles(&s, 8);
}

#[test]
fn one_connection_serves_pulls_heads_ranges_and_errors_in_turn_and_pipelined() {
    let s = start();
    let c = client();
    let big = pattern(WINDOW + 5 * MIB + 3, 2);
    let small = pattern(1000, 3);
    let bd = push_blob(&c, &s, "zc/keep", &big);
    let sd = push_blob(&c, &s, "zc/keep", &small);
    let path = |d: &str| format!("/v2/zc/keep/blobs/{d}");
    let (mut w, mut r) = connect(&s);

    // In turn.
    send(&mut w, "GET", &path(&bd), "");
    let a = read_reply(&mut r, false);
    assert_eq!(a.status, 200);
    assert!(a.body == big, "first pull on the connection differs");
    send(&mut w, "HEAD", &path(&bd), "");
    let h = read_reply(&mut r, true);
    assert_eq!(h.status, 200);
    assert_eq!(
        h.header("content-length"),
        Some(big.len().to_string().as_str())
    );
    send(&mut w, "GET", &path(&sd), "");
    assert!(read_reply(&mut r, false).body == small);
    send(&mut w, "GET", &path(&bd), "Range: bytes=1000-8389607\r\n");
    let p = read_reply(&mut r, false);
    assert_eq!(p.status, 206);
    assert!(p.body == big[1000..=8_389_607]);
    let missing = format!("sha256:{}", "0".repeat(64));
    send(&mut w, "GET", &path(&missing), "");
    let e = read_reply(&mut r, false);
    assert_eq!(e.status, 404);
    assert!(String::from_utf8_lossy(&e.body).contains("BLOB_UNKNOWN"));

    // Pipelined: four requests written at once, answered in order.
    let mut all = String::new();
    for (m, p, extra) in [
        ("GET", path(&bd), ""),
        ("HEAD", path(&sd), ""),
        ("GET", path(&bd), "Range: bytes=-3\r\n"),
        ("GET", path(&sd), ""),
    ] {
        all.push_str(&format!(
            "{m} {p} HTTP/1.1\r\nHost: registry\r\n{extra}\r\n"
        ));
    }
    w.write_all(all.as_bytes()).expect("pipelined requests");
    assert!(read_reply(&mut r, false).body == big);
    assert_eq!(read_reply(&mut r, true).status, 200);
    assert!(read_reply(&mut r, false).body == big[big.len() - 3..]);
    assert!(read_reply(&mut r, false).body == small);
    assert_sendfiles(&s, 6);
}

#[test]
fn reqwest_keep_alive_pulls_and_curl_at_a_limited_rate_get_every_byte() {
    if !have(&[CURL]) {
        return;
    }
    // A transfer longer than the idle timeout: the connection is busy while a response is
    // sent, however slowly. curl's rate limit reads in bursts and then sleeps until its
    // average is back at the rate (seconds without reading a byte, up to most of the
    // transfer), so the body idle timeout, which would rightly close such a client, is set
    // past the whole transfer; tests below read slowly and steadily against a short one.
    let s = builder()
        .args_from(&["--idle-timeout", "1s", "--body-idle-timeout", "30s"])
        .start();
    let c = client();
    // Larger than the socket buffers take at once (else curl gets it all before it limits).
    let data = pattern(WINDOW + 4 * MIB + 77, 4);
    let d = push_blob(&c, &s, "zc/slow", &data);
    let url = s.url(&format!("/v2/zc/slow/blobs/{d}"));
    for _ in 0..4 {
        assert!(c.get(&url).send().expect("GET").bytes().expect("body") == data);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("blob");
    let t = Instant::now();
    // 12 MiB at 1 MiB/s: curl 7.88's limiter overshoots (12 MiB in under 4 s was seen),
    // but not to within the idle timeout.
    let st = curl(&["--limit-rate", "1048576"], &out, &url)
        .status()
        .expect("curl is installed");
    assert!(st.success(), "curl failed: {}", s.log_text());
    assert!(
        t.elapsed() > Duration::from_millis(1500),
        "not rate-limited?"
    );
    assert!(std::fs::read(&out).expect("curl's file") == data);
    assert_sendfiles(&s, 5);
}

/// A connection with a small receive buffer, so that what the client has not read yet
/// waits on the server's side.
fn connect_small_window(s: &Server) -> (TcpStream, BufReader<TcpStream>) {
    use nix::sys::socket::{connect, setsockopt, socket, sockopt};
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn};
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    setsockopt(&fd, sockopt::RcvBuf, &(64 << 10)).expect("SO_RCVBUF");
    let to = SockaddrIn::new(127, 0, 0, 1, s.port);
    connect(fd.as_raw_fd(), &to).expect("connect");
    let c = TcpStream::from(fd);
    c.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let r = BufReader::with_capacity(64 << 10, c.try_clone().expect("clone"));
    (c, r)
}

/// Pulls a 12 MiB blob through a small receive window from a daemon with a 1 s idle timeout
/// serving blobs `sendfile`-wise or through hyper's buffers, and stops reading for 3 s at
/// each of `pauses` (one connection each, side by side): near the end, the daemon has let go
/// of the response while its last MiB still wait to be sent.
fn pull_with_a_pause(sendfile: &str, pauses: &[usize]) {
    let s = Server::builder()
        .args_from(&["--log-level", "debug", "--sendfile", sendfile])
        .args_from(&["--idle-timeout", "1s", "--body-idle-timeout", "10s"])
        .start();
    let c = client();
    let data = pattern(12 * MIB + 77, 13);
    let d = push_blob(&c, &s, "zc/pause", &data);
    let path = format!("/v2/zc/pause/blobs/{d}");
    std::thread::scope(|scope| {
        for &at in pauses {
            let (s, data, path) = (&s, &data, &path);
            scope.spawn(move || {
                let (mut w, mut r) = connect_small_window(s);
                send(&mut w, "GET", path, "");
                assert_eq!(read_reply(&mut r, true).status, 200);
                let mut got = vec![0; at];
                r.read_exact(&mut got).expect("the start");
                std::thread::sleep(Duration::from_secs(3));
                r.read_to_end(&mut got).expect("the rest");
                assert!(
                    got == *data,
                    "--sendfile {sendfile}, a pause after {at} bytes: {} of {} bytes",
                    got.len(),
                    data.len()
                );
            });
        }
    });
}

#[test]
fn a_pull_whose_end_waits_in_the_socket_is_not_idle_until_the_client_has_read_it() {
    // The daemon lets go of a response once its last bytes are written to the socket (or
    // held by hyper to write), but the socket takes MiB: a client that reads them slower
    // than the idle timeout is still being sent a response. Closing its connection as idle
    // lost the end (about 1 MiB when pausing 5 MiB before the end, before the change).
    let at = [6 * MIB + MIB / 2, 7 * MIB, 7 * MIB + MIB / 2, 8 * MIB];
    let buffered = std::thread::spawn(move || pull_with_a_pause("never", &at));
    pull_with_a_pause("always", &at);
    buffered.join().expect("the pulls through buffers");
}

#[test]
fn a_client_reading_steadily_slower_than_the_socket_frees_room_is_not_cut_off() {
    // The kernel says a full socket has room again only once a third of its buffer is
    // free (here up to 4 MiB, so 1.3 MiB); a client that reads steadily, but slower than
    // that per body idle timeout, is still reading: the server sees the bytes its socket
    // holds going down, and does not close the connection.
    let s = builder()
        .args_from(&["--idle-timeout", "1s", "--body-idle-timeout", "1s"])
        .start();
    let c = client();
    // More than the socket buffers take, so that the server's writes wait.
    let data = pattern(6 * MIB, 12);
    let d = push_blob(&c, &s, "zc/steady", &data);
    let (mut w, mut r) = connect_small_window(&s);
    send(&mut w, "GET", &format!("/v2/zc/steady/blobs/{d}"), "");
    assert_eq!(read_reply(&mut r, true).status, 200);
    // About 800 KiB/s, evenly: 1.3 MiB take more than the timeout.
    let t = Instant::now();
    let mut got = Vec::with_capacity(data.len());
    let mut buf = vec![0; 16 << 10];
    while got.len() < data.len() {
        let n = r.read(&mut buf).expect("read");
        assert!(n > 0, "closed after {} of {} bytes", got.len(), data.len());
        got.extend_from_slice(&buf[..n]);
        let due = Duration::from_secs_f64(got.len() as f64 / (800 << 10) as f64);
        if let Some(wait) = due.checked_sub(t.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    assert!(got == data, "a steadily read pull differs");
}

#[test]
fn a_pull_read_slowly_outlasts_the_idle_timeouts_to_its_last_byte() {
    // hyper lets go of a body as soon as it has its last frame, 8 MiB still to send: the
    // connection must stay busy until those are sent, not count as idle and be closed.
    let s = builder()
        .args_from(&["--idle-timeout", "1s", "--body-idle-timeout", "2s"])
        .start();
    let c = client();
    let data = pattern(2 * WINDOW, 10);
    let d = push_blob(&c, &s, "zc/paced", &data);
    let (mut w, mut r) = connect_small_window(&s);
    send(&mut w, "GET", &format!("/v2/zc/paced/blobs/{d}"), "");
    let head = read_reply(&mut r, true);
    assert_eq!(head.status, 200);
    // About 4 MiB/s: the last window takes seconds to go out.
    let t = Instant::now();
    let mut got = Vec::with_capacity(data.len());
    let mut buf = vec![0; 64 << 10];
    while got.len() < data.len() {
        let n = r.read(&mut buf).expect("read");
        assert!(n > 0, "closed after {} of {} bytes", got.len(), data.len());
        got.extend_from_slice(&buf[..n]);
        let due = Duration::from_secs_f64(got.len() as f64 / (4 * MIB) as f64);
        if let Some(wait) = due.checked_sub(t.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    assert!(got == data, "a slowly read pull differs");
    assert!(t.elapsed() > Duration::from_secs(3));
}

#[test]
fn a_client_that_stops_reading_is_closed_at_the_body_idle_timeout_and_others_are_served() {
    let s = builder().args_from(&["--body-idle-timeout", "2s"]).start();
    let c = client();
    let data = pattern(48 * MIB, 5);
    let d = push_blob(&c, &s, "zc/stall", &data);
    let path = format!("/v2/zc/stall/blobs/{d}");
    let (mut w, mut r) = connect(&s);
    send(&mut w, "GET", &path, "");
    let mut first = vec![0; MIB];
    r.read_exact(&mut first).expect("the start of the response");
    // Stop reading; the socket buffers fill and the server waits for the client.
    std::thread::sleep(Duration::from_secs(5));
    let stalled = Instant::now();
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    assert!(
        stalled.elapsed() < Duration::from_secs(10),
        "the connection was left open"
    );
    assert!(
        MIB + rest.len() < data.len(),
        "the whole blob arrived after all"
    );
    // Others are served meanwhile and after.
    assert!(
        c.get(s.url(&path))
            .send()
            .expect("GET")
            .bytes()
            .expect("body")
            == data
    );
}

#[test]
fn a_client_that_goes_away_mid_blob_leaves_the_server_serving() {
    let mut s = start();
    let c = client();
    let data = pattern(40 * MIB, 6);
    let d = push_blob(&c, &s, "zc/gone", &data);
    let path = format!("/v2/zc/gone/blobs/{d}");
    for _ in 0..3 {
        let (mut w, mut r) = connect(&s);
        send(&mut w, "GET", &path, "");
        let mut some = vec![0; 3 * MIB];
        r.read_exact(&mut some).expect("part of the blob");
        drop((w, r));
    }
    let (mut w, mut r) = connect(&s);
    send(&mut w, "GET", &path, "");
    assert!(read_reply(&mut r, false).body == data);
    assert!(s.child.try_wait().expect("status").is_none());
}

#[test]
fn a_blob_deleted_while_it_is_sent_arrives_whole_and_is_gone_after() {
    if !have(&[CURL]) {
        return;
    }
    let s = start();
    let c = client();
    let data = pattern(12 * MIB + 5, 7);
    let d = push_blob(&c, &s, "zc/deleted", &data);
    let url = s.url(&format!("/v2/zc/deleted/blobs/{d}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("blob");
    let mut curl = curl(&["--limit-rate", "3145728"], &out, &url)
        .spawn()
        .expect("curl is installed");
    std::thread::sleep(Duration::from_secs(1));
    // As collection removes it: the blob's directory in the store goes.
    let hex = d.trim_start_matches("sha256:");
    let blob_dir = s.storage.join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}",
        &hex[..2]
    ));
    std::fs::remove_dir_all(&blob_dir).expect("remove the blob");
    assert!(curl.wait().expect("curl").success());
    assert!(std::fs::read(&out).expect("curl's file") == data);
    let r = c.get(&url).send().expect("GET");
    assert_eq!(r.status(), 404);
}

#[test]
fn skopeo_pulls_an_image_whose_layer_spans_several_windows() {
    if !have(&[SKOPEO]) {
        return;
    }
    let s = start();
    let c = client();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = pattern(3 * WINDOW + 1234, 8);
    let cd = push_blob(&c, &s, "zc/image", config);
    let ld = push_blob(&c, &s, "zc/image", &layer);
    let m = image_manifest((&cd, config.len()), &[(&ld, layer.len())]);
    put_manifest(&c, &s, "zc/image", "v1", &m);
    let dir = tempfile::tempdir().expect("tempdir");
    // dir: keeps each blob as it came (oci: may compress the layer).
    let dest = format!("dir:{}", dir.path().join("out").display());
    // skopeo checks every blob against its digest.
    skopeo_ok(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/zc/image:v1", s.host()),
        &dest,
    ]);
    let hex = ld.trim_start_matches("sha256:");
    let blobs = dir.path().join("out");
    let pulled = std::fs::read(blobs.join(hex)).unwrap_or_else(|e| {
        let names: Vec<_> = std::fs::read_dir(&blobs)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        panic!("the layer is not in skopeo's copy ({e}): {names:?}")
    });
    assert!(pulled == layer);
    assert!(sendfile_count_reaching(&s, 2) >= 2, "{}", s.log_text());
}

#[test]
fn http2_pulls_are_framed_by_hyper_and_right() {
    if !have(&[CURL]) {
        return;
    }
    let s = start();
    let c = client();
    let data = pattern(WINDOW + 333, 9);
    let d = push_blob(&c, &s, "zc/h2", &data);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("blob");
    let url = s.url(&format!("/v2/zc/h2/blobs/{d}"));
    let st = curl(&["--http2-prior-knowledge"], &out, &url)
        .status()
        .expect("curl is installed");
    assert!(st.success());
    assert!(std::fs::read(&out).expect("curl's file") == data);
    assert_eq!(
        sendfile_count(&s),
        0,
        "HTTP/2 must not take the sendfile path"
    );
}

#[test]
fn by_default_a_client_on_this_host_is_served_through_buffers() {
    let s = Server::builder()
        .args_from(&["--log-level", "debug"])
        .start();
    let c = client();
    let data = pattern(WINDOW + 99, 11);
    let d = push_blob(&c, &s, "zc/local", &data);
    let url = s.url(&format!("/v2/zc/local/blobs/{d}"));
    assert!(c.get(&url).send().expect("GET").bytes().expect("body") == data);
    assert_eq!(sendfile_count(&s), 0);
}
