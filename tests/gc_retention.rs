//! Retention: images pushed with skopeo, tag ages set on their `current` links, then
//! `docker-registry retention` (dry run by default, `--apply`), then `garbage-collect
//! --delete-untagged` frees exactly the expired images' content and the kept tags pull.
//! Needs `skopeo`.

mod common;

use common::*;
use std::collections::BTreeSet;

#[test]
fn retention_keeps_newest_and_young_and_protected_tags_and_collection_frees_the_rest() {
    if !have(&[SKOPEO]) {
        return;
    }
    let store = tempfile::tempdir().expect("tmp");
    let work = tempfile::tempdir().expect("tmp");
    {
        let daemon = Server::builder().storage(store.path()).start();
        for (i, (tag, _)) in RETENTION_TAGS.iter().enumerate() {
            let dir = work.path().join(tag);
            oci_image(&dir, "x", &[layer_bytes(7000 + i as u64, 2048)]);
            skopeo_ok(&[
                "copy",
                "--dest-tls-verify=false",
                &format!("oci:{}:x", dir.display()),
                &format!("docker://{}/apps/web:{tag}", daemon.host()),
            ]);
        }
        let dir = work.path().join("other");
        oci_image(&dir, "x", &[layer_bytes(8000, 2048)]);
        skopeo_ok(&[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:x", dir.display()),
            &format!("docker://{}/other/app:old", daemon.host()),
        ]);
    }
    age_retention_tags(store.path());

    let retention = |extra: &[&str]| {
        let rule = [
            "retention",
            "--repositories",
            "apps/*",
            "--keep-tags",
            "1",
            "--keep-younger-than",
            "25days",
            "--protect-tags",
            "release-*",
        ];
        ours(store.path(), &[&rule[..], extra].concat())
    };
    let expired: BTreeSet<String> = ["apps/web:v1", "apps/web:v2"]
        .iter()
        .map(|s| s.to_string())
        .collect();

    // Dry run by default: reports, removes nothing.
    let dry = retention(&[]);
    assert!(dry.ok, "{}", dry.stderr);
    assert_eq!(dry.line_set(), expired);
    assert!(store
        .path()
        .join("docker/registry/v2/repositories/apps/web/_manifests/tags/v1")
        .exists());

    let bytes_before = blob_bytes(store.path());
    let applied = retention(&["--apply"]);
    assert!(applied.ok);
    assert_eq!(applied.line_set(), expired);
    for (tag, _) in RETENTION_TAGS {
        let exists = store
            .path()
            .join(format!(
                "docker/registry/v2/repositories/apps/web/_manifests/tags/{tag}"
            ))
            .exists();
        assert_eq!(
            exists,
            !expired.contains(&format!("apps/web:{tag}")),
            "{tag}"
        );
    }
    assert!(store
        .path()
        .join("docker/registry/v2/repositories/other/app/_manifests/tags/old")
        .exists());

    // Collection frees the two expired images: manifest, config and layer each.
    let gc = ours(store.path(), &["garbage-collect", "--delete-untagged"]);
    assert!(gc.ok, "{}", gc.stderr);
    let removed_blobs = gc.lines.iter().filter(|l| l.starts_with("sha256:")).count();
    let removed_manifests = gc
        .lines
        .iter()
        .filter(|l| l.starts_with("apps/web@"))
        .count();
    assert_eq!((removed_blobs, removed_manifests), (6, 2));
    assert!(blob_bytes(store.path()) < bytes_before);

    let daemon = Server::builder().storage(store.path()).start();
    for tag in ["v3", "v4", "release-1"] {
        skopeo_ok(&[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}/apps/web:{tag}", daemon.host()),
            &format!("oci:{}:{tag}", work.path().join("pulled").display()),
        ]);
    }
}
