//! Searching repositories with the real daemon: images pushed by skopeo from OCI layouts
//! carrying `org.opencontainers.image.title`/`.description` as manifest annotations or as
//! config labels, and manifests put over HTTP; found by name, tag and description, ranked,
//! paged through the legacy `/v1/search` and `/v2/_catalog/search` (with its `Link`),
//! updated by pushes and deletions, and the same after a restart rebuilds the index from
//! the store.

mod common;

use common::oci::oci_image_described;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

const TITLE: &str = "org.opencontainers.image.title";
const DESCRIPTION: &str = "org.opencontainers.image.description";

/// skopeo pushes an image with these labels and annotations as `repo:tag`.
fn push_described(
    s: &Server,
    work: &Path,
    repo: &str,
    tag: &str,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
) {
    let dir = work.join(repo.replace('/', "_")).join(tag);
    let layer = oci::layer_bytes(repo.len() as u64 * 31 + tag.len() as u64, 512);
    oci_image_described(&dir, tag, &[layer], labels, annotations);
    let src = format!("oci:{}:{tag}", dir.display());
    let dst = format!("docker://{}/{repo}:{tag}", s.host());
    skopeo_ok(&["copy", "--dest-tls-verify=false", &src, &dst]);
}

fn get(s: &Server, path: &str) -> reqwest::blocking::Response {
    client().get(s.url(path)).expect_status(200)
}

fn json(s: &Server, path: &str) -> Value {
    get(s, path).json().expect("json")
}

/// The names of a legacy answer's results, in order.
fn names(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {v}"))
        .iter()
        .map(|r| r["name"].as_str().expect("name").to_owned())
        .collect()
}

/// Polls `path` until `ok` accepts its answer (a background reading of the store), at most
/// 10 s.
fn eventually(s: &Server, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let v = json(s, path);
        if ok(&v) {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{path}: still {v} after 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The store the tests search: names, tags and descriptions that "web" matches in each way.
fn push_fixture(s: &Server, work: &Path) {
    // A manifest annotation.
    push_described(
        s,
        work,
        "tools/web",
        "latest",
        &[],
        &[
            (DESCRIPTION, "A small server for STATIC files"),
            (TITLE, "tools"),
        ],
    );
    // Config labels only (as `docker build --label` writes them).
    push_described(
        s,
        work,
        "web",
        "1.0",
        &[(TITLE, "Web"), (DESCRIPTION, "the frontend")],
        &[],
    );
    push_described(s, work, "webhooks/relay", "latest", &[], &[]);
    // Found by its tag only.
    push_described(s, work, "base/alpine", "web-edge", &[], &[]);
    // Found by its title only: no description, so the title is shown.
    push_described(
        s,
        work,
        "other/db",
        "latest",
        &[],
        &[(TITLE, "Postgres for the webshop")],
    );
    push_described(
        s,
        work,
        "unrelated/thing",
        "latest",
        &[],
        &[(DESCRIPTION, "nothing")],
    );
}

/// What every answer about "web" must say, after a push or a restart alike.
fn check_web(s: &Server) {
    let v = json(s, "/v1/search?q=web");
    assert_eq!(
        names(&v, "results"),
        [
            "web",
            "webhooks/relay",
            "tools/web",
            "base/alpine",
            "other/db"
        ],
        "exact, prefix, inside the name, then tag and title: {v}"
    );
    assert_eq!(v["num_results"], 5);
    assert_eq!(v["query"], "web");
    assert_eq!(v["page"], 1);
    assert_eq!(v["page_size"], 25);
    assert_eq!(v["num_pages"], 1);
    let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
    assert_eq!(
        keys,
        [
            "num_pages",
            "num_results",
            "page",
            "page_size",
            "query",
            "results"
        ]
    );
    let r = &v["results"];
    assert_eq!(
        r[0]["description"], "the frontend",
        "from the config's labels"
    );
    assert_eq!(r[1]["description"], "");
    assert_eq!(r[2]["description"], "A small server for STATIC files");
    assert_eq!(r[4]["description"], "Postgres for the webshop", "the title");
    assert_eq!(
        r[0].as_object().expect("object").len(),
        2,
        "name and description only: {}",
        r[0]
    );
    // Case ignored, descriptions searched.
    let v = json(s, "/v1/search?q=Static");
    assert_eq!(names(&v, "results"), ["tools/web"]);
}

#[test]
fn search_ranks_names_tags_and_descriptions_pages_and_follows_changes() {
    let work = tempfile::tempdir().expect("tempdir");
    let storage = tempfile::tempdir().expect("tempdir");
    let mut s = Server::builder()
        .storage(storage.path())
        .delete_enabled()
        .start();
    push_fixture(&s, work.path());
    // Descriptions are read in the background after each push, within milliseconds.
    eventually(&s, "/v1/search?q=webshop", |v| v["num_results"] == 1);
    eventually(&s, "/v1/search?q=frontend", |v| v["num_results"] == 1);
    check_web(&s);

    // Legacy pages.
    let v = json(&s, "/v1/search?q=web&n=2&page=2");
    assert_eq!(names(&v, "results"), ["tools/web", "base/alpine"]);
    assert_eq!(
        (
            &v["num_results"],
            &v["num_pages"],
            &v["page"],
            &v["page_size"]
        ),
        (&5.into(), &3.into(), &2.into(), &2.into())
    );
    let v = json(&s, "/v1/search?q=web&n=2&page=9");
    assert_eq!(names(&v, "results"), Vec::<String>::new());
    let v = json(&s, "/v1/search?q=zzz");
    assert_eq!((&v["num_results"], &v["num_pages"]), (&0.into(), &0.into()));
    assert_eq!(
        json(&s, "/v1/search")["num_results"],
        6,
        "no query: everything"
    );

    // The v2 answer, two at a time, following the Link header as for /v2/_catalog.
    let mut path = "/v2/_catalog/search?q=web&n=2".to_owned();
    let mut seen = Vec::new();
    let mut how = Vec::new();
    for _ in 0..5 {
        let r = get(&s, &path);
        let link = r
            .headers()
            .get("link")
            .map(|l| l.to_str().expect("ascii").to_owned());
        let v: Value = r.json().expect("json");
        assert_eq!(v["num_results"], 5);
        for repo in v["repositories"].as_array().expect("repositories") {
            seen.push(repo["name"].as_str().expect("name").to_owned());
            how.push(repo["match"].as_str().expect("match").to_owned());
        }
        match link {
            Some(l) => {
                let next = l
                    .strip_prefix('<')
                    .and_then(|l| l.split_once('>'))
                    .map(|(u, _)| u.to_owned())
                    .expect("a link");
                assert!(
                    next.starts_with("/v2/_catalog/search?q=web&last="),
                    "{next}"
                );
                path = next;
            }
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "web",
            "webhooks/relay",
            "tools/web",
            "base/alpine",
            "other/db"
        ]
    );
    assert_eq!(how, ["exact", "prefix", "name", "tag", "description"]);
    let v = json(&s, "/v2/_catalog/search?q=edge");
    assert_eq!(
        v["repositories"][0]["tags"],
        serde_json::json!(["web-edge"])
    );
    client()
        .get(s.url("/v2/_catalog/search?n=x"))
        .expect_error(400, "PAGINATION_NUMBER_INVALID");

    // A deleted tag is gone at once; a deleted manifest takes its repository's tags along.
    let c = client();
    c.delete(s.url("/v2/base/alpine/manifests/web-edge"))
        .expect_status(202);
    assert_eq!(json(&s, "/v1/search?q=edge")["num_results"], 0);
    let digest = get(&s, "/v2/other/db/manifests/latest")
        .headers()
        .get("docker-content-digest")
        .map(|d| d.to_str().expect("ascii").to_owned())
        .expect("digest");
    c.delete(s.url(&format!("/v2/other/db/manifests/{digest}")))
        .expect_status(202);
    eventually(&s, "/v1/search?q=webshop", |v| v["num_results"] == 0);

    // A manifest put over HTTP with a description shows it, replacing none.
    let m = image_manifest_with_description(&c, &s, "other/db", "the database, again");
    put_manifest(&c, &s, "other/db", "latest", &m);
    eventually(&s, "/v1/search?q=again", |v| {
        names(v, "results") == ["other/db"]
    });
    c.delete(s.url("/v2/other/db/manifests/latest"))
        .expect_status(202);
    push_described(
        &s,
        work.path(),
        "other/db",
        "latest",
        &[],
        &[(TITLE, "Postgres for the webshop")],
    );
    push_described(&s, work.path(), "base/alpine", "web-edge", &[], &[]);
    eventually(&s, "/v1/search?q=webshop", |v| v["num_results"] == 1);

    // A restart rebuilds the index from the store: the same answers.
    s.signal_and_wait(15);
    let s = Server::builder()
        .storage(storage.path())
        .delete_enabled()
        .start();
    s.wait_for_log("search index: 6 repositories indexed in");
    check_web(&s);
}

/// An OCI manifest with a description annotation over a config and a layer pushed to
/// `repo` over HTTP.
fn image_manifest_with_description(
    c: &reqwest::blocking::Client,
    s: &Server,
    repo: &str,
    description: &str,
) -> String {
    let config =
        r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let cd = push_blob(c, s, repo, config.as_bytes());
    let mut m: Value =
        serde_json::from_str(&image_manifest((&cd, config.len()), &[])).expect("manifest");
    m["annotations"] = serde_json::json!({ DESCRIPTION: description });
    m.to_string()
}
