//! Real clients: skopeo pushes the fixture OCI layouts (including a multi-platform index with
//! `--all`), pulls them back, and the digests match what was pushed; tags are listed;
//! deletion works when enabled and is refused when not.

mod common;

use common::*;

fn inspect_digest(host: &str, image: &str) -> String {
    let out = skopeo_ok(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{host}/{image}"),
    ]);
    digest_of(out.as_bytes())
}

#[test]
fn skopeo_pushes_and_pulls_every_fixture_layout_with_identical_digests() {
    if !have(&[SKOPEO]) {
        return;
    }
    let s = Server::start();
    let host = s.host();
    let layouts = oci_layouts();
    let out = tempfile::tempdir().expect("tempdir");
    for (dir, reference, repo, all) in [
        ("a", "latest", "library/a:latest", false),
        ("b", "1.0", "library/b:1.0", false),
        ("c", "old", "team/app/c:old", false),
        ("multi", "multi", "library/multi:latest", true),
    ] {
        skopeo_push_layout(&host, layouts.path(), dir, reference, repo, all);
        let dst = format!("docker://{host}/{repo}");
        let expected = layout_digest(&layouts.path().join(dir), reference);
        assert_eq!(inspect_digest(&host, repo), expected, "{repo}");
        // Pull back into a dir: and compare the manifest bytes' digest.
        let pulled = out.path().join(dir);
        let dir_ref = format!("dir:{}", pulled.display());
        let mut args = vec!["copy", "--src-tls-verify=false"];
        if all {
            args.push("--all");
        }
        args.extend([dst.as_str(), dir_ref.as_str()]);
        skopeo_ok(&args);
        let manifest = std::fs::read(pulled.join("manifest.json")).expect("manifest.json");
        assert_eq!(digest_of(&manifest), expected, "{repo} pulled");
        // Every blob file skopeo wrote hashes to its name.
        for e in std::fs::read_dir(&pulled).expect("dir").flatten() {
            let name = e.file_name().into_string().expect("utf8");
            if name.len() == 64 {
                assert_eq!(sha256_hex(&std::fs::read(e.path()).expect("blob")), name);
            }
        }
    }
    let tags = skopeo_ok(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{host}/library/multi"),
    ]);
    let v: serde_json::Value = serde_json::from_str(&tags).expect("json");
    assert_eq!(v["Tags"], serde_json::json!(["latest"]));
    let cat: serde_json::Value = client()
        .get(s.url("/v2/_catalog"))
        .send()
        .expect("catalog")
        .json()
        .expect("json");
    assert_eq!(
        cat["repositories"],
        serde_json::json!(["library/a", "library/b", "library/multi", "team/app/c"])
    );
    // Docker schema 2 conversion on push works too.
    let src = format!("oci:{}:latest", layouts.path().join("a").display());
    skopeo_ok(&[
        "copy",
        "--dest-tls-verify=false",
        "--format",
        "v2s2",
        &src,
        &format!("docker://{host}/library/a:v2s2"),
    ]);
    let r = client()
        .get(s.url("/v2/library/a/manifests/v2s2"))
        .header(
            "accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .expect("get");
    assert_eq!(
        r.headers()["content-type"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
}

#[test]
fn skopeo_delete_follows_the_delete_setting() {
    if !have(&[SKOPEO]) {
        return;
    }
    let layouts = oci_layouts();
    let src = format!("oci:{}:latest", layouts.path().join("a").display());
    // Disabled (the default): refused, image intact.
    let s = Server::start();
    let img = format!("docker://{}/x/a:latest", s.host());
    skopeo_ok(&["copy", "--dest-tls-verify=false", &src, &img]);
    let (ok, out) = skopeo(&["delete", "--tls-verify=false", &img]);
    assert!(!ok, "delete should fail: {out}");
    assert!(
        out.contains("unsupported") || out.contains("UNSUPPORTED") || out.contains("405"),
        "{out}"
    );
    skopeo_ok(&["inspect", "--tls-verify=false", &img]);
    drop(s);
    // Enabled: gone.
    let s = Server::builder()
        .env("REGISTRY_STORAGE_DELETE_ENABLED", "true")
        .delete_enabled()
        .start();
    let img = format!("docker://{}/x/a:latest", s.host());
    skopeo_ok(&["copy", "--dest-tls-verify=false", &src, &img]);
    skopeo_ok(&["delete", "--tls-verify=false", &img]);
    let (ok, _) = skopeo(&["inspect", "--tls-verify=false", &img]);
    assert!(!ok, "deleted image still inspectable");
}
