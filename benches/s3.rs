//! Ours against distribution 2.8.2 (Debian's docker-registry), both on S3: one moto server,
//! one bucket and root, the same blobs, runs interleaved (ours, then theirs, each run).
//! Redirects are off on both, so pulls go through the registries.
//!
//! ```text
//! cargo bench --bench s3                         # 256 MiB blobs, 3 runs, 10,000 repositories
//! cargo bench --bench s3 -- --blob-mib 8,256,2048 --runs 3 --repos 0
//! cargo bench --bench s3 -- --blob-mib 256 --repos 0 --chunked   # POST, PATCH, PUT as docker does
//! cargo bench --bench s3 -- --blob-mib 2048 --runs 1 --repos 0   # peak RSS with a 2 GiB blob
//! ```
//!
//! Prints a Markdown table: for each blob size, push and pull MB/s (median of the runs) with
//! the ratio and its target, the CPU-seconds per GiB of each registry and of moto, and the
//! S3 requests each push and pull made (counted from moto's log; a table by operation
//! follows); then the catalog of `--repos` repositories read page by page (`n=1000`) the
//! first time and again, and peak RSS. Every pull is checked against the blob's digest.
//! Each blob is removed from the bucket once pulled, so moto holds one at a time.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../src/storage/s3/moto.rs"]
mod moto;

use common::registry2::Distribution;
use common::Server;
use docker_registry::storage::{S3Driver, S3Options, StorageDriver, StoragePath};
use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, Instant};

const BUCKET: &str = "bench";
const ROOT: &str = "shared";
const MIB: u64 = 1 << 20;

fn arg_text(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn arg(name: &str) -> Option<u64> {
    arg_text(name).and_then(|v| v.parse().ok())
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

/// Pushes a blob (POST, then one streamed PUT; with `chunked`, as docker and skopeo do:
/// POST, the body in one PATCH, then a PUT without one); returns its digest and the
/// seconds taken.
fn push(
    c: &reqwest::blocking::Client,
    base: &str,
    seed: u64,
    len: u64,
    chunked: bool,
) -> (String, f64) {
    let digest = digest_of(pattern(seed, len));
    let started = Instant::now();
    let r = c
        .post(format!("{base}/v2/bench/blobs/uploads/"))
        .send()
        .expect("post");
    assert_eq!(r.status(), 202, "{base}: start upload");
    let loc = common::absolute(base, r.headers()["location"].to_str().expect("location"));
    let body = || reqwest::blocking::Body::sized(pattern(seed, len), len);
    let (loc, body) = if chunked {
        let r = c
            .patch(&loc)
            .header("content-type", "application/octet-stream")
            .body(body())
            .send()
            .expect("patch");
        assert_eq!(r.status(), 202, "{base}: patch");
        let next = r.headers()["location"].to_str().expect("location");
        (
            common::absolute(base, next),
            reqwest::blocking::Body::from(Vec::new()),
        )
    } else {
        (loc, body())
    };
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = c
        .put(format!("{loc}{sep}digest={digest}"))
        .body(body)
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

/// A driver straight on the bucket, under the registries' root.
fn bucket_driver(moto: &moto::Moto) -> S3Driver {
    S3Driver::new(S3Options {
        bucket: BUCKET.into(),
        regionendpoint: moto.endpoint(),
        accesskey: "bench".into(),
        secretkey: "bench".into(),
        rootdirectory: ROOT.into(),
        ..S3Options::default()
    })
    .expect("driver")
}

/// Removes a pulled blob from the bucket, so that moto (memory and temporary files) holds
/// one blob at a time whatever the runs.
fn remove_blob(driver: &S3Driver, rt: &tokio::runtime::Runtime, digest: &str) {
    let hex = digest.trim_start_matches("sha256:");
    let dir = StoragePath::new(["docker/registry/v2/blobs/sha256", &hex[..2], hex]).expect("path");
    rt.block_on(driver.delete(&dir)).expect("remove the blob");
}

/// `count` repositories with a tag each, written straight into the bucket.
fn seed_repositories(moto: &moto::Moto, count: u64) {
    let driver = bucket_driver(moto);
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

/// What one push or pull cost: seconds, CPU ticks of the registry, of the client (this
/// process) and of moto, and the S3 requests it made.
#[derive(Default, Clone)]
struct Cost {
    seconds: f64,
    server_ticks: u64,
    client_ticks: u64,
    moto_ticks: u64,
    requests: moto::Requests,
}

/// Requests per second made while nothing runs: our registry reads the other instances'
/// change journal every second. Measured once, taken off each operation's count by its
/// duration, so that a count is what the operation itself asked for.
struct Background(BTreeMap<&'static str, f64>);

impl Background {
    fn measure(moto: &moto::Moto) -> Background {
        let before = moto.requests();
        let started = Instant::now();
        std::thread::sleep(Duration::from_secs(5));
        let after = moto.requests();
        let seconds = started.elapsed().as_secs_f64();
        Background(
            after
                .iter()
                .map(|(op, n)| (*op, (n - before.get(op).unwrap_or(&0)) as f64 / seconds))
                .filter(|(_, rate)| *rate > 0.0)
                .collect(),
        )
    }
}

/// Runs `op` and measures what it cost the registry `pid`, this client and moto.
fn measured(
    moto: &moto::Moto,
    background: &Background,
    pid: u32,
    op: impl FnOnce() -> f64,
) -> Cost {
    let me = std::process::id();
    let before = moto.requests();
    let ticks = || [pid, me, moto.pid()].map(common::cpu_ticks);
    let t0 = ticks();
    let seconds = op();
    let t1 = ticks();
    let mut requests = moto.requests();
    for (op, n) in requests.iter_mut() {
        let idle = background
            .0
            .get(op)
            .map_or(0.0, |rate| rate * seconds)
            .round() as u64;
        *n = n.saturating_sub(before.get(op).copied().unwrap_or(0) + idle);
    }
    requests.retain(|_, n| *n > 0);
    Cost {
        seconds,
        server_ticks: t1[0] - t0[0],
        client_ticks: t1[1] - t0[1],
        moto_ticks: t1[2] - t0[2],
        requests,
    }
}

/// Which CPU figure of a [`Cost`].
type Ticks = fn(&Cost) -> u64;

/// The runs of one registry at one blob size.
#[derive(Default)]
struct Runs {
    push: Vec<Cost>,
    pull: Vec<Cost>,
}

impl Runs {
    fn mbps(costs: &[Cost], len: u64) -> f64 {
        median(
            costs
                .iter()
                .map(|c| len as f64 / MIB as f64 / c.seconds)
                .collect(),
        )
    }

    /// CPU-seconds per GiB moved (median), of what `ticks` picks.
    fn cpu_per_gib(costs: &[Cost], len: u64, ticks: Ticks) -> f64 {
        let gib = len as f64 / (1u64 << 30) as f64;
        median(
            costs
                .iter()
                .map(|c| ticks(c) as f64 / 100.0 / gib)
                .collect(),
        )
    }

    fn requests(costs: &[Cost]) -> f64 {
        median(
            costs
                .iter()
                .map(|c| c.requests.values().sum::<u64>() as f64)
                .collect(),
        )
    }
}

/// A ratio against its target: "met" or "MISSED".
fn verdict(ratio: f64, target: f64) -> String {
    let word = if ratio >= target { "met" } else { "MISSED" };
    format!("≥ {target}x: {word}")
}

fn main() {
    let sizes: Vec<u64> = arg_text("--blob-mib")
        .unwrap_or_else(|| "256".to_owned())
        .split(',')
        .map(|v| {
            v.trim()
                .parse()
                .expect("--blob-mib: sizes in MiB, comma-separated")
        })
        .collect();
    let runs = arg("--runs").unwrap_or(3);
    let chunked = std::env::args().any(|a| a == "--chunked");
    let repos = arg("--repos").unwrap_or(10_000);
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
    let registries = [
        ("ours", ours.url(""), ours.pid() as u32),
        (
            "distribution",
            format!("http://{}", theirs.host()),
            theirs.pid(),
        ),
    ];
    // What ours does once it answers (indexing the seeded repositories for search, which
    // keeps moto busy too) is not the first push's cost, nor the background request rate.
    for (name, _, pid) in &registries {
        if !common::wait_until_idle(*pid, Duration::from_secs(600)) {
            eprintln!("{name}: still busy ten minutes after it started");
        }
    }
    let c = client();
    let background = Background::measure(&moto);
    let cleaner = bucket_driver(&moto);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut results: Vec<(u64, [Runs; 2])> = Vec::new();
    for (s, &blob_mib) in sizes.iter().enumerate() {
        let len = blob_mib * MIB;
        let mut both: [Runs; 2] = Default::default();
        for run in 0..runs {
            for (i, (name, base, pid)) in registries.iter().enumerate() {
                let seed = (s as u64 * runs + run) * 2 + i as u64 + 1;
                let mut digest = String::new();
                let push_cost = measured(&moto, &background, *pid, || {
                    let (d, seconds) = push(&c, base, seed, len, chunked);
                    digest = d;
                    seconds
                });
                let pull_cost = measured(&moto, &background, *pid, || pull(&c, base, &digest));
                remove_blob(&cleaner, &rt, &digest);
                let mbps = |s: f64| len as f64 / MIB as f64 / s;
                eprintln!(
                    "{blob_mib} MiB run {run} {name}: push {:.0} MB/s ({} S3 requests), pull {:.0} MB/s ({} S3 requests)",
                    mbps(push_cost.seconds),
                    push_cost.requests.values().sum::<u64>(),
                    mbps(pull_cost.seconds),
                    pull_cost.requests.values().sum::<u64>(),
                );
                both[i].push.push(push_cost);
                both[i].pull.push(pull_cost);
            }
        }
        results.push((blob_mib, both));
    }
    let mut catalogs = Vec::new();
    if repos > 0 {
        for (name, base, _) in &registries {
            let (n1, first) = catalog(&c, base);
            let (n2, again) = catalog(&c, base);
            eprintln!("{name}: catalog of {n1} in {first:.2} s, again {n2} in {again:.2} s");
            catalogs.push((first, again, n1));
        }
    }

    println!(
        "\n{runs} interleaved runs (medians), one moto server on loopback, redirects off; CPU-s/GiB is user+system CPU per GiB moved; S3 requests are counted from moto's log, less the background rate measured idle ({})\n",
        background
            .0
            .iter()
            .map(|(op, rate)| format!("{op} {rate:.1}/s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("| | ours | distribution 2.8.2 | ours / theirs | target |\n|---|---|---|---|---|");
    for (blob_mib, [o, t]) in &results {
        let len = blob_mib * MIB;
        let push = if chunked {
            "push (POST, PATCH, PUT)"
        } else {
            "push"
        };
        for (what, oc, tc) in [(push, &o.push, &t.push), ("pull", &o.pull, &t.pull)] {
            let (om, tm) = (Runs::mbps(oc, len), Runs::mbps(tc, len));
            println!(
                "| {what} {blob_mib} MiB, MB/s | {om:.1} | {tm:.1} | {:.2}x | {} |",
                om / tm,
                verdict(om / tm, 2.0)
            );
            let of: [(&str, Ticks); 3] = [
                ("registry", |c| c.server_ticks),
                ("moto", |c| c.moto_ticks),
                ("client", |c| c.client_ticks),
            ];
            for (of, ticks) in of {
                let (ocpu, tcpu) = (
                    Runs::cpu_per_gib(oc, len, ticks),
                    Runs::cpu_per_gib(tc, len, ticks),
                );
                println!(
                    "| {what} {blob_mib} MiB, {of} CPU-s/GiB | {ocpu:.2} | {tcpu:.2} | {:.2}x less | |",
                    tcpu / ocpu
                );
            }
            let (or, tr) = (Runs::requests(oc), Runs::requests(tc));
            println!("| {what} {blob_mib} MiB, S3 requests | {or:.0} | {tr:.0} | | |");
        }
    }
    if let [o, t] = catalogs[..] {
        let ratio = t.0 / o.0;
        let word = if ratio >= 10.0 && o.0 < 1.0 {
            "met"
        } else {
            "MISSED"
        };
        println!(
            "| catalog of {} repositories, first | {:.2} s | {:.2} s | {ratio:.1}x faster | ≥ 10x and < 1 s: {word} |",
            o.2, o.0, t.0
        );
        println!(
            "| catalog again | {:.2} s | {:.2} s | {:.1}x faster | |",
            o.1,
            t.1,
            t.1 / o.1
        );
    }
    let peak = ours.peak_rss_kib() / 1024;
    let largest = sizes.iter().max().copied().unwrap_or(0);
    let rss_target = if largest >= 2048 {
        format!(
            "< 100 MiB with a {largest} MiB blob: {}",
            if peak < 100 { "met" } else { "MISSED" }
        )
    } else {
        "< 100 MiB with a 2 GiB blob (not run)".to_owned()
    };
    println!(
        "| peak RSS | {peak} MiB | {} MiB | | {rss_target} |",
        common::proc_status_kib(theirs.pid() as i32, "VmHWM:") / 1024
    );

    // What each push and pull asked of S3 (the last run's), by operation.
    for (blob_mib, [o, t]) in &results {
        let last = |r: &[Cost]| r.last().map(|c| c.requests.clone()).unwrap_or_default();
        let columns = [last(&o.push), last(&t.push), last(&o.pull), last(&t.pull)];
        let mut ops: Vec<&str> = columns.iter().flat_map(|c| c.keys().copied()).collect();
        ops.sort_unstable();
        ops.dedup();
        println!(
            "\nS3 requests of one {blob_mib} MiB push and pull\n\n| operation | ours, push | theirs, push | ours, pull | theirs, pull |\n|---|---|---|---|---|"
        );
        for op in ops.iter().chain(std::iter::once(&"total")) {
            let n = |c: &moto::Requests| match *op {
                "total" => c.values().sum::<u64>(),
                op => c.get(op).copied().unwrap_or(0),
            };
            println!(
                "| {op} | {} | {} | {} | {} |",
                n(&columns[0]),
                n(&columns[1]),
                n(&columns[2]),
                n(&columns[3])
            );
        }
    }
}
