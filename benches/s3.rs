//! Ours against distribution 2.8.2 (Debian's docker-registry), both on S3: one moto server,
//! one bucket and root, the same blobs, runs interleaved (ours, then theirs, each run).
//! Redirects are off on both, so pulls go through the registries.
//!
//! ```text
//! cargo bench --bench s3                         # 256 MiB blobs, 3 runs, 10,000 repositories
//! cargo bench --bench s3 -- --blob-mib 2048 --runs 1 --repos 0   # peak RSS with a 2 GiB blob
//! ```
//!
//! Prints a Markdown table: push and pull MB/s (median of the runs), the catalog of
//! `--repos` repositories read page by page (`n=1000`) the first time and again, and our
//! peak RSS. Every pull is checked against the blob's digest.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../src/storage/s3/moto.rs"]
mod moto;

use common::registry2::Distribution;
use common::Server;
use docker_registry::storage::{S3Driver, S3Options, StorageDriver, StoragePath};
use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};
use std::io::Read;
use std::time::{Duration, Instant};

const BUCKET: &str = "bench";
const ROOT: &str = "shared";
const MIB: u64 = 1 << 20;

fn arg(name: &str) -> Option<u64> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

/// A blob made on the fly: `len` bytes of a pattern unique to `seed`, never whole in memory.
struct Pattern {
    seed: u64,
    at: u64,
    len: u64,
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.len - self.at) as usize;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            let x = (self.at + i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ self.seed;
            *b = (x >> 29) as u8;
        }
        self.at += n as u64;
        Ok(n)
    }
}

fn pattern(seed: u64, len: u64) -> Pattern {
    Pattern { seed, at: 0, len }
}

fn digest_of(mut r: impl Read) -> String {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    format!("sha256:{}", common::hex(&h.finalize()))
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(3600))
        .build()
        .expect("client")
}

/// Pushes a blob (POST, then one streamed PUT); returns its digest and the seconds taken.
fn push(c: &reqwest::blocking::Client, base: &str, seed: u64, len: u64) -> (String, f64) {
    let digest = digest_of(pattern(seed, len));
    let started = Instant::now();
    let r = c
        .post(format!("{base}/v2/bench/blobs/uploads/"))
        .send()
        .expect("post");
    assert_eq!(r.status(), 202, "{base}: start upload");
    let loc = common::absolute(base, r.headers()["location"].to_str().expect("location"));
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = c
        .put(format!("{loc}{sep}digest={digest}"))
        .body(reqwest::blocking::Body::sized(pattern(seed, len), len))
        .send()
        .expect("put");
    assert_eq!(r.status(), 201, "{base}: {:?}", r.text());
    (digest, started.elapsed().as_secs_f64())
}

/// Pulls a blob, checking its digest; returns the seconds taken.
fn pull(c: &reqwest::blocking::Client, base: &str, digest: &str) -> f64 {
    let started = Instant::now();
    let r = c
        .get(format!("{base}/v2/bench/blobs/{digest}"))
        .send()
        .expect("get");
    assert_eq!(r.status(), 200, "{base}: pull");
    assert_eq!(digest_of(r), digest, "{base}: pulled bytes");
    started.elapsed().as_secs_f64()
}

/// The whole catalog, page by page; returns how many names and the seconds taken.
fn catalog(c: &reqwest::blocking::Client, base: &str) -> (usize, f64) {
    let started = Instant::now();
    let mut url = format!("{base}/v2/_catalog?n=1000");
    let mut names = 0;
    loop {
        let r = c.get(&url).send().expect("catalog");
        assert_eq!(r.status(), 200, "{base}: catalog");
        let next = r
            .headers()
            .get("link")
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.split(['<', '>']).nth(1))
            .map(|l| common::absolute(base, l));
        let v: serde_json::Value = r.json().expect("json");
        names += v["repositories"].as_array().map_or(0, Vec::len);
        match next {
            Some(n) => url = n,
            None => return (names, started.elapsed().as_secs_f64()),
        }
    }
}

/// `count` repositories with a tag each, written straight into the bucket.
fn seed_repositories(moto: &moto::Moto, count: u64) {
    let driver = S3Driver::new(S3Options {
        bucket: BUCKET.into(),
        regionendpoint: moto.endpoint(),
        accesskey: "bench".into(),
        secretkey: "bench".into(),
        rootdirectory: ROOT.into(),
        ..S3Options::default()
    })
    .expect("driver");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        futures_util::stream::iter(0..count)
            .map(|i| {
                let driver = driver.clone();
                async move {
                    let name = format!("team{}/app{i:05}", i % 50);
                    let hex = format!("{i:064x}");
                    // A tag for ours, whose catalog lists repositories with manifests, and
                    // a layer link for registry:2, whose catalog looks for `_layers`.
                    for (under, link) in [
                        ("_manifests/tags/latest/current/link", "sha256:{hex}"),
                        ("_layers/sha256/{hex}/link", "sha256:{hex}"),
                    ] {
                        let p = StoragePath::new([
                            "docker/registry/v2/repositories",
                            &name,
                            &under.replace("{hex}", &hex),
                        ])
                        .expect("path");
                        let link = link.replace("{hex}", &hex);
                        driver.put_content(&p, link.as_bytes()).await.expect("put");
                    }
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await;
    });
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    let blob_mib = arg("--blob-mib").unwrap_or(256);
    let runs = arg("--runs").unwrap_or(3);
    let repos = arg("--repos").unwrap_or(10_000);
    let len = blob_mib * MIB;
    let Some(moto) = moto::Moto::start() else {
        return;
    };
    moto.create_bucket(BUCKET);
    let storage = format!(
        "{{s3: {{regionendpoint: '{}', forcepathstyle: true, secure: false, bucket: {BUCKET}, region: us-east-1, accesskey: bench, secretkey: bench, rootdirectory: /{ROOT}}}, redirect: {{disable: true}}, delete: {{enabled: true}}, maintenance: {{uploadpurging: {{enabled: false}}}}}}",
        moto.endpoint()
    );
    // Before the registries start: ours would otherwise serve its catalog from the cache
    // it warmed, as an instance that did not see the writes of another does for a while.
    if repos > 0 {
        let started = Instant::now();
        seed_repositories(&moto, repos);
        eprintln!("seeded {repos} repositories in {:.1?}", started.elapsed());
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("registry.yml");
    std::fs::write(&file, format!("version: 0.1\nstorage: {storage}\n")).expect("config");
    let ours = Server::builder()
        .configured_storage(dir.path())
        .arg("--config")
        .arg(file.display().to_string())
        .start();
    let theirs = Distribution::start_with(&storage);
    let bases = [
        ("ours", ours.url("")),
        ("distribution", format!("http://{}", theirs.host())),
    ];
    let c = client();
    let mut figures: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); 2];
    for run in 0..runs {
        for (i, (name, base)) in bases.iter().enumerate() {
            let seed = run * 2 + i as u64 + 1;
            let (digest, push_s) = push(&c, base, seed, len);
            let pull_s = pull(&c, base, &digest);
            let mbps = |s: f64| len as f64 / MIB as f64 / s;
            eprintln!(
                "run {run} {name}: push {:.0} MB/s, pull {:.0} MB/s",
                mbps(push_s),
                mbps(pull_s)
            );
            figures[i].0.push(mbps(push_s));
            figures[i].1.push(mbps(pull_s));
        }
    }
    let mut catalogs = Vec::new();
    if repos > 0 {
        for (name, base) in &bases {
            let (n1, first) = catalog(&c, base);
            let (n2, again) = catalog(&c, base);
            eprintln!("{name}: catalog of {n1} in {first:.2} s, again {n2} in {again:.2} s");
            catalogs.push((first, again, n1));
        }
    }
    let (ours_f, theirs_f) = (&figures[0], &figures[1]);
    let row = |what: &str, o: f64, t: f64, unit: &str| {
        println!("| {what} | {o:.2} {unit} | {t:.2} {unit} | {:.2}x |", o / t)
    };
    println!(
        "\n{blob_mib} MiB blob, {runs} interleaved runs (median), moto on loopback, redirects off\n"
    );
    println!("| | ours | distribution 2.8.2 | ours / theirs |\n|---|---|---|---|");
    row(
        "push MB/s",
        median(ours_f.0.clone()),
        median(theirs_f.0.clone()),
        "",
    );
    row(
        "pull MB/s",
        median(ours_f.1.clone()),
        median(theirs_f.1.clone()),
        "",
    );
    if let [o, t] = catalogs[..] {
        println!(
            "| catalog of {} repositories, first | {:.2} s | {:.2} s | {:.1}x faster |",
            o.2,
            o.0,
            t.0,
            t.0 / o.0
        );
        println!(
            "| catalog again | {:.2} s | {:.2} s | {:.1}x faster |",
            o.1,
            t.1,
            t.1 / o.1
        );
    }
    println!(
        "| peak RSS | {} MiB | {} MiB | |",
        ours.peak_rss_kib() / 1024,
        common::proc_status_kib(theirs.pid() as i32, "VmHWM:") / 1024
    );
}
