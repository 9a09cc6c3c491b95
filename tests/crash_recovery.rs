//! Recovery from a crash: the daemon is killed with SIGKILL while several clients push
//! (monolithic and chunked blob uploads, cross-repository mounts, manifests and tags, all
//! raw HTTP), several times over on one data directory. After a restart `fsck` finds
//! nothing wrong and nothing left behind (no temporaries, no blob directory without data),
//! and every blob and manifest a client saw acknowledged is served with its digest. Also:
//! `fsck` tells leftovers of interrupted writes from damage, and `--repair` removes them.

mod common;

use common::rng::Rng;
use common::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CYCLES: usize = 8;
const PUSHERS: u64 = 4;
/// The whole test stops pushing after this, however many cycles are left.
const TIME_LIMIT: Duration = Duration::from_secs(150);

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// What clients saw acknowledged: (repository, blob digest) and (repository, tag, digest).
#[derive(Default)]
struct Acknowledged {
    blobs: Vec<(String, String)>,
    manifests: Vec<(String, String, String)>,
}

fn bytes(rng: &mut Rng, len: usize) -> Vec<u8> {
    let seed = rng.next();
    (0..len)
        .map(|i| (seed.wrapping_mul(i as u64 + 1) >> 13) as u8)
        .collect()
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// Uploads one blob: monolithic, in PATCH chunks, or mounted from `from`. `Ok(true)` when
/// the registry acknowledged it; errors are the crash (connection refused or reset).
fn push_blob_somehow(
    c: &reqwest::blocking::Client,
    base: &str,
    repo: &str,
    from: &str,
    data: &[u8],
    rng: &mut Rng,
) -> Result<bool, reqwest::Error> {
    let d = digest_of(data);
    match rng.below(3) {
        0 => {
            let r = c
                .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
                .body(data.to_vec())
                .send()?;
            Ok(r.status() == 201)
        }
        kind => {
            let url = if kind == 2 {
                format!("{base}/v2/{repo}/blobs/uploads/?mount={d}&from={from}")
            } else {
                format!("{base}/v2/{repo}/blobs/uploads/")
            };
            let r = c.post(url).send()?;
            if r.status() == 201 {
                return Ok(true);
            }
            let Some(loc) = r.headers().get("location").and_then(|v| v.to_str().ok()) else {
                return Ok(false);
            };
            let mut loc = absolute(base, loc);
            let half = data.len() / 2;
            let r = c
                .patch(&loc)
                .header("content-range", format!("0-{}", half.max(1) - 1))
                .body(data[..half.max(1)].to_vec())
                .send()?;
            if r.status() != 202 {
                return Ok(false);
            }
            if let Some(l) = r.headers().get("location").and_then(|v| v.to_str().ok()) {
                loc = absolute(base, l);
            }
            let sep = if loc.contains('?') { '&' } else { '?' };
            let r = c
                .put(format!("{loc}{sep}digest={d}"))
                .body(data[half.max(1)..].to_vec())
                .send()?;
            Ok(r.status() == 201)
        }
    }
}

/// Pushes images until `stop`, recording what the registry acknowledged.
fn pusher(
    base: String,
    id: u64,
    cycle: usize,
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Acknowledged>>,
) {
    let c = http();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((id + 1) * 1_000_003 + cycle as u64));
    let mut round = 0;
    while !stop.load(Ordering::SeqCst) && round < 10_000 {
        round += 1;
        let repo = format!("crash/p{id}/r{}", rng.below(3));
        let from = format!("crash/p{}/r0", (id + 1) % PUSHERS);
        let mut layers = Vec::new();
        for _ in 0..(1 + rng.below(3)) {
            let len = [300, 4_000, 70_000, 600_000][rng.below(4) as usize];
            layers.push(bytes(&mut rng, len));
        }
        let config =
            format!(r#"{{"architecture":"amd64","os":"linux","p":{id},"c":{cycle},"r":{round}}}"#)
                .into_bytes();
        let mut ok = true;
        for b in layers.iter().chain(std::iter::once(&config)) {
            match push_blob_somehow(&c, &base, &repo, &from, b, &mut rng) {
                Ok(true) => acks
                    .lock()
                    .expect("acks")
                    .blobs
                    .push((repo.clone(), digest_of(b))),
                Ok(false) | Err(_) => {
                    ok = false;
                    break;
                }
            }
        }
        if !ok {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            continue;
        }
        let descs: Vec<(String, usize)> = layers.iter().map(|l| (digest_of(l), l.len())).collect();
        let descs: Vec<(&str, usize)> = descs.iter().map(|(d, n)| (d.as_str(), *n)).collect();
        let manifest = image_manifest((&digest_of(&config), config.len()), &descs);
        let tag = format!("c{cycle}-r{round}");
        match c
            .put(format!("{base}/v2/{repo}/manifests/{tag}"))
            .header("content-type", OCI_MANIFEST)
            .body(manifest.clone())
            .send()
        {
            Ok(r) if r.status() == 201 => acks.lock().expect("acks").manifests.push((
                repo,
                tag,
                digest_of(manifest.as_bytes()),
            )),
            _ => {}
        }
    }
}

/// What an interrupted write can leave on disk, found by walking the directory ourselves.
#[derive(Debug, Default)]
struct OnDisk {
    temporaries: Vec<PathBuf>,
    blob_dirs_without_data: Vec<PathBuf>,
}

fn on_disk(store: &Path) -> OnDisk {
    let mut out = OnDisk::default();
    let mut stack = vec![store.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                stack.push(p);
            } else if name.starts_with('.') && name.contains(".tmp-") {
                out.temporaries.push(p);
            }
        }
    }
    let v2 = store.join("docker/registry/v2/blobs");
    for alg in std::fs::read_dir(&v2).into_iter().flatten().flatten() {
        for prefix in std::fs::read_dir(alg.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            for blob in std::fs::read_dir(prefix.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if !blob.path().join("data").is_file() {
                    out.blob_dirs_without_data.push(blob.path());
                }
            }
        }
    }
    out
}

/// The manifest-PUT journals in the store's root (one per daemon that has not stopped
/// cleanly, or runs).
fn journals_in(store: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(store)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(".docker-registry-journal-"))
        })
        .collect()
}

/// Whether a journal holds records (writes acknowledged but not yet synced in place).
fn journal_records_left(store: &Path) -> bool {
    journals_in(store)
        .iter()
        .any(|j| std::fs::metadata(j).is_ok_and(|m| m.len() > 0))
}

/// Waits (bounded) until the daemon says it has cleared the leftovers, which it does in
/// the background while it serves.
fn wait_for_recovery(s: &Server) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !s
        .log_text()
        .contains("leftovers of interrupted writes removed")
    {
        assert!(Instant::now() < deadline, "no recovery: {}", s.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn fsck(store: &Path, extra: &[&str]) -> Ran {
    ours(store, &[&["fsck"][..], extra].concat())
}

#[test]
fn kill_9_during_concurrent_pushes_then_restart_leaves_a_clean_store_and_every_acknowledged_push() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("data");
    let acks = Arc::new(Mutex::new(Acknowledged::default()));
    let started = Instant::now();
    let mut rng = Rng(0x5eed_cafe);
    let (mut temporaries, mut without_data, mut journals) = (0, 0, 0);
    let mut cycles = 0;
    for cycle in 0..CYCLES {
        if started.elapsed() > TIME_LIMIT {
            break;
        }
        let mut s = Server::builder().storage(&store).start();
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..PUSHERS)
            .map(|id| {
                let (base, stop, acks) = (s.url(""), stop.clone(), acks.clone());
                std::thread::spawn(move || pusher(base, id, cycle, stop, acks))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(400 + rng.below(1200)));
        // SIGKILL: whatever was being written stays as it was.
        assert!(s.signal_and_wait(9).is_some(), "the daemon did not die");
        stop.store(true, Ordering::SeqCst);
        for t in threads {
            t.join().expect("pusher");
        }
        // What this kill left (the restart clears what the ones before left).
        let left = on_disk(&store);
        temporaries += left.temporaries.len();
        without_data += left.blob_dirs_without_data.len();
        journals += usize::from(journal_records_left(&store));
        cycles += 1;
    }
    let acks = acks.lock().expect("acks");
    eprintln!(
        "{cycles} kill cycles: {} blobs and {} manifests acknowledged; left on disk by the kills: \
         {temporaries} temporaries, {without_data} blob directories without data, \
         {journals} journals with records",
        acks.blobs.len(),
        acks.manifests.len()
    );
    assert!(cycles >= 3, "only {cycles} kill cycles ran");
    assert!(!acks.manifests.is_empty(), "no push was acknowledged");

    // The restart clears what the kills left.
    let mut s = Server::builder().storage(&store).start();
    wait_for_recovery(&s);
    assert!(
        !journal_records_left(&store),
        "the killed daemons' journals were not replayed"
    );
    let left = on_disk(&store);
    assert!(
        left.temporaries.is_empty() && left.blob_dirs_without_data.is_empty(),
        "left after the restart: {left:?}"
    );
    let c = http();
    let base = s.url("");
    for (repo, d) in &acks.blobs {
        let r = c
            .get(format!("{base}/v2/{repo}/blobs/{d}"))
            .send()
            .expect("get blob");
        assert_eq!(r.status(), 200, "acknowledged blob {repo}@{d} lost");
        assert_eq!(&digest_of(&r.bytes().expect("body")), d, "blob {d} corrupt");
    }
    for (repo, tag, d) in &acks.manifests {
        for reference in [tag, d] {
            let r = c
                .get(format!("{base}/v2/{repo}/manifests/{reference}"))
                .header("accept", OCI_MANIFEST)
                .send()
                .expect("get manifest");
            assert_eq!(
                r.status(),
                200,
                "acknowledged manifest {repo}:{reference} lost"
            );
            assert_eq!(
                &digest_of(&r.bytes().expect("body")),
                d,
                "{repo}:{reference}"
            );
        }
    }
    assert!(s.signal_and_wait(15).is_some());
    assert!(
        journals_in(&store).is_empty(),
        "a clean stop leaves no journal: {:?}",
        journals_in(&store)
    );

    let out = fsck(&store, &[]);
    assert!(out.ok, "{out}");
    assert!(out.lines.is_empty(), "fsck found something: {out}");
}

/// Plants what a killed writer leaves: a temporary beside a layer link, a tag directory
/// holding only a temporary, a blob directory without data. Returns how fsck names them.
fn plant_leftovers(store: &Path, repo: &str, layer: &str) -> Vec<String> {
    let v2 = store.join("docker/registry/v2");
    let id = "0123456789abcdef0123456789abcdef";
    let layer_tmp = format!(
        "docker/registry/v2/repositories/{repo}/_layers/sha256/{}/.link.tmp-{id}",
        &layer[7..]
    );
    std::fs::write(store.join(&layer_tmp), layer).expect("temporary link");
    let tag_dir = format!("docker/registry/v2/repositories/{repo}/_manifests/tags/half");
    std::fs::create_dir_all(store.join(&tag_dir).join("current")).expect("tag dir");
    std::fs::write(
        store.join(&tag_dir).join(format!("current/.link.tmp-{id}")),
        "sha256:",
    )
    .expect("temporary tag link");
    let never = digest_of(b"never arrived");
    std::fs::create_dir_all(v2.join(format!("blobs/sha256/{}/{}", &never[7..9], &never[7..])))
        .expect("blob dir");
    vec![
        format!("leftover: blob {never}: directory without data"),
        format!("leftover: directory {tag_dir}/ holding only leftovers"),
        format!("leftover: temporary {layer_tmp}"),
    ]
}

#[test]
fn fsck_lists_leftovers_apart_from_damage_and_repair_or_a_restart_removes_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("data");
    let mut s = Server::builder().storage(&store).start();
    let c = client();
    let image = push_image(&c, &s, "left/over", "v1", "planted");
    let layer = digest_of(b"layer for planted");
    assert!(s.signal_and_wait(15).is_some());

    let expected = plant_leftovers(&store, "left/over", &layer);
    let out = fsck(&store, &[]);
    assert!(out.ok, "leftovers are not errors: {}", out);
    assert_eq!(out.sorted_lines(), expected, "{}", out);
    assert!(out
        .to_string()
        .contains("3 leftovers of interrupted writes (not errors)"));

    // Damage next to them still fails the check, and is told apart.
    let gone = store.join(format!(
        "docker/registry/v2/repositories/left/over/_layers/sha256/{}/link",
        "f".repeat(64)
    ));
    std::fs::create_dir_all(gone.parent().expect("dir")).expect("mkdir");
    std::fs::write(&gone, format!("sha256:{}", "f".repeat(64))).expect("dangling link");
    let out = fsck(&store, &[]);
    assert_eq!(out.code, Some(1), "{}", out);
    let lines = out.sorted_lines();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[0].starts_with("dangling link"), "{lines:?}");

    let out = fsck(&store, &["--repair"]);
    assert!(out.ok, "{}", out);
    assert!(out.sorted_lines().iter().all(|l| l.ends_with("(removed)")));
    let out = fsck(&store, &[]);
    assert!(out.ok, "{}", out);
    assert_eq!(out.sorted_lines(), Vec::<String>::new(), "{}", out);

    // The daemon's start clears them too, and what was stored is intact.
    plant_leftovers(&store, "left/over", &layer);
    let mut s = Server::builder().storage(&store).start();
    wait_for_recovery(&s);
    let r = c
        .get(s.url(&format!("/v2/left/over/manifests/{image}")))
        .header("accept", OCI_MANIFEST)
        .send()
        .expect("get");
    assert_eq!(digest_of(&r.bytes().expect("body")), image);
    let tags: serde_json::Value = c
        .get(s.url("/v2/left/over/tags/list"))
        .send()
        .expect("tags")
        .json()
        .expect("json");
    assert_eq!(
        tags["tags"],
        serde_json::json!(["v1"]),
        "no half-written tag"
    );
    assert!(s.signal_and_wait(15).is_some());
    let left = on_disk(&store);
    assert!(
        left.temporaries.is_empty() && left.blob_dirs_without_data.is_empty(),
        "{left:?}"
    );
    let out = fsck(&store, &[]);
    assert_eq!(out.sorted_lines(), Vec::<String>::new(), "{}", out);
}
