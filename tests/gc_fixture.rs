//! Garbage collection on a data directory written by the real registry:2 (distribution
//! 2.8.2): the dry run finds exactly what distribution's own collector found, and after a
//! real run distribution still serves every remaining tag. Needs `skopeo` and Debian's
//! `docker-registry` (distribution 2.8.2, /usr/bin/docker-registry).

mod common;

use common::*;
use std::collections::BTreeSet;

fn eligible() -> BTreeSet<String> {
    registry2_expected().gc_eligible
}

#[test]
fn dry_run_finds_exactly_what_registry2_found_and_removes_nothing() {
    if !have(&[SKOPEO, DISTRIBUTION]) {
        return;
    }
    let tmp = registry2_store();
    let before = stored_blobs(tmp.path());
    let out = ours(tmp.path(), &["garbage-collect", "--dry-run"]);
    let stderr = &out.stderr;
    assert!(out.ok, "{stderr}");
    let listed: BTreeSet<String> = out.lines.into_iter().collect();
    assert_eq!(listed, eligible());
    let marked = registry2_expected().gc_blobs_marked;
    assert!(
        stderr.contains(&format!("{marked} blobs marked")),
        "{stderr}"
    );
    assert_eq!(
        stored_blobs(tmp.path()),
        before,
        "a dry run must not remove anything"
    );
}

#[test]
fn after_collection_registry2_still_serves_every_tag() {
    if !have(&[SKOPEO, DISTRIBUTION]) {
        return;
    }
    let tmp = registry2_store();
    let before = stored_blobs(tmp.path());
    let out = ours(tmp.path(), &["garbage-collect"]);
    assert!(out.ok, "{}", out.stderr);
    let removed: BTreeSet<String> = out.lines.into_iter().collect();
    assert_eq!(removed, eligible());
    let after: BTreeSet<String> = stored_blobs(tmp.path()).into_iter().collect();
    let expect_after: BTreeSet<String> = before
        .into_iter()
        .filter(|d| !removed.contains(d))
        .collect();
    assert_eq!(after, expect_after);

    // A second run finds nothing more.
    let again = ours(tmp.path(), &["garbage-collect", "--dry-run"]);
    assert!(again.lines.is_empty(), "{:?}", again.lines);

    let reg = Distribution::start(tmp.path());
    let pulled = tempfile::tempdir().expect("tmp");
    for (repo, tags) in registry2_expected().tags {
        for (tag, digest) in tags {
            let src = format!("docker://{}/{repo}:{tag}", reg.host());
            let raw = skopeo_ok(&["inspect", "--raw", "--tls-verify=false", &src]);
            assert_eq!(digest_of(raw.as_bytes()), digest, "{src}");
            let dest = format!(
                "oci:{}:{}",
                pulled.path().join(repo.replace('/', "_")).display(),
                tag
            );
            // --all pulls every child of an index: every blob must still be there, and
            // skopeo verifies each digest.
            skopeo_ok(&["copy", "--all", "--src-tls-verify=false", &src, &dest]);
        }
    }
}

#[test]
fn the_fixtures_unfinished_upload_is_purged_once_older_than_the_age() {
    if !have(&[SKOPEO, DISTRIBUTION]) {
        return;
    }
    let tmp = registry2_store();
    let want = registry2_expected();
    let dir = want.upload_dir(tmp.path());
    assert!(dir.is_dir());

    let out = ours(
        tmp.path(),
        &["garbage-collect", "--upload-age", "36500days"],
    );
    assert!(out.ok);
    assert!(dir.is_dir(), "an upload younger than the age is kept");

    let out = ours(
        tmp.path(),
        &["garbage-collect", "--dry-run", "--upload-age", "1s"],
    );
    let stderr = &out.stderr;
    assert!(stderr.contains(&want.unfinished_upload.id), "{stderr}");
    assert!(dir.is_dir(), "a dry run keeps it");

    let out = ours(tmp.path(), &["garbage-collect", "--upload-age", "1s"]);
    assert!(out.ok);
    assert!(!dir.exists(), "the stale upload is removed");
}

#[test]
fn delete_untagged_keeps_the_children_of_a_tagged_index() {
    if !have(&[SKOPEO, DISTRIBUTION]) {
        return;
    }
    let tmp = registry2_store();
    let out = ours(
        tmp.path(),
        &["garbage-collect", "--dry-run", "--delete-untagged"],
    );
    assert!(out.ok, "{}", out.stderr);
    // library/multi's two platform manifests are untagged but children of `latest`.
    let listed: BTreeSet<String> = out.lines.into_iter().collect();
    assert_eq!(listed, eligible());
}

#[test]
fn fsck_reports_broken_images_by_tag_and_repair_removes_only_dangling_links() {
    if !have(&[SKOPEO, DISTRIBUTION]) {
        return;
    }
    let tmp = registry2_store();
    let fsck = |args: &[&str]| ours(tmp.path(), &[&["fsck"][..], args].concat());
    let clean = fsck(&[]);
    assert!(clean.ok, "{:?}", clean.lines);
    assert!(clean.lines.is_empty());

    // Collection leaves a sound store behind: no dangling links either.
    ours_ok(tmp.path(), &["garbage-collect"]);
    let after_gc = fsck(&[]);
    assert!(after_gc.ok, "{:?}", after_gc.lines);

    // Corrupt the config team/app/web's two tags share (b's); lose the config of
    // library/multi's amd64 image.
    let layouts = registry2_expected().layouts;
    let blobs = tmp.path().join("docker/registry/v2/blobs/sha256");
    let corrupt = layouts["b"].configs[0].trim_start_matches("sha256:");
    let lost = layouts["multi"].configs[0].trim_start_matches("sha256:");
    let data = blobs.join(&corrupt[..2]).join(corrupt).join("data");
    let mut bytes = std::fs::read(&data).expect("blob");
    bytes.push(b'!');
    std::fs::write(&data, &bytes).expect("corrupt");
    std::fs::remove_dir_all(blobs.join(&lost[..2]).join(lost)).expect("lose");

    let broken = fsck(&[]);
    assert!(!broken.ok);
    let lines = broken.lines;
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    assert!(has(&format!("corrupt blob sha256:{corrupt}")), "{lines:?}");
    assert!(has("team/app/web:1.0"), "{lines:?}");
    assert!(has("team/app/web:v2s2"), "{lines:?}");
    assert!(has("library/multi:latest"), "{lines:?}");
    assert!(!has("library/alpine"), "{lines:?}");
    assert!(has(&format!("dangling link docker/registry/v2/repositories/library/multi/_layers/sha256/{lost}/link")), "{lines:?}");

    let repaired = fsck(&["--repair"]);
    assert!(!repaired.ok, "corrupt content remains a problem");
    assert!(repaired.lines.iter().any(|l| l.ends_with("(removed)")));
    assert!(!tmp
        .path()
        .join(format!(
            "docker/registry/v2/repositories/library/multi/_layers/sha256/{lost}"
        ))
        .exists());
    assert!(data.exists(), "repair never deletes content");
    let again = fsck(&[]);
    assert!(
        !again.lines.iter().any(|l| l.starts_with("dangling")),
        "{:?}",
        again.lines
    );
}
