//! Side-by-side benchmark: our daemon against CNCF distribution 2.8.2 (Debian's
//! `docker-registry` package, `registry:2`), each on loopback with a fresh data directory,
//! the same scenarios interleaved (A B A B …), medians and ratios ours/registry:2.
//!
//! ```text
//! cargo bench --bench versus              # 3 interleaved runs
//! cargo bench --bench versus -- --quick   # 1 run, smaller sizes, shorter loops
//! cargo bench --bench versus -- --runs 5
//! cargo bench --bench versus -- --data-dir /dev/shm   # storage in memory: no disk in the figures
//! cargo bench --bench versus -- --only pull,range      # scenarios whose name contains a word
//! cargo bench --bench versus -- --help
//! ```
//!
//! We fsync what we acknowledge (a pushed blob survives a power cut); registry:2 never does.
//! Where the disk is slower than hashing, push figures on a disk measure the disk; the
//! `--data-dir /dev/shm` run shows what the software itself does.
//!
//! Every scenario checks what it measures (digests of pulled data, status codes) and prints
//! an error instead of a number when a registry answers wrongly. Client and server CPU are
//! sampled during each scenario; a figure where the client used more CPU than the server is
//! marked "client-bound?". Throughput rows also give the server's CPU seconds per GiB moved:
//! on a machine shared with other work that figure is steadier than MB/s.
//!
//! Pulls are measured the way a deploy pulls a layer that is already on the server: its data
//! in the page cache and on disk. Before them every registry's writes are synced, so that
//! registry:2, which never syncs, does not pay for writing back its pushes during its pulls
//! (that made an earlier round's table show ours 1.4–2.1x faster where a pull on its own was
//! 0.83x), and each blob is pulled once unmeasured. The loopback ceiling is measured in each
//! run next to the pulls, since the machine's load moves it.
//!
//! Writes need warm memory. On a virtual machine whose kernel hands freed memory back to its
//! hypervisor ("free page reporting", as Firecracker guests such as this build machine do),
//! the first write to such a page costs a fault in the host: `dd` of 1 GiB into a file took
//! 2.37 s of CPU into such pages and 0.20 s into warm ones. A push writes into fresh
//! page-cache pages, and which kind it got moved our server CPU for the same push between 1.4
//! and 3.6 s/GiB from run to run (registry:2's the same way). A server that has run for a
//! while, or owns its memory, does not pay this: before each scenario that writes, the bench
//! writes a file of twice what the scenario will store beside the registry's data and removes
//! it, for both registries alike (`--no-warm` measures without).
//!
//! `--remote` puts the registries in a network namespace of their own, reached over a veth
//! pair, so that the client is on "another host" as a deploy's is: our default
//! (`http.sendfile: auto`) serves such clients with `sendfile`, and clients on its own host
//! through buffers (faster for them). The ceiling is then one TCP stream over the pair.

#[path = "../tests/common/mod.rs"]
mod common;

use bytes::Bytes;
use common::netns::Netns;
use common::rng::Rng;
use common::tools::DISTRIBUTION;
use common::{
    cpu_ticks, digest_of as digest, free_port, hex, proc_status_kib, sha256_hex as sha_hex,
};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BUILT: &str = env!("CARGO_BIN_EXE_docker-registry");

/// Our binary: the one built, or `--ours BIN` (another build, for before/after figures).
fn ours() -> String {
    arg_value("--ours").unwrap_or_else(|| BUILT.to_owned())
}

/// Whether `name` is on the command line.
fn has_flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

/// Readies `bytes` of warm page cache for the scenario about to write, as a server that has
/// run for a while has (see the module doc on this machine's memory): writes a file of that
/// size beside the registry's data and removes it before it is written back, so the kernel
/// hands those pages out first (pages it has reported to the hypervisor go to the back of its
/// free lists). `--no-warm` skips this.
fn warm_pages(r: &Registry, bytes: usize) {
    if has_flag("--no-warm") {
        return;
    }
    let path = r.dir.path().join("warm");
    let block = vec![1u8; MIB];
    let written = std::fs::File::create(&path).and_then(|mut f| {
        use std::io::Write as _;
        for _ in 0..bytes.div_ceil(MIB) {
            f.write_all(&block)?;
        }
        Ok(())
    });
    if let Err(e) = written {
        eprintln!("  cannot ready warm memory in {}: {e}", path.display());
    }
    let _ = std::fs::remove_file(&path);
}

/// The value after `name` on the command line.
fn arg_value(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).cloned()
}
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

/// Deterministic content, different for each `seed`.
fn content(len: usize, seed: u64) -> Bytes {
    let mut v = vec![0u8; len];
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    for chunk in v.chunks_mut(8) {
        let b = rng.next().to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    Bytes::from(v)
}

/// A `/proc/PID/status` figure in KiB (`VmRSS:`, `VmHWM:`).
fn proc_kib(pid: u32, key: &str) -> u64 {
    proc_status_kib(pid as i32, key)
}

struct Registry {
    name: &'static str,
    process: Process,
    base: String,
    idle_rss: u64,
    /// Holds its data (removed with it), and the file that warms pages (see `warm_pages`).
    dir: tempfile::TempDir,
}

/// Ours (killed when dropped) or distribution (the harness's, likewise).
enum Process {
    Ours(Child),
    Distribution(common::Distribution),
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Process::Ours(child) = &mut self.process {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Registry {
    fn pid(&self) -> u32 {
        match &self.process {
            Process::Ours(child) => child.id(),
            Process::Distribution(d) => d.pid(),
        }
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
    arg_value("--data-dir").map(PathBuf::from)
}

async fn start(
    name: &'static str,
    client: &reqwest::Client,
    prepare: &dyn Fn(&Path),
    netns: Option<&Arc<Netns>>,
) -> Result<Registry, String> {
    let dir = data_tempdir().map_err(|e| e.to_string())?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
    prepare(&data);
    // The prepared store (tens of thousands of files) goes to disk before the registry
    // starts: otherwise the first registry to sync anything would pay for writing it.
    let _ = Command::new("sync").status();
    let (process, base) = if name == "ours" {
        let port = free_port();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "").map_err(|e| e.to_string())?;
        let ip = netns.map_or("127.0.0.1", |n| n.ns_ip);
        let mut cmd = match netns {
            Some(n) => n.command(&ours()),
            None => Command::new(ours()),
        };
        cmd.arg("--sysconfig")
            .arg(&empty)
            .arg("--config")
            .arg(&empty);
        cmd.args([
            "--address",
            ip,
            "--port",
            &port.to_string(),
            "--log-level",
            "warn",
            "--delete-enabled",
            "--storage-path",
        ]);
        cmd.arg(&data);
        if let Some(extra) = arg_value("--ours-args") {
            cmd.args(extra.split_whitespace());
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{name}: {e}"))?;
        (Process::Ours(child), format!("http://{ip}:{port}"))
    } else {
        if !DISTRIBUTION.installed() {
            return Err("registry:2 is not installed: apt-get install docker-registry".into());
        }
        // The harness's launcher waits with a blocking client: not on the runtime's threads.
        let root = data.clone();
        let netns = netns.cloned();
        let d = tokio::task::spawn_blocking(move || {
            common::Distribution::start_in(&root, netns.as_deref())
        })
        .await
        .map_err(|_| format!("{name} did not start (its error is above)"))?;
        let base = format!("http://{}", d.host());
        (Process::Distribution(d), base)
    };
    let mut reg = Registry {
        name,
        process,
        base,
        idle_rss: 0,
        dir,
    };
    if !wait_up(client, &reg.base).await {
        return Err(format!("{name} did not start"));
    }
    settle(&reg).await;
    reg.idle_rss = proc_kib(reg.pid(), "VmRSS:");
    Ok(reg)
}

/// Waits (a minute at most) until the registry has used no CPU for half a second: what it
/// does after it answers (ours indexes the store for search and warms the catalog in the
/// background, 10,000 repositories with the listing rows) is not the first scenario's cost.
/// That work doubled the first push's server CPU per GiB.
async fn settle(reg: &Registry) {
    let pid = reg.pid();
    let settled =
        tokio::task::spawn_blocking(move || common::wait_until_idle(pid, Duration::from_secs(60)))
            .await;
    if !matches!(settled, Ok(true)) {
        eprintln!("  {}: still busy a minute after it started", reg.name);
    }
}

/// One measured figure: value (higher is better unless `lower_better`), and CPU split.
#[derive(Clone, Debug)]
struct Figure {
    value: f64,
    client_cpu: f64,
    server_cpu: f64,
    /// Bytes the scenario moved, for the server's CPU per GiB (0: not a throughput figure).
    bytes: f64,
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
            bytes: 0.0,
        }
    }

    /// A throughput figure: MB/s over `bytes` moved in `secs`.
    fn moved(&self, bytes: u64, secs: f64) -> Figure {
        Figure {
            bytes: bytes as f64,
            ..self.figure(bytes as f64 / secs / 1e6)
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
    let loc = start_upload(c, base, repo).await?;
    let put = c
        .put(with_digest(&loc, d))
        .header("content-type", "application/octet-stream")
        .body(data);
    sent(put, 201, "monolithic PUT").await.map(drop)
}

/// A chunked upload: POST, one PATCH per `chunk` bytes, and a PUT with the digest alone.
async fn push_chunked(
    c: &reqwest::Client,
    base: &str,
    repo: &str,
    data: &Bytes,
    chunk: usize,
    d: &str,
) -> Result<(), String> {
    let mut loc = start_upload(c, base, repo).await?;
    let mut off = 0;
    while off < data.len() {
        let end = (off + chunk).min(data.len());
        let patch = c
            .patch(&loc)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{off}-{}", end - 1))
            .body(data.slice(off..end));
        loc = location(base, &sent(patch, 202, "PATCH").await?)?;
        off = end;
    }
    sent(c.put(with_digest(&loc, d)), 201, "PUT")
        .await
        .map(drop)
}

/// Opens an upload session; returns its URL.
async fn start_upload(c: &reqwest::Client, base: &str, repo: &str) -> Result<String, String> {
    let post = c.post(format!("{base}/v2/{repo}/blobs/uploads/"));
    location(base, &sent(post, 202, "POST").await?)
}

/// Sends a request; an answer other than `status` is an error naming `what`.
async fn sent(
    request: reqwest::RequestBuilder,
    status: u16,
    what: &str,
) -> Result<reqwest::Response, String> {
    let r = request.send().await.map_err(|e| e.to_string())?;
    if r.status() != status {
        return Err(format!("{what} answered {}", r.status()));
    }
    Ok(r)
}

/// An upload URL with the digest that ends it.
fn with_digest(loc: &str, d: &str) -> String {
    let sep = if loc.contains('?') { '&' } else { '?' };
    format!("{loc}{sep}digest={d}")
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
/// HTTP client library. With `hash`, it also hashes what it reads, as a real client does.
/// Returns the body's length after checking it against Content-Length, and its digest when
/// hashed.
fn raw_get(base: &str, path: &str, hash: bool) -> Result<(u16, u64, Option<String>), String> {
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
    let mut hasher = hash.then(Sha256::new);
    let mut got = (have - head_end) as u64;
    if let Some(h) = &mut hasher {
        h.update(&buf[head_end..have]);
    }
    while got < length {
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        if let Some(h) = &mut hasher {
            h.update(&buf[..n]);
        }
        got += n as u64;
    }
    if got != length {
        return Err(format!("body of {got} bytes, Content-Length {length}"));
    }
    let digest = hasher.map(|h| format!("sha256:{}", hex(&h.finalize())));
    Ok((status, got, digest))
}

/// Runs `work` on `threads` threads at once: the sum of what they return, or an error.
fn on_threads(
    threads: usize,
    work: impl Fn() -> Result<u64, String> + Sync,
) -> Result<u64, String> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads).map(|_| scope.spawn(&work)).collect();
        let mut total = 0;
        for h in handles {
            total += h.join().map_err(|_| "pull thread panicked")??;
        }
        Ok(total)
    })
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
        warm_pages(r, 2 * data.len());
        let w = CpuWatch::new(r.pid());
        let t = Instant::now();
        push_monolithic(c, &r.base, "bench/mono", data.clone(), &d).await?;
        let secs = t.elapsed().as_secs_f64();
        let f = w.moved(data.len() as u64, secs);
        let (n, got) = pull(c, &format!("{}/v2/bench/mono/blobs/{d}", r.base)).await?;
        if n != data.len() as u64 || got != d {
            return Err("pulled blob differs from pushed".into());
        }
        Ok(f)
    }

    async fn push_chunked(&self, c: &reqwest::Client, r: &Registry, run: u64) -> Outcome {
        let data = content(self.sizes.big, 2000 + run);
        let d = digest(&data);
        warm_pages(r, 2 * data.len());
        let w = CpuWatch::new(r.pid());
        let t = Instant::now();
        push_chunked(c, &r.base, "bench/chunked", &data, self.sizes.chunk, &d).await?;
        let secs = t.elapsed().as_secs_f64();
        let f = w.moved(data.len() as u64, secs);
        sent(
            c.head(format!("{}/v2/bench/chunked/blobs/{d}", r.base)),
            200,
            "HEAD after chunked push",
        )
        .await?;
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
        warm_pages(r, 2 * blobs.len() * MIB);
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
        // Server CPU per GiB pushed beside ops/s: 64 pushes take a tenth of a second, and
        // CPU is the steadier figure.
        let f = Figure {
            bytes: (blobs.len() * MIB) as f64,
            ..w.figure(blobs.len() as f64 / secs)
        };
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

    /// The big blob in the registry, verified by digest, and every registry's writes synced
    /// (see the module's note on pulls).
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
        let _ = Command::new("sync").status();
        Ok(url)
    }

    /// `streams` clients on their own threads, each pulling the big blob `rounds` times one
    /// after the other with the raw client (each pull on a new connection, as a runtime pulls
    /// a layer), with or without hashing what it reads. Lengths are always checked, digests
    /// when hashed.
    async fn pull_raw(
        &self,
        c: &reqwest::Client,
        r: &Registry,
        streams: usize,
        rounds: usize,
        hash: bool,
    ) -> Outcome {
        let url = self.ensure_big(c, r).await?;
        let path = url.trim_start_matches(&r.base).to_owned();
        let base = r.base.clone();
        let want = self.big.len() as u64;
        let want_digest = self.big_digest.clone();
        let pull_one = move || -> Result<u64, String> {
            let (status, n, got) = raw_get(&base, &path, hash)?;
            if status != 200 || n != want {
                return Err(format!("pull answered {status} with {n} of {want} bytes"));
            }
            if got.is_some_and(|d| d != want_digest) {
                return Err("pulled blob differs from pushed".into());
            }
            Ok(n)
        };
        let pid = r.pid();
        tokio::task::spawn_blocking(move || -> Outcome {
            // Unmeasured: the blob's pages are in the page cache for both registries.
            pull_one()?;
            let w = CpuWatch::new(pid);
            let t = Instant::now();
            let total = on_threads(streams, || {
                (0..rounds).map(|_| pull_one()).sum::<Result<u64, String>>()
            })?;
            Ok(w.moved(total, t.elapsed().as_secs_f64()))
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// The small blobs of the concurrent pulls in the registry (pushed once, unmeasured),
    /// and every registry's writes synced, as for the big blob.
    async fn ensure_small(
        &self,
        c: &reqwest::Client,
        r: &Registry,
    ) -> Result<Vec<(String, String)>, String> {
        let mut paths = Vec::new();
        for i in 0..self.sizes.small_count {
            let b = content(MIB, 500_000 + i as u64);
            let d = digest(&b);
            let path = format!("/v2/bench/smallpull/blobs/{d}");
            let h = c
                .head(format!("{}{path}", r.base))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if h.status() != 200 {
                push_monolithic(c, &r.base, "bench/smallpull", b, &d).await?;
            }
            paths.push((path, d));
        }
        let _ = Command::new("sync").status();
        Ok(paths)
    }

    /// 1 MiB blobs pulled by 16 clients at once, each blob `rounds` times, each pull on a
    /// new connection and hashed (checked): pulls per second.
    async fn pull_small(&self, c: &reqwest::Client, r: &Registry, rounds: usize) -> Outcome {
        let paths = self.ensure_small(c, r).await?;
        let base = r.base.clone();
        let pid = r.pid();
        tokio::task::spawn_blocking(move || -> Outcome {
            let pull = |(path, want): &(String, String)| -> Result<u64, String> {
                let (status, n, got) = raw_get(&base, path, true)?;
                if status != 200 || n != MIB as u64 || got.as_deref() != Some(want.as_str()) {
                    return Err(format!(
                        "small pull answered {status} with {n} bytes, or other bytes"
                    ));
                }
                Ok(n)
            };
            // Unmeasured: every blob's pages in the page cache for both registries.
            paths.iter().try_for_each(|p| pull(p).map(drop))?;
            let next = std::sync::atomic::AtomicUsize::new(0);
            let total = paths.len() * rounds;
            let w = CpuWatch::new(pid);
            let t = Instant::now();
            let moved = on_threads(16, || {
                let mut n = 0;
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= total {
                        return Ok(n);
                    }
                    n += pull(&paths[i % paths.len()])?;
                }
            })?;
            let secs = t.elapsed().as_secs_f64();
            Ok(Figure {
                bytes: moved as f64,
                ..w.figure(total as f64 / secs)
            })
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Range GETs of 1 MiB at scattered offsets: requests per second.
    async fn range_get(&self, c: &reqwest::Client, r: &Registry) -> Outcome {
        let url = self.ensure_big(c, r).await?;
        let w = CpuWatch::new(r.pid());
        let t = Instant::now();
        let count = 64;
        for i in 0..count {
            let start = (i * 7919 * 4096) % (self.big.len() - MIB);
            let resp = sent(
                c.get(&url)
                    .header("range", format!("bytes={start}-{}", start + MIB - 1)),
                206,
                "Range GET",
            )
            .await?;
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

    /// Manifest PUTs from 16 clients at once: ops/s, and each PUT's p99 latency (ms).
    async fn manifest_put(
        &self,
        c: &reqwest::Client,
        r: &Registry,
        run: u64,
    ) -> Result<(Figure, f64), String> {
        let (cd, cl, ld, ll) = self.seed_repos(c, r).await?;
        let sem = Arc::new(tokio::sync::Semaphore::new(16));
        // Each PUT makes files and directories: pages of the page cache and of the kernel's
        // inode and directory caches.
        warm_pages(r, 256 * MIB);
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
                let t0 = Instant::now();
                sent(
                    c.put(url)
                        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
                        .body(body),
                    201,
                    "manifest PUT",
                )
                .await?;
                Ok::<f64, String>(t0.elapsed().as_secs_f64() * 1000.0)
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.push(t.await.map_err(|e| e.to_string())??);
        }
        let f = w.figure(self.sizes.manifests as f64 / t.elapsed().as_secs_f64());
        eprintln!(
            "  {}: manifest PUTs: server CPU {:.2} ms a PUT, client {:.2} ms",
            r.name,
            f.server_cpu / TICKS_PER_SEC * 1000.0 / self.sizes.manifests as f64,
            f.client_cpu / TICKS_PER_SEC * 1000.0 / self.sizes.manifests as f64
        );
        lat.sort_by(|a, b| a.total_cmp(b));
        Ok((f, percentile(&lat, 0.99)))
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
        sent(
            c.put(format!("{}/v2/bench/m000/manifests/read", r.base))
                .header("content-type", "application/vnd.oci.image.manifest.v1+json")
                .body(body),
            201,
            "manifest PUT",
        )
        .await?;
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

/// Another program on the registries' filesystem, writing `rate` bytes a second (1 % of it
/// every 10 ms) round a 256 MiB file of its own and never syncing, as a database or a log
/// would; it stops when dropped.
struct Neighbour {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Neighbour {
    fn start(rate: usize) -> std::io::Result<Neighbour> {
        use std::os::unix::fs::FileExt;
        let dir = data_tempdir()?;
        let file = std::fs::File::create(dir.path().join("neighbour"))?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let chunk = content(rate / 100, 5);
            let span = 256 * MIB as u64;
            let mut offset = 0u64;
            let start = Instant::now();
            for tick in 1u32.. {
                if stopped.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                if file.write_all_at(&chunk, offset).is_err() {
                    break;
                }
                offset = (offset + chunk.len() as u64) % span;
                let due = start + Duration::from_millis(10) * tick;
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
        });
        Ok(Neighbour {
            stop,
            thread: Some(thread),
            _dir: dir,
        })
    }
}

impl Drop for Neighbour {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The loopback ceiling: the best of three measurements of [`loopback_once`] (a ceiling is
/// what the machine can do; on a shared machine one measurement is often far below it).
fn loopback_mbps(netns: Option<&Netns>) -> std::io::Result<f64> {
    let mut best = 0.0f64;
    for _ in 0..3 {
        best = best.max(loopback_once(netns)?);
    }
    Ok(best)
}

/// One TCP stream, 1 GiB written in 1 MiB writes and read in 1 MiB reads, by two threads of
/// this process (the pulls' client reads the same way); with `netns`, the writer is in the
/// namespace, where the registries are, and the reader here.
fn loopback_once(netns: Option<&Netns>) -> std::io::Result<f64> {
    use std::io::{Read, Write};
    let here = netns.map_or("127.0.0.1", |n| n.host_ip);
    let l = std::net::TcpListener::bind((here, 0))?;
    let port = l.local_addr()?.port();
    // The writer's socket is made by a thread that has joined the namespace (and ends);
    // the socket stays the namespace's whichever thread writes to it.
    let writer = std::thread::scope(|scope| {
        scope
            .spawn(|| -> std::io::Result<std::net::TcpStream> {
                if let Some(n) = netns {
                    n.enter()?;
                }
                std::net::TcpStream::connect((here, port))
            })
            .join()
            .map_err(|_| std::io::Error::other("join"))?
    })?;
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
    let mut s = writer;
    let buf = vec![1u8; MIB];
    let t = Instant::now();
    for _ in 0..1024 {
        s.write_all(&buf)?;
    }
    drop(s);
    let n = h.join().map_err(|_| std::io::Error::other("join"))??;
    Ok(n as f64 / t.elapsed().as_secs_f64() / 1e6)
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
    let lo = loopback_mbps(None);
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

const USAGE: &str = "\
cargo bench --bench versus -- [OPTIONS]

Runs each scenario against our release binary and registry:2 (distribution 2.8.2), interleaved,
and prints medians and ratios.

  --quick          1 run, 64 MiB blobs, shorter loops
  --runs N         interleaved runs (default 3)
  --only W[,W...]  only the scenarios whose name contains one of these words, e.g.
                   --only pull   (the pull rows: sequential with and without client hashing,
                   8 concurrent), --only 'manifest PUT' (with and without a neighbour
                   writing 100 MB/s to the same filesystem), --only push, --only catalog
  --data-dir DIR   keep the registries' data under DIR (e.g. /dev/shm: no disk in the figures)
  --ours BIN       measure this build of ours instead of the one cargo built (before/after)
  --ours-args ARGS more arguments for ours, e.g. --ours-args '--sendfile always'
  --no-warm        do not ready warm memory before the scenarios that write (see the
                   bench's doc: on a VM that hands freed memory to its host, writes into such
                   pages cost a host fault each)
  --remote         the registries in a network namespace of their own, reached over a veth
                   pair: the client is on \"another host\" (ours then sends blobs with
                   sendfile, as its default `auto` does for such clients); needs root
  --help";

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
    /// The loopback ceiling (MB/s), measured next to each registry's pulls (over the veth
    /// pair with `--remote`).
    loopback: Vec<f64>,
    /// `--remote`: the registries were in a network namespace.
    remote: bool,
}

/// /proc's clock ticks per second (USER_HZ, 100 on Linux whatever the kernel's HZ).
const TICKS_PER_SEC: f64 = 100.0;

/// The median of one registry's runs of a scenario: its value, the server's and the client's
/// CPU seconds per GiB moved (throughput rows), and whether the client used more CPU than
/// the server.
struct Cell {
    value: f64,
    cpu_per_gib: Option<(f64, f64)>,
    client_bound: bool,
}

fn cell(v: &[Outcome]) -> Result<Cell, String> {
    if let Some(Err(e)) = v.iter().find(|r| r.is_err()) {
        return Err(e.clone());
    }
    let figures: Vec<&Figure> = v.iter().filter_map(|r| r.as_ref().ok()).collect();
    let mut values: Vec<f64> = figures.iter().map(|f| f.value).collect();
    let per_gib = |f: &&Figure, ticks: f64| ticks / TICKS_PER_SEC / (f.bytes / (1u64 << 30) as f64);
    let moved: Vec<&&Figure> = figures.iter().filter(|f| f.bytes > 0.0).collect();
    let mut server: Vec<f64> = moved.iter().map(|f| per_gib(f, f.server_cpu)).collect();
    let mut client: Vec<f64> = moved.iter().map(|f| per_gib(f, f.client_cpu)).collect();
    Ok(Cell {
        value: median(&mut values),
        cpu_per_gib: (!moved.is_empty()).then(|| (median(&mut server), median(&mut client))),
        client_bound: figures
            .iter()
            .any(|f| f.client_cpu > f.server_cpu * 1.2 && f.client_cpu > 10.0),
    })
}

impl Table {
    fn add(&mut self, order: usize, name: &str, k: Kind, which: usize, o: Outcome) {
        self.kinds.insert(name.to_owned(), k);
        self.rows.entry((order, name.to_owned())).or_default()[which].push(o);
    }

    fn print(&self) {
        let mut loopback = self.loopback.clone();
        let loopback = median(&mut loopback);
        if loopback > 0.0 {
            println!(
                "\n{} ceiling next to the pulls: {loopback:.0} MB/s (median of {})",
                if self.remote { "veth" } else { "loopback" },
                self.loopback.len()
            );
        }
        println!(
            "\n{:<46} {:>13} {:>13} {:>7}  {:>13} {:>13} {:>9}  {:<26} notes",
            "scenario (median)",
            "ours",
            "registry:2",
            "ratio",
            "srv CPU s/GiB",
            "cli CPU s/GiB",
            "%loopback",
            "target"
        );
        for ((_, name), [a, b]) in &self.rows {
            let Kind {
                unit,
                lower_better,
                target,
            } = self.kinds[name];
            let (ours, theirs) = (cell(a), cell(b));
            let show = |c: &Result<Cell, String>| match c {
                Ok(c) => format!("{:.1} {unit}", c.value),
                Err(e) => format!("ERROR: {e}"),
            };
            let ratio = match (&ours, &theirs) {
                (Ok(x), Ok(y)) if y.value > 0.0 && x.value > 0.0 => match lower_better {
                    true => format!("{:.2}x", y.value / x.value),
                    false => format!("{:.2}x", x.value / y.value),
                },
                _ => "-".into(),
            };
            let per_gib = |c: &Result<Cell, String>, client: bool| match c {
                Ok(Cell {
                    cpu_per_gib: Some((server, theirs)),
                    ..
                }) => format!("{:.2}", if client { *theirs } else { *server }),
                _ => "-".into(),
            };
            let cpu = |client: bool| match (per_gib(&ours, client), per_gib(&theirs, client)) {
                (a, b) if a == "-" && b == "-" => String::new(),
                (a, b) => format!("{a} / {b}"),
            };
            let (cpu, client_cpu) = (cpu(false), cpu(true));
            let of_loopback = match &ours {
                Ok(c) if unit == "MB/s" && name.contains("pull") && loopback > 0.0 => {
                    format!("{:.0} %", 100.0 * c.value / loopback)
                }
                _ => String::new(),
            };
            let mut notes = Vec::new();
            if ours.as_ref().is_ok_and(|c| c.client_bound) {
                notes.push("ours client-bound?");
            }
            if theirs.as_ref().is_ok_and(|c| c.client_bound) {
                notes.push("registry:2 client-bound?");
            }
            println!(
                "{name:<46} {:>13} {:>13} {ratio:>7}  {cpu:>13} {client_cpu:>13} {of_loopback:>9}  {target:<26} {}",
                show(&ours),
                show(&theirs),
                notes.join(", ")
            );
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let only: Vec<String> = arg_value("--only")
        .map(|v| v.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let wanted = |label: &str| only.is_empty() || only.iter().any(|w| label.contains(w.as_str()));
    let runs: usize = arg_value("--runs")
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
    println!("docker-registry benchmark: ours ({}) vs registry:2 ({DISTRIBUTION}), {runs} interleaved run(s){}, data in {}", ours(), if quick { ", quick" } else { "" }, data_parent().unwrap_or_else(std::env::temp_dir).display());
    for (k, v) in reference_points() {
        println!("  reference: {k:<34} {v}");
    }
    // --remote: the registries in a network namespace of their own, as on another host.
    let netns = if args.iter().any(|a| a == "--remote") {
        match Netns::create() {
            Ok(n) => {
                println!(
                    "  registries in network namespace {} at {}, reached over a veth pair (MTU 1500)",
                    n.name, n.ns_ip
                );
                Some(Arc::new(n))
            }
            Err(e) => {
                eprintln!("--remote needs root and iproute2: {e}");
                std::process::exit(1);
            }
        }
    } else {
        None
    };
    let mut table = Table {
        remote: netns.is_some(),
        ..Table::default()
    };
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
    let mut rss: [(u64, u64); 2] = [(0, 0); 2];
    let n = sizes.listing;
    // Listings: the first one (cold: the registry reads storage) and the median of
    // five more (warm: what a UI or a script polling the registry sees).
    // The one-request tags list comes first, so that its cold figure is cold; the
    // paged one follows, warm only. registry:2 2.8 ignores `n` on tags lists and
    // answers every tag at once, so its paged figure is one request where ours is ten.
    let listings = [
        (
            13,
            "7a catalog of 10k repos (pages of 1000)",
            "/v2/_catalog?n=1000",
            "repositories",
            false,
            true,
        ),
        (
            15,
            "7b tags/list of 10k tags (one request)",
            "/v2/tagged/many/tags/list",
            "tags",
            true,
            true,
        ),
        (
            17,
            "7c tags/list of 10k tags (pages of 1000)",
            "/v2/tagged/many/tags/list?n=1000",
            "tags",
            true,
            false,
        ),
    ];
    // The listing store (tens of thousands of files) only when a listing is measured.
    let any_listing = listings.iter().any(|l| wanted(l.1));
    for run in 0..runs {
        // Alternate which registry goes first.
        let order: [usize; 2] = if run % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let name = if which == 0 { "ours" } else { "registry:2" };
            eprintln!("run {}/{runs}: {name}", run + 1);
            let reg = match start(
                if which == 0 { "ours" } else { "distribution" },
                &client,
                &|root| {
                    if any_listing {
                        prepare_listing(root, n)
                    }
                },
                netns.as_ref(),
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
            let big = format!("{} MiB", sizes.big / MIB);
            let label = format!("1 push {big} monolithic (POST+PUT)");
            if wanted(&label) {
                let o = sc.push_mono(&client, &reg, run_id).await;
                let k = kind("MB/s", false, ">=4x, CPU <=1.0 s/GiB");
                table.add(1, &label, k, which, hwm(&reg, o));
            }
            let label = format!("2 push {big} chunked (16 MiB)");
            if wanted(&label) {
                let o = sc.push_chunked(&client, &reg, run_id).await;
                let k = kind("MB/s", false, ">=4x, CPU <=1.0 s/GiB");
                table.add(2, &label, k, which, hwm(&reg, o));
            }
            let label = "3 push 64 x 1 MiB, 16 concurrent";
            if wanted(label) {
                let o = sc.push_small(&client, &reg, run_id).await;
                table.add(3, label, kind("ops/s", false, ">=5x"), which, hwm(&reg, o));
            }
            // Each sequential figure is 4 pulls one after the other (1 GiB at full size), so
            // that the server's CPU seconds, counted in 10 ms ticks, are a few per cent exact.
            let pulls = [
                (4, "4a", "sequential, client not hashing", 1, 4, false),
                (5, "4b", "sequential, client hashing", 1, 4, true),
                (6, "4c", "x 8 concurrent", 8, 1, false),
            ];
            let mut loopback_measured = false;
            for (order, id, what, streams, rounds, hash) in pulls {
                let label = format!("{id} pull {big} {what}");
                if !wanted(&label) {
                    continue;
                }
                if !loopback_measured {
                    loopback_measured = true;
                    let netns = netns.clone();
                    match tokio::task::spawn_blocking(move || loopback_mbps(netns.as_deref())).await
                    {
                        Ok(Ok(v)) => table.loopback.push(v),
                        Ok(Err(e)) => eprintln!("  loopback measurement failed: {e}"),
                        Err(e) => eprintln!("  loopback measurement failed: {e}"),
                    }
                }
                let target = match order {
                    4 => ">=1.5x, >=90% lo, <=0.4 s/GiB",
                    _ => ">=1.5x, <=0.4 s/GiB",
                };
                let o = sc.pull_raw(&client, &reg, streams, rounds, hash).await;
                table.add(
                    order,
                    &label,
                    kind("MB/s", false, target),
                    which,
                    hwm(&reg, o),
                );
            }
            let label = format!("4e pull {} x 1 MiB, 16 concurrent", sizes.small_count);
            if wanted(&label) {
                let o = sc.pull_small(&client, &reg, 4).await;
                let k = kind("pulls/s", false, ">=3x (issue: met at 3.0x)");
                table.add(7, &label, k, which, hwm(&reg, o));
            }
            let label = "4d Range GET 1 MiB";
            if wanted(label) {
                let o = sc.range_get(&client, &reg).await;
                table.add(7, label, kind("req/s", false, ""), which, hwm(&reg, o));
            }
            for (label, neighbour, target) in [
                ("5 manifest PUT, 16 concurrent", false, ">=5x"),
                // What a busy neighbour on the same filesystem costs our syncs (registry:2
                // never syncs, so its figure shows only the neighbour's load).
                (
                    "5b manifest PUT, 16 conc., neighbour 100 MB/s",
                    true,
                    "as without the neighbour",
                ),
            ] {
                if !wanted(label) {
                    continue;
                }
                // From a settled registry, as every run starts: once a burst of PUTs is over,
                // ours checkpoints its journal (a sync of every file the burst wrote), which
                // would otherwise run during the next burst and be counted as its cost.
                let settling = Instant::now();
                settle(&reg).await;
                eprintln!(
                    "  {}: settled in {:.1} s before {label}",
                    reg.name,
                    settling.elapsed().as_secs_f64()
                );
                let o = match neighbour.then(|| Neighbour::start(100_000_000)) {
                    None => sc.manifest_put(&client, &reg, run_id).await,
                    Some(Ok(_neighbour)) => sc.manifest_put(&client, &reg, run_id + 1000).await,
                    Some(Err(e)) => Err(format!("cannot start the neighbour: {e}")),
                };
                let (o, p99) = match o {
                    Ok((f, p99)) => {
                        let at = Figure {
                            value: p99,
                            bytes: 0.0,
                            ..f.clone()
                        };
                        (Ok(f), Ok(at))
                    }
                    Err(e) => (Err(e.clone()), Err(e)),
                };
                table.add(8, label, kind("ops/s", false, target), which, hwm(&reg, o));
                let k = kind("ms", true, "");
                table.add(8, &format!("{label} p99"), k, which, p99);
            }
            for (order, head) in [(9, false), (11, true)] {
                let label = if head {
                    "6b manifest HEAD by tag, 32 conns"
                } else {
                    "6a manifest GET by tag, 32 conns"
                };
                if !wanted(label) {
                    continue;
                }
                match sc.manifest_read(&client, &reg, head).await {
                    Ok((f, p50, p99)) => {
                        let cpu = (f.client_cpu, f.server_cpu);
                        table.add(order, label, kind("ops/s", false, ">=20x"), which, Ok(f));
                        table.add(
                            order + 1,
                            &format!("{label} p99"),
                            kind("ms", true, "ours <= 5 ms"),
                            which,
                            Ok(Figure {
                                value: p99,
                                client_cpu: cpu.0,
                                server_cpu: cpu.1,
                                bytes: 0.0,
                            }),
                        );
                        eprintln!("  {label}: p50 {p50:.2} ms p99 {p99:.2} ms");
                    }
                    Err(e) => table.add(order, label, kind("ops/s", false, ">=20x"), which, Err(e)),
                }
            }
            for (order, label, first, key, exact, show_cold) in listings {
                if !wanted(label) {
                    continue;
                }
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
                    bytes: 0.0,
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
