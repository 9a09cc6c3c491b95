//! Nothing stored is lost or corrupted: a registry killed mid-upload resumes the upload after
//! a restart with the right digest, and so does an upload whose client stalled mid-body (the
//! request ends at the body idle timeout, keeping what arrived); a full disk gives a clear
//! error and leaves no partial blob visible; HTTP/2 (prior knowledge) and IPv6 listeners
//! work.

mod common;

use common::*;
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn an_upload_survives_a_crash_and_resumes_after_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("data");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 241) as u8).collect();
    let loc;
    {
        let mut s = Server::builder().storage(&storage).start();
        let c = client();
        let r = c
            .post(s.url("/v2/crash/blobs/uploads/"))
            .send()
            .expect("post");
        loc = r.headers()["location"].to_str().expect("loc").to_owned();
        c.patch(s.url(&loc))
            .body(data[..1_000_000].to_vec())
            .expect_status(202);
        // SIGKILL: no chance to clean up or save anything.
        assert!(s.signal_and_wait(9).is_some());
    }
    let s = Server::builder().storage(&storage).start();
    resume_upload(&s, &loc, &data, 1_000_000);
}

/// Checks that the upload at `loc` kept the first `received` bytes of `data`, sends the
/// rest (a PATCH, then the last million bytes with the PUT) and reads the blob back.
fn resume_upload(s: &Server, loc: &str, data: &[u8], received: usize) {
    let c = client();
    let d = digest_of(data);
    let r = c.get(s.url(loc)).expect_status(204);
    assert_eq!(r.headers()["range"], format!("0-{}", received - 1));
    let last = data.len() - 1_000_000;
    c.patch(s.url(loc))
        .header("content-range", format!("{received}-{}", last - 1))
        .body(data[received..last].to_vec())
        .expect_status(202);
    c.put(s.url(&format!("{loc}?digest={d}")))
        .body(data[last..].to_vec())
        .expect_status(201);
    let got = c
        .get(s.url(&format!("/v2/crash/blobs/{d}")))
        .send()
        .expect("get")
        .bytes()
        .expect("b");
    assert_eq!(digest_of(&got), d);
}

#[test]
fn a_stalled_upload_body_ends_the_request_and_the_upload_resumes_from_what_arrived() {
    let s = Server::builder()
        .args_from(&["--body-idle-timeout", "2s"])
        .start();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let r = client()
        .post(s.url("/v2/crash/blobs/uploads/"))
        .send()
        .expect("post");
    let loc = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let mut raw = std::net::TcpStream::connect(s.host()).expect("connect");
    write!(
        raw,
        "PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        data.len()
    )
    .expect("head");
    raw.write_all(&data[..1_000_000])
        .expect("a third of the body");
    // Then nothing: the daemon answers once the body has stalled for 2 s, and closes.
    let stalled = Instant::now();
    raw.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut answer = String::new();
    raw.read_to_string(&mut answer).expect("answer, then close");
    let took = stalled.elapsed();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("BLOB_UPLOAD_INVALID"), "{answer}");
    assert!(
        (1.9..4.0).contains(&took.as_secs_f64()),
        "a stalled body ended after {took:?}"
    );
    eprintln!("a stalled PATCH body ended after {took:?}");
    resume_upload(&s, &loc, &data, 1_000_000);
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_a_clear_error_and_leaves_nothing_half_written() {
    if !is_root() {
        eprintln!("SKIPPED: mounting a small tmpfs needs root (CI runs as root)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).expect("mkdir");
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&mnt)
        .status()
        .expect("mount");
    assert!(st.success(), "mount tmpfs");
    let _guard = Tmpfs(mnt.clone());
    let s = Server::builder().storage(&mnt).start();
    let c = client();
    let small = push_image(&c, &s, "ok/before", "v1", "fits");
    let big: Vec<u8> = (0..8_000_000u32).map(|i| (i % 239) as u8).collect();
    let bd = digest_of(&big);
    let r = c
        .post(s.url(&format!("/v2/full/blobs/uploads/?digest={bd}")))
        .body(big.clone())
        .expect_status(507);
    let text = r.text().expect("t");
    assert_eq!(error_code(&text), "INSUFFICIENT_STORAGE");
    assert!(text.contains("no space left"), "{text}");
    // A fresh connection pool: the server may close the connection it refused.
    let c = client();
    // Nothing half-written is visible, and what was there is intact.
    c.head(s.url(&format!("/v2/full/blobs/{bd}")))
        .expect_status(404);
    c.get(s.url("/v2/ok/before/manifests/v1"))
        .expect_status(200);
    let r = c
        .get(s.url(&format!("/v2/ok/before/manifests/{small}")))
        .send()
        .expect("get");
    assert_eq!(digest_of(&r.bytes().expect("b")), small);
    // Once space is back (the failed upload's data was removed), pushes work again.
    push_image(&c, &s, "ok/after", "v1", "fits again");
}

#[test]
fn http2_prior_knowledge_and_ipv6_listeners() {
    if !have(&[CURL]) {
        return;
    }
    let s = Server::start();
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            "--http2-prior-knowledge",
        ])
        .arg(s.url("/v2/"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200");
    drop(s);
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("SKIPPED: no IPv6 loopback on this machine");
        return;
    }
    let s6 = Server::builder().address("::1").start();
    assert!(s6.url("/v2/").starts_with("http://[::1]:"));
    client().get(s6.url("/v2/")).expect_status(200);
}
