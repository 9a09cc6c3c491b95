//! The pull-through cache (`proxy`) with real registries as its upstreams: ours with Basic
//! authentication and with token authentication (its built-in token endpoint: the whole
//! Bearer dance), distribution 2.8.2 with Basic authentication; skopeo pulls through the
//! cache (digests checked), then again with the upstream stopped; two upstreams chosen by
//! prefix and by containerd's `ns`; a local push beside them and a push to a proxied
//! repository refused; concurrent pulls of one image fetch each blob once (counted in the
//! upstream's access log); a tag moved upstream is seen once its `ttl` has passed; a blob
//! whose content upstream does not match its digest is never stored.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// An htpasswd file with `user:password` (bcrypt), written by Apache's htpasswd.
fn htpasswd_file(dir: &Path, user: &str, password: &str) -> std::path::PathBuf {
    let file = dir.join("users.htpasswd");
    checked(Command::new(HTPASSWD.program).args([
        "-cbB",
        "-C",
        "5",
        file.to_str().expect("utf-8"),
        user,
        password,
    ]));
    file
}

/// skopeo pushes OCI layout `layout` (its `latest`) to `host/repo:tag`, with `creds` if any.
fn push(host: &str, layout: &Path, repo: &str, tag: &str, creds: Option<&str>) {
    let src = format!("oci:{}:latest", layout.display());
    let dst = format!("docker://{host}/{repo}:{tag}");
    let mut args = vec!["copy", "--dest-tls-verify=false"];
    if let Some(c) = creds {
        args.extend(["--dest-creds", c]);
    }
    args.extend([src.as_str(), dst.as_str()]);
    skopeo_ok(&args);
}

/// skopeo pulls `host/repo:tag` into a fresh `dir:` copy at `into`; checks every blob
/// against its digest and returns the manifest's digest as served.
fn pull(host: &str, repo: &str, tag: &str, into: &Path) -> String {
    let _ = std::fs::remove_dir_all(into);
    let src = format!("docker://{host}/{repo}:{tag}");
    let dst = format!("dir:{}", into.display());
    skopeo_ok(&["copy", "--src-tls-verify=false", &src, &dst]);
    assert!(
        check_pulled_blobs(into) >= 2,
        "a config and a layer at least"
    );
    let manifest = std::fs::read(into.join("manifest.json")).expect("manifest");
    format!("sha256:{}", sha256_hex(&manifest))
}

/// The digest the registry at `host` answers for `repo:tag` (HEAD), or its status.
fn head_digest(host: &str, repo: &str, tag: &str, query: &str) -> Result<String, u16> {
    let r = client()
        .head(format!("http://{host}/v2/{repo}/manifests/{tag}{query}"))
        .header(
            "accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
        )
        .send()
        .expect("head");
    match r.status().as_u16() {
        200 => Ok(r.headers()["docker-content-digest"]
            .to_str()
            .expect("ascii")
            .to_owned()),
        s => Err(s),
    }
}

/// How many requests of the access log `log` are `method` on paths starting with `path`.
fn requests(log: &str, method: &str, path: &str) -> usize {
    let needle = format!(" {method} {path}");
    log.lines().filter(|l| l.contains(&needle)).count()
}

/// The count of [`requests`] in `s`'s log once it has reached `expected` (its lines come
/// through a pipe, a little after the answers), or after 5 s: the caller compares.
fn logged(s: &Server, method: &str, path: &str, expected: usize) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let n = requests(&s.log_text(), method, path);
        if n >= expected || std::time::Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One image of one layer of `len` bytes (seeded), as an OCI layout in `dir`; returns the
/// manifest digest.
fn image(dir: &Path, seed: u64, len: usize) -> String {
    oci_image(dir, "latest", &[layer_bytes(seed, len)])
}

/// The layer digests of the manifest at `host/repo:reference`.
fn layer_digests(host: &str, repo: &str, reference: &str) -> Vec<String> {
    let m: serde_json::Value = client()
        .get(format!("http://{host}/v2/{repo}/manifests/{reference}"))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .expect_status(200)
        .json()
        .expect("json");
    m["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_owned())
        .collect()
}

/// Ours as a cache of `upstream` (registry:2's variable: every repository).
fn caching(upstream: &Server) -> ServerBuilder {
    Server::builder().env(
        "REGISTRY_PROXY_REMOTEURL",
        format!("http://{}", upstream.host()),
    )
}

#[test]
fn basic_auth_upstreams_ours_and_distribution_then_the_cache_alone() {
    if !have(&[SKOPEO, HTPASSWD, DISTRIBUTION]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let users = htpasswd_file(d, "mirror", "mirror pw");
    let layouts = d.join("layouts");
    let want = image(&layouts.join("one"), 1, 300_000);

    // Ours as the upstream, and distribution 2.8.2 beside it, both Basic.
    let upstream = Server::builder().file_arg("--htpasswd", &users).start();
    push(
        &upstream.host(),
        &layouts.join("one"),
        "library/one",
        "latest",
        Some("mirror:mirror pw"),
    );
    let root = d.join("dist");
    let mut dist = Distribution::start_configured(
        &format!("{{filesystem: {{rootdirectory: {}}}}}", root.display()),
        &format!(
            "auth: {{htpasswd: {{realm: r, path: {}}}}}\n",
            users.display()
        ),
    );
    push(
        &dist.host(),
        &layouts.join("one"),
        "dist/one",
        "latest",
        Some("mirror:mirror pw"),
    );

    // registry:2's variables for the catch-all, an upstreams entry (the file) for dist/.
    let yml = d.join("cache.yml");
    std::fs::write(
        &yml,
        format!(
            "version: 0.1\nproxy:\n  upstreams:\n    - prefix: dist/**\n      remoteurl: http://{}\n      \
             username: mirror\n      password: mirror pw\n",
            dist.host()
        ),
    )
    .expect("write");
    let debug = free_port();
    let cache = caching(&upstream)
        .file_arg("--config", &yml)
        .args_from(&["--debug-addr", &format!("127.0.0.1:{debug}"), "--metrics"])
        .env("REGISTRY_PROXY_USERNAME", "mirror")
        .env("REGISTRY_PROXY_PASSWORD", "mirror pw")
        .start();
    let host = cache.host();
    assert_eq!(pull(&host, "library/one", "latest", &d.join("p1")), want);
    assert_eq!(pull(&host, "dist/one", "latest", &d.join("p2")), want);

    // The upstreams gone, both images come from the cache (tags as last seen).
    drop(upstream);
    dist.stop();
    assert_eq!(pull(&host, "library/one", "latest", &d.join("p3")), want);
    assert_eq!(pull(&host, "dist/one", "latest", &d.join("p4")), want);
    // Cached images are ordinary tagged images to garbage collection: kept.
    let gc = ours(
        &cache.storage,
        &["garbage-collect", "--online", "--grace", "0s"],
    );
    assert!(gc.ok, "{gc}");
    assert_eq!(pull(&host, "library/one", "latest", &d.join("p5")), want);
    // What was never fetched is unavailable, not unknown.
    client()
        .get(cache.url("/v2/library/other/manifests/latest"))
        .expect_error(503, "UNAVAILABLE");

    // Every repository is proxied (the catch-all): pushes are refused as registry:2 does.
    client()
        .post(cache.url("/v2/library/one/blobs/uploads/"))
        .expect_error(405, "UNSUPPORTED");

    let metrics = client()
        .get(format!("http://127.0.0.1:{debug}/metrics"))
        .expect_status(200)
        .text()
        .expect("text");
    for name in [
        "registry_proxy_requests_total{type=\"blob\"}",
        "registry_proxy_hits_total{type=\"blob\"}",
        "registry_proxy_misses_total{type=\"blob\"} 4",
        "registry_proxy_misses_total{type=\"manifest\"} 2",
        "registry_proxy_pulled_bytes_total{type=\"blob\"}",
        "registry_proxy_pushed_bytes_total{type=\"manifest\"}",
    ] {
        assert!(metrics.contains(name), "{name} not in\n{metrics}");
    }
}

/// A self-signed EC P-256 key and certificate for tokens (openssl).
fn token_key(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (key, cert) = (dir.join("token.key"), dir.join("token.crt"));
    checked(Command::new(OPENSSL.program).args([
        "req",
        "-x509",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=proxy-test-token",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-keyout",
        key.to_str().expect("utf-8"),
        "-out",
        cert.to_str().expect("utf-8"),
    ]));
    (key, cert)
}

#[test]
fn a_token_auth_upstream_gets_the_bearer_dance_and_its_token_is_reused() {
    if !have(&[SKOPEO, HTPASSWD, OPENSSL]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let users = htpasswd_file(d, "mirror", "mirror pw");
    let (key, cert) = token_key(d);
    let port = free_port();
    let realm = format!("http://127.0.0.1:{port}/token");
    let upstream = Server::builder()
        .port(port)
        .args_from(&[
            "--token-realm",
            &realm,
            "--token-service",
            "upstream",
            "--token-issuer",
            "upstream-issuer",
            "--token-rootcertbundle",
            cert.to_str().expect("utf-8"),
            "--token-signing-key",
            key.to_str().expect("utf-8"),
            "--htpasswd",
            users.to_str().expect("utf-8"),
        ])
        .start();
    let layouts = d.join("layouts");
    let want = image(&layouts.join("tok"), 2, 200_000);
    push(
        &upstream.host(),
        &layouts.join("tok"),
        "team/tok",
        "latest",
        Some("mirror:mirror pw"),
    );
    // The push's requests (its tokens among them) are in the log once its last one is.
    upstream.wait_for_log("PUT /v2/team/tok/manifests/latest");
    let tokens_before = requests(&upstream.log_text(), "GET", "/token");

    let yml = d.join("cache.yml");
    std::fs::write(
        &yml,
        format!(
            "version: 0.1\nproxy:\n  remoteurl: http://{}\n  username: mirror\n  password: mirror pw\n",
            upstream.host()
        ),
    )
    .expect("write");
    let cache = Server::builder().file_arg("--config", &yml).start();
    assert_eq!(
        pull(&cache.host(), "team/tok", "latest", &d.join("p1")),
        want
    );
    // One token for the repository's pull scope, reused for every request after.
    let blobs = logged(&upstream, "GET", "/v2/team/tok/blobs/", 2);
    let log = upstream.log_text();
    assert_eq!(requests(&log, "GET", "/token") - tokens_before, 1, "{log}");
    assert!(blobs >= 2, "{log}");

    // Wrong credentials upstream: nothing to serve, and said so.
    let bad = caching(&upstream)
        .env("REGISTRY_PROXY_USERNAME", "mirror")
        .env("REGISTRY_PROXY_PASSWORD", "wrong")
        .start();
    client()
        .get(bad.url("/v2/team/tok/manifests/latest"))
        .expect_error(503, "UNAVAILABLE");
}

#[test]
fn two_upstreams_by_prefix_and_by_ns_beside_local_repositories() {
    if !have(&[SKOPEO]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let layouts = d.join("layouts");
    let (hub_image, quay_image, own_image) = (
        image(&layouts.join("hub"), 3, 100_000),
        image(&layouts.join("quay"), 4, 100_000),
        image(&layouts.join("own"), 5, 100_000),
    );
    let hub = Server::start();
    let quay = Server::start();
    push(
        &hub.host(),
        &layouts.join("hub"),
        "library/alpine",
        "3",
        None,
    );
    push(
        &quay.host(),
        &layouts.join("quay"),
        "coreos/etcd",
        "v3",
        None,
    );
    let yml = d.join("cache.yml");
    std::fs::write(
        &yml,
        format!(
            "version: 0.1\nproxy:\n  upstreams:\n\
             \x20   - prefix: library/**\n      remoteurl: http://{}\n      namespaces: [docker.io]\n\
             \x20   - prefix: quay/**\n      remoteurl: http://{}\n      stripprefix: true\n      namespaces: [quay.io]\n",
            hub.host(),
            quay.host()
        ),
    )
    .expect("write");
    // And a multi-platform image (an index): its children come by digest, on demand.
    let fixtures = oci_layouts();
    skopeo_push_layout(
        &hub.host(),
        fixtures.path(),
        "multi",
        "multi",
        "library/multi",
        true,
    );
    let index = layout_digest(&fixtures.path().join("multi"), "multi");
    let cache = Server::builder().file_arg("--config", &yml).start();
    let host = cache.host();
    assert_eq!(pull(&host, "library/alpine", "3", &d.join("p1")), hub_image);
    // One platform pulled: the other's manifest and blobs are not here, which fsck knows
    // a cache's repository is waiting for, not damage (without the proxy's configuration
    // it reports them).
    pull(&host, "library/multi", "latest", &d.join("amd64"));
    let fsck = ours(
        &cache.storage,
        &["--config", yml.to_str().expect("utf-8"), "fsck"],
    );
    assert!(fsck.ok, "{fsck}");
    let unaware = ours(&cache.storage, &["fsck"]);
    assert!(
        !unaware.ok && unaware.lines.iter().any(|l| l.contains("library/multi")),
        "{unaware}"
    );
    let all = d.join("multi");
    skopeo_ok(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{host}/library/multi:latest"),
        &format!("dir:{}", all.display()),
    ]);
    let got = std::fs::read(all.join("manifest.json")).expect("index");
    assert_eq!(format!("sha256:{}", sha256_hex(&got)), index);
    assert!(
        check_pulled_blobs(&all) >= 4,
        "both platforms' configs and layers"
    );
    assert_eq!(
        pull(&host, "quay/coreos/etcd", "v3", &d.join("p2")),
        quay_image
    );
    // containerd's mirror requests: the upstream's own name, the registry in `ns`.
    assert_eq!(
        head_digest(&host, "coreos/etcd", "v3", "?ns=quay.io"),
        Ok(quay_image.clone())
    );
    assert_eq!(
        head_digest(&host, "library/alpine", "3", "?ns=docker.io"),
        Ok(hub_image.clone())
    );
    assert_eq!(
        head_digest(&host, "library/alpine", "3", "?ns=ghcr.io"),
        Err(404)
    );
    // Tags as the upstream lists them, under the name asked.
    let tags: serde_json::Value = client()
        .get(cache.url("/v2/quay/coreos/etcd/tags/list"))
        .expect_status(200)
        .json()
        .expect("json");
    assert_eq!(
        tags,
        serde_json::json!({"name": "quay/coreos/etcd", "tags": ["v3"]})
    );
    // The ns request and the prefixed name are one cached repository.
    let fetched = logged(&quay, "GET", "/v2/coreos/etcd/manifests/", 1);
    assert_eq!(fetched, 1, "{}", quay.log_text());

    // Other repositories are ours: pushed and pulled as usual.
    push(&host, &layouts.join("own"), "team/app", "1.0", None);
    assert_eq!(pull(&host, "team/app", "1.0", &d.join("p3")), own_image);
    let c = client();
    c.get(cache.url("/v2/team/app/manifests/2.0"))
        .expect_error(404, "MANIFEST_UNKNOWN");
    // Proxied ones refuse pushes and deletes.
    for (method, path) in [
        (reqwest::Method::POST, "/v2/library/alpine/blobs/uploads/"),
        (reqwest::Method::PUT, "/v2/quay/x/manifests/latest"),
        (reqwest::Method::DELETE, "/v2/library/alpine/manifests/3"),
    ] {
        c.request(method, cache.url(path))
            .expect_error(405, "UNSUPPORTED");
    }
    let (ok, out) = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:latest", layouts.join("own").display()),
        &format!("docker://{host}/library/mine:1"),
    ]);
    assert!(!ok, "a push to a proxied repository: {out}");
}

#[test]
fn concurrent_pulls_of_one_image_fetch_each_blob_once() {
    if !have(&[SKOPEO]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let layouts = d.join("layouts");
    // Large enough that the fetch is still running when the other pulls arrive.
    let want = image(&layouts.join("big"), 6, 48 << 20);
    let upstream = Server::start();
    push(
        &upstream.host(),
        &layouts.join("big"),
        "library/big",
        "latest",
        None,
    );
    let cache = caching(&upstream).start();
    let host = cache.host();
    let layers = layer_digests(&upstream.host(), "library/big", "latest");
    let layer = layers[0].clone();
    let before = requests(&upstream.log_text(), "GET", "/v2/library/big/blobs/");

    // Eight clients at once on the big layer, and three skopeo pulls of the image.
    let start = std::sync::Arc::new(std::sync::Barrier::new(11));
    let mut threads = Vec::new();
    for _ in 0..8 {
        let (start, url) = (
            start.clone(),
            cache.url(&format!("/v2/library/big/blobs/{layer}")),
        );
        threads.push(std::thread::spawn(move || {
            start.wait();
            let body = client().get(url).expect_status(200).bytes().expect("body");
            format!("sha256:{}", sha256_hex(&body))
        }));
    }
    for i in 0..3 {
        let (start, host, into) = (start.clone(), host.clone(), d.join(format!("p{i}")));
        threads.push(std::thread::spawn(move || {
            start.wait();
            pull(&host, "library/big", "latest", &into)
        }));
    }
    let got: Vec<String> = threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    for g in &got[..8] {
        assert_eq!(g, &layer);
    }
    for g in &got[8..] {
        assert_eq!(g, &want);
    }
    let blob_fetches = logged(&upstream, "GET", "/v2/library/big/blobs/", before + 2) - before;
    let log = upstream.log_text();
    let layer_fetches = requests(&log, "GET", &format!("/v2/library/big/blobs/{layer}"));
    eprintln!("upstream GETs: {layer_fetches} of the layer, {blob_fetches} blobs in all, for 11 concurrent pulls");
    assert_eq!(layer_fetches, 1, "{log}");
    assert_eq!(
        blob_fetches, 2,
        "the layer and the config, once each: {log}"
    );
}

#[test]
fn a_tag_moved_upstream_is_seen_once_its_ttl_has_passed() {
    if !have(&[SKOPEO]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let layouts = d.join("layouts");
    let (first, second) = (
        image(&layouts.join("first"), 7, 50_000),
        image(&layouts.join("second"), 8, 50_000),
    );
    let upstream = Server::start();
    push(
        &upstream.host(),
        &layouts.join("first"),
        "library/moving",
        "latest",
        None,
    );
    let cache = caching(&upstream).env("REGISTRY_PROXY_TTL", "3s").start();
    let host = cache.host();
    assert_eq!(
        pull(&host, "library/moving", "latest", &d.join("p1")),
        first
    );
    push(
        &upstream.host(),
        &layouts.join("second"),
        "library/moving",
        "latest",
        None,
    );
    // Within the ttl: the tag as fetched, without asking the upstream.
    // The first pull asked once; nothing else is asked within the ttl.
    let heads = logged(&upstream, "HEAD", "/v2/library/moving/manifests/latest", 1);
    assert_eq!(
        head_digest(&host, "library/moving", "latest", ""),
        Ok(first.clone())
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        pull(&host, "library/moving", "latest", &d.join("p2")),
        second
    );
    let after = logged(
        &upstream,
        "HEAD",
        "/v2/library/moving/manifests/latest",
        heads + 1,
    );
    assert_eq!(
        after,
        heads + 1,
        "one HEAD after the ttl: {}",
        upstream.log_text()
    );
    // The old image stays pullable by digest.
    assert_eq!(
        head_digest(&host, "library/moving", &first, ""),
        Ok(first.clone())
    );
}

#[test]
fn content_that_does_not_match_its_digest_upstream_is_never_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = Server::start();
    let c = client();
    let data = layer_bytes(9, 3 << 20);
    let digest = push_blob(&c, &upstream, "library/bad", &data);
    // Damage the upstream's copy (same size): it serves it as it is.
    let hex = digest.trim_start_matches("sha256:");
    let file = upstream.storage.join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    let mut bytes = std::fs::read(&file).expect("blob");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&file, &bytes).expect("damage");
    let cache = caching(&upstream).start();
    for _ in 0..2 {
        let r = c
            .get(cache.url(&format!("/v2/library/bad/blobs/{digest}")))
            .send();
        must_not_complete(r);
    }
    cache.wait_for_log("does not match its digest");
    assert!(stored_blobs(&cache.storage).is_empty());
    let fetches = logged(
        &upstream,
        "GET",
        &format!("/v2/library/bad/blobs/{digest}"),
        2,
    );
    assert_eq!(fetches, 2, "{}", upstream.log_text());
    drop(dir);
}

#[test]
fn the_legacy_mirroring_section_configures_the_proxy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yml = dir.path().join("legacy.yml");
    std::fs::write(
        &yml,
        "common:\n  mirroring:\n    source: https://registry-1.docker.io\n    source_index: https://index.docker.io\n    tags_cache_ttl: 172800\nlocal:\n  storage: local\n",
    )
    .expect("write");
    let out = ours_ok(
        dir.path(),
        &["--config", yml.to_str().expect("utf-8"), "config"],
    );
    let text = out.lines.join("\n");
    for (key, value) in [
        ("proxy.remoteurl", "https://registry-1.docker.io"),
        ("proxy.ttl", "2days"),
    ] {
        assert!(
            out.lines
                .iter()
                .any(|l| l.starts_with(key) && l.contains(value)),
            "{key} {value}:\n{text}"
        );
    }
    assert!(
        out.stderr.contains("mirroring.source_index"),
        "{}",
        out.stderr
    );
}

#[test]
fn mistakes_in_the_proxy_settings_stop_the_configuration_where_they_are() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yml = dir.path().join("cache.yml");
    for (upstreams, line, message) in [
        (
            "    - prefix: library/**\n      remoteurl: ftp://mirror\n",
            4,
            "needs an http:// or https:// remoteurl",
        ),
        (
            "    - remoteurl: https://quay.io\n",
            4,
            "an upstream needs a prefix",
        ),
        (
            "    - prefix: quay/**\n      remoteurl: https://quay.io\n      stripprefx: true\n",
            6,
            "unknown upstream key \"stripprefx\"",
        ),
        (
            "    - prefix: '**'\n      remoteurl: https://quay.io\n      stripprefix: true\n",
            4,
            "stripprefix needs a prefix whose fixed part ends with /",
        ),
    ] {
        std::fs::write(
            &yml,
            format!("version: 0.1\nproxy:\n  upstreams:\n{upstreams}"),
        )
        .expect("write");
        let out = ours(
            dir.path(),
            &[
                "--config",
                yml.to_str().expect("utf-8"),
                "config",
                "--check",
            ],
        );
        let want = format!("{}:{line}:", yml.display());
        assert!(
            !out.ok && out.stderr.contains(&want) && out.stderr.contains(message),
            "{want} {message}: {out}"
        );
    }
    // The variables are checked as the file is.
    let c = Server::builder()
        .env("REGISTRY_PROXY_USERNAME", "mirror")
        .run_to_end();
    assert!(!c.ok && c.stderr.contains("proxy.remoteurl"), "{c}");
}

/// A blob GET whose fetch fails: cut short once streaming has begun (the body never
/// completes; when it fails at once, not even the head arrives), or, when the failure came
/// first, 503.
fn must_not_complete(answer: reqwest::Result<reqwest::blocking::Response>) {
    let Ok(r) = answer else { return };
    match r.status().as_u16() {
        200 => assert!(r.bytes().is_err(), "the body must not complete"),
        status => assert_eq!(status, 503, "{}", r.text().unwrap_or_default()),
    }
}

/// A fake upstream: every request is answered 200 with a `Content-Length` of `body`'s
/// length and its first `send` bytes; then, with `pause`, the rest once [`FakeUpstream::go`]
/// is called, else nothing (the connection closes: a download that breaks off). Counts its
/// connections; stopped when dropped.
struct FakeUpstream {
    port: u16,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    gate: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeUpstream {
    fn start(body: Vec<u8>, send: usize, pause: bool) -> FakeUpstream {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let (gate, stop) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (count, open, stopped) = (connections.clone(), gate.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = [0u8; 4096];
                let _ = conn.read(&mut head);
                let len = body.len();
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\n\r\n"
                );
                let _ = conn.write_all(&body[..send]);
                if pause {
                    let deadline = std::time::Instant::now() + Duration::from_secs(30);
                    while !open.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    let _ = conn.write_all(&body[send..]);
                }
            }
        });
        FakeUpstream {
            port,
            connections,
            gate,
            stop,
            thread: Some(thread),
        }
    }

    /// Sends the rest of the paused answers.
    fn go(&self) {
        self.gate.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Ours as a cache of it.
    fn cache(&self) -> Server {
        Server::builder()
            .env(
                "REGISTRY_PROXY_REMOTEURL",
                format!("http://127.0.0.1:{}", self.port),
            )
            .start()
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.go();
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_client_gets_the_first_bytes_of_a_blob_while_the_rest_is_still_coming() {
    use std::io::Read;
    let body = layer_bytes(10, 8 << 20);
    let digest = digest_of(&body);
    let upstream = FakeUpstream::start(body.clone(), 4 << 20, true);
    let cache = upstream.cache();
    let url = cache.url(&format!("/v2/library/slow/blobs/{digest}"));
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut r = client().get(url).expect_status(200);
        let mut first = vec![0u8; 2 << 20];
        r.read_exact(&mut first).expect("the first bytes");
        tx.send(()).expect("send");
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).expect("the rest");
        [first, rest].concat()
    });
    // 2 MiB arrive while the upstream holds back the second half.
    rx.recv_timeout(Duration::from_secs(20))
        .expect("streamed before the upstream finished");
    upstream.go();
    let got = reader.join().expect("reader");
    assert_eq!(digest_of(&got), digest);
    // Committed once verified, and served from storage from then on.
    assert!(stored_blobs(&cache.storage).contains(&digest), "{digest}");
    let again = client()
        .get(cache.url(&format!("/v2/library/slow/blobs/{digest}")))
        .expect_status(200)
        .bytes()
        .expect("body");
    assert_eq!(digest_of(&again), digest);
    assert_eq!(upstream.connections(), 1);
}

#[test]
fn a_download_that_breaks_off_upstream_stores_nothing_and_is_tried_again() {
    let upstream = FakeUpstream::start(vec![7u8; 4 << 20], 1 << 20, false);
    let cache = upstream.cache();
    let digest = digest_of(&vec![7u8; 4 << 20]);
    let c = client();
    for _ in 0..2 {
        let r = c
            .get(cache.url(&format!("/v2/library/broken/blobs/{digest}")))
            .send();
        must_not_complete(r);
    }
    cache.wait_for_log("fetching the blob failed");
    assert_eq!(upstream.connections(), 2);
    assert!(stored_blobs(&cache.storage).is_empty());
    let uploads = cache
        .storage
        .join("docker/registry/v2/repositories/library/broken/_uploads");
    let left = std::fs::read_dir(&uploads).map_or(0, |d| d.count());
    assert_eq!(left, 0, "the failed fetch's upload is removed");
}
