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
    let tmp = tempfile::tempdir().expect("tmp");
    registry2_store(tmp.path());
    let before = stored_blobs(tmp.path());
    let mut c = ours(tmp.path());
    c.args(["garbage-collect", "--dry-run"]);
    let out = run(c);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let listed: BTreeSet<String> = stdout_lines(&out).into_iter().collect();
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
    let tmp = tempfile::tempdir().expect("tmp");
    registry2_store(tmp.path());
    let before = stored_blobs(tmp.path());
    let mut c = ours(tmp.path());
    c.args(["garbage-collect"]);
    let out = run(c);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let removed: BTreeSet<String> = stdout_lines(&out).into_iter().collect();
    assert_eq!(removed, eligible());
    let after: BTreeSet<String> = stored_blobs(tmp.path()).into_iter().collect();
    let expect_after: BTreeSet<String> = before
        .into_iter()
        .filter(|d| !removed.contains(d))
        .collect();
    assert_eq!(after, expect_after);

    // A second run finds nothing more.
    let mut c = ours(tmp.path());
    c.args(["garbage-collect", "--dry-run"]);
    let again = run(c);
    assert!(
        stdout_lines(&again).is_empty(),
        "{:?}",
        stdout_lines(&again)
    );

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
    let tmp = tempfile::tempdir().expect("tmp");
    registry2_store(tmp.path());
    let want = registry2_expected();
    let dir = want.upload_dir(tmp.path());
    assert!(dir.is_dir());

    let mut c = ours(tmp.path());
    c.args(["garbage-collect", "--upload-age", "36500days"]);
    let out = run(c);
    assert!(out.status.success());
    assert!(dir.is_dir(), "an upload younger than the age is kept");

    let mut c = ours(tmp.path());
    c.args(["garbage-collect", "--dry-run", "--upload-age", "1s"]);
    let out = run(c);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&want.unfinished_upload.id), "{stderr}");
    assert!(dir.is_dir(), "a dry run keeps it");

    let mut c = ours(tmp.path());
    c.args(["garbage-collect", "--upload-age", "1s"]);
    let out = run(c);
    assert!(out.status.success());
    assert!(!dir.exists(), "the stale upload is removed");
}

#[test]
fn delete_untagged_keeps_the_children_of_a_tagged_index() {
    if !have(&[SKOPEO, DISTRIBUTION]) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    registry2_store(tmp.path());
    let mut c = ours(tmp.path());
    c.args(["garbage-collect", "--dry-run", "--delete-untagged"]);
    let out = run(c);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // library/multi's two platform manifests are untagged but children of `latest`.
    let listed: BTreeSet<String> = stdout_lines(&out).into_iter().collect();
    assert_eq!(listed, eligible());
}

#[test]
fn fsck_reports_broken_images_by_tag_and_repair_removes_only_dangling_links() {
    if !have(&[SKOPEO, DISTRIBUTION]) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    registry2_store(tmp.path());
    let fsck = |args: &[&str]| {
        let mut c = ours(tmp.path());
        c.arg("fsck").args(args);
        run(c)
    };
    let clean = fsck(&[]);
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );
    assert!(stdout_lines(&clean).is_empty());

    // Collection leaves a sound store behind: no dangling links either.
    let mut c = ours(tmp.path());
    c.arg("garbage-collect");
    assert!(run(c).status.success());
    let after_gc = fsck(&[]);
    assert!(after_gc.status.success(), "{:?}", stdout_lines(&after_gc));

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
    assert!(!broken.status.success());
    let lines = stdout_lines(&broken);
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    assert!(has(&format!("corrupt blob sha256:{corrupt}")), "{lines:?}");
    assert!(has("team/app/web:1.0"), "{lines:?}");
    assert!(has("team/app/web:v2s2"), "{lines:?}");
    assert!(has("library/multi:latest"), "{lines:?}");
    assert!(!has("library/alpine"), "{lines:?}");
    assert!(has(&format!("dangling link docker/registry/v2/repositories/library/multi/_layers/sha256/{lost}/link")), "{lines:?}");

    let repaired = fsck(&["--repair"]);
    assert!(
        !repaired.status.success(),
        "corrupt content remains a problem"
    );
    assert!(stdout_lines(&repaired)
        .iter()
        .any(|l| l.ends_with("(removed)")));
    assert!(!tmp
        .path()
        .join(format!(
            "docker/registry/v2/repositories/library/multi/_layers/sha256/{lost}"
        ))
        .exists());
    assert!(data.exists(), "repair never deletes content");
    let again = fsck(&[]);
    assert!(
        !stdout_lines(&again)
            .iter()
            .any(|l| l.starts_with("dangling")),
        "{:?}",
        stdout_lines(&again)
    );
}
