//! Deletion that frees disk, end to end with skopeo against the running daemon: push two
//! images sharing a layer, delete one, collect through the daemon (`garbage-collect
//! --online`, no restart, no read-only window), and the disk drops by exactly the deleted
//! image's unique blobs while the other image still pulls. Needs `skopeo`.

mod common;

use common::*;
use std::collections::BTreeSet;

fn push(dir: &std::path::Path, tag: &str, dest: &str) {
    skopeo_ok(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:{tag}", dir.display()),
        dest,
    ]);
}

/// A daemon that deletes, on a store of its own, and a work directory; `None` (the test
/// skips, as `have` says why) without skopeo.
fn daemon_and_work() -> Option<(tempfile::TempDir, Server, tempfile::TempDir)> {
    if !have(&[SKOPEO]) {
        return None;
    }
    let store = tempfile::tempdir().expect("tmp");
    let daemon = Server::builder()
        .storage(store.path())
        .delete_enabled()
        .start();
    Some((store, daemon, tempfile::tempdir().expect("tmp")))
}

#[test]
fn deleting_an_image_and_collecting_online_frees_its_unique_layers() {
    let Some((store, daemon, work)) = daemon_and_work() else {
        return;
    };

    let shared = layer_bytes(1, 64 * 1024);
    let keep_dir = work.path().join("keep");
    let gone_dir = work.path().join("gone");
    let keep_digest = oci_image(
        &keep_dir,
        "v1",
        &[shared.clone(), layer_bytes(2, 32 * 1024)],
    );
    let gone_digest = oci_image(
        &gone_dir,
        "v1",
        &[
            shared,
            layer_bytes(3, 100 * 1024),
            layer_bytes(4, 50 * 1024),
        ],
    );
    push(
        &keep_dir,
        "v1",
        &format!("docker://{}/apps/keep:v1", daemon.host()),
    );
    push(
        &gone_dir,
        "v1",
        &format!("docker://{}/apps/gone:v1", daemon.host()),
    );
    let before: BTreeSet<String> = stored_blobs(store.path()).into_iter().collect();
    let bytes_before = blob_bytes(store.path());

    // What only the deleted image holds: its manifest, its config and two layers.
    let keep_blobs: BTreeSet<String> = std::fs::read_dir(keep_dir.join("blobs/sha256"))
        .expect("dir")
        .flatten()
        .map(|e| format!("sha256:{}", e.file_name().to_string_lossy()))
        .collect();
    let gone_blobs: BTreeSet<String> = std::fs::read_dir(gone_dir.join("blobs/sha256"))
        .expect("dir")
        .flatten()
        .map(|e| format!("sha256:{}", e.file_name().to_string_lossy()))
        .collect();
    let unique: BTreeSet<String> = gone_blobs.difference(&keep_blobs).cloned().collect();
    assert_eq!(unique.len(), 4);
    assert!(unique.is_subset(&before));
    let unique_bytes: u64 = unique
        .iter()
        .map(|d| {
            std::fs::metadata(gone_dir.join("blobs/sha256").join(&d[7..]))
                .expect("blob")
                .len()
        })
        .sum();

    skopeo_ok(&[
        "delete",
        "--tls-verify=false",
        &format!("docker://{}/apps/gone@{gone_digest}", daemon.host()),
    ]);

    // The daemon owns the storage: an offline (writing) collection refuses to run.
    let refused = ours(store.path(), &["garbage-collect"]);
    assert!(!refused.ok);
    assert!(refused.stderr.contains("--online"));
    assert_eq!(blob_bytes(store.path()), bytes_before);

    // The dry run through the daemon names exactly the unique blobs and removes nothing.
    let dry = ours(
        store.path(),
        &["garbage-collect", "--online", "--dry-run", "--grace", "0s"],
    );
    assert!(dry.ok, "{}", dry.stderr);
    assert_eq!(dry.line_set(), unique);
    assert_eq!(blob_bytes(store.path()), bytes_before);

    // With the default grace period (1 h) freshly pushed blobs are all kept.
    let graced = ours(store.path(), &["garbage-collect", "--online"]);
    assert!(graced.ok);
    assert!(graced.lines.is_empty(), "{:?}", graced.lines);

    let real = ours(
        store.path(),
        &["garbage-collect", "--online", "--grace", "0s"],
    );
    let stderr = &real.stderr;
    assert!(real.ok, "{stderr}");
    assert_eq!(real.line_set(), unique);
    assert!(
        stderr.contains(&format!("({unique_bytes} bytes) freed")),
        "{stderr}"
    );
    assert_eq!(
        bytes_before - blob_bytes(store.path()),
        unique_bytes,
        "disk usage drops by the unique blobs"
    );

    // The other image still pulls, digests verified by skopeo.
    let pulled = work.path().join("pulled");
    skopeo_ok(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/apps/keep:v1", daemon.host()),
        &format!("oci:{}:v1", pulled.display()),
    ]);
    let raw = skopeo_ok(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/apps/keep:v1", daemon.host()),
    ]);
    assert_eq!(digest_of(raw.as_bytes()), keep_digest);

    // Pushing the deleted image again works: its blobs are uploaded anew.
    push(
        &gone_dir,
        "v1",
        &format!("docker://{}/apps/gone:v1", daemon.host()),
    );
    skopeo_ok(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/apps/gone:v1", daemon.host()),
        &format!("oci:{}:again", pulled.display()),
    ]);
}

#[test]
fn delete_untagged_removes_overwritten_manifests_but_not_tagged_ones() {
    let Some((store, daemon, work)) = daemon_and_work() else {
        return;
    };
    let old = oci_image(&work.path().join("old"), "v1", &[layer_bytes(10, 4096)]);
    let new = oci_image(&work.path().join("new"), "v1", &[layer_bytes(11, 4096)]);
    push(
        &work.path().join("old"),
        "v1",
        &format!("docker://{}/app:v1", daemon.host()),
    );
    push(
        &work.path().join("old"),
        "v1",
        &format!("docker://{}/app:stable", daemon.host()),
    );
    push(
        &work.path().join("new"),
        "v1",
        &format!("docker://{}/app:v1", daemon.host()),
    );
    let collect = || {
        ours_ok(
            store.path(),
            &[
                "garbage-collect",
                "--online",
                "--delete-untagged",
                "--grace",
                "0s",
            ],
        )
    };
    // `old` is still tagged `stable`: nothing is untagged yet.
    let out = collect();
    assert!(out.lines.is_empty(), "{:?}", out.lines);

    let client = reqwest::blocking::Client::new();
    // Untag `old` through the API (DELETE by tag leaves the manifest revision).
    client
        .delete(format!("http://{}/v2/app/manifests/stable", daemon.host()))
        .expect_status(202);
    let lines = collect().lines;
    assert!(lines.contains(&format!("app@{old}")), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains(&new)), "{lines:?}");
    client
        .get(format!("http://{}/v2/app/manifests/{old}", daemon.host()))
        .expect_status(404);
    let r = client
        .get(format!("http://{}/v2/app/manifests/v1", daemon.host()))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .expect_status(200);
    assert_eq!(sha256_hex(&r.bytes().expect("body")), new[7..]);
}
