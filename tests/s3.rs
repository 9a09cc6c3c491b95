//! S3 storage end to end: the real binary on a real S3 server (moto), configured the ways
//! users write it (a registry:2 `storage.s3` file, the legacy S3 flavor with its `AWS_*`
//! variables), skopeo pushing and pulling with identical digests, distribution 2.8.2 on the
//! same bucket reading what we wrote and we reading what it wrote, uploads surviving a
//! restart, S3 going away answered with 503, and blob GETs redirected to presigned URLs
//! (or served by us when redirects are disabled).

#[path = "../src/storage/s3/moto.rs"]
mod moto;

mod common;
#[path = "s3/instances.rs"]
mod instances;

use common::registry2::Distribution;
use common::*;
use moto::Moto;
use std::path::Path;

const BUCKET: &str = "registry";
/// Parts as small as S3 allows, so the test images' layers and a few megabytes exercise the
/// multipart paths.
const CHUNK: usize = 5 << 20;

/// The test images a round trip pushes: (layout, reference, repository:tag, all platforms).
const IMAGES: &[(&str, &str, &str, bool)] = &[
    ("a", "latest", "library/a:latest", false),
    ("multi", "multi", "library/multi:latest", true),
    ("c", "old", "team/app/c:old", false),
];

/// A moto server with the test bucket; `None` (the test is skipped, having said why)
/// without moto.
fn moto() -> Option<Moto> {
    let m = Moto::start()?;
    m.create_bucket(BUCKET);
    Some(m)
}

/// `storage.s3` for the bucket, as registry:2 and we both read it.
fn s3_yaml(moto: &Moto, root: &str) -> String {
    format!(
        "{{s3: {{regionendpoint: '{}', forcepathstyle: true, secure: false, bucket: {BUCKET}, region: us-east-1, accesskey: test, secretkey: test, rootdirectory: '{root}', chunksize: {CHUNK}}}, delete: {{enabled: true}}, maintenance: {{uploadpurging: {{enabled: false}}}}}}",
        moto.endpoint()
    )
}

/// Our registry on the bucket, from a registry:2 file.
fn ours(moto: &Moto, root: &str, dir: &Path) -> Server {
    ours_builder(moto, root, dir).start()
}

/// [`ours`], for a test to add to before it starts.
fn ours_builder(moto: &Moto, root: &str, dir: &Path) -> ServerBuilder {
    let file = dir.join("registry.yml");
    std::fs::write(
        &file,
        format!("version: 0.1\nstorage: {}\n", s3_yaml(moto, root)),
    )
    .expect("write config");
    Server::builder()
        .configured_storage(dir)
        .arg("--config")
        .arg(file.display().to_string())
}

/// One of our commands (`fsck`, `garbage-collect --online`) to its end, on the bucket of
/// the configuration [`ours`] wrote in `dir`, with that daemon's admin socket.
fn command(dir: &Path, args: &[&str]) -> Ran {
    let mut cmd = std::process::Command::new(BIN);
    without_machine_settings(&mut cmd);
    cmd.args(["--sysconfig", "/dev/null", "--config"])
        .arg(dir.join("registry.yml"))
        .args(args)
        .env("AWS_CA_BUNDLE", "")
        .env(
            "REGISTRY_STORAGE_MAINTENANCE_GC_SOCKET",
            dir.join("admin.sock").display().to_string(),
        )
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run docker-registry")
        .into()
}

/// The unfinished multipart uploads in the bucket whose keys start with `prefix`, as moto
/// lists them (it checks no signature): their keys.
fn open_uploads(moto: &Moto, prefix: &str) -> Vec<String> {
    listed_keys(moto, "uploads", prefix)
}

/// The keys of the objects in the bucket that start with `prefix`.
fn objects(moto: &Moto, prefix: &str) -> Vec<String> {
    listed_keys(moto, "list-type=2", prefix)
}

/// The keys a listing (`uploads`, `list-type=2`) of the bucket names.
fn listed_keys(moto: &Moto, listing: &str, prefix: &str) -> Vec<String> {
    let xml = reqwest::blocking::get(format!(
        "{}/{BUCKET}?{listing}&prefix={prefix}",
        moto.endpoint()
    ))
    .and_then(|r| r.text())
    .expect("list uploads");
    xml.split("<Key>")
        .skip(1)
        .filter_map(|k| k.split("</Key>").next())
        .map(str::to_owned)
        .collect()
}

/// Pushes layout `dir`'s `reference` to `host/repo` and checks what the registry serves: the
/// manifest's digest, and every blob of a pull hashing to its name.
fn round_trip(host: &str, layouts: &Path, dir: &str, reference: &str, repo: &str, all: bool) {
    skopeo_push_layout(host, layouts, dir, reference, repo, all);
    pull_and_check(
        host,
        repo,
        &layout_digest(&layouts.join(dir), reference),
        all,
    );
}

/// [`round_trip`] for each (layout, reference, repository:tag, all platforms).
fn round_trips(host: &str, layouts: &Path, images: &[(&str, &str, &str, bool)]) {
    for (dir, reference, repo, all) in images {
        round_trip(host, layouts, dir, reference, repo, *all);
    }
}

/// Pulls `host/repo` into a directory: the manifest has `expected` as its digest and every
/// blob hashes to its name.
fn pull_and_check(host: &str, repo: &str, expected: &str, all: bool) {
    let raw = skopeo_ok(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{host}/{repo}"),
    ]);
    assert_eq!(digest_of(raw.as_bytes()), expected, "{repo} on {host}");
    let out = tempfile::tempdir().expect("tempdir");
    let dir_ref = format!("dir:{}", out.path().display());
    let src = format!("docker://{host}/{repo}");
    let mut args = vec!["copy", "--src-tls-verify=false"];
    if all {
        args.push("--all");
    }
    args.extend([src.as_str(), dir_ref.as_str()]);
    skopeo_ok(&args);
    let manifest = std::fs::read(out.path().join("manifest.json")).expect("manifest.json");
    assert_eq!(digest_of(&manifest), expected, "{repo} pulled from {host}");
    assert!(
        check_pulled_blobs(out.path()) > 0,
        "{repo}: no blobs pulled"
    );
}

fn catalog(c: &reqwest::blocking::Client, base: &str) -> Vec<String> {
    let v: serde_json::Value = c
        .get(format!("{base}/v2/_catalog"))
        .send()
        .expect("catalog")
        .json()
        .expect("json");
    let mut names: Vec<String> = v["repositories"]
        .as_array()
        .expect("repositories")
        .iter()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

#[test]
fn a_registry_2_s3_file_serves_skopeo_round_trips() {
    if !have(&[SKOPEO]) {
        return;
    }
    let Some(moto) = moto() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let s = ours(&moto, "/srv/registry", dir.path());
    let layouts = oci_layouts();
    round_trips(&s.host(), layouts.path(), IMAGES);
    let c = client();
    assert_eq!(
        catalog(&c, &s.url("")),
        ["library/a", "library/multi", "team/app/c"]
    );
    // Deleting a tag goes through the bucket too.
    c.delete(s.url("/v2/team/app/c/manifests/old"))
        .expect_status(202);
    c.get(s.url("/v2/team/app/c/manifests/old"))
        .expect_status(404);
}

/// The legacy S3 flavor exactly as the old registry's users wrote it (config_sample.yml):
/// the bucket, endpoint, keys and prefix all from `AWS_*` and `STORAGE_PATH`.
#[test]
fn the_legacy_s3_flavor_serves_skopeo_round_trips() {
    if !have(&[SKOPEO]) {
        return;
    }
    let Some(moto) = moto() else { return };
    let sockets = tempfile::tempdir().expect("tempdir");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/legacy-config/config_sample.yml");
    let s = Server::builder()
        .configured_storage(sockets.path())
        .arg("--config")
        .arg(sample.display().to_string())
        .env("SETTINGS_FLAVOR", "s3")
        .env("AWS_BUCKET", BUCKET)
        .env("AWS_HOST", "127.0.0.1")
        .env("AWS_PORT", moto.port.to_string())
        .env("AWS_SECURE", "false")
        .env("AWS_KEY", "AKIDEXAMPLE")
        .env("AWS_SECRET", "secret")
        .env("STORAGE_PATH", "/legacy")
        .start();
    let layouts = oci_layouts();
    round_trips(
        &s.host(),
        layouts.path(),
        &[
            ("b", "1.0", "library/b:1.0", false),
            ("multi", "multi", "library/multi:latest", true),
        ],
    );
    // What it wrote is under the prefix, in registry:2's layout: a second registry reading
    // `legacy/` as a registry:2 file's rootdirectory sees the same images.
    let dir = tempfile::tempdir().expect("tempdir");
    let other = ours(&moto, "legacy", dir.path());
    assert_eq!(
        catalog(&client(), &other.url("")),
        ["library/b", "library/multi"]
    );
}

/// Distribution 2.8.2's s3 driver and ours take turns on one bucket: each serves what the
/// other wrote, with the same digests.
#[test]
fn distribution_and_we_read_each_others_bucket() {
    if !have(&[SKOPEO, DISTRIBUTION]) {
        return;
    }
    let Some(moto) = moto() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let s = ours(&moto, "/shared", dir.path());
    let d = Distribution::start_with(&s3_yaml(&moto, "/shared"));
    let layouts = oci_layouts();
    // We write, distribution reads.
    round_trips(
        &s.host(),
        layouts.path(),
        &[
            ("a", "latest", "ours/a:latest", false),
            ("multi", "multi", "ours/multi:latest", true),
        ],
    );
    let a = layout_digest(&layouts.path().join("a"), "latest");
    let multi = layout_digest(&layouts.path().join("multi"), "multi");
    pull_and_check(&d.host(), "ours/a:latest", &a, false);
    pull_and_check(&d.host(), "ours/multi:latest", &multi, true);
    // Distribution writes, we read.
    round_trips(
        &d.host(),
        layouts.path(),
        &[
            ("b", "1.0", "theirs/b:1.0", false),
            ("c", "old", "theirs/c:old", false),
        ],
    );
    let b = layout_digest(&layouts.path().join("b"), "1.0");
    let c_digest = layout_digest(&layouts.path().join("c"), "old");
    pull_and_check(&s.host(), "theirs/b:1.0", &b, false);
    pull_and_check(&s.host(), "theirs/c:old", &c_digest, false);
    let c = client();
    let all = ["ours/a", "ours/multi", "theirs/b", "theirs/c"];
    assert_eq!(catalog(&c, &format!("http://{}", d.host())), all);
    // Our catalog is cached: repositories another writer made appear within its lifetime
    // (10 s) plus one walk of the bucket.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let ours = catalog(&c, &s.url(""));
        if ours == all {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "catalog still {ours:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// An upload sent in chunks, with the registry restarted before each but the first: the
/// session lives in the bucket (an object, then an open multipart upload), the digest state
/// is rebuilt from it each time, and the blob lands whole.
#[test]
fn a_chunked_upload_survives_restarts() {
    let Some(moto) = moto() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let c = client();
    let blob: Vec<u8> = (0..3 * CHUNK + 12345)
        .map(|i| (i.wrapping_mul(2654435761) >> 7) as u8)
        .collect();
    let digest = digest_of(&blob);
    let s = ours(&moto, "", dir.path());
    let r = c.post(s.url("/v2/big/blobs/uploads/")).expect_status(202);
    let mut location = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let cuts = [0, CHUNK + 100, 2 * CHUNK + 7, blob.len()];
    let mut s = Some(s);
    for (i, w) in cuts.windows(2).enumerate() {
        if i > 0 {
            // A new process: nothing of the session is in memory any more.
            drop(s.take());
            s = Some(ours(&moto, "", dir.path()));
        }
        let server = s.as_ref().expect("server");
        let r = c
            .patch(absolute(&server.url(""), &location))
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{}-{}", w[0], w[1] - 1))
            .body(blob[w[0]..w[1]].to_vec())
            .send()
            .expect("patch");
        let status = r.status();
        location = match r.headers().get("location") {
            Some(l) => l.to_str().expect("location").to_owned(),
            None => panic!("chunk {i}: {status} {:?}\n{}", r.text(), server.log_text()),
        };
        assert_eq!(status, 202, "chunk {i}");
    }
    let server = s.as_ref().expect("server");
    let url = absolute(&server.url(""), &location);
    let sep = if url.contains('?') { '&' } else { '?' };
    c.put(format!("{url}{sep}digest={digest}"))
        .expect_status(201);
    let got = get_blob(&c, server, "big", &digest);
    assert_eq!(got.len(), blob.len());
    assert_eq!(digest_of(&got), digest);
}

/// A crash (SIGKILL) while a blob past `multipartcopythresholdsize` is copied into place
/// part by part, at its final key: no reader ever takes the copy's unfinished upload for
/// the blob. Before a restart fsck sees a leftover upload, not a damaged blob; after it the
/// recovery has aborted the upload, the blob is absent (or whole, had the copy finished),
/// the client's retry succeeds and fsck finds nothing.
#[test]
fn a_crash_while_a_blob_is_copied_into_place_leaves_it_absent_or_whole() {
    let Some(moto) = moto() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    // Parts of 5 MiB copied one at a time: a 60 MiB blob takes twelve copies.
    let start = || {
        ours_builder(&moto, "", dir.path())
            .env(
                "REGISTRY_STORAGE_S3_MULTIPARTCOPYTHRESHOLDSIZE",
                CHUNK.to_string(),
            )
            .env(
                "REGISTRY_STORAGE_S3_MULTIPARTCOPYCHUNKSIZE",
                CHUNK.to_string(),
            )
            .env("REGISTRY_STORAGE_S3_MULTIPARTCOPYMAXCONCURRENCY", "1")
            .start()
    };
    let blob: Vec<u8> = (0..12 * CHUNK)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    let digest = digest_of(&blob);
    let blobs = "docker/registry/v2/blobs/";
    let mut s = start();
    let push = {
        let (url, blob, digest) = (s.url(""), blob.clone(), digest.clone());
        std::thread::spawn(move || {
            client()
                .post(format!("{url}/v2/crash/blobs/uploads/?digest={digest}"))
                .body(blob)
                .send()
                .map(|r| r.status().as_u16())
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while open_uploads(&moto, blobs).is_empty() {
        assert!(
            std::time::Instant::now() < deadline && !push.is_finished(),
            "the copy into place was never seen under way: {:?}",
            push.is_finished().then(|| push.join())
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(s.signal_and_wait(9).is_some(), "the daemon did not die");
    assert!(
        push.join().expect("pusher").is_err(),
        "answered despite the kill"
    );
    let cut_short = !open_uploads(&moto, blobs).is_empty();
    eprintln!("killed mid-copy; copy's upload still open: {cut_short}");

    let before = command(dir.path(), &["fsck"]);
    assert!(before.ok, "{before}");
    assert!(
        before.lines.iter().all(|l| l.starts_with(&format!(
            "leftover: unfinished multipart upload at {blobs}sha256/"
        ))),
        "{before}"
    );
    assert_eq!(before.lines.len(), usize::from(cut_short), "{before}");

    s = start();
    s.wait_for_log("leftovers of interrupted writes removed");
    assert!(open_uploads(&moto, blobs).is_empty(), "{}", s.log_text());
    let c = client();
    let head = c
        .head(s.url(&format!("/v2/crash/blobs/{digest}")))
        .send()
        .expect("head");
    match head.status().as_u16() {
        404 => assert!(cut_short, "the copy finished, yet the blob is missing"),
        200 => assert_eq!(digest_of(&get_blob(&c, &s, "crash", &digest)), digest),
        other => panic!("HEAD after the crash: {other}"),
    }
    // The client pushes the blob again.
    assert_eq!(push_blob(&c, &s, "crash", &blob), digest);
    assert_eq!(digest_of(&get_blob(&c, &s, "crash", &digest)), digest);
    let after = command(dir.path(), &["fsck"]);
    assert!(after.ok && after.lines.is_empty(), "{after}");
}

/// S3 gone mid-service: requests answer 503 UNAVAILABLE with Retry-After after bounded
/// retries, not an internal error and not a hang.
#[test]
fn s3_going_away_answers_503() {
    let Some(moto) = moto() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let s = ours(&moto, "", dir.path());
    let c = client();
    push_image(&c, &s, "app", "v1", "before");
    drop(moto);
    let started = std::time::Instant::now();
    let r = c
        .get(s.url(&format!("/v2/app/blobs/{}", digest_of(b"never pushed"))))
        .expect_status(503);
    assert_eq!(
        r.headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap_or("")),
        Some("10")
    );
    assert_eq!(error_code(&r.text().expect("body")), "UNAVAILABLE");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    s.wait_for_log("unavailable");
}

/// GETs a blob as a client does: following the registry's 307 to the storage, if any. The
/// redirect carries the blob's digest.
fn get_blob(c: &reqwest::blocking::Client, s: &Server, repo: &str, digest: &str) -> Vec<u8> {
    let mut r = c
        .get(s.url(&format!("/v2/{repo}/blobs/{digest}")))
        .send()
        .expect("get blob");
    if r.status() == 307 {
        assert_eq!(r.headers()["docker-content-digest"], digest);
        let to = r.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned();
        r = c.get(to).send().expect("follow the redirect");
    }
    assert_eq!(r.status(), 200);
    r.bytes().expect("blob body").to_vec()
}

/// registry:2's default on S3: a blob GET answers 307 to a URL on the S3 endpoint, presigned
/// (SigV4 query parameters, 20 minutes) so that following it without credentials yields
/// the exact bytes (moto does not check signatures, so their validity is AWS's to test); HEAD and unknown blobs
/// are still answered by us, and a repository that does not hold the blob gets no URL.
#[test]
fn blob_gets_redirect_to_presigned_s3_urls() {
    let Some(moto) = moto() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let c = client();
    let s = ours(&moto, "redirect", dir.path());
    let blob: Vec<u8> = (0..CHUNK + 4321).map(|i| (i * 31 % 251) as u8).collect();
    let digest = push_blob(&c, &s, "app", &blob);

    let r = c
        .get(s.url(&format!("/v2/app/blobs/{digest}")))
        .send()
        .expect("get");
    assert_eq!(r.status(), 307, "{}", s.log_text());
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    let to = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert!(
        to.starts_with(&format!(
            "{}/{BUCKET}/redirect/docker/registry/v2/blobs/sha256/",
            moto.endpoint()
        )),
        "{to}"
    );
    assert!(
        to.contains("X-Amz-Signature=") && to.contains("X-Amz-Expires=1200"),
        "{to}"
    );
    let got = reqwest::blocking::get(&to)
        .expect("follow")
        .bytes()
        .expect("body");
    assert_eq!(got.len(), blob.len());
    assert_eq!(digest_of(&got), digest);

    head_blob(&c, &s, "app", &digest, blob.len());
    for repo in ["other", "app"] {
        let missing = if repo == "app" {
            digest_of(b"never pushed")
        } else {
            digest.clone()
        };
        let r = c
            .get(s.url(&format!("/v2/{repo}/blobs/{missing}")))
            .send()
            .expect("get unknown");
        assert_eq!(r.status(), 404, "{repo}");
        assert!(r.headers().get("location").is_none());
    }

    // skopeo follows the redirects for every layer of a pull.
    let layouts = oci_layouts();
    round_trip(
        &s.host(),
        layouts.path(),
        "a",
        "latest",
        "redirected:v1",
        false,
    );
}

/// With storage.redirect.disable the registry serves the bytes itself; the filesystem
/// storage has no URL to give and always does.
#[test]
fn blob_gets_are_served_when_redirects_are_off_or_impossible() {
    let Some(moto) = moto() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let c = client();
    let blob = b"served by the registry".to_vec();
    let s3 = ours_builder(&moto, "direct", dir.path())
        .env("REGISTRY_STORAGE_REDIRECT_DISABLE", "true")
        .start();
    let fs_root = tempfile::tempdir().expect("tempdir");
    let fs = Server::builder().storage(fs_root.path()).start();
    for s in [&s3, &fs] {
        let digest = push_blob(&c, s, "app", &blob);
        let r = c
            .get(s.url(&format!("/v2/app/blobs/{digest}")))
            .expect_status(200);
        assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
        assert_eq!(r.bytes().expect("body").as_ref(), blob.as_slice());
    }
}

/// The pull-through cache on a bucket: clients asking for a blob at once share one fetch
/// and wait for it to be committed (an upload on S3 cannot be read before), then get it
/// from the bucket; the cached image is pulled again with the upstream gone.
#[test]
fn a_pull_through_cache_on_s3_fetches_once_and_serves_from_the_bucket() {
    if !have(&[SKOPEO]) {
        return;
    }
    let Some(moto) = moto() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = Server::start();
    let layouts = oci_layouts();
    skopeo_push_layout(
        &upstream.host(),
        layouts.path(),
        "a",
        "latest",
        "library/a",
        false,
    );
    let cache = ours_builder(&moto, "cache", dir.path())
        .env(
            "REGISTRY_PROXY_REMOTEURL",
            format!("http://{}", upstream.host()),
        )
        .start();
    let m: serde_json::Value = client()
        .get(upstream.url("/v2/library/a/manifests/latest"))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .expect_status(200)
        .json()
        .expect("json");
    let layer = m["layers"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    let fetch = format!("GET /v2/library/a/blobs/{layer}");
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let url = cache.url(&format!("/v2/library/a/blobs/{layer}"));
            // Redirects followed: once stored, the bucket serves it.
            std::thread::spawn(move || {
                digest_of(
                    &reqwest::blocking::get(url)
                        .expect("get")
                        .bytes()
                        .expect("body"),
                )
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("thread"), layer);
    }
    upstream.wait_for_log(&fetch);
    assert_eq!(upstream.log_text().matches(&fetch).count(), 1);
    let expected = layout_digest(&layouts.path().join("a"), "latest");
    pull_and_check(&cache.host(), "library/a:latest", &expected, false);
    drop(upstream);
    pull_and_check(&cache.host(), "library/a:latest", &expected, false);
}

/// Starts an upload session: its URL, and what separates a query parameter added to it.
fn start_upload(c: &reqwest::blocking::Client, s: &Server, repo: &str) -> (String, char) {
    let r = c
        .post(s.url(&format!("/v2/{repo}/blobs/uploads/")))
        .expect_status(202);
    let at = absolute(
        &s.url(""),
        r.headers()["location"].to_str().expect("location"),
    );
    let sep = if at.contains('?') { '&' } else { '?' };
    (at, sep)
}

/// Waits (20 s at most) until there are no uploads under `whole/` (`none`) or some.
fn uploads_become(moto: &Moto, none: bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if open_uploads(moto, "whole/").is_empty() == none {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A blob that arrives whole with its digest (a monolithic POST, or a PUT finishing a session
/// that received nothing) is written straight at its key and appears there only once its
/// digest checked: served, with no upload left anywhere; a wrong digest leaves no blob and no
/// upload, and so does a body cut short (its parts are aborted), the session still usable.
#[test]
fn blobs_that_arrive_whole_go_straight_to_their_key() {
    let Some(moto) = moto() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let s = ours(&moto, "whole", dir.path());
    let c = client();
    let repo = "straight/in";
    // Several parts of CHUNK, and a short last one.
    let large: Vec<u8> = (0..3 * CHUNK + 1234).map(|i| (i % 251) as u8).collect();
    let d = push_blob(&c, &s, repo, &large);
    assert!(
        get_blob(&c, &s, repo, &d) == large,
        "the large blob pulls whole"
    );
    // POST, then a PUT with the whole body.
    let small = b"one request's worth".to_vec();
    let ds = digest_of(&small);
    let (at, sep) = start_upload(&c, &s, repo);
    c.put(format!("{at}{sep}digest={ds}"))
        .body(small.clone())
        .expect_status(201);
    assert_eq!(get_blob(&c, &s, repo, &ds), small);
    assert!(open_uploads(&moto, "whole/").is_empty(), "no upload left");

    // The digest of other content: refused, and nothing of it stays.
    let wrong = digest_of(b"something else");
    c.post(s.url(&format!("/v2/{repo}/blobs/uploads/?digest={wrong}")))
        .body(large.clone())
        .expect_error(400, "DIGEST_INVALID");
    c.head(s.url(&format!("/v2/{repo}/blobs/{wrong}")))
        .expect_status(404);
    assert!(open_uploads(&moto, "whole/").is_empty(), "no upload left");

    // A body cut short after two parts went up: the writer's upload is aborted.
    let (at, sep) = start_upload(&c, &s, repo);
    let target = at.strip_prefix(&s.url("")).expect("our URL").to_owned();
    {
        use std::io::Write;
        let mut conn = std::net::TcpStream::connect(s.host()).expect("connect");
        write!(
            conn,
            "PUT {target}{sep}digest={d} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
            s.host(),
            large.len()
        )
        .expect("head");
        conn.write_all(&large[..3 * CHUNK])
            .expect("most of the body");
        assert!(uploads_become(&moto, false), "parts went up");
    }
    assert!(uploads_become(&moto, true), "the cut upload was aborted");
    // The session is as it was, empty: finished now with the whole body.
    c.put(format!("{at}{sep}digest={d}"))
        .body(large.clone())
        .expect_status(201);
    assert!(
        get_blob(&c, &s, repo, &d) == large,
        "pulled whole after the retry"
    );
}
