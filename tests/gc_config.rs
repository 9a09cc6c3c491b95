//! Scheduled garbage collection configured the way an operator does it: a registry:2 file
//! with `storage.maintenance.gc.interval` and `grace`, read by the real daemon on port 0. A
//! blob pushed without any manifest is collected within a bounded wait, while the blobs of a
//! tagged image stay.

mod gc_support;

use gc_support::*;
use std::time::{Duration, Instant};

/// Pushes `bytes` as a blob of `repo` in one POST (`?digest=`); returns its digest.
fn push_blob(client: &reqwest::blocking::Client, base: &str, repo: &str, bytes: &[u8]) -> String {
    let digest = format!("sha256:{}", sha256_hex(bytes));
    let r = client
        .post(format!(
            "http://{base}/v2/{repo}/blobs/uploads/?digest={digest}"
        ))
        .header("content-type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .expect("push blob");
    assert_eq!(r.status().as_u16(), 201, "blob upload: {:?}", r.text());
    digest
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
    let daemon = Daemon::start(&storage, &["--config", &yml_arg, "--sysconfig", &sys_arg]);
    let base = daemon.base();
    let client = reqwest::blocking::Client::new();

    // A tagged image: its config and layer are referenced and must stay.
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = gzip(&layer_bytes(7, 4096));
    let config_digest = push_blob(&client, &base, "kept/app", config);
    let layer_digest = push_blob(&client, &base, "kept/app", &layer);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest, "size": layer.len()}],
    })
    .to_string();
    let r = client
        .put(format!("http://{base}/v2/kept/app/manifests/v1"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest)
        .send()
        .expect("push manifest");
    assert_eq!(r.status().as_u16(), 201, "manifest: {:?}", r.text());

    // An orphan: uploaded, never referenced by any manifest.
    let orphan = push_blob(&client, &base, "orphans/x", &layer_bytes(99, 8192));
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
        .get(format!("http://{base}/v2/kept/app/blobs/{layer_digest}"))
        .send()
        .expect("pull layer");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.bytes().expect("body").as_ref(), layer.as_slice());
    drop(daemon);
}
