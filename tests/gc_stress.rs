//! Online garbage collection under load: several clients push and delete images that share
//! layers (raw HTTP, with existence checks, cross-repository mounts and indexes; one more
//! client pushes with skopeo) while collection loops through the admin socket with a tiny
//! grace period. Afterwards every manifest a client saw accepted, and did not delete, is
//! fully pullable with every digest verified, and no unreachable blob older than the grace
//! period remains. Bounded: a fixed number of rounds per client and a time limit.

mod common;

use common::rng::Rng;
use common::*;
use reqwest::blocking::Client;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENTS: u64 = 4;
const ROUNDS: usize = 25;
const POOL: u64 = 10;
const GRACE: &str = "200ms";
const TIME_LIMIT: Duration = Duration::from_secs(240);

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A manifest a client saw accepted.
#[derive(Clone, Debug)]
struct Accepted {
    repo: String,
    digest: String,
    /// Blobs (config, layers) and child manifests it references.
    blobs: Vec<String>,
    children: Vec<String>,
}

#[derive(Default)]
struct Outcome {
    accepted: Vec<Accepted>,
    deleted: BTreeSet<(String, String)>,
    refused_blob_unknown: usize,
}

/// Makes `blob` present in `repo`: skip when it exists, else mount from `other`, else upload.
fn ensure_blob(
    client: &Client,
    base: &str,
    repo: &str,
    other: &str,
    blob: &[u8],
) -> Result<(), String> {
    let d = digest_of(blob);
    let head = client
        .head(format!("http://{base}/v2/{repo}/blobs/{d}"))
        .send()
        .map_err(|e| e.to_string())?;
    if head.status().as_u16() == 200 {
        return Ok(());
    }
    let r = client
        .post(format!(
            "http://{base}/v2/{repo}/blobs/uploads/?mount={d}&from={other}"
        ))
        .send()
        .map_err(|e| e.to_string())?;
    match r.status().as_u16() {
        201 => Ok(()),
        202 => {
            let loc = r
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .ok_or("no Location")?
                .to_owned();
            let url = absolute(&format!("http://{base}"), &loc);
            let sep = if url.contains('?') { '&' } else { '?' };
            let put = client
                .put(format!("{url}{sep}digest={d}"))
                .header("content-type", "application/octet-stream")
                .body(blob.to_vec())
                .send()
                .map_err(|e| e.to_string())?;
            if put.status().as_u16() == 201 {
                Ok(())
            } else {
                Err(format!("blob PUT {}", put.status()))
            }
        }
        s => Err(format!("upload POST {s}")),
    }
}

/// PUT a manifest; Ok(true) accepted, Ok(false) refused with MANIFEST_BLOB_UNKNOWN.
fn put_manifest(
    client: &Client,
    base: &str,
    repo: &str,
    tag: &str,
    media: &str,
    body: &[u8],
) -> Result<bool, String> {
    let r = client
        .put(format!("http://{base}/v2/{repo}/manifests/{tag}"))
        .header("content-type", media)
        .body(body.to_vec())
        .send()
        .map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    if status == 201 {
        let got = r
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if got != digest_of(body) {
            return Err(format!(
                "accepted with digest {got:?}, content is {}",
                digest_of(body)
            ));
        }
        return Ok(true);
    }
    let text = r.text().unwrap_or_default();
    if text.contains("MANIFEST_BLOB_UNKNOWN") {
        return Ok(false);
    }
    Err(format!("manifest PUT {status}: {text}"))
}

fn raw_client(base: String, id: u64, stop_at: Instant) -> Result<Outcome, String> {
    let client = Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (id + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut out = Outcome::default();
    // Manifests this client may still delete (not children of one of its indexes).
    let mut deletable: Vec<Accepted> = Vec::new();
    for round in 0..ROUNDS {
        if Instant::now() > stop_at {
            break;
        }
        let repo = format!("stress/r{}", rng.below(2));
        let other = if repo.ends_with('0') {
            "stress/r1"
        } else {
            "stress/r0"
        };
        let mut layers: Vec<Vec<u8>> = Vec::new();
        for _ in 0..(1 + rng.below(3)) {
            let k = rng.below(POOL);
            layers.push(layer_bytes(1000 + k, 512 + (k as usize) * 256));
        }
        // One layer of its own now and then: content only this image holds.
        if rng.below(2) == 0 {
            layers.push(layer_bytes(id * 10_000 + round as u64, 700));
        }
        let config = serde_json::json!({"client": id, "round": round, "os": "linux", "architecture": "amd64"})
            .to_string()
            .into_bytes();
        for b in layers.iter().chain(std::iter::once(&config)) {
            if let Err(e) = ensure_blob(&client, &base, &repo, other, b) {
                return Err(format!("client {id} round {round}: {e}"));
            }
            // Give the collector a chance to run between a check and the manifest.
            if rng.below(4) == 0 {
                std::thread::sleep(Duration::from_millis(rng.below(300)));
            }
        }
        let descs: Vec<serde_json::Value> = layers
            .iter()
            .map(|l| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest_of(l), "size": l.len()}))
            .collect();
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(&config), "size": config.len()},
            "layers": descs,
        })
        .to_string()
        .into_bytes();
        let tag = format!("c{id}-{round}");
        match put_manifest(&client, &base, &repo, &tag, OCI_MANIFEST, &manifest)? {
            true => {
                let mut blobs: Vec<String> = layers.iter().map(|l| digest_of(l)).collect();
                blobs.push(digest_of(&config));
                let a = Accepted {
                    repo: repo.clone(),
                    digest: digest_of(&manifest),
                    blobs,
                    children: Vec::new(),
                };
                out.accepted.push(a.clone());
                deletable.push(a);
            }
            false => out.refused_blob_unknown += 1,
        }
        // Now and then an index over this client's last two manifests in one repository.
        if round % 6 == 5 {
            let same: Vec<Accepted> = deletable
                .iter()
                .filter(|a| a.repo == repo)
                .rev()
                .take(2)
                .cloned()
                .collect();
            if same.len() == 2 {
                let m: Vec<serde_json::Value> = same
                    .iter()
                    .map(|a| {
                        serde_json::json!({"mediaType": OCI_MANIFEST, "digest": a.digest, "size": 1,
                        "platform": {"architecture": "amd64", "os": "linux"}})
                    })
                    .collect();
                // Sizes must be right for clients; fetch them.
                let mut m = m;
                for (desc, a) in m.iter_mut().zip(&same) {
                    let r = client
                        .get(format!(
                            "http://{base}/v2/{}/manifests/{}",
                            a.repo, a.digest
                        ))
                        .header("accept", OCI_MANIFEST)
                        .send()
                        .map_err(|e| e.to_string())?;
                    desc["size"] = serde_json::json!(r.bytes().map_err(|e| e.to_string())?.len());
                }
                let index =
                    serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": m})
                        .to_string()
                        .into_bytes();
                if put_manifest(
                    &client,
                    &base,
                    &repo,
                    &format!("idx{id}-{round}"),
                    OCI_INDEX,
                    &index,
                )? {
                    out.accepted.push(Accepted {
                        repo: repo.clone(),
                        digest: digest_of(&index),
                        blobs: Vec::new(),
                        children: same.iter().map(|a| a.digest.clone()).collect(),
                    });
                    deletable.retain(|a| !same.iter().any(|s| s.digest == a.digest));
                }
            }
        }
        // Delete one of its own earlier images half the time.
        if !deletable.is_empty() && rng.below(2) == 0 {
            let victim = deletable.remove(rng.below(deletable.len() as u64) as usize);
            let r = client
                .delete(format!(
                    "http://{base}/v2/{}/manifests/{}",
                    victim.repo, victim.digest
                ))
                .send()
                .map_err(|e| e.to_string())?;
            if r.status().as_u16() != 202 {
                return Err(format!("DELETE {} answered {}", victim.digest, r.status()));
            }
            out.deleted.insert((victim.repo, victim.digest));
        }
    }
    Ok(out)
}

/// Pushes gzip-layered images with skopeo, sharing layers among themselves, deleting some.
fn skopeo_client(base: String, work: &Path, stop_at: Instant) -> Result<Outcome, String> {
    let mut out = Outcome::default();
    let client = Client::new();
    for round in 0..6u64 {
        if Instant::now() > stop_at {
            break;
        }
        let dir = work.join(format!("img{round}"));
        let digest = oci_image(
            &dir,
            "v1",
            &[
                layer_bytes(50_000 + round % 3, 3000),
                layer_bytes(60_000 + round, 2000),
            ],
        );
        let dest = format!("docker://{base}/stress/skopeo:r{round}");
        let (pushed, err) = skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:v1", dir.display()),
            &dest,
        ]);
        if !pushed {
            if err.contains("MANIFEST_BLOB_UNKNOWN") || err.contains("blob unknown") {
                out.refused_blob_unknown += 1;
                continue;
            }
            return Err(format!("skopeo push: {err}"));
        }
        let manifest = std::fs::read(dir.join("blobs/sha256").join(&digest[7..]))
            .map_err(|e| e.to_string())?;
        let v: serde_json::Value = serde_json::from_slice(&manifest).map_err(|e| e.to_string())?;
        let mut blobs = vec![v["config"]["digest"]
            .as_str()
            .unwrap_or_default()
            .to_owned()];
        for l in v["layers"].as_array().into_iter().flatten() {
            blobs.push(l["digest"].as_str().unwrap_or_default().to_owned());
        }
        out.accepted.push(Accepted {
            repo: "stress/skopeo".into(),
            digest: digest.clone(),
            blobs,
            children: Vec::new(),
        });
        if round % 2 == 1 {
            let r = client
                .delete(format!("http://{base}/v2/stress/skopeo/manifests/{digest}"))
                .send()
                .map_err(|e| e.to_string())?;
            if r.status().as_u16() != 202 {
                return Err(format!("DELETE answered {}", r.status()));
            }
            out.deleted.insert(("stress/skopeo".into(), digest));
        }
    }
    Ok(out)
}

/// Digests reachable from the manifest revisions on disk, computed independently of the
/// collector: every revision link, its config, layers and index children.
fn reachable_on_disk(store: &Path) -> BTreeSet<String> {
    let repos = store.join("docker/registry/v2/repositories");
    let mut revisions = Vec::new();
    let mut stack = vec![repos];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_name() == "_manifests" {
                for r in std::fs::read_dir(p.join("revisions/sha256"))
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    if r.path().join("link").is_file() {
                        revisions.push(format!("sha256:{}", r.file_name().to_string_lossy()));
                    }
                }
            } else if p.is_dir() && !e.file_name().to_string_lossy().starts_with('_') {
                stack.push(p);
            }
        }
    }
    let mut seen = BTreeSet::new();
    while let Some(d) = revisions.pop() {
        if !seen.insert(d.clone()) {
            continue;
        }
        let hex = &d[7..];
        let Ok(bytes) = std::fs::read(store.join(format!(
            "docker/registry/v2/blobs/sha256/{}/{hex}/data",
            &hex[..2]
        ))) else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        if let Some(c) = v["config"]["digest"].as_str() {
            seen.insert(c.to_owned());
        }
        for l in v["layers"].as_array().into_iter().flatten() {
            if let Some(x) = l["digest"].as_str() {
                seen.insert(x.to_owned());
            }
        }
        for m in v["manifests"].as_array().into_iter().flatten() {
            if let Some(x) = m["digest"].as_str() {
                revisions.push(x.to_owned());
            }
        }
    }
    seen
}

/// Every accepted manifest not deleted is whole: manifest and blobs served, digests match.
/// Returns how many were checked.
fn check_accepted_images(base: &str, outcomes: &[Outcome]) -> usize {
    let client = Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let mut checked = 0;
    for o in outcomes {
        for a in &o.accepted {
            if o.deleted.contains(&(a.repo.clone(), a.digest.clone())) {
                continue;
            }
            let r = client
                .get(format!(
                    "http://{}/v2/{}/manifests/{}",
                    base, a.repo, a.digest
                ))
                .header("accept", format!("{OCI_MANIFEST}, {OCI_INDEX}"))
                .send()
                .expect("get manifest");
            assert_eq!(r.status().as_u16(), 200, "{}@{} lost", a.repo, a.digest);
            assert_eq!(digest_of(&r.bytes().expect("body")), a.digest);
            for b in &a.blobs {
                let r = client
                    .get(format!("http://{}/v2/{}/blobs/{b}", base, a.repo))
                    .send()
                    .expect("get blob");
                assert_eq!(
                    r.status().as_u16(),
                    200,
                    "{}@{}: blob {b} lost",
                    a.repo,
                    a.digest
                );
                assert_eq!(&digest_of(&r.bytes().expect("body")), b, "blob {b} corrupt");
            }
            for c in &a.children {
                let r = client
                    .get(format!("http://{}/v2/{}/manifests/{c}", base, a.repo))
                    .header("accept", OCI_MANIFEST)
                    .send()
                    .expect("get child");
                assert_eq!(
                    r.status().as_u16(),
                    200,
                    "{}@{}: child {c} lost",
                    a.repo,
                    a.digest
                );
            }
            checked += 1;
        }
    }
    checked
}

fn collect_online(store: &Path, extra: &[&str]) -> (bool, usize) {
    let out = ours(
        store,
        &[
            &["garbage-collect", "--online", "--grace", GRACE][..],
            extra,
        ]
        .concat(),
    );
    (out.ok, out.lines.len())
}

#[test]
fn pushes_and_deletes_racing_online_collection_never_lose_an_accepted_image() {
    if !have(&[SKOPEO]) {
        return;
    }
    let store = tempfile::tempdir().expect("tmp");
    let work = tempfile::tempdir().expect("tmp");
    let daemon = Server::builder()
        .storage(store.path())
        .args_from(&["--delete-enabled"])
        .start();
    let stop_at = Instant::now() + TIME_LIMIT;
    let done = Arc::new(AtomicBool::new(false));
    let cycles = Arc::new(AtomicUsize::new(0));
    let removed = Arc::new(AtomicUsize::new(0));

    let collector = {
        let (done, cycles, removed) = (done.clone(), cycles.clone(), removed.clone());
        let store = store.path().to_path_buf();
        std::thread::spawn(move || {
            for _ in 0..2000 {
                if done.load(Ordering::SeqCst) || Instant::now() > stop_at {
                    break;
                }
                let (ok, n) = collect_online(&store, &[]);
                assert!(ok, "online collection failed");
                cycles.fetch_add(1, Ordering::SeqCst);
                removed.fetch_add(n, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let mut clients = Vec::new();
    for id in 0..CLIENTS {
        let base = daemon.host();
        clients.push(std::thread::spawn(move || raw_client(base, id, stop_at)));
    }
    let skopeo_thread = {
        let base = daemon.host();
        let dir = work.path().to_path_buf();
        std::thread::spawn(move || skopeo_client(base, &dir, stop_at))
    };
    let mut outcomes = Vec::new();
    for c in clients {
        outcomes.push(c.join().expect("client thread").expect("client"));
    }
    outcomes.push(
        skopeo_thread
            .join()
            .expect("skopeo thread")
            .expect("skopeo client"),
    );
    done.store(true, Ordering::SeqCst);
    collector.join().expect("collector");
    assert!(
        Instant::now() < stop_at,
        "the stress run hit its time limit"
    );

    let cycles = cycles.load(Ordering::SeqCst);
    let removed = removed.load(Ordering::SeqCst);
    let accepted: usize = outcomes.iter().map(|o| o.accepted.len()).sum();
    let refused: usize = outcomes.iter().map(|o| o.refused_blob_unknown).sum();
    eprintln!("{cycles} collections removed {removed} blobs while {accepted} manifests were accepted and {refused} refused with MANIFEST_BLOB_UNKNOWN");
    assert!(cycles >= 3, "the collector ran only {cycles} times");
    assert!(
        accepted > (CLIENTS as usize) * ROUNDS / 2,
        "too few pushes succeeded: {accepted}"
    );

    assert!(check_accepted_images(&daemon.host(), &outcomes) > 0);

    // Quiet now: once the grace period has passed, one collection leaves only what is
    // reachable.
    std::thread::sleep(Duration::from_millis(500));
    let (ok, _) = collect_online(store.path(), &[]);
    assert!(ok);
    let reachable = reachable_on_disk(store.path());
    let stored: BTreeSet<String> = stored_blobs(store.path()).into_iter().collect();
    let unreachable: Vec<&String> = stored.difference(&reachable).collect();
    assert!(
        unreachable.is_empty(),
        "unreachable blobs older than the grace period remain: {unreachable:?}"
    );
    let missing: Vec<&String> = reachable.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "reachable blobs missing from the store: {missing:?}"
    );
}

/// Layer links whose blob is not in the store (`GET` answers 404 although the repository
/// lists the blob), found by walking the directory: `(repository dir, digest)`.
fn dangling_layer_links(store: &Path) -> Vec<String> {
    let v2 = store.join("docker/registry/v2");
    let mut out = Vec::new();
    let mut stack = vec![v2.join("repositories")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_name() == "_layers" {
                for alg in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                    let alg_name = alg.file_name().to_string_lossy().into_owned();
                    for l in std::fs::read_dir(alg.path())
                        .into_iter()
                        .flatten()
                        .flatten()
                    {
                        let hex = l.file_name().to_string_lossy().into_owned();
                        if !l.path().join("link").is_file() || hex.len() < 2 {
                            continue;
                        }
                        let data = v2.join(format!("blobs/{alg_name}/{}/{hex}/data", &hex[..2]));
                        if !data.is_file() {
                            out.push(format!("{}: {alg_name}:{hex}", dir.display()));
                        }
                    }
                }
            } else if p.is_dir() && !e.file_name().to_string_lossy().starts_with('_') {
                stack.push(p);
            }
        }
    }
    out
}

/// With no grace period at all, pushes racing the collector may be refused (a layer they
/// uploaded was collected before their manifest named it) but never leave a repository
/// linking a blob that is gone: every collection removes the links to what it swept, also
/// in repositories without a manifest yet, and a link written while it sweeps either brings
/// its blob back or is removed with it.
#[test]
fn online_collection_with_no_grace_leaves_no_dangling_layer_link() {
    const PUSH_FOR: Duration = Duration::from_secs(30);
    let store = tempfile::tempdir().expect("tmp");
    let daemon = Server::builder()
        .storage(store.path())
        .args_from(&["--delete-enabled"])
        .start();
    let stop_at = Instant::now() + PUSH_FOR;
    let done = Arc::new(AtomicBool::new(false));
    let cycles = Arc::new(AtomicUsize::new(0));
    let collector = {
        let (done, cycles) = (done.clone(), cycles.clone());
        let store = store.path().to_path_buf();
        std::thread::spawn(move || {
            for _ in 0..2000 {
                if done.load(Ordering::SeqCst) || Instant::now() > stop_at {
                    break;
                }
                let out = ours(&store, &["garbage-collect", "--online", "--grace", "0s"]);
                assert!(out.ok, "online collection failed: {}", out.stderr);
                cycles.fetch_add(1, Ordering::SeqCst);
                // Room for pushes to finish between collections now and then.
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let base = daemon.host();
            std::thread::spawn(move || raw_client(base, id, stop_at))
        })
        .collect();
    let outcomes: Vec<Outcome> = clients
        .into_iter()
        .map(|c| c.join().expect("client thread").expect("client"))
        .collect();
    let accepted: usize = outcomes.iter().map(|o| o.accepted.len()).sum();
    let refused: usize = outcomes.iter().map(|o| o.refused_blob_unknown).sum();
    done.store(true, Ordering::SeqCst);
    collector.join().expect("collector");
    let cycles = cycles.load(Ordering::SeqCst);
    let dangling = dangling_layer_links(store.path());
    eprintln!(
        "grace 0s: {cycles} collections, {accepted} manifests accepted, {refused} refused with \
         MANIFEST_BLOB_UNKNOWN, {} dangling layer links",
        dangling.len()
    );
    assert!(cycles >= 3, "the collector ran only {cycles} times");
    assert!(dangling.is_empty(), "dangling layer links: {dangling:#?}");

    // What was accepted is whole, and the store is sound.
    check_accepted_images(&daemon.host(), &outcomes);
    let out = ours(store.path(), &["fsck"]);
    assert!(
        out.ok && out.lines.is_empty(),
        "fsck: {:?}{}",
        out.lines,
        out.stderr
    );
}
