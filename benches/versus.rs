//! Side-by-side benchmark: our daemon against CNCF distribution 2.8.2 (Debian's
//! `docker-registry` package, `registry:2`), each on loopback with a fresh data directory,
//! the same scenarios interleaved (A B A B …), medians and ratios ours/registry:2.
//!
//! ```text
//! cargo bench --bench versus              # 3 interleaved runs
//! cargo bench --bench versus -- --quick   # 1 run, smaller sizes, shorter loops
//! cargo bench --bench versus -- --runs 5
//! cargo bench --bench versus -- --data-dir /dev/shm   # storage in memory: no disk in the figures
//! ```
//!
//! We fsync what we acknowledge (a pushed blob survives a power cut); registry:2 never does.
//! Where the disk is slower than hashing, push figures on a disk measure the disk; the
//! `--data-dir /dev/shm` run shows what the software itself does.
//!
//! Every scenario checks what it measures (digests of pulled data, status codes) and prints
//! an error instead of a number when a registry answers wrongly. Client and server CPU are
//! sampled during each scenario; a figure where the client used more CPU than the server is
//! marked "client-bound?".

use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const OURS: &str = env!("CARGO_BIN_EXE_docker-registry");
const DISTRIBUTION: &str = "/usr/bin/docker-registry";
const MIB: usize = 1 << 20;

#[derive(Clone, Copy)]
struct Sizes {
    big: usize,
    chunk: usize,
    small_count: usize,
    manifests: usize,
    repos: usize,
    get_secs: u64,
    listing: usize,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", sha_hex(data))
}

/// Deterministic content, different for each `seed`.
fn content(len: usize, seed: u64) -> Bytes {
    let mut v = vec![0u8; len];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    Bytes::from(v)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(5099)
}

fn proc_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// utime+stime of a process in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

struct Registry {
    name: &'static str,
    child: Child,
    base: String,
    idle_rss: u64,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

async fn wait_up(client: &reqwest::Client, base: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{base}/v2/")).send().await {
            if r.status().is_success() || r.status() == 401 {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A fresh directory where the registries' data go: under `--data-dir DIR`, or the system
/// temp dir.
fn data_tempdir() -> std::io::Result<tempfile::TempDir> {
    match data_parent() {
        Some(p) => tempfile::tempdir_in(p),
        None => tempfile::tempdir(),
    }
}

/// `--data-dir DIR`, if given.
fn data_parent() -> Option<PathBuf> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--data-dir")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
}

async fn start(
    name: &'static str,
    client: &reqwest::Client,
    prepare: &dyn Fn(&Path),
) -> Result<Registry, String> {
    let dir = data_tempdir().map_err(|e| e.to_string())?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
    prepare(&data);
    // The prepared store (tens of thousands of files) goes to disk before the registry
    // starts: otherwise the first registry to sync anything would pay for writing it.
    let _ = Command::new("sync").status();
    let port = free_port();
    let mut cmd;
    if name == "ours" {
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "").map_err(|e| e.to_string())?;
        cmd = Command::new(OURS);
        cmd.arg("--sysconfig")
            .arg(&empty)
            .arg("--config")
            .arg(&empty);
        cmd.args([
            "--address",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--log-level",
            "warn",
            "--delete-enabled",
            "--storage-path",
        ]);
        cmd.arg(&data);
    } else {
        if !Path::new(DISTRIBUTION).exists() {
            return Err("registry:2 is not installed: apt-get install docker-registry".into());
        }
        let conf = dir.path().join("config.yml");
        std::fs::write(
            &conf,
            format!(
                "version: 0.1\nlog: {{level: error, accesslog: {{disabled: true}}}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\n",
                data.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        cmd = Command::new(DISTRIBUTION);
        cmd.arg("serve").arg(&conf);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{name}: {e}"))?;
    let base = format!("http://127.0.0.1:{port}");
    let mut reg = Registry {
        name,
        child,
        base,
        idle_rss: 0,
        _dir: dir,
    };
    if !wait_up(client, &reg.base).await {
        return Err(format!("{name} did not start"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    reg.idle_rss = proc_kib(reg.pid(), "VmRSS:");
    Ok(reg)
}

/// One measured figure: value (higher is better unless `lower_better`), and CPU split.
#[derive(Clone, Debug)]
struct Figure {
    value: f64,
    client_cpu: f64,
    server_cpu: f64,
}

type Outcome = Result<Figure, String>;

struct CpuWatch {
    pid: u32,
    me: u32,
    server0: u64,
    client0: u64,
}

impl CpuWatch {
    fn new(pid: u32) -> CpuWatch {
        let me = std::process::id();
        CpuWatch {
            pid,
            me,
            server0: cpu_ticks(pid),
            client0: cpu_ticks(me),
        }
    }
    fn figure(&self, value: f64) -> Figure {
        Figure {
            value,
            client_cpu: (cpu_ticks(self.me) - self.client0) as f64,
            server_cpu: (cpu_ticks(self.pid) - self.server0) as f64,
        }
    }
}

/// A monolithic upload as the Docker Registry API defines it and every registry supports:
/// POST for a session, then one PUT carrying the whole blob and its digest. (registry:2 2.8
/// ignores the one-request `POST ?digest=` form and answers 202.)
async fn push_monolithic(
    c: &reqwest::Client,
    base: &str,
    repo: &str,
    data: Bytes,
    d: &str,
) -> Result<(), String> {
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != 202 {
        return Err(format!("POST answered {}", r.status()));
    }
    let loc = location(base, &r)?;
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = c
        .put(format!("{loc}{sep}digest={d}"))
        .header("content-type", "application/octet-stream")
        .body(data)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != 201 {
        return Err(format!("monolithic PUT answered {}", r.status()));
    }
    Ok(())
}

fn location(base: &str, r: &reqwest::Response) -> Result<String, String> {
    let loc = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or("no Location")?;
    Ok(if loc.starts_with("http") {
        loc.to_owned()
    } else {
        format!("{base}{loc}")
    })
}

async fn push_chunked(
    c: &reqwest::Client,
    base: &str,
    repo: &str,
    data: &Bytes,
    chunk: usize,
    d: &str,
) -> Result<(), String> {
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != 202 {
        return Err(format!("POST answered {}", r.status()));
    }
    let mut loc = location(base, &r)?;
    let mut off = 0;
    while off < data.len() {
        let end = (off + chunk).min(data.len());
        let r = c
            .patch(&loc)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{off}-{}", end - 1))
            .body(data.slice(off..end))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status() != 202 {
            return Err(format!("PATCH answered {}", r.status()));
        }
        loc = location(base, &r)?;
        off = end;
    }
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = c
        .put(format!("{loc}{sep}digest={d}"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != 201 {
        return Err(format!("PUT answered {}", r.status()));
    }
    Ok(())
}

/// Pulls a blob through reqwest; returns the bytes received and their digest.
async fn pull(c: &reqwest::Client, url: &str) -> Result<(u64, String), String> {
    let mut r = c.get(url).send().await.map_err(|e| e.to_string())?;
    if r.status() != 200 {
        return Err(format!("GET answered {}", r.status()));
    }
    let mut h = Sha256::new();
    let mut n = 0u64;
    while let Some(chunk) = r.chunk().await.map_err(|e| e.to_string())? {
        n += chunk.len() as u64;
        h.update(&chunk);
    }
    Ok((n, format!("sha256:{}", hex(&h.finalize()))))
}

/// A plain HTTP/1.1 GET on its own connection, reading the body in 1 MiB reads into one
/// reused buffer and counting it: the client of the throughput scenarios, as cheap per byte
/// as the loopback reference below, so that a figure measures the server rather than an
/// HTTP client library. Returns the body's length after checking it against Content-Length.
fn raw_get(base: &str, path: &str) -> Result<(u16, u64), String> {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; MIB];
    let mut have = 0;
    let head_end = loop {
        let n = s.read(&mut buf[have..]).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the response headers".into());
        }
        have += n;
        if let Some(p) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if have == buf.len() {
            return Err("response headers over 1 MiB".into());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .ok_or("no status line")?;
    let length: u64 = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .ok_or("no Content-Length")?;
    let mut got = (have - head_end) as u64;
    while got < length {
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    if got != length {
        return Err(format!("body of {got} bytes, Content-Length {length}"));
    }
    Ok((status, got))
}

fn manifest_for(
    config: &str,
    config_len: usize,
    layer: &str,
    layer_len: usize,
    note: &str,
) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":{config_len}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":{layer_len}}}],"annotations":{{"note":"{note}"}}}}"#
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Scenarios {
    sizes: Sizes,
    big: Bytes,
    big_digest: String,
}

impl Scenarios {
    async fn push_mono(&self, c: &reqwest::Client, r: &Registry, run: u64) -> Outcome {
        let data = content(self.sizes.big, 1000 + run);
        let d = digest(&data);
        let w = CpuWatch::new(r.pid());
        let t = Instant::now();
        push_monolithic(c, &r.base, "bench/mono", data.clone(), &d).await?;
        let secs = t.elapsed().as_secs_f64();
        let f = w.figure(data.len() as f64 / secs / 1e6);
        let (n, got) = pull(c, &format!("{}/v2/bench/mono/blobs/{d}", r.base)).await?;
        if n != data.len() as u64 || got != d {
            return Err("pulled blob differs from pushed".into());
        }
        Ok(f)
    }

    async fn push_chunked(&self, c: &reqwest::Client, r: &Registry, run: u64) -> Outcome {
        let data = content(self.sizes.big, 2000 + run);
        let d = digest(&data);
        let w = CpuWatch::new(r.pid());
        let t = Instant::now();
        push_chunked(c, &r.base, "bench/chunked", &data, self.sizes.chunk, &d).await?;
        let secs = t.elapsed().as_secs_f64();
        let f = w.figure(data.len() as f64 / secs / 1e6);
        let r2 = c
            .head(format!("{}/v2/bench/chunked/blobs/{d}", r.base))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r2.status() != 200 {
            return Err(format!("HEAD after chunked push answered {}", r2.status()));
        }
        Ok(f)
    }

    async fn push_small(&self, c: &reqwest::Client, r: &Registry, run: u64) -> Outcome {
        let blobs: Vec<(Bytes, String)> = (0..self.sizes.small_count)
            .map(|i| {
                let b = content(MIB, 10_000 * (run + 1) + i as u64);
                let d = digest(&b);
                (b, d)
            })
            .collect();
        let sem = Arc::new(tokio::sync::Semaphore::new(16));
        let w = CpuWatch::new(r.pid());
        let t = Instant::now();
        let mut tasks = Vec::new();
        for (b, d) in blobs.clone() {
            let c = c.clone();
            let base = r.base.clone();
            let sem = sem.clone();
            tasks.push(tokio::spawn(async move {
                let _p = sem.acquire_owned().await.map_err(|e| e.to_string())?;
                push_monolithic(&c, &base, "bench/small", b, &d).await
            }));
        }
        for t in tasks {
            t.await.map_err(|e| e.to_string())??;
        }
        let secs = t.elapsed().as_secs_f64();
        let f = w.figure(blobs.len() as f64 / secs);
        for (_, d) in blobs.iter().take(4) {
            let r2 = c
                .head(format!("{}/v2/bench/small/blobs/{d}", r.base))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if r2.status() != 200 {
                return Err("small blob missing after push".into());
            }
        }
        Ok(f)
    }

    async fn ensure_big(&self, c: &reqwest::Client, r: &Registry) -> Result<String, String> {
        let url = format!("{}/v2/bench/pull/blobs/{}", r.base, self.big_digest);
        let h = c.head(&url).send().await.map_err(|e| e.to_string())?;
        if h.status() != 200 {
            push_monolithic(c, &r.base, "bench/pull", self.big.clone(), &self.big_digest).await?;
            let (_, got) = pull(c, &url).await?;
            if got != self.big_digest {
                return Err("pulled blob differs from pushed".into());
            }
        }
        Ok(url)
    }

    /// `streams` simultaneous pulls of the big blob with the raw client, each on its own
    /// thread (the content was verified by digest in `ensure_big`; here lengths are checked).
    async fn pull_raw(&self, c: &reqwest::Client, r: &Registry, streams: usize) -> Outcome {
        let url = self.ensure_big(c, r).await?;
        let path = url.trim_start_matches(&r.base).to_owned();
        let base = r.base.clone();
        let want = self.big.len() as u64;
        let w = CpuWatch::new(r.pid());
        let t = Instant::now();
        let total = tokio::task::spawn_blocking(move || -> Result<u64, String> {
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..streams)
                    .map(|_| scope.spawn(|| raw_get(&base, &path)))
                    .collect();
                let mut total = 0;
                for h in handles {
                    let (status, n) = h.join().map_err(|_| "pull thread panicked")??;
                    if status != 200 || n != want {
                        return Err(format!("pull answered {status} with {n} of {want} bytes"));
                    }
                    total += n;
                }
                Ok(total)
            })
        })
        .await
        .map_err(|e| e.to_string())??;
        Ok(w.figure(total as f64 / t.elapsed().as_secs_f64() / 1e6))
    }

    async fn pull_seq(&self, c: &reqwest::Client, r: &Registry) -> Outcome {
        self.pull_raw(c, r, 1).await
    }

    async fn pull_concurrent(&self, c: &reqwest::Client, r: &Registry) -> Outcome {
        self.pull_raw(c, r, 8).await
    }

    /// Range GETs of 1 MiB at scattered offsets: requests per second.
    async fn range_get(&self, c: &reqwest::Client, r: &Registry) -> Outcome {
        let url = self.ensure_big(c, r).await?;
        let w = CpuWatch::new(r.pid());
        let t = Instant::now();
        let count = 64;
        for i in 0..count {
            let start = (i * 7919 * 4096) % (self.big.len() - MIB);
            let resp = c
                .get(&url)
                .header("range", format!("bytes={start}-{}", start + MIB - 1))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if resp.status() != 206 {
                return Err(format!("Range GET answered {}", resp.status()));
            }
            let body = resp.bytes().await.map_err(|e| e.to_string())?;
            if body != self.big.slice(start..start + MIB) {
                return Err("Range GET returned wrong bytes".into());
            }
        }
        Ok(w.figure(count as f64 / t.elapsed().as_secs_f64()))
    }

    /// Blobs every manifest needs, in each of the repositories.
    async fn seed_repos(
        &self,
        c: &reqwest::Client,
        r: &Registry,
    ) -> Result<(String, usize, String, usize), String> {
        let config = Bytes::from_static(br#"{"architecture":"amd64","os":"linux"}"#);
        let layer = content(4096, 7);
        let (cd, ld) = (digest(&config), digest(&layer));
        for i in 0..self.sizes.repos {
            let repo = format!("bench/m{i:03}");
            for (b, d) in [(&config, &cd), (&layer, &ld)] {
                let h = c
                    .head(format!("{}/v2/{repo}/blobs/{d}", r.base))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if h.status() != 200 {
                    push_monolithic(c, &r.base, &repo, b.clone(), d).await?;
                }
            }
        }
        Ok((cd, config.len(), ld, layer.len()))
    }

    async fn manifest_put(&self, c: &reqwest::Client, r: &Registry, run: u64) -> Outcome {
        let (cd, cl, ld, ll) = self.seed_repos(c, r).await?;
        let sem = Arc::new(tokio::sync::Semaphore::new(16));
        let w = CpuWatch::new(r.pid());
        let t = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..self.sizes.manifests {
            let c = c.clone();
            let sem = sem.clone();
            let url = format!(
                "{}/v2/bench/m{:03}/manifests/t{}",
                r.base,
                i % self.sizes.repos,
                i / self.sizes.repos
            );
            let body = manifest_for(&cd, cl, &ld, ll, &format!("run {run} manifest {i}"));
            tasks.push(tokio::spawn(async move {
                let _p = sem.acquire_owned().await.map_err(|e| e.to_string())?;
                let resp = c
                    .put(url)
                    .header("content-type", "application/vnd.oci.image.manifest.v1+json")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if resp.status() != 201 {
                    return Err(format!("manifest PUT answered {}", resp.status()));
                }
                Ok::<(), String>(())
            }));
        }
        for t in tasks {
            t.await.map_err(|e| e.to_string())??;
        }
        Ok(w.figure(self.sizes.manifests as f64 / t.elapsed().as_secs_f64()))
    }

    /// GET or HEAD by tag from 32 connections for a fixed time: ops/s, p50, p99 (ms).
    async fn manifest_read(
        &self,
        c: &reqwest::Client,
        r: &Registry,
        head: bool,
    ) -> Result<(Figure, f64, f64), String> {
        let (cd, cl, ld, ll) = self.seed_repos(c, r).await?;
        let body = manifest_for(&cd, cl, &ld, ll, "read target");
        let want = digest(body.as_bytes());
        let resp = c
            .put(format!("{}/v2/bench/m000/manifests/read", r.base))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if resp.status() != 201 {
            return Err(format!("manifest PUT answered {}", resp.status()));
        }
        let url = format!("{}/v2/bench/m000/manifests/read", r.base);
        let deadline = Instant::now() + Duration::from_secs(self.sizes.get_secs);
        let w = CpuWatch::new(r.pid());
        let t = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let c = c.clone();
            let url = url.clone();
            let want = want.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    let req = if head { c.head(&url) } else { c.get(&url) };
                    let resp = req
                        .header("accept", "application/vnd.oci.image.manifest.v1+json")
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    let ok = resp.status() == 200
                        && resp
                            .headers()
                            .get("docker-content-digest")
                            .and_then(|v| v.to_str().ok())
                            == Some(want.as_str());
                    let _ = resp.bytes().await.map_err(|e| e.to_string())?;
                    if !ok {
                        return Err("manifest read answered wrongly".to_string());
                    }
                    lat.push(t0.elapsed().as_secs_f64() * 1000.0);
                }
                Ok(lat)
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.map_err(|e| e.to_string())??);
        }
        let secs = t.elapsed().as_secs_f64();
        all.sort_by(|a, b| a.total_cmp(b));
        Ok((
            w.figure(all.len() as f64 / secs),
            percentile(&all, 0.5),
            percentile(&all, 0.99),
        ))
    }

    /// Follows `Link` headers from `first` until the listing ends; returns (entries, ms).
    async fn listing(
        &self,
        c: &reqwest::Client,
        r: &Registry,
        first: &str,
        key: &str,
    ) -> Result<(usize, f64), String> {
        let t = Instant::now();
        let mut url = format!("{}{first}", r.base);
        let mut count = 0;
        let mut pages = 0;
        loop {
            let resp = c.get(&url).send().await.map_err(|e| e.to_string())?;
            if resp.status() != 200 {
                return Err(format!("listing answered {}", resp.status()));
            }
            let link = resp
                .headers()
                .get("link")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            // Entries are counted, not kept: the client's cost stays far below the server's.
            #[derive(serde::Deserialize)]
            struct Page {
                #[serde(default)]
                repositories: Vec<serde::de::IgnoredAny>,
                #[serde(default)]
                tags: Option<Vec<serde::de::IgnoredAny>>,
            }
            let body = resp.bytes().await.map_err(|e| e.to_string())?;
            let page: Page = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
            count += if key == "tags" {
                page.tags.map(|t| t.len()).unwrap_or(0)
            } else {
                page.repositories.len()
            };
            pages += 1;
            match link.and_then(|l| l.split(['<', '>']).nth(1).map(str::to_owned)) {
                Some(next) if pages < 1000 => url = format!("{}{next}", r.base),
                _ => break,
            }
        }
        Ok((count, t.elapsed().as_secs_f64() * 1000.0))
    }
}

/// Writes `n` repositories (one tag each) and one repository with `n` tags straight into a
/// registry:2 layout, so both registries list the same store without a slow setup.
fn prepare_listing(root: &Path, n: usize) {
    let v2 = root.join("docker/registry/v2");
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
    let hex = sha_hex(manifest);
    let link = format!("sha256:{hex}");
    let write = |p: PathBuf, data: &[u8]| {
        if let Some(d) = p.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        let _ = std::fs::write(p, data);
    };
    write(
        v2.join(format!("blobs/sha256/{}/{hex}/data", &hex[..2])),
        manifest,
    );
    write(
        v2.join(
            "blobs/sha256/44/44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a/data",
        ),
        b"{}",
    );
    let repo_links = |repo: &Path| {
        write(
            repo.join(format!("_manifests/revisions/sha256/{hex}/link")),
            link.as_bytes(),
        );
        write(repo.join("_layers/sha256/44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a/link"), b"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
    };
    for i in 0..n {
        let repo = v2.join(format!("repositories/list/r{i:05}"));
        repo_links(&repo);
        write(
            repo.join("_manifests/tags/latest/current/link"),
            link.as_bytes(),
        );
    }
    let tagged = v2.join("repositories/tagged/many");
    repo_links(&tagged);
    for i in 0..n {
        write(
            tagged.join(format!("_manifests/tags/t{i:05}/current/link")),
            link.as_bytes(),
        );
    }
}

fn reference_points() -> Vec<(String, String)> {
    let mut out = Vec::new();
    // Single-core SHA-256 (OpenSSL, 16 KiB blocks).
    let sha = Command::new("openssl")
        .args([
            "speed", "-evp", "sha256", "-bytes", "16384", "-seconds", "2",
        ])
        .output()
        .ok()
        .and_then(|o| {
            let s = String::from_utf8_lossy(&o.stdout).to_string();
            s.lines()
                .find(|l| l.starts_with("sha256"))
                .and_then(|l| l.split_whitespace().last())
                .and_then(|v| v.trim_end_matches('k').parse::<f64>().ok())
        });
    out.push((
        "sha256 single core (openssl)".into(),
        sha.map(|k| format!("{:.0} MB/s", k * 1000.0 / 1e6))
            .unwrap_or_else(|| "openssl not found".into()),
    ));
    // Our sha2 crate, the one the registry uses.
    let data = content(256 * MIB, 3);
    let t = Instant::now();
    let _ = Sha256::digest(&data);
    out.push((
        "sha256 single core (sha2 crate)".into(),
        format!(
            "{:.0} MB/s",
            data.len() as f64 / t.elapsed().as_secs_f64() / 1e6
        ),
    ));
    // Loopback: one TCP stream, 1 GiB.
    let lo = (|| -> std::io::Result<f64> {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = l.local_addr()?;
        let h = std::thread::spawn(move || -> std::io::Result<u64> {
            let (mut s, _) = l.accept()?;
            let mut buf = vec![0u8; MIB];
            let mut n = 0u64;
            loop {
                let k = s.read(&mut buf)?;
                if k == 0 {
                    return Ok(n);
                }
                n += k as u64;
            }
        });
        let mut s = std::net::TcpStream::connect(addr)?;
        let buf = vec![1u8; MIB];
        let t = Instant::now();
        for _ in 0..1024 {
            s.write_all(&buf)?;
        }
        drop(s);
        let n = h.join().map_err(|_| std::io::Error::other("join"))??;
        Ok(n as f64 / t.elapsed().as_secs_f64() / 1e6)
    })();
    out.push((
        "loopback TCP, one stream".into(),
        lo.map(|v| format!("{v:.0} MB/s"))
            .unwrap_or_else(|e| e.to_string()),
    ));
    // Disk: 512 MiB written and fsynced where the registries keep their data.
    let disk = (|| -> std::io::Result<f64> {
        use std::io::Write;
        let dir = data_tempdir()?;
        let mut f = std::fs::File::create(dir.path().join("w"))?;
        let t = Instant::now();
        for _ in 0..512 {
            f.write_all(&data[..MIB])?;
        }
        f.sync_all()?;
        Ok(512.0 * MIB as f64 / t.elapsed().as_secs_f64() / 1e6)
    })();
    out.push((
        "disk write + fsync, 512 MiB".into(),
        disk.map(|v| format!("{v:.0} MB/s"))
            .unwrap_or_else(|e| e.to_string()),
    ));
    out
}

/// Passes a scenario's outcome through, logging the server's peak RSS so far: which
/// scenario raised the peak shows in the log.
fn hwm<T>(reg: &Registry, outcome: T) -> T {
    eprintln!(
        "  {}: peak RSS so far {:.1} MiB",
        reg.name,
        proc_kib(reg.pid(), "VmHWM:") as f64 / 1024.0
    );
    outcome
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

/// How a scenario's figure reads: unit, whether lower is better, the target.
#[derive(Clone, Copy)]
struct Kind {
    unit: &'static str,
    lower_better: bool,
    target: &'static str,
}

const fn kind(unit: &'static str, lower_better: bool, target: &'static str) -> Kind {
    Kind {
        unit,
        lower_better,
        target,
    }
}

/// Outcomes of one scenario, for ours [0] and registry:2 [1].
type Pair = [Vec<Outcome>; 2];

#[derive(Default)]
struct Table {
    rows: BTreeMap<(usize, String), Pair>,
    kinds: BTreeMap<String, Kind>,
}

impl Table {
    fn add(&mut self, order: usize, name: &str, k: Kind, which: usize, o: Outcome) {
        self.kinds.insert(name.to_owned(), k);
        self.rows.entry((order, name.to_owned())).or_default()[which].push(o);
    }

    fn print(&self) {
        println!(
            "\n{:<44} {:>14} {:>14} {:>8}  {:<30} notes",
            "scenario (median)", "ours", "registry:2", "ratio", "target"
        );
        for ((_, name), [a, b]) in &self.rows {
            let Kind {
                unit,
                lower_better: lower,
                target,
            } = self.kinds[name];
            let cell = |v: &Vec<Result<Figure, String>>| -> (Option<f64>, String, bool) {
                if let Some(Err(e)) = v.iter().find(|r| r.is_err()) {
                    return (None, format!("ERROR: {e}"), false);
                }
                let mut vals: Vec<f64> = v
                    .iter()
                    .filter_map(|r| r.as_ref().ok().map(|f| f.value))
                    .collect();
                let client_bound = v
                    .iter()
                    .filter_map(|r| r.as_ref().ok())
                    .any(|f| f.client_cpu > f.server_cpu * 1.2 && f.client_cpu > 10.0);
                let m = median(&mut vals);
                (Some(m), format!("{m:.1} {unit}"), client_bound)
            };
            let (va, sa, ca) = cell(a);
            let (vb, sb, cb) = cell(b);
            let ratio = match (va, vb) {
                (Some(x), Some(y)) if y > 0.0 && x > 0.0 => {
                    if lower {
                        format!("{:.2}x", y / x)
                    } else {
                        format!("{:.2}x", x / y)
                    }
                }
                _ => "-".into(),
            };
            let mut notes = Vec::new();
            if ca {
                notes.push("ours client-bound?");
            }
            if cb {
                notes.push("registry:2 client-bound?");
            }
            println!(
                "{name:<44} {sa:>14} {sb:>14} {ratio:>8}  {target:<30} {}",
                notes.join(", ")
            );
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 1 } else { 3 });
    let sizes = if quick {
        Sizes {
            big: 64 * MIB,
            chunk: 16 * MIB,
            small_count: 32,
            manifests: 400,
            repos: 20,
            get_secs: 2,
            listing: 2000,
        }
    } else {
        Sizes {
            big: 256 * MIB,
            chunk: 16 * MIB,
            small_count: 64,
            manifests: 2000,
            repos: 100,
            get_secs: 10,
            listing: 10_000,
        }
    };
    println!("docker-registry benchmark: ours ({OURS}) vs registry:2 ({DISTRIBUTION}), {runs} interleaved run(s){}, data in {}", if quick { ", quick" } else { "" }, data_parent().unwrap_or_else(std::env::temp_dir).display());
    for (k, v) in reference_points() {
        println!("  reference: {k:<34} {v}");
    }
    let client = match reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(600))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot build the HTTP client: {e}");
            std::process::exit(1);
        }
    };
    let big = content(sizes.big, 42);
    let big_digest = digest(&big);
    let sc = Scenarios {
        sizes,
        big,
        big_digest,
    };
    let mut table = Table::default();
    let mut rss: [(u64, u64); 2] = [(0, 0); 2];
    let n = sizes.listing;
    for run in 0..runs {
        // Alternate which registry goes first.
        let order: [usize; 2] = if run % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let name = if which == 0 { "ours" } else { "registry:2" };
            eprintln!("run {}/{runs}: {name}", run + 1);
            let reg = match start(
                if which == 0 { "ours" } else { "distribution" },
                &client,
                &|root| prepare_listing(root, n),
            )
            .await
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("cannot start {name}: {e}");
                    std::process::exit(1);
                }
            };
            rss[which].0 = rss[which].0.max(reg.idle_rss);
            let run_id = run as u64 * 2 + which as u64;
            table.add(
                1,
                "1 push 256 MiB monolithic (POST+PUT)",
                kind("MB/s", false, ">=4x, >=65% sha256"),
                which,
                hwm(&reg, sc.push_mono(&client, &reg, run_id).await),
            );
            table.add(
                2,
                "2 push 256 MiB chunked (16 MiB)",
                kind("MB/s", false, ">=4x, >=65% sha256"),
                which,
                hwm(&reg, sc.push_chunked(&client, &reg, run_id).await),
            );
            table.add(
                3,
                "3 push 64 x 1 MiB, 16 concurrent",
                kind("ops/s", false, ">=5x"),
                which,
                hwm(&reg, sc.push_small(&client, &reg, run_id).await),
            );
            table.add(
                4,
                "4a pull 256 MiB sequential",
                kind("MB/s", false, ">=1.25x, >=85% loopback"),
                which,
                hwm(&reg, sc.pull_seq(&client, &reg).await),
            );
            table.add(
                5,
                "4b pull 256 MiB x 8 concurrent",
                kind("MB/s", false, ">=1.25x"),
                which,
                hwm(&reg, sc.pull_concurrent(&client, &reg).await),
            );
            table.add(
                6,
                "4c Range GET 1 MiB",
                kind("req/s", false, ""),
                which,
                hwm(&reg, sc.range_get(&client, &reg).await),
            );
            table.add(
                7,
                "5 manifest PUT, 16 concurrent",
                kind("ops/s", false, ">=5x"),
                which,
                hwm(&reg, sc.manifest_put(&client, &reg, run_id).await),
            );
            for (order, head) in [(8, false), (10, true)] {
                let label = if head {
                    "6b manifest HEAD by tag, 32 conns"
                } else {
                    "6a manifest GET by tag, 32 conns"
                };
                match sc.manifest_read(&client, &reg, head).await {
                    Ok((f, p50, p99)) => {
                        let cpu = (f.client_cpu, f.server_cpu);
                        table.add(order, label, kind("ops/s", false, ">=5x"), which, Ok(f));
                        table.add(
                            order + 1,
                            &format!("{label} p99"),
                            kind("ms", true, "GET p99 <= 10 ms"),
                            which,
                            Ok(Figure {
                                value: p99,
                                client_cpu: cpu.0,
                                server_cpu: cpu.1,
                            }),
                        );
                        eprintln!("  {label}: p50 {p50:.2} ms p99 {p99:.2} ms");
                    }
                    Err(e) => table.add(order, label, kind("ops/s", false, ">=5x"), which, Err(e)),
                }
            }
            // Listings: the first one (cold: the registry reads storage) and the median of
            // five more (warm: what a UI or a script polling the registry sees).
            // The one-request tags list comes first, so that its cold figure is cold; the
            // paged one follows, warm only. registry:2 2.8 ignores `n` on tags lists and
            // answers every tag at once, so its paged figure is one request where ours is ten.
            let listings = [
                (
                    12,
                    "7a catalog of 10k repos (pages of 1000)",
                    "/v2/_catalog?n=1000",
                    "repositories",
                    false,
                    true,
                ),
                (
                    14,
                    "7b tags/list of 10k tags (one request)",
                    "/v2/tagged/many/tags/list",
                    "tags",
                    true,
                    true,
                ),
                (
                    16,
                    "7c tags/list of 10k tags (pages of 1000)",
                    "/v2/tagged/many/tags/list?n=1000",
                    "tags",
                    true,
                    false,
                ),
            ];
            for (order, label, first, key, exact, show_cold) in listings {
                let mut times = Vec::new();
                let mut err = None;
                for _ in 0..6 {
                    match sc.listing(&client, &reg, first, key).await {
                        Ok((count, ms)) if count == n || (!exact && count >= n) => times.push(ms),
                        Ok((count, _)) => {
                            err = Some(format!("listed {count} of {n}"));
                            break;
                        }
                        Err(e) => {
                            err = Some(e);
                            break;
                        }
                    }
                }
                let fig = |v: f64| Figure {
                    value: v,
                    client_cpu: 0.0,
                    server_cpu: 0.0,
                };
                let (cold, warm) = match err {
                    Some(e) => (Err(e.clone()), Err(e)),
                    None => {
                        let cold = times[0];
                        (Ok(fig(cold)), Ok(fig(median(&mut times[1..]))))
                    }
                };
                if show_cold {
                    table.add(
                        order,
                        &format!("{label}, cold"),
                        kind("ms", true, ">=10x"),
                        which,
                        cold,
                    );
                }
                table.add(
                    order + 1,
                    &format!("{label}, warm"),
                    kind("ms", true, ">=10x"),
                    which,
                    warm,
                );
            }
            rss[which].1 = rss[which].1.max(proc_kib(reg.pid(), "VmHWM:"));
        }
    }
    table.print();
    println!(
        "\nmemory: ours idle {:.1} MiB, peak {:.1} MiB | registry:2 idle {:.1} MiB, peak {:.1} MiB   (targets: idle <= 8 MiB, peak <= 40 MiB)",
        rss[0].0 as f64 / 1024.0,
        rss[0].1 as f64 / 1024.0,
        rss[1].0 as f64 / 1024.0,
        rss[1].1 as f64 / 1024.0
    );
    println!("(scenario 8, authenticated pulls: cargo bench --bench auth_pulls)");
}
