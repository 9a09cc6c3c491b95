//! Compatibility with `registry:2` (CNCF distribution 2.8.2, Debian's `docker-registry`
//! package): a data directory it wrote is served as it is, and what we push into such a
//! directory is served by distribution afterwards.

mod common;

use common::registry2::{self, Distribution};
use common::*;

#[test]
fn a_registry2_data_directory_is_served_as_it_is() {
    if !have(&[SKOPEO, DISTRIBUTION]) {
        return;
    }
    let fixture = registry2_store();
    let s = Server::builder().storage(fixture.path()).start();
    let c = client();
    let want = registry2::registry2_expected();
    let cat: serde_json::Value = c
        .get(s.url("/v2/_catalog"))
        .send()
        .expect("catalog")
        .json()
        .expect("json");
    assert_eq!(cat["repositories"], serde_json::json!(want.catalog));
    let out = tempfile::tempdir().expect("tempdir");
    for (repo, tags) in &want.tags {
        let listed: serde_json::Value = c
            .get(s.url(&format!("/v2/{repo}/tags/list")))
            .send()
            .expect("tags")
            .json()
            .expect("json");
        let names: Vec<&String> = tags.keys().collect();
        assert_eq!(listed["tags"], serde_json::json!(names), "{repo}");
        for (tag, digest) in tags {
            let r = c
                .head(s.url(&format!("/v2/{repo}/manifests/{tag}")))
                .header("accept", registry2::ACCEPT_ALL)
                .send()
                .expect("head");
            assert_eq!(
                r.headers()["docker-content-digest"],
                digest.as_str(),
                "{repo}:{tag}"
            );
            let dst = out.path().join(format!("{}-{tag}", repo.replace('/', "_")));
            skopeo_ok(&[
                "copy",
                "--all",
                "--src-tls-verify=false",
                &format!("docker://{}/{repo}:{tag}", s.host()),
                &format!("dir:{}", dst.display()),
            ]);
            let m = std::fs::read(dst.join("manifest.json")).expect("manifest");
            assert_eq!(&digest_of(&m), digest);
        }
    }
}

#[test]
fn what_we_push_into_a_registry2_directory_is_served_by_distribution() {
    if !have(&[SKOPEO, DISTRIBUTION]) {
        return;
    }
    let fixture = registry2_store();
    let layouts = oci_layouts();
    let s = Server::builder().storage(fixture.path()).start();
    // A new image, a new tag on an existing repository, and the multi-platform index.
    let pushes = [
        ("c", "old", "ours/new:v1", false),
        ("a", "latest", "library/alpine:ours", false),
        ("multi", "multi", "ours/multi:latest", true),
    ];
    let mut digests = Vec::new();
    for (dir, reference, repo, all) in pushes {
        let src = format!("oci:{}:{reference}", layouts.path().join(dir).display());
        let dst = format!("docker://{}/{repo}", s.host());
        let mut args = vec!["copy", "--dest-tls-verify=false"];
        if all {
            args.push("--all");
        }
        args.extend([src.as_str(), dst.as_str()]);
        skopeo_ok(&args);
        let raw = skopeo_ok(&["inspect", "--raw", "--tls-verify=false", &dst]);
        digests.push(digest_of(raw.as_bytes()));
    }
    drop(s);

    let d = Distribution::start(fixture.path());
    let host = d.host();
    let out = tempfile::tempdir().expect("tempdir");
    for ((_, _, repo, _), digest) in pushes.iter().zip(&digests) {
        let raw = skopeo_ok(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{host}/{repo}"),
        ]);
        assert_eq!(
            &digest_of(raw.as_bytes()),
            digest,
            "{repo} served by distribution"
        );
        let dst = out.path().join(repo.replace(['/', ':'], "_"));
        skopeo_ok(&[
            "copy",
            "--all",
            "--src-tls-verify=false",
            &format!("docker://{host}/{repo}"),
            &format!("dir:{}", dst.display()),
        ]);
    }
    let cat: serde_json::Value = client()
        .get(format!("http://{host}/v2/_catalog"))
        .send()
        .expect("catalog")
        .json()
        .expect("json");
    let repos: Vec<&str> = cat["repositories"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        repos.contains(&"ours/new") && repos.contains(&"ours/multi"),
        "{repos:?}"
    );
    // The original content is still there for distribution too.
    let want = registry2::registry2_expected();
    let digest = &want.tags["library/alpine"]["latest"];
    let raw = skopeo_ok(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{host}/library/alpine:latest"),
    ]);
    assert_eq!(&digest_of(raw.as_bytes()), digest);
}
