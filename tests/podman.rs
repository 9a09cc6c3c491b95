//! podman as a client (no containers needed): pull what skopeo pushed, push it under a new
//! name (podman re-compresses layers, so it uploads new blobs), and read it back.

mod common;

use common::*;
use std::process::Command;

fn podman(root: &std::path::Path, args: &[&str]) -> String {
    let (ok, text) = output_of(
        Command::new(PODMAN.program)
            .arg("--storage-driver=vfs")
            .arg("--root")
            .arg(root.join("root"))
            .arg("--runroot")
            .arg(root.join("run"))
            .args(args),
    );
    assert!(ok, "podman {args:?} failed:\n{text}");
    text
}

#[test]
fn podman_pulls_and_pushes() {
    if !have(&[SKOPEO, PODMAN]) {
        return;
    }
    let s = Server::start();
    let host = s.host();
    let layouts = oci_layouts();
    let src = format!("oci:{}:1.0", layouts.path().join("b").display());
    skopeo_ok(&[
        "copy",
        "--dest-tls-verify=false",
        &src,
        &format!("docker://{host}/library/b:1.0"),
    ]);
    let root = tempfile::tempdir().expect("tempdir");
    let pulled = format!("{host}/library/b:1.0");
    podman(root.path(), &["pull", "--tls-verify=false", &pulled]);
    let pushed = format!("{host}/podman/b:v1");
    podman(root.path(), &["tag", &pulled, &pushed]);
    podman(root.path(), &["push", "--tls-verify=false", &pushed]);
    // What podman pushed is complete: every layer and the config pull back and verify.
    let out = tempfile::tempdir().expect("tempdir");
    skopeo_ok(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{pushed}"),
        &format!("dir:{}", out.path().display()),
    ]);
    assert_eq!(check_pulled_blobs(out.path()), 3, "config and two layers");
    let tags: serde_json::Value = client()
        .get(s.url("/v2/podman/b/tags/list"))
        .send()
        .expect("tags")
        .json()
        .expect("json");
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));
}
