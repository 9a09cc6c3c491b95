//! What the credential cache buys: pulls per second of a 20-layer image with basic auth on
//! (the same htpasswd file, bcrypt cost 10), ours against registry:2 (distribution 2.8.2,
//! Debian's `docker-registry`) serving the same storage directory, measured side by side.
//! A pull is what a client does: the manifest, the config and the 20 layers, each request
//! with its Basic credentials, on keep-alive connections, from several clients at once.
//! Scenario 8 of the performance issue; a benchmark, not a test:
//!
//! ```text
//! cargo bench --bench auth_pulls                # 3 interleaved runs, medians
//! cargo bench --bench auth_pulls -- --runs 5
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

const LAYERS: usize = 20;
const CLIENTS: usize = 4;
const MEASURE: Duration = Duration::from_secs(5);

/// Pulls the image as fast as possible from CLIENTS threads for MEASURE; returns pulls/s.
fn pulls_per_second(base: &str, manifest_digest: &str, blobs: &[(String, usize)]) -> f64 {
    let deadline = Instant::now() + MEASURE;
    let started = Instant::now();
    let pulls: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|_| {
                scope.spawn(|| {
                    let c = client();
                    let mut n = 0;
                    while Instant::now() < deadline {
                        let get = |path: &str| {
                            c.get(format!("{base}{path}"))
                                .basic_auth("bench", Some("bench password"))
                                .header("accept", "application/vnd.oci.image.manifest.v1+json")
                                .expect_status(200)
                                .bytes()
                                .expect("body")
                                .len()
                        };
                        get(&format!("/v2/bench/image/manifests/{manifest_digest}"));
                        for (d, size) in blobs {
                            assert_eq!(get(&format!("/v2/bench/image/blobs/{d}")), *size);
                        }
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker")).sum()
    });
    pulls as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("data");
    // The image: a config and 20 layers of 32 KiB, pushed into the shared storage.
    let mut blobs = Vec::new();
    let manifest_digest = {
        let open = Server::builder().storage(&storage).start();
        let c = client();
        let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
        let cd = push_blob(&c, &open, "bench/image", &config);
        blobs.push((cd.clone(), config.len()));
        let mut layers = Vec::new();
        for i in 0..LAYERS {
            let data: Vec<u8> = (0..32 * 1024u32)
                .map(|b| (b.wrapping_mul(31).wrapping_add(i as u32 * 7)) as u8)
                .collect();
            let d = push_blob(&c, &open, "bench/image", &data);
            layers.push((d.clone(), data.len()));
            blobs.push((d, data.len()));
        }
        let refs: Vec<(&str, usize)> = layers.iter().map(|(d, n)| (d.as_str(), *n)).collect();
        let m = image_manifest((&cd, config.len()), &refs);
        put_manifest(&c, &open, "bench/image", "latest", &m)
    };
    // Apache's bcrypt at cost 10, the file both registries read.
    let users = dir.path().join("users");
    checked(
        Command::new(HTPASSWD.program)
            .args(["-cbB", "-C", "10"])
            .arg(&users)
            .args(["bench", "bench password"]),
    );

    // Interleaved runs (ours, registry:2, registry:2, ours, ...), medians.
    let runs: usize = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for run in 0..runs {
        let order = if run % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let rate = if which == 0 {
                let ours = Server::builder()
                    .storage(&storage)
                    .args_from(&["--htpasswd", users.to_str().expect("utf-8")])
                    .start();
                pulls_per_second(&ours.url(""), &manifest_digest, &blobs)
            } else {
                let theirs = Distribution::start_configured(
                    &format!("{{filesystem: {{rootdirectory: {}}}}}", storage.display()),
                    &format!(
                        "auth: {{htpasswd: {{realm: bench, path: {}}}}}\n",
                        users.display()
                    ),
                );
                pulls_per_second(
                    &format!("http://{}", theirs.host()),
                    &manifest_digest,
                    &blobs,
                )
            };
            eprintln!(
                "run {}/{runs} {}: {rate:.1} pulls/s",
                run + 1,
                if which == 0 { "ours" } else { "registry:2" }
            );
            rates[which].push(rate);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let ours_rate = median(&mut rates[0]);
    let theirs_rate = median(&mut rates[1]);
    // registry:2 pays a bcrypt per request; we pay one per credential per minute.
    println!(
        "8 pulls/s of a {LAYERS}-layer image, basic auth (bcrypt cost 10), {CLIENTS} clients, {} s each, median of {runs} interleaved runs: ours {ours_rate:.1}, registry:2 {theirs_rate:.1}, ratio {}   (target >= 20x)",
        MEASURE.as_secs(),
        if theirs_rate > 0.0 { format!("{:.1}x", ours_rate / theirs_rate) } else { "- (registry:2 completed no pull)".into() }
    );
}
