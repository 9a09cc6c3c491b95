//! sha512 content end to end over raw HTTP against the real binary: blobs pushed whole,
//! in chunks and resumed across a restart, pulled (GET, HEAD, Range), mounted and deleted;
//! manifests referencing sha512 blobs and pushed by a sha512 digest; referrers of a sha512
//! subject; collection and fsck over the registry:2 layout that distribution 3 writes for
//! sha512 (`blobs/sha512/...`). No real client here: skopeo 1.9 (containers/image 5.23)
//! hashes everything with sha256, so it can neither push sha512 content (it names uploads by
//! their sha256 digest) nor pull it ("digest sha256:... does not match expected sha512:...").

mod common;

use common::*;
use reqwest::blocking::Client;
use std::path::Path;

fn sha512_digest(data: &[u8]) -> String {
    use sha2::{Digest, Sha512};
    let hex: String = Sha512::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha512:{hex}")
}

/// Pushes a blob in one POST named by its sha512 digest; returns the digest.
fn push_blob512(c: &Client, s: &Server, repo: &str, data: &[u8]) -> String {
    let d = sha512_digest(data);
    let r = c
        .post(s.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
        .body(data.to_vec())
        .expect_status(201);
    assert_eq!(r.headers()["docker-content-digest"], d.as_str());
    d
}

fn put_manifest(c: &Client, s: &Server, repo: &str, reference: &str, body: &str) -> String {
    let r = c
        .put(s.url(&format!("/v2/{repo}/manifests/{reference}")))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(body.to_owned())
        .expect_status(201);
    r.headers()["docker-content-digest"]
        .to_str()
        .expect("digest")
        .to_owned()
}

fn status(c: &Client, method: reqwest::Method, url: String) -> u16 {
    c.request(method, url)
        .send()
        .expect("request")
        .status()
        .as_u16()
}

fn v2(storage: &Path) -> std::path::PathBuf {
    storage.join("docker/registry/v2")
}

#[test]
fn a_sha512_blob_pushed_whole_is_pulled_headed_ranged_and_stored_as_distribution_3_does() {
    let (s, c) = server_and_client();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
    let d = push_blob512(&c, &s, "big/app", &data);
    let hex = &d["sha512:".len()..];

    head_blob(&c, &s, "big/app", &d, data.len());
    let r = c
        .get(s.url(&format!("/v2/big/app/blobs/{d}")))
        .expect_status(200);
    assert_eq!(sha512_digest(&r.bytes().expect("body")), d);
    let r = c
        .get(s.url(&format!("/v2/big/app/blobs/{d}")))
        .header("range", "bytes=10-19")
        .expect_status(206);
    assert_eq!(r.bytes().expect("body").as_ref(), &data[10..20]);

    let root = v2(&s.storage);
    let stored = root.join(format!("blobs/sha512/{}/{hex}/data", &hex[..2]));
    assert_eq!(std::fs::read(&stored).expect("blob data"), data);
    let link = root.join(format!("repositories/big/app/_layers/sha512/{hex}/link"));
    assert_eq!(std::fs::read_to_string(link).expect("layer link"), d);
    assert!(
        !root.join("blobs/sha256").exists(),
        "nothing stored under sha256"
    );

    // Named by its sha256 digest the same bytes are a different, unknown blob.
    assert_eq!(
        status(
            &c,
            reqwest::Method::HEAD,
            s.url(&format!("/v2/big/app/blobs/{}", digest_of(&data)))
        ),
        404
    );
    // A sha512 digest that does not match the content stores nothing.
    let wrong = sha512_digest(b"other content");
    c.post(s.url(&format!("/v2/big/app/blobs/uploads/?digest={wrong}")))
        .body(b"content".to_vec())
        .expect_error(400, "DIGEST_INVALID");
    assert_eq!(
        status(
            &c,
            reqwest::Method::HEAD,
            s.url(&format!("/v2/big/app/blobs/{wrong}"))
        ),
        404
    );
}

/// PATCHes `data` in chunks of `chunk` bytes with Content-Range; returns the session URL.
fn patch_chunks(c: &Client, s: &Server, mut loc: String, data: &[u8], start: usize) -> String {
    let chunk = 70_000;
    let mut at = start;
    while at < data.len() {
        let end = (at + chunk).min(data.len());
        let r = c
            .patch(s.url(&loc))
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{at}-{}", end - 1))
            .body(data[at..end].to_vec())
            .expect_status(202);
        assert_eq!(r.headers()["range"], format!("0-{}", end - 1).as_str());
        loc = r.headers()["location"].to_str().expect("loc").to_owned();
        at = end;
    }
    loc
}

fn start_session(c: &Client, s: &Server, repo: &str) -> String {
    let r = c
        .post(s.url(&format!("/v2/{repo}/blobs/uploads/")))
        .expect_status(202);
    r.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned()
}

/// Finishes a session in repository `chunks` with `last` bytes and `digest`, then pulls the
/// blob back.
fn finish_and_pull(c: &Client, s: &Server, loc: &str, digest: &str, last: &[u8]) -> Vec<u8> {
    let r = c
        .put(s.url(&format!("{loc}?digest={digest}")))
        .body(last.to_vec())
        .expect_status(201);
    let blob = format!("/v2/chunks/blobs/{digest}");
    assert_eq!(r.headers()["location"], blob.as_str());
    let r = c.get(s.url(&blob)).expect_status(200);
    r.bytes().expect("body").to_vec()
}

#[test]
fn a_chunked_sha512_upload_resumes_across_a_restart_and_is_verified_at_the_end() {
    let dir = tempfile::tempdir().expect("tmp");
    let storage = dir.path().join("data");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 31 % 253) as u8).collect();
    let d = sha512_digest(&data);
    let c = client();

    // The last bytes come with the PUT, as clients that stream do.
    let s = Server::builder().storage(&storage).start();
    let loc = start_session(&c, &s, "chunks");
    let loc = patch_chunks(&c, &s, loc, &data[..2_000_000], 0);
    let got = finish_and_pull(&c, &s, &loc, &d, &data[2_000_000..]);
    assert_eq!(sha512_digest(&got), d);

    // Half the chunks, a restart (the hash state in memory is gone), the other half.
    let again: Vec<u8> = data.iter().rev().copied().collect();
    let d2 = sha512_digest(&again);
    let loc = start_session(&c, &s, "chunks");
    let loc = patch_chunks(&c, &s, loc, &again[..1_400_000], 0);
    drop(s);
    let s = Server::builder().storage(&storage).start();
    let r = c.get(s.url(&loc)).expect_status(204);
    assert_eq!(r.headers()["range"], "0-1399999");
    let loc = patch_chunks(&c, &s, loc, &again, 1_400_000);
    // A wrong digest of the right algorithm is refused, and ends the session.
    c.put(s.url(&format!("{loc}?digest={}", sha512_digest(b"no"))))
        .expect_error(400, "DIGEST_INVALID");
    c.get(s.url(&loc)).expect_status(404);

    // Resumed again, and finished right.
    let loc = start_session(&c, &s, "chunks");
    let loc = patch_chunks(&c, &s, loc, &again[..500_000], 0);
    drop(s);
    let s = Server::builder().storage(&storage).start();
    let loc = patch_chunks(&c, &s, loc, &again, 500_000);
    let got = finish_and_pull(&c, &s, &loc, &d2, b"");
    assert_eq!(got, again);
    let uploads = v2(&storage).join("repositories/chunks/_uploads");
    assert_eq!(
        std::fs::read_dir(&uploads).map(|d| d.count()).unwrap_or(0),
        0,
        "no session left"
    );
}

#[test]
fn a_sha512_blob_mounts_across_repositories_and_deletes() {
    let s = Server::builder().delete_enabled().start();
    let c = client();
    let d = push_blob512(&c, &s, "src/repo", b"shared sha512 layer");
    let r = c
        .post(s.url(&format!("/v2/dst/blobs/uploads/?mount={d}&from=src/repo")))
        .expect_status(201);
    assert_eq!(r.headers()["docker-content-digest"], d.as_str());
    let r = c
        .get(s.url(&format!("/v2/dst/blobs/{d}")))
        .send()
        .expect("get");
    assert_eq!(sha512_digest(&r.bytes().expect("body")), d);
    let r = c
        .delete(s.url(&format!("/v2/dst/blobs/{d}")))
        .expect_status(202);
    assert_eq!(r.headers()["docker-content-digest"], d.as_str());
    assert_eq!(
        status(
            &c,
            reqwest::Method::HEAD,
            s.url(&format!("/v2/dst/blobs/{d}"))
        ),
        404
    );
    // Unlinked from one repository only.
    assert_eq!(
        status(
            &c,
            reqwest::Method::HEAD,
            s.url(&format!("/v2/src/repo/blobs/{d}"))
        ),
        200
    );
    let r = c
        .delete(s.url(&format!("/v2/dst/blobs/{d}")))
        .send()
        .expect("delete again");
    assert_eq!(error_code(&r.text().expect("t")), "BLOB_UNKNOWN");
}

/// An image manifest over a sha512 config and layer, with an optional subject.
fn manifest512(config: &str, layer: &[u8], subject: Option<(&str, usize)>) -> String {
    let cd = sha512_digest(config.as_bytes());
    let ld = sha512_digest(layer);
    let subject = subject
        .map(|(d, n)| {
            format!(
                r#","subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d}","size":{n}}}"#
            )
        })
        .unwrap_or_default();
    let m = image_manifest((&cd, config.len()), &[(&ld, layer.len())]);
    format!("{}{subject}}}", &m[..m.len() - 1])
}

#[test]
fn manifests_reference_sha512_blobs_and_are_pushed_and_pulled_by_sha512_digest() {
    let s = Server::builder().delete_enabled().start();
    let c = client();
    let config = r#"{"architecture":"amd64","os":"linux"}"#;
    let layer = b"sha512 layer content";
    push_blob512(&c, &s, "m/five", config.as_bytes());
    push_blob512(&c, &s, "m/five", layer);
    let m = manifest512(config, layer, None);
    let md = sha512_digest(m.as_bytes());

    // By its sha512 digest: stored under that name only, and served back byte for byte.
    let r = c
        .put(s.url(&format!("/v2/m/five/manifests/{md}")))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(m.clone())
        .expect_status(201);
    assert_eq!(r.headers()["docker-content-digest"], md.as_str());
    assert_eq!(
        r.headers()["location"],
        format!("/v2/m/five/manifests/{md}").as_str()
    );
    let hex = &md["sha512:".len()..];
    let link = v2(&s.storage).join(format!(
        "repositories/m/five/_manifests/revisions/sha512/{hex}/link"
    ));
    assert_eq!(std::fs::read_to_string(link).expect("revision link"), md);
    for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
        let r = c
            .request(method.clone(), s.url(&format!("/v2/m/five/manifests/{md}")))
            .send()
            .expect("get");
        assert_eq!(r.status(), 200, "{method}");
        assert_eq!(r.headers()["docker-content-digest"], md.as_str());
        if method == reqwest::Method::GET {
            assert_eq!(r.text().expect("body"), m);
        }
    }
    // The same bytes by their sha256 digest were never pushed.
    assert_eq!(
        status(
            &c,
            reqwest::Method::GET,
            s.url(&format!("/v2/m/five/manifests/{}", digest_of(m.as_bytes())))
        ),
        404
    );
    // A body that does not hash to the sha512 digest in the URL is refused.
    c.put(s.url(&format!("/v2/m/five/manifests/{}", sha512_digest(b"other"))))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(m.clone())
        .expect_error(400, "DIGEST_INVALID");

    // By tag: named by sha256 as distribution does, its sha512 blobs checked and served.
    let tagged = manifest512(config, layer, Some((&md, m.len())));
    let td = put_manifest(&c, &s, "m/five", "v1", &tagged);
    assert_eq!(td, digest_of(tagged.as_bytes()));
    let tags: serde_json::Value = c
        .get(s.url("/v2/m/five/tags/list"))
        .send()
        .expect("tags")
        .json()
        .expect("json");
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));
    // It names the sha512 manifest as its subject: the referrers of a sha512 digest.
    let refs: serde_json::Value = c
        .get(s.url(&format!("/v2/m/five/referrers/{md}")))
        .send()
        .expect("referrers")
        .json()
        .expect("json");
    assert_eq!(refs["manifests"][0]["digest"], td.as_str(), "{refs}");
    assert_eq!(refs["manifests"].as_array().map(Vec::len), Some(1));
    // A manifest referencing a sha512 blob the repository lacks.
    let r = c
        .put(s.url("/v2/m/five/manifests/v2"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest512(config, b"never pushed", None))
        .send()
        .expect("put");
    assert_eq!(error_code(&r.text().expect("t")), "MANIFEST_BLOB_UNKNOWN");

    // Deleted by its sha512 digest.
    c.delete(s.url(&format!("/v2/m/five/manifests/{md}")))
        .expect_status(202);
    assert_eq!(
        status(
            &c,
            reqwest::Method::GET,
            s.url(&format!("/v2/m/five/manifests/{md}"))
        ),
        404
    );
}

#[test]
fn collection_and_fsck_see_sha512_blobs_links_and_revisions() {
    let dir = tempfile::tempdir().expect("tmp");
    let storage = dir.path().join("data");
    let c = client();
    let config = r#"{"architecture":"amd64","os":"linux","gc":1}"#;
    let (kept_layer, gone_layer) = (b"kept sha512 layer", b"gone sha512 layer");
    let (kept, gone, orphan);
    {
        let s = Server::builder().storage(&storage).delete_enabled().start();
        push_blob512(&c, &s, "g/app", config.as_bytes());
        push_blob512(&c, &s, "g/app", kept_layer);
        push_blob512(&c, &s, "g/app", gone_layer);
        orphan = push_blob512(&c, &s, "g/app", b"never referenced");
        let m = manifest512(config, kept_layer, None);
        kept = put_manifest(&c, &s, "g/app", &sha512_digest(m.as_bytes()), &m);
        let m = manifest512(config, gone_layer, None);
        gone = put_manifest(&c, &s, "g/app", &sha512_digest(m.as_bytes()), &m);
        c.delete(s.url(&format!("/v2/g/app/manifests/{gone}")))
            .expect_status(202);
    }

    let fsck = ours_ok(&storage, &["fsck"]);
    assert!(fsck.to_string().contains("0 problems"), "{fsck}");

    let gc = ours_ok(&storage, &["garbage-collect"]);
    let removed: std::collections::BTreeSet<&str> = gc.lines.iter().map(String::as_str).collect();
    let gone_layer_d = sha512_digest(gone_layer);
    assert_eq!(
        removed,
        [gone.as_str(), gone_layer_d.as_str(), orphan.as_str()]
            .into_iter()
            .collect(),
        "{gc}"
    );
    let fsck = ours_ok(&storage, &["fsck"]);
    assert!(
        fsck.to_string().contains("0 problems"),
        "no dangling layer link left: {fsck}"
    );

    let s = Server::builder().storage(&storage).start();
    for (d, want) in [
        (sha512_digest(kept_layer), 200),
        (sha512_digest(config.as_bytes()), 200),
        (gone_layer_d.clone(), 404),
        (orphan.clone(), 404),
    ] {
        assert_eq!(
            status(
                &c,
                reqwest::Method::HEAD,
                s.url(&format!("/v2/g/app/blobs/{d}"))
            ),
            want,
            "{d}"
        );
    }
    let r = c
        .get(s.url(&format!("/v2/g/app/manifests/{kept}")))
        .expect_status(200);
    assert_eq!(sha512_digest(&r.bytes().expect("body")), kept);
    drop(s);

    // fsck hashes sha512 content with sha512: a tampered blob is reported by name.
    let hex = &kept["sha512:".len()..];
    let data = v2(&storage).join(format!("blobs/sha512/{}/{hex}/data", &hex[..2]));
    std::fs::write(&data, b"tampered").expect("tamper");
    let fsck = ours(&storage, &["fsck"]);
    let text = fsck.to_string();
    assert!(!fsck.ok, "{text}");
    assert!(
        text.contains(&format!(
            "corrupt blob {kept}: its content hashes to {}",
            sha512_digest(b"tampered")
        )),
        "{text}"
    );
}
