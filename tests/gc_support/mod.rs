//! Shared by the garbage-collection tests: the real daemon on port 0, the real registry:2
//! (Debian's `docker-registry`, /usr/bin), skopeo, a data directory written by distribution
//! 2.8.2 (`registry2`, shared with `tests/common`), and OCI layouts built on disk for skopeo
//! to push. Every process started here is stopped by PID when its guard drops; every wait
//! is bounded.
#![allow(dead_code)]

#[path = "../common/images.rs"]
pub mod images;
#[path = "../common/registry2.rs"]
pub mod registry2;
#[path = "../common/rng.rs"]
pub mod rng;

// Not every test file that includes this module uses all of them.
#[allow(unused_imports)]
pub use registry2::{registry2_expected, registry2_store, Distribution};

use sha2::{Digest as _, Sha256};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_docker-registry");
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A command of ours, with an environment that cannot leak the machine's configuration in.
pub fn ours(storage: &Path) -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("REGISTRY_") || k == "DOCKER_REGISTRY_CONFIG" || k == "SETTINGS_FLAVOR" {
            c.env_remove(k);
        }
    }
    c.arg("--storage-path").arg(storage);
    c
}

pub fn run(mut c: Command) -> Output {
    c.output().expect("run command")
}

pub fn stdout_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A child process stopped (SIGTERM, then SIGKILL after 10 s) when dropped.
pub struct Proc {
    pub child: Child,
    pub stderr: mpsc::Receiver<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").arg("-TERM").arg(&pid).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_with_stderr(mut c: Command) -> Proc {
    c.stdout(Stdio::null())
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    let mut child = c.spawn().expect("spawn");
    let err = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Proc { child, stderr: rx }
}

/// Our daemon on 127.0.0.1, port 0.
pub struct Daemon {
    pub proc: Proc,
    pub port: u16,
}

impl Daemon {
    pub fn start(storage: &Path, extra: &[&str]) -> Daemon {
        let mut c = ours(storage);
        c.args(["serve", "--address", "127.0.0.1", "--port", "0"])
            .args(extra);
        let proc = spawn_with_stderr(c);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            match proc.stderr.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on http://127.0.0.1:").nth(1) {
                        let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                        let port = port.parse().expect("port");
                        return Daemon { proc, port };
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("the daemon did not report its port");
    }

    pub fn base(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

pub fn skopeo(args: &[&str]) -> Output {
    Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .env("TMPDIR", std::env::temp_dir())
        .output()
        .expect("skopeo (apt-get install skopeo)")
}

pub fn skopeo_ok(args: &[&str]) -> String {
    let out = skopeo(args);
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes an OCI image layout at `dir` holding one image tagged `tag` with these layers;
/// returns the manifest's digest (`sha256:...`).
pub fn oci_image(dir: &Path, tag: &str, layers: &[Vec<u8>]) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir");
    let put = |bytes: &[u8]| -> (String, usize) {
        let hex = sha256_hex(bytes);
        std::fs::write(blobs.join(&hex), bytes).expect("write blob");
        (format!("sha256:{hex}"), bytes.len())
    };
    // Compressed layers: skopeo pushes them as they are, so the registry holds exactly
    // the digests of this layout (an uncompressed layer would be recompressed on push).
    let layer_descs: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| {
            let (d, n) = put(&gzip(l));
            serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n})
        })
        .collect();
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256_hex(l)))
        .collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Labels": {"tag": tag}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    });
    let (cd, cn) = put(config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
        "layers": layer_descs
    });
    let mbytes = manifest.to_string().into_bytes();
    let (md, mn) = put(&mbytes);
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("layout");
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn,
                       "annotations": {"org.opencontainers.image.ref.name": tag}}]
    });
    std::fs::write(dir.join("index.json"), index.to_string()).expect("index");
    md
}

/// Deterministic filler bytes (a layer's content), distinct per seed.
pub fn layer_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Digests of the blobs in a registry:2 layout store, sorted.
pub fn stored_blobs(storage: &Path) -> Vec<String> {
    let root = storage.join("docker/registry/v2/blobs/sha256");
    let mut out = Vec::new();
    for prefix in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        for b in std::fs::read_dir(prefix.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if b.path().join("data").is_file() {
                out.push(format!("sha256:{}", b.file_name().to_string_lossy()));
            }
        }
    }
    out.sort();
    out
}

/// Bytes of blob data in a store.
pub fn blob_bytes(storage: &Path) -> u64 {
    stored_blobs(storage)
        .iter()
        .map(|d| {
            let hex = &d[7..];
            std::fs::metadata(storage.join(format!(
                "docker/registry/v2/blobs/sha256/{}/{hex}/data",
                &hex[..2]
            )))
            .map(|m| m.len())
            .unwrap_or(0)
        })
        .sum()
}

/// `gzip -n` of some bytes (deterministic: no name, no time stamp).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("gzip")
        .args(["-n", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().expect("gzip output");
    writer.join().expect("writer").expect("write to gzip");
    assert!(out.status.success());
    out.stdout
}
