//! Soak: the release binary under a steady mixed load for a long time, to show that nothing
//! creeps. Not a test (it takes half an hour); run it by hand:
//!
//! ```text
//! cargo bench --bench soak                      # 30 minutes
//! cargo bench --bench soak -- --minutes 5 --rate 8 --csv target/soak/short.csv
//! ```
//!
//! The load, at a bounded rate (`--rate` operations per second over all workers): image
//! pushes (a base layer shared by many images, so existence checks skip it, a layer of its
//! own sent whole or in chunks, a config, a manifest under a new tag), pulls of a random
//! acknowledged image with every digest checked, deletions of a random image by digest,
//! `--slow` clients that trickle a layer's body a few bytes at a time for half a minute and
//! then push an image on it, and `garbage-collect --online --grace 5s` every `--gc-every`
//! seconds. Every `--sample` seconds the daemon's RSS, open file descriptors (/proc/PID/fd),
//! threads and upload directories go to a CSV with the operation counts.
//!
//! It fails (exit 1) on any 5xx, on any pull that does not match what was acknowledged, and
//! when at the end, after a last collection with no grace, an acknowledged image does not
//! pull whole with verified digests.

#[path = "../tests/common/mod.rs"]
mod common;

use common::rng::Rng;
use common::{client, digest_of, Server, BIN};
use reqwest::blocking::{Client, Response};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

const REPOSITORIES: u64 = 8;
const BASE_LAYERS: u64 = 6;
const MAX_IMAGES: usize = 150;

struct Options {
    minutes: f64,
    rate: f64,
    workers: usize,
    slow: usize,
    gc_every: u64,
    sample: u64,
    csv: PathBuf,
}

impl Options {
    fn parse() -> Options {
        let mut o = Options {
            minutes: 30.0,
            rate: 6.0,
            workers: 4,
            slow: 3,
            gc_every: 60,
            sample: 5,
            csv: PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
                "../soak/soak-{}.csv",
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            )),
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut i = 0;
        while i < args.len() {
            let value = || {
                args.get(i + 1)
                    .unwrap_or_else(|| panic!("{} needs a value", args[i]))
            };
            let number = || -> f64 {
                value()
                    .parse()
                    .unwrap_or_else(|_| panic!("{} takes a number", args[i]))
            };
            match args[i].as_str() {
                "--minutes" => o.minutes = number(),
                "--rate" => o.rate = number(),
                "--workers" => o.workers = number() as usize,
                "--slow" => o.slow = number() as usize,
                "--gc-every" => o.gc_every = number() as u64,
                "--sample" => o.sample = number() as u64,
                "--csv" => o.csv = PathBuf::from(value()),
                // What cargo bench passes to every bench target.
                "--bench" => {
                    i += 1;
                    continue;
                }
                other => panic!("unknown option {other} (see the top of benches/soak.rs)"),
            }
            i += 2;
        }
        o
    }
}

/// An image the registry acknowledged (201 to its manifest PUT).
#[derive(Clone)]
struct Image {
    repo: String,
    tag: String,
    manifest: String,
    blobs: Vec<String>,
}

/// What every thread shares: the acknowledged images and the counters.
#[derive(Default)]
struct Shared {
    images: Mutex<BTreeMap<u64, Image>>,
    /// Images deleted, so that a pull racing a deletion may get its 404.
    deleted: Mutex<std::collections::HashSet<String>>,
    next_image: AtomicU64,
    pushes: AtomicU64,
    pulls: AtomicU64,
    deletes: AtomicU64,
    slow_pushes: AtomicU64,
    gc_runs: AtomicU64,
    gc_removed: AtomicU64,
    server_errors: AtomicU64,
    failures: Mutex<Vec<String>>,
    stop: AtomicBool,
    /// The next instant an operation may start: `--rate` operations per second in all.
    next_slot: Mutex<Option<Instant>>,
}

impl Shared {
    fn fail(&self, what: String) {
        eprintln!("FAILURE: {what}");
        let mut f = self.failures.lock().expect("failures");
        if f.len() < 1000 {
            f.push(what);
        }
    }

    /// Pushes, slow pushes, pulls, deletes, collections, blobs collected, 5xx answers.
    fn counts(&self) -> [u64; 7] {
        [
            &self.pushes,
            &self.slow_pushes,
            &self.pulls,
            &self.deletes,
            &self.gc_runs,
            &self.gc_removed,
            &self.server_errors,
        ]
        .map(|c| c.load(Relaxed))
    }

    fn pace(&self, rate: f64) {
        let wait = {
            let mut next = self.next_slot.lock().expect("pace");
            let now = Instant::now();
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + Duration::from_secs_f64(1.0 / rate));
            slot - now
        };
        std::thread::sleep(wait);
    }
}

/// A registry answer checked: 5xx are counted as the failures they are.
fn expect(
    shared: &Shared,
    what: &str,
    r: reqwest::Result<Response>,
    ok: &[u16],
) -> Option<Response> {
    match r {
        Ok(r) if ok.contains(&r.status().as_u16()) => Some(r),
        Ok(r) => {
            if r.status().is_server_error() {
                shared.server_errors.fetch_add(1, Relaxed);
            }
            let status = r.status();
            let body = r.text().unwrap_or_default();
            shared.fail(format!(
                "{what}: {status} {}",
                body.chars().take(300).collect::<String>()
            ));
            None
        }
        Err(e) => {
            shared.fail(format!("{what}: {e}"));
            None
        }
    }
}

/// Deterministic bytes for a seed.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&rng.next().to_le_bytes());
    }
    v.truncate(len);
    v
}

fn location(base: &str, r: &Response) -> Option<String> {
    let loc = r.headers().get("location")?.to_str().ok()?;
    Some(if loc.starts_with("http") {
        loc.to_owned()
    } else {
        format!("{base}{loc}")
    })
}

fn with_digest(location: &str, digest: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

/// Uploads a blob unless the repository already has it: whole, or in chunks.
fn push_blob(
    c: &Client,
    shared: &Shared,
    base: &str,
    repo: &str,
    data: &[u8],
    chunks: usize,
) -> Option<String> {
    let digest = digest_of(data);
    let head = c.head(format!("{base}/v2/{repo}/blobs/{digest}")).send();
    if expect(shared, "HEAD blob", head, &[200, 404])?.status() == 200 {
        return Some(digest);
    }
    let r = c.post(format!("{base}/v2/{repo}/blobs/uploads/")).send();
    let mut loc = location(base, &expect(shared, "POST upload", r, &[202])?)?;
    let step = data.len().div_ceil(chunks.max(1)).max(1);
    let mut at = 0;
    while chunks > 1 && at < data.len() {
        let end = (at + step).min(data.len());
        let r = c
            .patch(&loc)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{at}-{}", end - 1))
            .body(data[at..end].to_vec())
            .send();
        loc = location(base, &expect(shared, "PATCH chunk", r, &[202])?)?;
        at = end;
    }
    let last = data[at..].to_vec();
    let r = c.put(with_digest(&loc, &digest)).body(last).send();
    expect(shared, "PUT upload", r, &[201])?;
    Some(digest)
}

/// Pushes config + layers and a manifest under a new tag; records the image when acknowledged.
fn push_image(
    c: &Client,
    shared: &Shared,
    base: &str,
    repo: &str,
    layers: &[String],
    layer_sizes: &[usize],
) {
    let n = shared.next_image.fetch_add(1, Relaxed);
    let config = format!(r#"{{"architecture":"amd64","os":"linux","soak":{n}}}"#);
    let Some(config_digest) = push_blob(c, shared, base, repo, config.as_bytes(), 1) else {
        return;
    };
    let layer_json: Vec<String> = layers
        .iter()
        .zip(layer_sizes)
        .map(|(d, len)| {
            format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d}","size":{len}}}"#)
        })
        .collect();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{}]}}"#,
        config.len(),
        layer_json.join(",")
    );
    let tag = format!("t{n}");
    let r = c
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send();
    if expect(shared, "PUT manifest", r, &[201]).is_none() {
        return;
    }
    let mut blobs = vec![config_digest];
    blobs.extend(layers.iter().cloned());
    let image = Image {
        repo: repo.to_owned(),
        tag,
        manifest: digest_of(manifest.as_bytes()),
        blobs,
    };
    shared.images.lock().expect("images").insert(n, image);
}

/// GETs `url` and checks the body hashes to `digest`; `None` when it 404s.
fn get_verified(c: &Client, shared: &Shared, url: &str, digest: &str) -> Option<bool> {
    let mut r = match c.get(url).send() {
        Ok(r) if r.status() == 404 => return None,
        r => expect(shared, "GET", r, &[200])?,
    };
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hash.update(&buf[..n]),
            Err(e) => {
                shared.fail(format!("GET {url}: body: {e}"));
                return Some(false);
            }
        }
    }
    let hex: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let got = format!("sha256:{hex}");
    if got != digest {
        shared.fail(format!("GET {url}: content hashes to {got}, not {digest}"));
        return Some(false);
    }
    Some(true)
}

/// Pulls an image whole: the manifest by tag, then every blob. A 404 is a failure unless the
/// image was deleted meanwhile.
fn pull_image(c: &Client, shared: &Shared, base: &str, image: &Image) -> bool {
    let urls = std::iter::once((
        format!("{base}/v2/{}/manifests/{}", image.repo, image.tag),
        &image.manifest,
    ))
    .chain(
        image
            .blobs
            .iter()
            .map(|b| (format!("{base}/v2/{}/blobs/{b}", image.repo), b)),
    );
    for (url, digest) in urls {
        match get_verified(c, shared, &url, digest) {
            Some(true) => {}
            Some(false) => return false,
            None => {
                if !shared
                    .deleted
                    .lock()
                    .expect("deleted")
                    .contains(&image.manifest)
                {
                    shared.fail(format!("GET {url}: 404 for an acknowledged image"));
                    return false;
                }
                return true;
            }
        }
    }
    true
}

fn base_layer(i: u64) -> Vec<u8> {
    bytes(1_000 + i, 256 * 1024 + (i as usize) * 4096)
}

/// A worker of the mixed load: push, pull or delete, paced.
fn worker(shared: Arc<Shared>, base: String, seed: u64, rate: f64) {
    let c = client();
    let mut rng = Rng(seed);
    while !shared.stop.load(Relaxed) {
        shared.pace(rate);
        let count = shared.images.lock().expect("images").len();
        // 4 pushes, 5 pulls, 3 deletions in 12; at MAX_IMAGES live images a push becomes a
        // deletion, so the live set levels off there.
        let roll = rng.below(12);
        let full = count >= MAX_IMAGES;
        if count == 0 || (roll < 4 && !full) {
            let repo = format!("soak/r{}", rng.below(REPOSITORIES));
            let shared_layer = base_layer(rng.below(BASE_LAYERS));
            let own = bytes(rng.next(), 4096 + rng.below(256 * 1024) as usize);
            let chunks = 1 + rng.below(4) as usize;
            let mut layers = Vec::new();
            for (data, chunks) in [(&shared_layer, 1), (&own, chunks)] {
                match push_blob(&c, &shared, &base, &repo, data, chunks) {
                    Some(d) => layers.push(d),
                    None => break,
                }
            }
            if layers.len() == 2 {
                push_image(
                    &c,
                    &shared,
                    &base,
                    &repo,
                    &layers,
                    &[shared_layer.len(), own.len()],
                );
                shared.pushes.fetch_add(1, Relaxed);
            }
        } else if (4..9).contains(&roll) {
            let image = {
                let images = shared.images.lock().expect("images");
                let pick = rng.below(images.len() as u64) as usize;
                images.values().nth(pick).cloned()
            };
            if let Some(image) = image {
                pull_image(&c, &shared, &base, &image);
                shared.pulls.fetch_add(1, Relaxed);
            }
        } else {
            let image = {
                let mut images = shared.images.lock().expect("images");
                let pick = rng.below(images.len() as u64) as usize;
                let key = images.keys().nth(pick).copied();
                key.and_then(|k| images.remove(&k))
            };
            if let Some(image) = image {
                shared
                    .deleted
                    .lock()
                    .expect("deleted")
                    .insert(image.manifest.clone());
                let r = c
                    .delete(format!(
                        "{base}/v2/{}/manifests/{}",
                        image.repo, image.manifest
                    ))
                    .send();
                expect(&shared, "DELETE manifest", r, &[202]);
                shared.deletes.fetch_add(1, Relaxed);
            }
        }
    }
}

/// A slow client: a layer's body sent a few bytes at a time (`Content-Length` announced, so
/// the server waits for all of it), then an image on that layer.
fn slow_client(shared: Arc<Shared>, base: String, seed: u64) {
    let c = client();
    let mut rng = Rng(seed);
    let addr = base.trim_start_matches("http://").to_owned();
    while !shared.stop.load(Relaxed) {
        let repo = format!("soak/slow{}", rng.below(2));
        let data = bytes(rng.next(), 2048);
        let r = c.post(format!("{base}/v2/{repo}/blobs/uploads/")).send();
        let Some(loc) =
            expect(&shared, "POST upload (slow)", r, &[202]).and_then(|r| location(&base, &r))
        else {
            std::thread::sleep(Duration::from_secs(1));
            continue;
        };
        let path = loc.trim_start_matches(&base).to_owned();
        let Some(next) = trickle(&shared, &addr, &path, &data) else {
            continue;
        };
        let digest = digest_of(&data);
        let next = if next.starts_with("http") {
            next
        } else {
            format!("{base}{next}")
        };
        let r = c.put(with_digest(&next, &digest)).send();
        if expect(&shared, "PUT upload (slow)", r, &[201]).is_some() {
            let base_layer = base_layer(rng.below(BASE_LAYERS));
            if let Some(b) = push_blob(&c, &shared, &base, &repo, &base_layer, 1) {
                push_image(
                    &c,
                    &shared,
                    &base,
                    &repo,
                    &[b, digest],
                    &[base_layer.len(), data.len()],
                );
                shared.slow_pushes.fetch_add(1, Relaxed);
            }
        }
    }
}

/// A PATCH whose body goes out 64 bytes every second; returns the next upload location.
fn trickle(shared: &Shared, addr: &str, path: &str, data: &[u8]) -> Option<String> {
    let run = || -> std::io::Result<(u16, String)> {
        let mut s = std::net::TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        write!(
            s,
            "PATCH {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            data.len()
        )?;
        for piece in data.chunks(64) {
            s.write_all(piece)?;
            std::thread::sleep(Duration::from_secs(1));
        }
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        let status = answer
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let location = answer
            .lines()
            .find_map(|l| {
                l.strip_prefix("location: ")
                    .or_else(|| l.strip_prefix("Location: "))
            })
            .unwrap_or_default()
            .trim()
            .to_owned();
        Ok((status, location))
    };
    match run() {
        Ok((202, location)) if !location.is_empty() => Some(location),
        Ok((status, _)) => {
            if status >= 500 {
                shared.server_errors.fetch_add(1, Relaxed);
            }
            shared.fail(format!("trickled PATCH {path}: {status}"));
            None
        }
        Err(e) => {
            shared.fail(format!("trickled PATCH {path}: {e}"));
            None
        }
    }
}

/// `garbage-collect --online` through the daemon's admin socket; returns the blobs removed.
fn collect(shared: &Shared, storage: &Path, grace: &str) -> u64 {
    let out = Command::new(BIN)
        .args([
            "garbage-collect",
            "--online",
            "--grace",
            grace,
            "--storage-path",
        ])
        .arg(storage)
        .arg("--sysconfig")
        .arg("/dev/null")
        .arg("--config")
        .arg("/dev/null")
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let removed = String::from_utf8_lossy(&o.stdout).lines().count() as u64;
            shared.gc_runs.fetch_add(1, Relaxed);
            shared.gc_removed.fetch_add(removed, Relaxed);
            removed
        }
        Ok(o) => {
            shared.fail(format!(
                "garbage-collect --online: {}",
                String::from_utf8_lossy(&o.stderr)
            ));
            0
        }
        Err(e) => {
            shared.fail(format!("garbage-collect --online: {e}"));
            0
        }
    }
}

fn count_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// Upload session directories of every repository (`<repo>/_uploads/<id>`).
fn upload_dirs(storage: &Path) -> usize {
    let repos = storage.join("docker/registry/v2/repositories/soak");
    std::fs::read_dir(repos)
        .map(|d| {
            d.flatten()
                .map(|e| count_entries(&e.path().join("_uploads")))
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    let o = Options::parse();
    let storage_parent = tempfile::tempdir().expect("a temporary directory");
    let storage = storage_parent.path().join("data");
    // The access log stays on (info): the harness keeps it, a few MB for half an hour.
    let server = Server::builder().storage(&storage).delete_enabled().start();
    let base = format!("http://{}", server.host());
    let pid = server.pid();
    println!(
        "soak: {} min, {} ops/s over {} workers, {} slow clients, online GC every {} s; pid {pid}, csv {}",
        o.minutes,
        o.rate,
        o.workers,
        o.slow,
        o.gc_every,
        o.csv.display()
    );

    let shared = Arc::new(Shared::default());
    let mut threads = Vec::new();
    for w in 0..o.workers {
        let (s, b) = (shared.clone(), base.clone());
        let rate = o.rate;
        threads.push(std::thread::spawn(move || worker(s, b, 7 + w as u64, rate)));
    }
    for k in 0..o.slow {
        let (s, b) = (shared.clone(), base.clone());
        threads.push(std::thread::spawn(move || {
            slow_client(s, b, 1_000 + k as u64)
        }));
    }

    if let Some(dir) = o.csv.parent() {
        std::fs::create_dir_all(dir).expect("the CSV's directory");
    }
    let mut csv = std::fs::File::create(&o.csv).expect("the CSV file");
    writeln!(
        csv,
        "seconds,rss_kib,fds,threads,upload_dirs,images,pushes,slow_pushes,pulls,deletes,gc_runs,gc_removed,server_errors,failures"
    )
    .expect("write CSV");
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(o.minutes * 60.0);
    let mut next_gc = started + Duration::from_secs(o.gc_every);
    let mut next_sample = started;
    while Instant::now() < end {
        if Instant::now() >= next_gc {
            collect(&shared, &storage, "5s");
            next_gc += Duration::from_secs(o.gc_every);
        }
        if Instant::now() >= next_sample {
            let fds = count_entries(Path::new(&format!("/proc/{pid}/fd")));
            let threads = common::proc_status_kib(pid, "Threads:");
            let images = shared.images.lock().expect("images").len();
            let failures = shared.failures.lock().expect("failures").len();
            let counts = shared.counts().map(|c| c.to_string()).join(",");
            let row = format!(
                "{},{},{fds},{threads},{},{images},{counts},{failures}",
                started.elapsed().as_secs(),
                server.rss_kib(),
                upload_dirs(&storage),
            );
            writeln!(csv, "{row}").expect("write CSV");
            if started.elapsed().as_secs() % 60 < o.sample {
                println!("{row}");
            }
            next_sample += Duration::from_secs(o.sample);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    shared.stop.store(true, Relaxed);
    for t in threads {
        let _ = t.join();
    }

    // Everything acknowledged and not deleted must survive a collection with no grace.
    let removed = collect(&shared, &storage, "0s");
    let images: Vec<Image> = shared
        .images
        .lock()
        .expect("images")
        .values()
        .cloned()
        .collect();
    let c = client();
    let whole = images
        .iter()
        .filter(|i| pull_image(&c, &shared, &base, i))
        .count();
    let failures = shared.failures.lock().expect("failures").clone();
    let [pushes, slow, pulls, deletes, runs, collected, errors] = shared.counts();
    println!(
        "soak done: {pushes} pushes ({slow} slow), {pulls} pulls, {deletes} deletes, {runs} collections ({collected} blobs removed, {removed} by the last); {whole}/{} acknowledged images pull whole; {errors} 5xx; {} failures; RSS {} KiB, peak {} KiB; csv {}",
        images.len(),
        failures.len(),
        server.rss_kib(),
        server.peak_rss_kib(),
        o.csv.display()
    );
    if !failures.is_empty() || errors > 0 || whole != images.len() {
        for f in failures.iter().take(20) {
            println!("  {f}");
        }
        std::process::exit(1);
    }
}
