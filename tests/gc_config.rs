//! Garbage collection and retention configured the way an operator does it, in files read by
//! the real binary. A registry:2 file with `storage.maintenance.gc.interval` and `grace`
//! makes the daemon (port 0) collect a blob pushed without any manifest within a bounded
//! wait, while the blobs of a tagged image stay; the `retention:` rules of a legacy flavored
//! file decide what `docker-registry retention` reports and removes.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// Pushes a one-layer image (layer bytes from `seed`) as `repo:tag`; returns the blob digests.
fn push_seeded_image(
    client: &reqwest::blocking::Client,
    server: &Server,
    repo: &str,
    tag: &str,
    seed: u64,
) -> [String; 2] {
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"comment":"{seed}"}}"#
    );
    let layer = images::gzip(&layer_bytes(seed, 4096));
    let config_digest = push_blob(client, server, repo, config.as_bytes());
    let layer_digest = push_blob(client, server, repo, &layer);
    let manifest = image_manifest(
        (&config_digest, config.len()),
        &[(&layer_digest, layer.len())],
    );
    put_manifest(client, server, repo, tag, &manifest);
    [config_digest, layer_digest]
}

#[test]
fn a_registry_2_file_with_a_gc_interval_makes_the_daemon_collect_orphan_blobs() {
    let dir = tempfile::tempdir().expect("tmp");
    let storage = dir.path().join("storage");
    std::fs::create_dir(&storage).expect("storage dir");
    let sysconfig = dir.path().join("sysconfig");
    std::fs::write(&sysconfig, "").expect("sysconfig");
    let yml = dir.path().join("registry.yml");
    std::fs::write(
        &yml,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  maintenance:\n    \
             gc:\n      interval: 1s\n      grace: 0s\n",
            storage.display()
        ),
    )
    .expect("config");
    let (yml_arg, sys_arg) = (yml.display().to_string(), sysconfig.display().to_string());
    let daemon = Server::builder()
        .storage(&storage)
        .args_from(&["--config", &yml_arg, "--sysconfig", &sys_arg])
        .start();
    let client = client();

    // A tagged image: its config and layer are referenced and must stay.
    let [config_digest, layer_digest] = push_seeded_image(&client, &daemon, "kept/app", "v1", 7);

    // An orphan: uploaded, never referenced by any manifest.
    let orphan = push_blob(&client, &daemon, "orphans/x", &layer_bytes(99, 8192));
    assert!(
        stored_blobs(&storage).contains(&orphan),
        "the orphan blob was stored"
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    let started = Instant::now();
    while stored_blobs(&storage).contains(&orphan) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let left = stored_blobs(&storage);
    assert!(
        !left.contains(&orphan),
        "the orphan blob is still stored after {:?}",
        started.elapsed()
    );
    eprintln!("orphan collected after {:?}", started.elapsed());
    for kept in [&config_digest, &layer_digest] {
        assert!(
            left.contains(kept),
            "{kept} of the tagged image was removed"
        );
    }
    let r = client
        .get(daemon.url(&format!("/v2/kept/app/blobs/{layer_digest}")))
        .expect_status(200);
    assert_eq!(
        r.bytes().expect("body").as_ref(),
        images::gzip(&layer_bytes(7, 4096)).as_slice()
    );
    drop(daemon);
}

#[test]
fn retention_rules_of_a_flavored_file_decide_what_retention_removes() {
    let dir = tempfile::tempdir().expect("tmp");
    let storage = dir.path().join("storage");
    std::fs::create_dir(&storage).expect("storage dir");
    {
        let daemon = Server::builder().storage(&storage).start();
        let client = client();
        for (i, (tag, _)) in RETENTION_TAGS.iter().enumerate() {
            push_seeded_image(&client, &daemon, "apps/web", tag, 100 + i as u64);
        }
        push_seeded_image(&client, &daemon, "other/app", "old", 200);
    }
    age_retention_tags(&storage);

    // The legacy spelling of the keys, one of them through _env: from the sysconfig file.
    let sysconfig = dir.path().join("sysconfig");
    std::fs::write(&sysconfig, "KEEP_TAGS=1\n").expect("sysconfig");
    let yml = dir.path().join("docker-registry.yml");
    std::fs::write(
        &yml,
        format!(
            "common: &common\n    retention:\n        - repositories: apps/*\n          \
             keep_tags: _env:KEEP_TAGS:10\n          keep_younger_than: 600h\n          \
             protect_tags: release-*\nlocal:\n    <<: *common\n    storage: local\n    \
             storage_path: {}\n",
            storage.display()
        ),
    )
    .expect("config");
    let retention = |extra: &[&str]| {
        let mut args = vec![
            "--config".as_ref(),
            yml.as_os_str(),
            "--sysconfig".as_ref(),
            sysconfig.as_os_str(),
            "retention".as_ref(),
        ];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        let mut lines = ours_ok(&storage, &args).lines;
        lines.sort();
        lines
    };
    let tag_dir = |repo: &str, tag: &str| {
        storage.join(format!(
            "docker/registry/v2/repositories/{repo}/_manifests/tags/{tag}"
        ))
    };
    // keep_tags 1 keeps v4 (the newest), 600h (25 days) keeps v3 too, release-1 is
    // protected, and other/app matches no rule.
    let expired = ["apps/web:v1", "apps/web:v2"];
    assert_eq!(retention(&[]), expired, "dry run");
    assert!(
        tag_dir("apps/web", "v1").exists(),
        "a dry run removes nothing"
    );
    assert_eq!(retention(&["--apply"]), expired);
    for (tag, _) in RETENTION_TAGS {
        assert_eq!(
            tag_dir("apps/web", tag).exists(),
            !expired.contains(&format!("apps/web:{tag}").as_str()),
            "{tag}"
        );
    }
    assert!(tag_dir("other/app", "old").exists());
}
