//! Compatibility with `registry:2` (CNCF distribution 2.8.2, Debian's `docker-registry`
//! package): a data directory it wrote is served as it is, and what we push into such a
//! directory is served by distribution afterwards.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DISTRIBUTION: &str = "/usr/bin/docker-registry";

fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(shared_fixtures().join("distribution-2.8.2/expected.json"))
        .expect("expected.json");
    serde_json::from_str(&text).expect("json")
}

fn unpack_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let st = Command::new("tar")
        .arg("xzf")
        .arg(shared_fixtures().join("distribution-2.8.2/storage.tar.gz"))
        .arg("-C")
        .arg(dir.path())
        .status()
        .expect("tar");
    assert!(st.success());
    dir
}

#[test]
fn a_registry2_data_directory_is_served_as_it_is() {
    let fixture = unpack_fixture();
    let s = Server::builder().storage(fixture.path()).start();
    let c = client();
    let want = expected();
    let cat: serde_json::Value = c
        .get(s.url("/v2/_catalog"))
        .send()
        .expect("catalog")
        .json()
        .expect("json");
    assert_eq!(cat["repositories"], want["catalog"]);
    let out = tempfile::tempdir().expect("tempdir");
    for (repo, tags) in want["tags"].as_object().expect("tags") {
        let listed: serde_json::Value = c
            .get(s.url(&format!("/v2/{repo}/tags/list")))
            .send()
            .expect("tags")
            .json()
            .expect("json");
        let mut names: Vec<&str> = tags
            .as_object()
            .expect("obj")
            .keys()
            .map(|k| k.as_str())
            .collect();
        names.sort();
        assert_eq!(listed["tags"], serde_json::json!(names), "{repo}");
        for (tag, digest) in tags.as_object().expect("obj") {
            let r = c
                .head(s.url(&format!("/v2/{repo}/manifests/{tag}")))
                .header("accept", "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json")
                .send()
                .expect("head");
            assert_eq!(
                r.headers()["docker-content-digest"],
                digest.as_str().expect("digest"),
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
            assert_eq!(digest_of(&m), digest.as_str().expect("digest"));
        }
    }
}

/// Distribution 2.8.2 started by hand on a generated config, stopped by PID on drop.
struct Distribution {
    child: std::process::Child,
    port: u16,
    _conf: tempfile::TempDir,
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn start_distribution(root: &std::path::Path) -> Distribution {
    assert!(
        std::path::Path::new(DISTRIBUTION).exists(),
        "distribution 2.8.2 is needed: apt-get install docker-registry"
    );
    let conf = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let file = conf.path().join("config.yml");
    std::fs::write(
        &file,
        format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\n",
            root.display()
        ),
    )
    .expect("write config");
    let mut child = Command::new(DISTRIBUTION)
        .arg("serve")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start distribution");
    let deadline = Instant::now() + Duration::from_secs(20);
    let c = client();
    while Instant::now() < deadline {
        if c.get(format!("http://127.0.0.1:{port}/v2/")).send().is_ok() {
            return Distribution {
                child,
                port,
                _conf: conf,
            };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("distribution did not start");
}

#[test]
fn what_we_push_into_a_registry2_directory_is_served_by_distribution() {
    let fixture = unpack_fixture();
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

    let d = start_distribution(fixture.path());
    let host = format!("127.0.0.1:{}", d.port);
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
    let want = expected();
    let digest = want["tags"]["library/alpine"]["latest"]
        .as_str()
        .expect("digest");
    let raw = skopeo_ok(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{host}/library/alpine:latest"),
    ]);
    assert_eq!(digest_of(raw.as_bytes()), digest);
}
