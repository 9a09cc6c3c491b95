//! HTTP against a started `Server`: the client the tests use, pushes of blobs, manifests and
//! small images, and `Check`, which sends a request and checks its answer in one step.

use super::{digest_of, Server};
use reqwest::blocking::{RequestBuilder, Response};
use std::time::Duration;

/// Sending a request and checking its answer in one step, so that a test reads as what it
/// asks and what it must get: `c.get(s.url("/v2/x/tags/list")).expect_status(404)`. A
/// failure names the method, the URL, the status and the body.
pub trait Check {
    /// Sends the request; the answer must have `status`.
    fn expect_status(self, status: u16) -> Response;
    /// Sends the request; the answer must be an OCI error with `status` and `code` first in
    /// its `errors`. Returns the body.
    fn expect_error(self, status: u16, code: &str) -> String;
}

impl Check for RequestBuilder {
    #[track_caller]
    fn expect_status(self, status: u16) -> Response {
        let (client, request) = self.build_split();
        let request = match request {
            Ok(r) => r,
            Err(e) => panic!("cannot build the request: {e}"),
        };
        let what = format!("{} {}", request.method(), request.url());
        let r = match client.execute(request) {
            Ok(r) => r,
            Err(e) => panic!("{what}: {e}"),
        };
        if r.status() != status {
            let got = r.status();
            panic!(
                "{what}: expected {status}, got {got}: {}",
                r.text().unwrap_or_default()
            );
        }
        r
    }

    #[track_caller]
    fn expect_error(self, status: u16, code: &str) -> String {
        let body = match self.expect_status(status).text() {
            Ok(b) => b,
            Err(e) => panic!("reading the error body: {e}"),
        };
        assert_eq!(error_code(&body), code, "{body}");
        body
    }
}

/// A server started with the defaults, and a client for it.
pub fn server_and_client() -> (Server, reqwest::blocking::Client) {
    (Server::start(), client())
}

/// HEAD of a blob of `repo` must answer 200 with the blob's length and digest.
#[track_caller]
pub fn head_blob(c: &reqwest::blocking::Client, s: &Server, repo: &str, digest: &str, len: usize) {
    let r = c
        .head(s.url(&format!("/v2/{repo}/blobs/{digest}")))
        .expect_status(200);
    assert_eq!(r.headers()["content-length"], len.to_string().as_str());
    assert_eq!(r.headers()["docker-content-digest"], digest);
}

/// A client that does not follow redirects: the tests check them.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(300))
        .build()
        .expect("client")
}

/// A `Location` header as a URL: as it is when absolute, else on `base_url`
/// (`http://127.0.0.1:PORT`).
pub fn absolute(base_url: &str, location: &str) -> String {
    if location.starts_with("http") {
        location.to_owned()
    } else {
        format!("{base_url}{location}")
    }
}

/// Pushes a blob monolithically; returns its digest.
pub fn push_blob(c: &reqwest::blocking::Client, s: &Server, repo: &str, data: &[u8]) -> String {
    let d = digest_of(data);
    c.post(s.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
        .body(data.to_vec())
        .expect_status(201);
    d
}

/// An OCI image manifest over the given config and layers (digest, size).
pub fn image_manifest(config: (&str, usize), layers: &[(&str, usize)]) -> String {
    let layers: Vec<String> = layers
        .iter()
        .map(|(d, n)| format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d}","size":{n}}}"#))
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{}]}}"#,
        config.0,
        config.1,
        layers.join(",")
    )
}

/// Pushes a small image (config + one layer) and tags it; returns the manifest digest.
pub fn push_image(
    c: &reqwest::blocking::Client,
    s: &Server,
    repo: &str,
    tag: &str,
    seed: &str,
) -> String {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#);
    let layer = format!("layer for {seed}").into_bytes();
    let cd = push_blob(c, s, repo, config.as_bytes());
    let ld = push_blob(c, s, repo, &layer);
    let m = image_manifest((&cd, config.len()), &[(&ld, layer.len())]);
    put_manifest(c, s, repo, tag, &m)
}

/// Puts an OCI image manifest as `repo:tag` (201 expected); returns its digest.
pub fn put_manifest(
    c: &reqwest::blocking::Client,
    s: &Server,
    repo: &str,
    tag: &str,
    manifest: &str,
) -> String {
    c.put(s.url(&format!("/v2/{repo}/manifests/{tag}")))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.to_owned())
        .expect_status(201);
    digest_of(manifest.as_bytes())
}

/// The `errors[0].code` of a JSON error body.
pub fn error_code(body: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    v["errors"][0]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
        .to_owned()
}
