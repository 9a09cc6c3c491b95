//! Docker token authentication through the real binary: a small token server in the test
//! (tokens signed by openssl, RS256 and ES256) and skopeo doing the whole Bearer dance to
//! push and pull; tokens that are expired, for another audience or issuer, or signed by a
//! key outside the root bundle are refused; a token without push gets
//! `error="insufficient_scope"` with the scope to ask for.

mod common;

use base64::Engine;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SERVICE: &str = "test-registry";
const ISSUER: &str = "test-issuer";

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn openssl(args: &[&str]) -> Vec<u8> {
    checked(Command::new(OPENSSL.program).args(args)).stdout
}

/// A signing key and its self-signed certificate: "rsa" or "ec".
fn key_and_cert(dir: &Path, kind: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{kind}.key"));
    let cert = dir.join(format!("{kind}.crt"));
    let newkey: &[&str] = if kind == "rsa" {
        &["-newkey", "rsa:2048"]
    } else {
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    };
    let mut args = vec!["req", "-x509", "-nodes", "-days", "2", "-subj"];
    let subj = format!("/CN=token-{kind}");
    args.push(&subj);
    args.extend(newkey);
    let (k, c) = (key.to_str().expect("utf-8"), cert.to_str().expect("utf-8"));
    args.extend(["-keyout", k, "-out", c]);
    openssl(&args);
    (key, cert)
}

/// DER `SEQUENCE { INTEGER r, INTEGER s }` to JWS's 64-byte r||s.
fn der_to_raw(der: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 2; // SEQUENCE tag and (short) length
    for _ in 0..2 {
        assert_eq!(der[i], 0x02);
        let len = der[i + 1] as usize;
        let int = &der[i + 2..i + 2 + len];
        let int: Vec<u8> = int.iter().copied().skip_while(|b| *b == 0).collect();
        out.extend(std::iter::repeat_n(0u8, 32 - int.len()));
        out.extend(int);
        i += 2 + len;
    }
    out
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64
}

/// A JWT over `claims`, signed with `key` (RS256 for "rsa" keys, ES256 for "ec").
fn sign(dir: &Path, key: &Path, claims: &serde_json::Value) -> String {
    let ec = key.to_str().expect("utf-8").ends_with("ec.key");
    let header = serde_json::json!({"typ": "JWT", "alg": if ec { "ES256" } else { "RS256" }});
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let file = tempfile::NamedTempFile::new_in(dir).expect("temp");
    std::fs::write(file.path(), &input).expect("write");
    let sig = openssl(&[
        "dgst",
        "-sha256",
        "-sign",
        key.to_str().expect("utf-8"),
        "-binary",
        file.path().to_str().expect("utf-8"),
    ]);
    let sig = if ec { der_to_raw(&sig) } else { sig };
    format!("{input}.{}", b64url(&sig))
}

fn claims(access: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"iss": ISSUER, "sub": "tok-user", "aud": SERVICE, "exp": now() + 300, "nbf": now() - 10, "iat": now(), "jti": "t", "access": access})
}

/// A token server: `GET /token?service=..&scope=..` with Basic `tok-user:tok pw` gets a token
/// for the requested scopes on repositories under `tok/`. Stops when the handle drops.
struct TokenServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Has the registry take tokens issued by [`ISSUER`] for [`SERVICE`] and signed by a key of
/// a certificate in `bundle`, and send clients for them to `realm`.
fn takes_tokens(server: ServerBuilder, realm: &str, bundle: &Path) -> ServerBuilder {
    server.args_from(&[
        "--token-realm",
        realm,
        "--token-service",
        SERVICE,
        "--token-issuer",
        ISSUER,
        "--token-rootcertbundle",
        bundle.to_str().expect("utf-8"),
    ])
}

fn token_server(dir: PathBuf, key: PathBuf) -> TokenServer {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let thread = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(300);
        while !stop2.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
            let Ok((stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            stream.set_nonblocking(false).expect("blocking");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            let mut authorized = false;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                let (name, value) = line.split_once(':').unwrap_or(("", ""));
                if name.eq_ignore_ascii_case("authorization") {
                    let want = format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode("tok-user:tok pw")
                    );
                    authorized = value.trim() == want;
                }
            }
            let target = request.split_whitespace().nth(1).unwrap_or("");
            let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
            let mut access = Vec::new();
            for (k, v) in form_urlencoded::parse(query.as_bytes()) {
                if k == "scope" {
                    let parts: Vec<&str> = v.splitn(3, ':').collect();
                    if parts.len() == 3 && parts[0] == "repository" && parts[1].starts_with("tok/")
                    {
                        access.push(serde_json::json!({"type": "repository", "name": parts[1], "actions": parts[2].split(',').collect::<Vec<_>>()}));
                    }
                }
            }
            let mut s = stream;
            if authorized {
                let token = sign(&dir, &key, &claims(serde_json::Value::Array(access)));
                let body =
                    serde_json::json!({"token": token, "access_token": token, "expires_in": 300})
                        .to_string();
                let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            } else {
                let _ = write!(
                    s,
                    "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        }
    });
    TokenServer {
        port,
        stop,
        thread: Some(thread),
    }
}

#[test]
fn bearer_tokens_from_a_token_server_with_skopeo_and_every_refusal() {
    if !have(&[SKOPEO, OPENSSL]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (rsa_key, rsa_cert) = key_and_cert(d, "rsa");
    let (ec_key, ec_cert) = key_and_cert(d, "ec");
    let outsider = d.join("outsider");
    std::fs::create_dir_all(&outsider).expect("mkdir");
    let (other_key, _) = key_and_cert(&outsider, "rsa");
    let bundle = d.join("bundle.pem");
    let mut pem = std::fs::read(&rsa_cert).expect("read");
    pem.extend(std::fs::read(&ec_cert).expect("read"));
    std::fs::write(&bundle, pem).expect("write bundle");

    let ts = token_server(d.to_path_buf(), rsa_key.clone());
    let realm = format!("http://127.0.0.1:{}/token", ts.port);
    let s = takes_tokens(Server::builder(), &realm, &bundle).start();
    let c = client();

    // Anonymous: the challenge names the realm, service and the scope to ask for.
    let r = c
        .get(s.url("/v2/tok/a/manifests/latest"))
        .expect_status(401);
    assert_eq!(
        r.headers()["www-authenticate"].to_str().expect("ascii"),
        format!(r#"Bearer realm="{realm}",service="{SERVICE}",scope="repository:tok/a:pull""#)
    );
    c.get(s.url("/v2/")).expect_status(401);

    // skopeo does the Bearer dance with the token server: push and pull.
    let layouts = oci_layouts();
    let host = s.host();
    let dst = format!("docker://{host}/tok/a:latest");
    skopeo_ok(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "tok-user:tok pw",
        &format!("oci:{}:latest", layouts.path().join("a").display()),
        &dst,
    ]);
    let pulled = d.join("pulled");
    skopeo_ok(&[
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        "tok-user:tok pw",
        &dst,
        &format!("dir:{}", pulled.display()),
    ]);
    assert!(pulled.join("manifest.json").exists());
    let (ok, out) = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        "tok-user:wrong",
        &dst,
    ]);
    assert!(!ok, "wrong credentials at the token server: {out}");
    // The token server grants nothing outside tok/: the registry refuses.
    let (ok, out) = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "tok-user:tok pw",
        &format!("oci:{}:latest", layouts.path().join("a").display()),
        &format!("docker://{host}/elsewhere/a:latest"),
    ]);
    assert!(!ok, "push outside the granted scope: {out}");

    let get = |token: &str, path: &str| {
        let r = c
            .get(s.url(path))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .expect("get");
        let challenge = r
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().expect("ascii").to_owned());
        (r.status().as_u16(), challenge.unwrap_or_default())
    };
    let pull_a = serde_json::json!([{"type": "repository", "name": "tok/a", "actions": ["pull"]}]);
    // RS256 and ES256 tokens from keys in the bundle work.
    assert_eq!(
        get(
            &sign(d, &rsa_key, &claims(pull_a.clone())),
            "/v2/tok/a/manifests/latest"
        )
        .0,
        200
    );
    assert_eq!(
        get(
            &sign(d, &ec_key, &claims(pull_a.clone())),
            "/v2/tok/a/manifests/latest"
        )
        .0,
        200
    );
    assert_eq!(
        get(&sign(d, &ec_key, &claims(pull_a.clone())), "/v2/").0,
        200
    );
    // A pull-only token cannot push: insufficient_scope, with the scope to ask for.
    let r = c
        .post(s.url("/v2/tok/a/blobs/uploads/"))
        .header(
            "authorization",
            format!("Bearer {}", sign(d, &rsa_key, &claims(pull_a.clone()))),
        )
        .expect_status(401);
    let ch = r.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        ch.contains(r#"scope="repository:tok/a:pull,push""#)
            && ch.contains(r#"error="insufficient_scope""#),
        "{ch}"
    );
    // Refusals: each changes one thing.
    let mut expired = claims(pull_a.clone());
    expired["exp"] = serde_json::json!(now() - 600);
    let mut other_aud = claims(pull_a.clone());
    other_aud["aud"] = serde_json::json!("another-registry");
    let mut other_iss = claims(pull_a.clone());
    other_iss["iss"] = serde_json::json!("someone-else");
    let mut future = claims(pull_a.clone());
    future["nbf"] = serde_json::json!(now() + 3600);
    let good = sign(d, &rsa_key, &claims(pull_a.clone()));
    let tampered = {
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        let mut c2 =
            claims(serde_json::json!([{"type": "repository", "name": "tok/a", "actions": ["*"]}]));
        c2["sub"] = serde_json::json!("mallory");
        parts[1] = b64url(c2.to_string().as_bytes());
        parts.join(".")
    };
    for (what, token) in [
        ("expired", sign(d, &rsa_key, &expired)),
        ("another audience", sign(d, &rsa_key, &other_aud)),
        ("another issuer", sign(d, &rsa_key, &other_iss)),
        ("not valid yet", sign(d, &rsa_key, &future)),
        (
            "a key outside the bundle",
            sign(d, &other_key, &claims(pull_a.clone())),
        ),
        ("tampered claims", tampered),
        ("not a JWT", "abc".to_string()),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64url(br#"{"alg":"none"}"#),
                b64url(claims(pull_a.clone()).to_string().as_bytes())
            ),
        ),
    ] {
        let (status, ch) = get(&token, "/v2/tok/a/manifests/latest");
        assert_eq!(status, 401, "{what}");
        assert!(ch.contains(r#"error="invalid_token""#), "{what}: {ch}");
    }
}

/// The built-in endpoint's users (writer, reader) and access file: everyone pulls, writer
/// pushes under team/.
fn endpoint_users(d: &Path) -> (PathBuf, PathBuf) {
    let users = d.join("users");
    let us = users.to_str().expect("utf-8");
    for (flags, user, pw) in [("-cbB", "writer", "write pw"), ("-bB", "reader", "read pw")] {
        let out = Command::new("htpasswd")
            .args([flags, "-C", "5", us, user, pw])
            .output()
            .expect("htpasswd");
        assert!(out.status.success());
    }
    let access = d.join("access.yml");
    std::fs::write(
        &access,
        "rules:\n  - repositories: ['**']\n    users: ['*']\n    actions: [pull]\n  - repositories: ['team/**']\n    users: [writer]\n    actions: [push]\n",
    )
    .expect("write");
    (users, access)
}

/// `auth: token` with the built-in endpoint from a registry:2 file alone, no auth flags:
/// skopeo gets tokens from the registry itself, and the access file limits them.
#[test]
fn a_registry_2_file_alone_configures_token_auth_with_the_built_in_endpoint() {
    if !have(&[SKOPEO, HTPASSWD, OPENSSL]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (users, access) = endpoint_users(d);
    let (key, cert) = key_and_cert(d, "rsa");
    let port = free_port();
    let realm = format!("http://127.0.0.1:{port}/token");
    let yml = d.join("config.yml");
    std::fs::write(
        &yml,
        format!(
            "version: 0.1\nauth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    \
             rootcertbundle: {}\n    signingkey: {}\n    htpasswd: {}\n    accessfile: {}\n",
            cert.display(),
            key.display(),
            users.display(),
            access.display()
        ),
    )
    .expect("write config");
    // On a port chosen before it starts: the token realm names it.
    let r = Server::builder()
        .port(port)
        .args_from(&["--config", yml.to_str().expect("utf-8")])
        .start();
    let host = r.host();

    // The challenge is the file's: Bearer, its realm and service.
    let c = client();
    let resp = c
        .get(format!("http://{host}/v2/team/a/manifests/latest"))
        .expect_status(401);
    assert_eq!(
        resp.headers()["www-authenticate"].to_str().expect("ascii"),
        format!(r#"Bearer realm="{realm}",service="{SERVICE}",scope="repository:team/a:pull""#)
    );
    let layouts = oci_layouts();
    let src = format!("oci:{}:latest", layouts.path().join("a").display());
    writer_pushes_reader_pulls(&host, &src, "team/b", "team/c", &d.join("pulled"));
    let (ok, out) = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        "writer:wrong",
        &format!("docker://{host}/team/b:latest"),
    ]);
    assert!(!ok, "a wrong password gets no token: {out}");
}

#[test]
fn the_built_in_token_endpoint_issues_scoped_tokens_to_htpasswd_users() {
    if !have(&[SKOPEO, HTPASSWD, OPENSSL]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (users, access) = endpoint_users(d);
    let us = users.to_str().expect("utf-8");
    // The signing key (PKCS#8, as openssl genpkey writes) and its certificate in the bundle.
    let (key, cert) = key_and_cert(d, "ec");
    let port = free_port();
    let realm = format!("http://127.0.0.1:{port}/token");
    let r = takes_tokens(Server::builder().port(port), &realm, &cert)
        .file_arg("--token-signing-key", &key)
        .args_from(&["--htpasswd", us])
        .file_arg("--access-file", &access)
        .start();
    let host = r.host();
    let layouts = oci_layouts();
    let src = format!("oci:{}:latest", layouts.path().join("a").display());
    // skopeo: the Bearer dance entirely against the registry itself.
    writer_pushes_reader_pulls(&host, &src, "team/a", "team/b", &d.join("pulled"));
    let (ok, out) = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "writer:write pw",
        &src,
        &format!("docker://{host}/library/a:latest"),
    ]);
    assert!(!ok, "writer may push only under team/: {out}");

    // The token itself: only the granted part of the scope asked for.
    let c = client();
    let t: serde_json::Value = c
        .get(format!(
            "http://{host}/token?service={SERVICE}&scope=repository:team/a:pull,push,delete"
        ))
        .basic_auth("reader", Some("read pw"))
        .send()
        .expect("token")
        .json()
        .expect("json");
    let token = t["token"].as_str().expect("token");
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).expect("claims"))
            .expect("b64"),
    )
    .expect("json");
    assert_eq!(
        claims["access"],
        serde_json::json!([{"type": "repository", "name": "team/a", "actions": ["pull"]}])
    );
    assert_eq!(claims["sub"], "reader");
    assert_eq!(claims["iss"], ISSUER);
    // Wrong password: a Basic challenge; another service: refused.
    let r401 = c
        .get(format!("http://{host}/token?service={SERVICE}"))
        .basic_auth("reader", Some("nope"))
        .expect_status(401);
    assert!(r401.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .starts_with("Basic realm="));
    c.get(format!("http://{host}/token?service=other"))
        .basic_auth("reader", Some("read pw"))
        .expect_status(400);
}

/// Through the token dance, on the plain-HTTP registry at `host`: `writer` pushes `src` to
/// `repo`, `reader` pulls it back into `pulled`, and `reader` may not push to `denied`.
fn writer_pushes_reader_pulls(host: &str, src: &str, repo: &str, denied: &str, pulled: &Path) {
    skopeo_ok(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "writer:write pw",
        src,
        &format!("docker://{host}/{repo}:latest"),
    ]);
    skopeo_ok(&[
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        "reader:read pw",
        &format!("docker://{host}/{repo}:latest"),
        &format!("dir:{}", pulled.display()),
    ]);
    assert!(pulled.join("manifest.json").exists());
    let (ok, out) = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "reader:read pw",
        src,
        &format!("docker://{host}/{denied}:latest"),
    ]);
    assert!(
        !ok,
        "the access file gives reader no push to {denied}: {out}"
    );
}
