//! The OCI Distribution API end to end over HTTP against the real binary: every endpoint of
//! the spec's table (end-1 … end-13) and every error code of the spec's list.

mod common;

use common::*;
use reqwest::blocking::Client;

fn start_upload(c: &Client, s: &Server, repo: &str) -> String {
    let r = c
        .post(s.url(&format!("/v2/{repo}/blobs/uploads/")))
        .expect_status(202);
    assert_eq!(r.headers()["range"], "0-0");
    assert!(r.headers().contains_key("docker-upload-uuid"));
    r.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned()
}

#[test]
fn base_endpoint_answers_with_the_api_version_header() {
    // end-1
    let s = Server::start();
    let r = client().get(s.url("/v2/")).expect_status(200);
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    assert_eq!(r.text().expect("body"), "{}");
}

#[test]
fn legacy_ping_search_and_root_endpoints_answer() {
    let (s, c) = server_and_client();
    for p in ["/_ping", "/v1/_ping"] {
        assert_eq!(c.get(s.url(p)).send().expect("ping").status(), 200, "{p}");
    }
    assert_eq!(
        c.get(s.url("/")).send().expect("root").text().expect("t"),
        "\"docker-registry server\""
    );
    push_image(&c, &s, "library/ubuntu", "latest", "u");
    push_image(&c, &s, "team/tools", "latest", "t");
    let v: serde_json::Value = c
        .get(s.url("/v1/search?q=ubu"))
        .send()
        .expect("search")
        .json()
        .expect("json");
    assert_eq!(v["num_results"], 1);
    assert_eq!(v["query"], "ubu");
    assert_eq!(v["results"][0]["name"], "library/ubuntu");
    assert_eq!(v["results"][0]["description"], "");
    let all: serde_json::Value = c
        .get(s.url("/v1/search"))
        .send()
        .expect("search")
        .json()
        .expect("json");
    assert_eq!(all["num_results"], 2);
}

#[test]
fn monolithic_push_then_get_head_and_ranges() {
    // end-4b, end-2 (GET, HEAD, Range 206 and 416)
    let (s, c) = server_and_client();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let d = push_blob(&c, &s, "a/b", &data);
    head_blob(&c, &s, "a/b", &d, data.len());
    let r = c
        .get(s.url(&format!("/v2/a/b/blobs/{d}")))
        .send()
        .expect("get");
    assert_eq!(r.bytes().expect("body").as_ref(), &data[..]);
    let r = c
        .get(s.url(&format!("/v2/a/b/blobs/{d}")))
        .header("range", "bytes=10-19")
        .expect_status(206);
    assert_eq!(r.headers()["content-range"], "bytes 10-19/100000");
    assert_eq!(r.bytes().expect("body").as_ref(), &data[10..20]);
    let r = c
        .get(s.url(&format!("/v2/a/b/blobs/{d}")))
        .header("range", "bytes=-5")
        .send()
        .expect("suffix");
    assert_eq!(r.bytes().expect("body").as_ref(), &data[data.len() - 5..]);
    let r = c
        .get(s.url(&format!("/v2/a/b/blobs/{d}")))
        .header("range", "bytes=100000-")
        .expect_status(416);
    assert_eq!(r.headers()["content-range"], "bytes */100000");
    // Another repository does not serve a blob it never linked.
    c.get(s.url(&format!("/v2/other/blobs/{d}")))
        .expect_error(404, "BLOB_UNKNOWN");
}

#[test]
fn blob_responses_forbid_content_sniffing() {
    // Pushed bytes that look like HTML must never be run by a browser as a page of ours.
    let (s, c) = server_and_client();
    let d = push_blob(&c, &s, "sniff", b"<html><script>alert(1)</script></html>");
    for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
        let r = c
            .request(method.clone(), s.url(&format!("/v2/sniff/blobs/{d}")))
            .send()
            .expect("request");
        assert_eq!(r.status(), 200, "{method}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{method}");
        assert_eq!(r.headers()["content-type"], "application/octet-stream");
    }
    let r = c
        .get(s.url(&format!("/v2/sniff/blobs/{d}")))
        .header("range", "bytes=0-5")
        .expect_status(206);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
}

#[test]
fn chunked_upload_with_status_and_out_of_order_chunk() {
    // end-4a, end-5, end-13, end-6
    let (s, c) = server_and_client();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let loc = start_upload(&c, &s, "chunked");
    let r = c
        .patch(s.url(&loc))
        .header("content-type", "application/octet-stream")
        .header("content-range", "0-99999")
        .body(data[..100_000].to_vec())
        .expect_status(202);
    assert_eq!(r.headers()["range"], "0-99999");
    let loc = r.headers()["location"].to_str().expect("loc").to_owned();
    // A chunk that skips ahead is refused with 416 and the range held.
    let r = c
        .patch(s.url(&loc))
        .header("content-range", "200000-299999")
        .body(data[200_000..].to_vec())
        .expect_status(416);
    assert_eq!(r.headers()["range"], "0-99999");
    // Status.
    let r = c.get(s.url(&loc)).expect_status(204);
    assert_eq!(r.headers()["range"], "0-99999");
    // Streamed chunk without Content-Range, then the last bytes with the PUT.
    let r = c
        .patch(s.url(&loc))
        .body(data[100_000..250_000].to_vec())
        .expect_status(202);
    assert_eq!(r.headers()["range"], "0-249999");
    let d = digest_of(&data);
    let r = c
        .put(s.url(&format!("{loc}?digest={d}")))
        .body(data[250_000..].to_vec())
        .expect_status(201);
    assert_eq!(
        r.headers()["location"],
        format!("/v2/chunked/blobs/{d}").as_str()
    );
    let got = c
        .get(s.url(&format!("/v2/chunked/blobs/{d}")))
        .send()
        .expect("get")
        .bytes()
        .expect("b");
    assert_eq!(got.as_ref(), &data[..]);
    // The session is gone once finished.
    c.get(s.url(&loc)).expect_status(404);
}

#[test]
fn wrong_digest_stores_nothing_and_ends_the_session() {
    let (s, c) = server_and_client();
    let loc = start_upload(&c, &s, "r");
    let wrong = digest_of(b"something else");
    let r = c
        .put(s.url(&format!("{loc}?digest={wrong}")))
        .body(b"the content".to_vec())
        .send()
        .expect("put");
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(&r.text().expect("t")), "DIGEST_INVALID");
    let real = digest_of(b"the content");
    assert_eq!(
        c.head(s.url(&format!("/v2/r/blobs/{real}")))
            .send()
            .expect("head")
            .status(),
        404
    );
    c.head(s.url(&format!("/v2/r/blobs/{wrong}")))
        .expect_status(404);
    let blobs = s.storage.join("docker/registry/v2/blobs");
    assert!(
        !blobs.exists() || walk_files(&blobs).is_empty(),
        "nothing stored"
    );
    // Monolithic with a wrong digest too.
    let r = c
        .post(s.url(&format!("/v2/r/blobs/uploads/?digest={wrong}")))
        .body(b"abc".to_vec())
        .send()
        .expect("post");
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(&r.text().expect("t")), "DIGEST_INVALID");
    assert!(walk_files(&s.storage.join("docker/registry/v2/repositories/r/_uploads")).is_empty());
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn upload_cancel_and_unknown_sessions() {
    // DELETE on an upload; BLOB_UPLOAD_UNKNOWN
    let (s, c) = server_and_client();
    let loc = start_upload(&c, &s, "x");
    c.delete(s.url(&loc)).expect_status(204);
    c.get(s.url(&loc)).expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    let r = c
        .patch(s.url("/v2/x/blobs/uploads/not-a-uuid"))
        .body("x")
        .send()
        .expect("patch");
    assert_eq!(error_code(&r.text().expect("t")), "BLOB_UPLOAD_UNKNOWN");
    c.put(s.url("/v2/x/blobs/uploads/3f1c1f2e-5d2a-4b8e-9d5c-111111111111?digest=sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")).expect_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[test]
fn size_and_range_errors() {
    let (s, c) = server_and_client();
    let loc = start_upload(&c, &s, "x");
    // Content-Range announcing 10 bytes with a 5-byte body: SIZE_INVALID.
    c.patch(s.url(&loc))
        .header("content-range", "0-9")
        .body(b"12345".to_vec())
        .expect_error(400, "SIZE_INVALID");
    // Malformed Content-Range: 416 BLOB_UPLOAD_INVALID.
    c.patch(s.url(&loc))
        .header("content-range", "bytes=a-b")
        .body(b"1".to_vec())
        .expect_error(416, "BLOB_UPLOAD_INVALID");
    // Finishing without a digest.
    let r = c.put(s.url(&loc)).send().expect("put");
    assert_eq!(error_code(&r.text().expect("t")), "DIGEST_INVALID");
    // A malformed digest.
    c.put(s.url(&format!("{loc}?digest=sha256:xyz")))
        .expect_error(400, "DIGEST_INVALID");
}

#[test]
fn cross_repository_mount() {
    // end-11
    let (s, c) = server_and_client();
    let d = push_blob(&c, &s, "src/repo", b"shared layer");
    let r = c
        .post(s.url(&format!("/v2/dst/blobs/uploads/?mount={d}&from=src/repo")))
        .expect_status(201);
    assert_eq!(
        r.headers()["location"],
        format!("/v2/dst/blobs/{d}").as_str()
    );
    assert_eq!(
        c.get(s.url(&format!("/v2/dst/blobs/{d}")))
            .send()
            .expect("get")
            .text()
            .expect("t"),
        "shared layer"
    );
    // Not mountable (unknown in `from`): an ordinary session instead.
    let other = digest_of(b"never pushed");
    let r = c
        .post(s.url(&format!(
            "/v2/dst/blobs/uploads/?mount={other}&from=src/repo"
        )))
        .expect_status(202);
    assert!(r.headers().contains_key("docker-upload-uuid"));
}

#[test]
fn manifests_by_tag_and_digest_with_exact_bytes() {
    // end-7, end-3
    let (s, c) = server_and_client();
    let cfg = br#"{"os":"linux"}"#;
    let cd = push_blob(&c, &s, "img", cfg);
    let ld = push_blob(&c, &s, "img", b"layer");
    // Odd whitespace must survive byte for byte.
    let m =
        image_manifest((&cd, cfg.len()), &[(&ld, 5)]).replace(",\"layers\"", " ,\n  \"layers\"");
    let md = digest_of(m.as_bytes());
    let r = c
        .put(s.url("/v2/img/manifests/v1"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(m.clone())
        .expect_status(201);
    assert_eq!(r.headers()["docker-content-digest"], md.as_str());
    assert_eq!(
        r.headers()["location"],
        format!("/v2/img/manifests/{md}").as_str()
    );
    for reference in ["v1", md.as_str()] {
        let r = c
            .get(s.url(&format!("/v2/img/manifests/{reference}")))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .expect_status(200);
        assert_eq!(
            r.headers()["content-type"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(r.headers()["docker-content-digest"], md.as_str());
        assert_eq!(r.text().expect("t"), m);
        let r = c
            .head(s.url(&format!("/v2/img/manifests/{reference}")))
            .expect_status(200);
        assert_eq!(r.headers()["content-length"], m.len().to_string().as_str());
    }
    // PUT by digest: the digest must match the body.
    c.put(s.url(&format!("/v2/img/manifests/{md}")))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(m.clone())
        .expect_status(201);
    let wrong = digest_of(b"nope");
    let r = c
        .put(s.url(&format!("/v2/img/manifests/{wrong}")))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(m)
        .send()
        .expect("put");
    assert_eq!(error_code(&r.text().expect("t")), "DIGEST_INVALID");
    c.get(s.url("/v2/img/manifests/nope"))
        .expect_error(404, "MANIFEST_UNKNOWN");
}

#[test]
fn docker_schema2_and_manifest_lists_with_negotiation() {
    let (s, c) = server_and_client();
    let cfg = br#"{"architecture":"amd64","os":"linux"}"#;
    let cd = push_blob(&c, &s, "d", cfg);
    let ld = push_blob(&c, &s, "d", b"L");
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":{},"digest":"{cd}"}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":1,"digest":"{ld}"}}]}}"#,
        cfg.len()
    );
    let md = digest_of(m.as_bytes());
    c.put(s.url("/v2/d/manifests/amd"))
        .header(
            "content-type",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .body(m.clone())
        .expect_status(201);
    let list = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[{{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":{},"digest":"{md}","platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
        m.len()
    );
    c.put(s.url("/v2/d/manifests/latest"))
        .header(
            "content-type",
            "application/vnd.docker.distribution.manifest.list.v2+json",
        )
        .body(list.clone())
        .expect_status(201);
    let r = c
        .get(s.url("/v2/d/manifests/latest"))
        .header(
            "accept",
            "application/vnd.docker.distribution.manifest.list.v2+json",
        )
        .send()
        .expect("get");
    assert_eq!(
        r.headers()["content-type"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    assert_eq!(r.text().expect("t"), list);
    // A client that only reads image manifests gets the linux/amd64 one.
    let r = c
        .get(s.url("/v2/d/manifests/latest"))
        .header(
            "accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .expect("get");
    assert_eq!(r.headers()["docker-content-digest"], md.as_str());
    // An index entry that is not in the repository: MANIFEST_BLOB_UNKNOWN.
    let bad = list.replace(&md, &digest_of(b"absent"));
    c.put(s.url("/v2/d/manifests/bad"))
        .header(
            "content-type",
            "application/vnd.docker.distribution.manifest.list.v2+json",
        )
        .body(bad)
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
}

#[test]
fn invalid_manifests_are_refused() {
    let (s, c) = server_and_client();
    let cd = push_blob(&c, &s, "m", b"{}");
    let put = |body: String, ct: &str| {
        c.put(s.url("/v2/m/manifests/t"))
            .header("content-type", ct)
            .body(body)
            .send()
            .expect("put")
    };
    let oci = "application/vnd.oci.image.manifest.v1+json";
    for (body, ct) in [
        ("not json".to_owned(), oci),
        ("[1,2]".to_owned(), oci),
        (r#"{"schemaVersion":3}"#.to_owned(), oci),
        (image_manifest((&cd, 2), &[]).replace("schemaVersion\":2", "schemaVersion\":2,\"x\":1"), "application/vnd.oci.image.index.v1+json"),
        (r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:1234","size":1},"layers":[]}"#.to_owned(), oci),
        (r#"{"schemaVersion":1,"name":"m","tag":"t","fsLayers":[]}"#.to_owned(), "application/vnd.docker.distribution.manifest.v1+prettyjws"),
    ] {
        let r = put(body.clone(), ct);
        assert_eq!(r.status(), 400, "{body}");
        assert_eq!(error_code(&r.text().expect("t")), "MANIFEST_INVALID", "{body}");
    }
    // A layer the repository does not have.
    let r = put(
        image_manifest((&cd, 2), &[(&digest_of(b"missing"), 7)]),
        oci,
    );
    assert_eq!(error_code(&r.text().expect("t")), "MANIFEST_BLOB_UNKNOWN");
    // Over 4 MiB: 413.
    let big = format!(
        r#"{{"schemaVersion":2,"pad":"{}"}}"#,
        "x".repeat(4 * 1024 * 1024)
    );
    let r = put(big, oci);
    assert_eq!(r.status(), 413);
    assert_eq!(error_code(&r.text().expect("t")), "SIZE_INVALID");
    // A bad tag.
    c.put(s.url("/v2/m/manifests/-bad"))
        .header("content-type", oci)
        .body("{}")
        .expect_error(400, "MANIFEST_INVALID");
}

#[test]
fn a_reference_that_cannot_exist_is_not_found_on_read_and_invalid_on_put() {
    // The conformance suite's `.INVALID_MANIFEST_NAME`: GET/HEAD/DELETE answer 404
    // MANIFEST_UNKNOWN, as for any manifest that is not there; a PUT is refused with 400.
    let s = Server::builder().delete_enabled().start();
    let c = client();
    push_image(&c, &s, "probe/me", "v1", "p");
    let url = s.url("/v2/probe/me/manifests/.INVALID_MANIFEST_NAME");
    c.get(&url).expect_error(404, "MANIFEST_UNKNOWN");
    let r = c.head(&url).expect_status(404);
    assert_eq!(r.content_length(), Some(0));
    c.delete(&url).expect_error(404, "MANIFEST_UNKNOWN");
    c.put(&url)
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body("{}")
        .expect_error(400, "MANIFEST_INVALID");
    // A malformed digest stays a client error on every method.
    c.get(s.url("/v2/probe/me/manifests/sha256:zz"))
        .expect_error(400, "DIGEST_INVALID");
}

#[test]
fn tags_list_with_pagination() {
    // end-8a, end-8b
    let (s, c) = server_and_client();
    for t in ["b", "a", "c", "d", "e"] {
        push_image(&c, &s, "p", t, "same");
    }
    let v: serde_json::Value = c
        .get(s.url("/v2/p/tags/list"))
        .send()
        .expect("get")
        .json()
        .expect("json");
    assert_eq!(v["name"], "p");
    assert_eq!(v["tags"], serde_json::json!(["a", "b", "c", "d", "e"]));
    let r = c.get(s.url("/v2/p/tags/list?n=2")).send().expect("get");
    assert_eq!(
        r.headers()["link"],
        "</v2/p/tags/list?last=b&n=2>; rel=\"next\""
    );
    let v: serde_json::Value = r.json().expect("json");
    assert_eq!(v["tags"], serde_json::json!(["a", "b"]));
    let r = c
        .get(s.url("/v2/p/tags/list?n=2&last=d"))
        .send()
        .expect("get");
    assert!(!r.headers().contains_key("link"));
    assert_eq!(
        r.json::<serde_json::Value>().expect("json")["tags"],
        serde_json::json!(["e"])
    );
    c.get(s.url("/v2/unknown/tags/list"))
        .expect_error(404, "NAME_UNKNOWN");
    c.get(s.url("/v2/p/tags/list?n=x")).expect_status(400);
}

#[test]
fn catalog_with_pagination() {
    let (s, c) = server_and_client();
    for r in ["zeta", "alpha/one", "alpha/two/deep", "mid"] {
        push_image(&c, &s, r, "t", r);
    }
    let v: serde_json::Value = c
        .get(s.url("/v2/_catalog"))
        .send()
        .expect("get")
        .json()
        .expect("json");
    assert_eq!(
        v["repositories"],
        serde_json::json!(["alpha/one", "alpha/two/deep", "mid", "zeta"])
    );
    let r = c.get(s.url("/v2/_catalog?n=3")).send().expect("get");
    assert_eq!(
        r.headers()["link"],
        "</v2/_catalog?last=mid&n=3>; rel=\"next\""
    );
    let r = c
        .get(s.url("/v2/_catalog?n=3&last=mid"))
        .send()
        .expect("get");
    assert_eq!(
        r.json::<serde_json::Value>().expect("json")["repositories"],
        serde_json::json!(["zeta"])
    );
}

#[test]
fn referrers_with_artifact_type_filter() {
    // end-12a, end-12b; OCI-Subject on PUT
    let (s, c) = server_and_client();
    let subject = push_image(&c, &s, "art", "v1", "subject");
    let empty = push_blob(&c, &s, "art", b"{}");
    let sig = push_blob(&c, &s, "art", b"signature");
    let mk = |at: &str, ann: &str| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"{at}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{empty}","size":2}},"layers":[{{"mediaType":"application/octet-stream","digest":"{sig}","size":9}}],"subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{subject}","size":1}},"annotations":{{"k":"{ann}"}}}}"#
        )
    };
    let mut digests = Vec::new();
    for (at, ann) in [
        ("application/vnd.example.sig", "one"),
        ("application/vnd.example.sbom", "two"),
    ] {
        let m = mk(at, ann);
        let d = digest_of(m.as_bytes());
        let r = c
            .put(s.url(&format!("/v2/art/manifests/{d}")))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(m)
            .expect_status(201);
        assert_eq!(r.headers()["oci-subject"], subject.as_str());
        digests.push(d);
    }
    let r = c
        .get(s.url(&format!("/v2/art/referrers/{subject}")))
        .expect_status(200);
    assert_eq!(
        r.headers()["content-type"],
        "application/vnd.oci.image.index.v1+json"
    );
    let v: serde_json::Value = r.json().expect("json");
    assert_eq!(v["manifests"].as_array().expect("list").len(), 2);
    let r = c
        .get(s.url(&format!(
            "/v2/art/referrers/{subject}?artifactType=application/vnd.example.sbom"
        )))
        .send()
        .expect("get");
    assert_eq!(r.headers()["oci-filters-applied"], "artifactType");
    let v: serde_json::Value = r.json().expect("json");
    let list = v["manifests"].as_array().expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["digest"], digests[1].as_str());
    assert_eq!(list[0]["annotations"]["k"], "two");
    // Unknown subject: an empty index.
    let v: serde_json::Value = c
        .get(s.url(&format!("/v2/art/referrers/{}", digest_of(b"zz"))))
        .send()
        .expect("get")
        .json()
        .expect("json");
    assert_eq!(v["manifests"], serde_json::json!([]));
}

/// Every way to enable deletion, which the 405 names.
const DELETE_DISABLED_HINTS: &[&str] = &[
    "--delete-enabled",
    "storage.delete.enabled",
    "storage_delete_enabled",
    "REGISTRY_STORAGE_DELETE_ENABLED",
];

#[test]
fn deletion_disabled_answers_unsupported() {
    // end-9, end-10 with deletion off
    let (s, c) = server_and_client();
    let d = push_image(&c, &s, "keep", "v1", "k");
    for url in [
        format!("/v2/keep/manifests/{d}"),
        "/v2/keep/manifests/v1".into(),
        format!("/v2/keep/blobs/{}", digest_of(b"layer for k")),
    ] {
        let r = c.delete(s.url(&url)).send().expect("delete");
        assert_eq!(r.status(), 405, "{url}");
        let body: serde_json::Value = r.json().expect("error body");
        assert_eq!(body["errors"][0]["code"], "UNSUPPORTED");
        // The answer says how to turn deletion on.
        assert_eq!(
            body["errors"][0]["message"],
            docker_registry::registry::DELETE_DISABLED
        );
        assert!(DELETE_DISABLED_HINTS
            .iter()
            .all(|h| docker_registry::registry::DELETE_DISABLED.contains(h)));
    }
    assert_eq!(
        c.get(s.url("/v2/keep/manifests/v1"))
            .send()
            .expect("get")
            .status(),
        200
    );
}

#[test]
fn deletion_enabled_removes_tags_manifests_and_blob_links() {
    // end-9, end-10
    let s = Server::builder().delete_enabled().start();
    let c = client();
    let d = push_image(&c, &s, "del", "v1", "x");
    push_image(&c, &s, "del", "v2", "x");
    // Tag deletion leaves the manifest and the other tag.
    c.delete(s.url("/v2/del/manifests/v1")).expect_status(202);
    c.get(s.url("/v2/del/manifests/v1")).expect_status(404);
    c.get(s.url(&format!("/v2/del/manifests/{d}")))
        .expect_status(200);
    // Manifest deletion by digest removes tags pointing at it.
    c.delete(s.url(&format!("/v2/del/manifests/{d}")))
        .expect_status(202);
    c.get(s.url("/v2/del/manifests/v2")).expect_status(404);
    c.delete(s.url(&format!("/v2/del/manifests/{d}")))
        .expect_error(404, "MANIFEST_UNKNOWN");
    let v: serde_json::Value = c
        .get(s.url("/v2/del/tags/list"))
        .send()
        .expect("tags")
        .json()
        .expect("json");
    assert_eq!(v["tags"], serde_json::json!([]));
    // Blob unlinking.
    let ld = digest_of(b"layer for x");
    c.delete(s.url(&format!("/v2/del/blobs/{ld}")))
        .expect_status(202);
    let r = c
        .delete(s.url(&format!("/v2/del/blobs/{ld}")))
        .send()
        .expect("del");
    assert_eq!(error_code(&r.text().expect("t")), "BLOB_UNKNOWN");
}

#[test]
fn hostile_names_are_refused_and_never_touch_the_filesystem() {
    let (s, c) = server_and_client();
    for path in [
        "/v2/../etc/tags/list",
        "/v2/a/../../b/tags/list",
        "/v2/UPPER/tags/list",
        "/v2/a%2F..%2Fb/tags/list",
        "/v2/a//b/tags/list",
        "/v2/_uploads/tags/list",
        "/v2/a/_manifests/tags/list",
    ] {
        let r = c.get(s.url(path)).send().expect("get");
        let st = r.status().as_u16();
        let body = r.text().expect("t");
        assert!(st == 400 || st == 404, "{path}: {st}");
        if st == 400 {
            assert_eq!(error_code(&body), "NAME_INVALID", "{path}");
        }
    }
    let r = c
        .post(s.url("/v2/a..b/blobs/uploads/"))
        .send()
        .expect("post");
    assert_eq!(error_code(&r.text().expect("t")), "NAME_INVALID");
    let r = c
        .get(s.url(&format!("/v2/{}/tags/list", "a".repeat(300))))
        .send()
        .expect("get");
    assert_eq!(error_code(&r.text().expect("t")), "NAME_INVALID");
    // Hostile headers: a huge Accept and a garbage Range do no harm.
    let d = push_blob(&c, &s, "h", b"hello");
    c.get(s.url(&format!("/v2/h/blobs/{d}")))
        .header("range", "bytes=zz-yy")
        .header("accept", "x".repeat(8000))
        .expect_status(200);
    assert!(!s.storage.parent().expect("parent").join("etc").exists());
}

#[test]
fn concurrent_pushes_of_the_same_blob_and_manifest_both_succeed() {
    let s = Server::start();
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
    let d = digest_of(&data);
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let url_post = s.url("/v2/same/blobs/uploads/");
            let data = data.clone();
            let d = d.clone();
            std::thread::spawn(move || {
                let c = client();
                let r = c.post(&url_post).send().expect("post");
                let loc = r.headers()["location"].to_str().expect("loc").to_owned();
                let base = url_post.split("/v2/").next().expect("base").to_owned();
                // Half stream in two chunks, half in one PUT.
                if i % 2 == 0 {
                    c.patch(format!("{base}{loc}"))
                        .body(data[..1_000_000].to_vec())
                        .expect_status(202);
                    c.put(format!("{base}{loc}?digest={d}"))
                        .body(data[1_000_000..].to_vec())
                        .expect_status(201);
                } else {
                    c.put(format!("{base}{loc}?digest={d}"))
                        .body(data)
                        .expect_status(201);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    let c = client();
    let got = c
        .get(s.url(&format!("/v2/same/blobs/{d}")))
        .send()
        .expect("get")
        .bytes()
        .expect("b");
    assert_eq!(digest_of(&got), d);
    // The same manifest from several threads at once.
    let m = image_manifest((&d, data.len()), &[]);
    let hs: Vec<_> = (0..6)
        .map(|_| {
            let url = s.url("/v2/same/manifests/t");
            let m = m.clone();
            std::thread::spawn(move || {
                client()
                    .put(url)
                    .header("content-type", "application/vnd.oci.image.manifest.v1+json")
                    .body(m)
                    .send()
                    .expect("put")
                    .status()
                    .as_u16()
            })
        })
        .collect();
    for h in hs {
        assert_eq!(h.join().expect("thread"), 201);
    }
    assert_eq!(
        c.get(s.url("/v2/same/manifests/t"))
            .send()
            .expect("get")
            .text()
            .expect("t"),
        m
    );
}

#[test]
fn unknown_endpoints_and_methods() {
    let (s, c) = server_and_client();
    c.get(s.url("/v3/")).expect_status(404);
    c.post(s.url("/v2/_catalog"))
        .expect_error(405, "UNSUPPORTED");
}

#[test]
fn reads_see_writes_immediately_despite_caching() {
    let s = Server::builder().delete_enabled().start();
    let c = client();
    let get = |tag: &str| {
        let r = c
            .get(s.url(&format!("/v2/cache/manifests/{tag}")))
            .send()
            .expect("get");
        (
            r.status().as_u16(),
            r.headers()
                .get("docker-content-digest")
                .map(|v| v.to_str().unwrap_or("").to_owned()),
        )
    };
    let a = push_image(&c, &s, "cache", "t", "first");
    assert_eq!(get("t"), (200, Some(a.clone())));
    let b = push_image(&c, &s, "cache", "t", "second");
    assert_eq!(get("t"), (200, Some(b.clone())), "retag visible at once");
    assert_eq!(
        c.delete(s.url("/v2/cache/manifests/t"))
            .send()
            .expect("del")
            .status(),
        202
    );
    assert_eq!(get("t").0, 404, "tag deletion visible at once");
    c.delete(s.url(&format!("/v2/cache/manifests/{a}")))
        .expect_status(202);
    assert_eq!(get(&a).0, 404, "manifest deletion visible at once");
    let v: serde_json::Value = c
        .get(s.url("/v2/_catalog"))
        .send()
        .expect("cat")
        .json()
        .expect("json");
    assert_eq!(v["repositories"], serde_json::json!(["cache"]));
    push_image(&c, &s, "cache2", "t", "third");
    let v: serde_json::Value = c
        .get(s.url("/v2/_catalog"))
        .send()
        .expect("cat")
        .json()
        .expect("json");
    assert_eq!(
        v["repositories"],
        serde_json::json!(["cache", "cache2"]),
        "new repository visible at once"
    );
    push_image(&c, &s, "cache2", "u", "third");
    let v: serde_json::Value = c
        .get(s.url("/v2/cache2/tags/list"))
        .send()
        .expect("tags")
        .json()
        .expect("json");
    assert_eq!(
        v["tags"],
        serde_json::json!(["t", "u"]),
        "new tag listed at once"
    );
}

/// A tag list is served from memory, but what another instance writes to the same storage
/// (here: a tag link written straight into the directory, and one removed) shows within a
/// couple of seconds: the cached list is replaced in the background once it is a second old.
#[test]
fn tag_lists_follow_changes_made_outside_this_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("data");
    let s = Server::builder().storage(&storage).start();
    let c = client();
    let digest = push_image(&c, &s, "shared", "one", "outside");
    push_image(&c, &s, "shared", "two", "outside");
    let tags = || -> serde_json::Value {
        c.get(s.url("/v2/shared/tags/list"))
            .send()
            .expect("tags")
            .json::<serde_json::Value>()
            .expect("json")["tags"]
            .clone()
    };
    assert_eq!(tags(), serde_json::json!(["one", "two"]));
    let tags_dir = storage.join("docker/registry/v2/repositories/shared/_manifests/tags");
    let link = tags_dir.join("three/current/link");
    std::fs::create_dir_all(link.parent().expect("parent")).expect("mkdir");
    std::fs::write(&link, &digest).expect("write link");
    std::fs::remove_dir_all(tags_dir.join("one")).expect("remove tag");
    let want = serde_json::json!(["three", "two"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut seen = tags();
    while seen != want && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
        seen = tags();
    }
    assert_eq!(seen, want, "changes made outside are listed within seconds");
    // And a write through this process is listed at once, whatever the cache held.
    push_image(&c, &s, "shared", "four", "inside");
    assert_eq!(tags(), serde_json::json!(["four", "three", "two"]));
}

/// A manifest PUT writes its new links in place (no temporary) once its journal record is
/// durable: a reader racing it must see the tag absent (404) or the whole manifest, never
/// an error or other bytes, and a GET once the PUT has answered sees it.
#[test]
fn reads_racing_manifest_puts_see_nothing_or_the_whole_manifest() {
    let (s, c) = server_and_client();
    let config = push_blob(&c, &s, "race", b"{}");
    let tags = 40;
    let manifests: Vec<String> = (0..tags)
        .map(|i| {
            let m = image_manifest((&config, 2), &[]);
            format!(r#"{},"annotations":{{"n":"{i}"}}}}"#, &m[..m.len() - 1])
        })
        .collect();
    let done = std::sync::atomic::AtomicBool::new(false);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            let (s, manifests, done) = (&s, &manifests, &done);
            scope.spawn(move || {
                let c = client();
                let mut seen = 0;
                while !done.load(std::sync::atomic::Ordering::Acquire)
                    && std::time::Instant::now() < deadline
                {
                    let i = seen % tags;
                    let r = c
                        .get(s.url(&format!("/v2/race/manifests/t{i}")))
                        .header("accept", "application/vnd.oci.image.manifest.v1+json")
                        .send()
                        .expect("get");
                    match r.status().as_u16() {
                        404 => {}
                        200 => {
                            assert_eq!(r.text().expect("body"), manifests[i], "t{i}");
                            seen += 1;
                        }
                        other => panic!("t{i}: {other} {}", r.text().unwrap_or_default()),
                    }
                }
            });
        }
        for (i, m) in manifests.iter().enumerate() {
            c.put(s.url(&format!("/v2/race/manifests/t{i}")))
                .header("content-type", "application/vnd.oci.image.manifest.v1+json")
                .body(m.clone())
                .expect_status(201);
            let got = c
                .get(s.url(&format!("/v2/race/manifests/t{i}")))
                .header("accept", "application/vnd.oci.image.manifest.v1+json")
                .send()
                .expect("get");
            assert_eq!(got.status(), 200, "t{i} right after its PUT");
            assert_eq!(&got.text().expect("body"), m);
        }
        done.store(true, std::sync::atomic::Ordering::Release);
    });
}
