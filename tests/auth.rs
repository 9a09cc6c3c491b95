//! Access control through the real binary: every route with every kind of caller (anonymous,
//! wrong password, malformed Authorization headers, a user without permission, a user with
//! it); skopeo logging in, pushing and pulling with every htpasswd format Apache writes; the
//! credential cache (one hash verification per credential per TTL) and reloads (file change,
//! SIGHUP); throttling; and our `htpasswd` command checked by Apache's `htpasswd -v`.

mod common;

use common::*;
use docker_registry::auth::htpasswd::Htpasswd;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The htpasswd files Apache's `htpasswd` writes (`common::htpasswd`), in a temp dir.
fn apache_files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    htpasswd::write_apache_htpasswd_files(dir.path());
    dir
}

#[test]
fn every_apache_format_verifies_and_wrong_passwords_fail() {
    if !have(&[HTPASSWD]) {
        return;
    }
    let files = apache_files();
    for u in htpasswd::APACHE_USERS {
        for path in [
            files.path().join(u.file),
            files.path().join(htpasswd::MIXED),
        ] {
            let h = Htpasswd::load(&path).expect("an Apache file loads");
            let (_, stored) = h
                .users()
                .find(|(name, _)| *name == u.user)
                .unwrap_or_else(|| panic!("{} in {}", u.user, path.display()));
            assert_eq!(stored.scheme(), u.scheme, "{} in {}", u.user, u.file);
            assert!(
                h.verify(u.user, u.password.as_bytes()),
                "{} with the right password in {}",
                u.user,
                path.display()
            );
            assert!(
                !h.verify(u.user, b"wrong"),
                "{} with a wrong password",
                u.user
            );
            assert!(!h.verify(u.user, b""), "{} with an empty password", u.user);
            let mut almost = u.password.as_bytes().to_vec();
            almost.pop();
            assert!(
                !h.verify(u.user, &almost),
                "{} with a truncated password",
                u.user
            );
        }
    }
}

#[test]
fn des_crypt_is_accepted_with_a_warning_and_unknown_users_fail() {
    if !have(&[HTPASSWD]) {
        return;
    }
    let files = apache_files();
    let h = Htpasswd::load(&files.path().join("crypt.htpasswd")).expect("loads");
    assert_eq!(h.warnings.len(), 1);
    assert!(h.warnings[0].contains("DES"), "{:?}", h.warnings);
    let mixed = Htpasswd::load(&files.path().join(htpasswd::MIXED)).expect("loads");
    assert_eq!(mixed.len(), htpasswd::APACHE_USERS.len());
    assert!(!mixed.verify("mallory", b"correct horse"));
    assert!(!mixed.verify("", b""));
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Our own `htpasswd` command; panics with its output when it fails.
fn our_htpasswd(args: &[&str]) {
    checked(Command::new(BIN).arg("htpasswd").args(args));
}

/// Apache's `htpasswd -vb`: true when it accepts the password.
fn apache_verifies(file: &Path, user: &str, password: &str) -> bool {
    Command::new("htpasswd")
        .arg("-vb")
        .arg(file)
        .args([user, password])
        .output()
        .expect("Apache htpasswd is installed (apt-get install apache2-utils)")
        .status
        .success()
}

fn count(s: &Server, needle: &str) -> usize {
    s.log_text().matches(needle).count()
}

/// The count once the log has caught up: lines reach the harness through a pipe and a
/// thread, so wait (bounded) for at least `expected`, then a moment for any extra ones.
fn settled_count(s: &Server, needle: &str, expected: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    while count(s, needle) < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    count(s, needle)
}

/// Waits (bounded) until `f` holds.
fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

fn client_from(ip: IpAddr) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(ip)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

#[test]
fn our_htpasswd_files_are_read_by_apache_htpasswd() {
    if !have(&[HTPASSWD]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("users");
    let fs = f.to_str().expect("utf-8");
    our_htpasswd(&["-cb", fs, "bcrypt-user", "pw bcrypt"]);
    our_htpasswd(&["-bB", "-C", "5", fs, "bcrypt5", "pw:five"]);
    our_htpasswd(&["-bm", fs, "md5-user", "pw md5"]);
    our_htpasswd(&["-bs", fs, "sha1-user", "pw sha1"]);
    our_htpasswd(&["-b2", fs, "sha256-user", "pw sha256"]);
    our_htpasswd(&["-b5", fs, "sha512-user", "pw sha512"]);
    let text = std::fs::read_to_string(&f).expect("read");
    assert!(
        text.contains("bcrypt-user:$2y$10$"),
        "bcrypt cost 10 by default: {text}"
    );
    for (user, pw) in [
        ("bcrypt-user", "pw bcrypt"),
        ("bcrypt5", "pw:five"),
        ("md5-user", "pw md5"),
        ("sha1-user", "pw sha1"),
        ("sha256-user", "pw sha256"),
        ("sha512-user", "pw sha512"),
    ] {
        assert!(apache_verifies(&f, user, pw), "Apache accepts {user}");
        assert!(
            !apache_verifies(&f, user, "wrong"),
            "Apache refuses a wrong password for {user}"
        );
    }
    // Updating keeps the others; deleting removes only that user.
    our_htpasswd(&["-b", fs, "md5-user", "changed"]);
    assert!(apache_verifies(&f, "md5-user", "changed"));
    assert!(apache_verifies(&f, "sha1-user", "pw sha1"));
    our_htpasswd(&["-D", fs, "sha1-user"]);
    assert!(!apache_verifies(&f, "sha1-user", "pw sha1"));
    assert!(apache_verifies(&f, "sha512-user", "pw sha512"));
    // -v reads what Apache writes.
    let apache = dir.path().join("apache");
    let st = Command::new("htpasswd")
        .args(["-cbB", apache.to_str().expect("utf-8"), "ann", "apache pw"])
        .output()
        .expect("htpasswd");
    assert!(st.status.success());
    our_htpasswd(&["-vb", apache.to_str().expect("utf-8"), "ann", "apache pw"]);

    // The packaged name: the same command when called as docker-registry-htpasswd.
    let link = dir.path().join("docker-registry-htpasswd");
    std::os::unix::fs::symlink(BIN, &link).expect("symlink");
    let out = Command::new(&link)
        .args(["-nbB", "-C", "4", "nina", "pw"])
        .output()
        .expect("run via symlink");
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).expect("utf-8");
    assert!(line.starts_with("nina:$2y$04$"), "{line}");
    std::fs::write(dir.path().join("n"), &line).expect("write");
    assert!(apache_verifies(&dir.path().join("n"), "nina", "pw"));
}

#[test]
fn a_missing_htpasswd_file_stops_the_start() {
    let empty = tempfile::NamedTempFile::new().expect("temp");
    let out = Command::new(BIN)
        .arg("--sysconfig")
        .arg(empty.path())
        .arg("--config")
        .arg(empty.path())
        .args(["--address", "127.0.0.1", "--port", "0"])
        .args(["--storage-path", "/tmp/never-used-by-auth-test"])
        .args(["--htpasswd", "/nonexistent/htpasswd"])
        .env_remove("NOTIFY_SOCKET")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/htpasswd"), "{err}");
    assert!(err.contains("refusing to start an open registry"), "{err}");
}

#[test]
fn skopeo_logs_in_pushes_and_pulls_with_every_htpasswd_format() {
    if !have(&[SKOPEO, HTPASSWD]) {
        return;
    }
    let files = apache_files();
    let mixed = files.path().join(htpasswd::MIXED);
    let s = Server::builder()
        .arg("--htpasswd")
        .arg(mixed.to_str().expect("utf-8"))
        .start();
    assert!(
        s.log_text().contains("DES crypt"),
        "DES is accepted only with a warning"
    );
    let host = s.host();
    let layouts = oci_layouts();
    let src = format!("oci:{}:latest", layouts.path().join("a").display());
    let work = tempfile::tempdir().expect("tempdir");
    let authfile = work.path().join("auth.json");
    let authfile = authfile.to_str().expect("utf-8");

    // Without credentials: a push is refused.
    let (ok, out) = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &src,
        &format!("docker://{host}/anon/a:latest"),
    ]);
    assert!(!ok, "anonymous push must fail: {out}");

    for &htpasswd::ApacheUser {
        user,
        password,
        scheme: format,
        ..
    } in htpasswd::APACHE_USERS
    {
        let (ok, out) = skopeo(&[
            "login",
            "--tls-verify=false",
            "--authfile",
            authfile,
            "-u",
            user,
            "-p",
            "wrong password",
            &host,
        ]);
        assert!(
            !ok,
            "{format}: login with a wrong password must fail: {out}"
        );
        skopeo_ok(&[
            "login",
            "--tls-verify=false",
            "--authfile",
            authfile,
            "-u",
            user,
            "-p",
            password,
            &host,
        ]);
        let creds = format!("{user}:{password}");
        let dst = format!("docker://{host}/{user}/a:latest");
        skopeo_ok(&[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds,
            &src,
            &dst,
        ]);
        let pulled = work.path().join(user);
        skopeo_ok(&[
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            &creds,
            &dst,
            &format!("dir:{}", pulled.display()),
        ]);
        assert!(pulled.join("manifest.json").exists(), "{format}: pulled");
        // The login stored in the auth file works on its own too.
        skopeo_ok(&[
            "inspect",
            "--tls-verify=false",
            "--authfile",
            authfile,
            "--raw",
            &dst,
        ]);
    }
    let (ok, _) = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{host}/alice/a:latest"),
    ]);
    assert!(!ok, "anonymous pull must fail");
}

/// One row of the table: a request, what an allowed user gets, and who is denied.
struct Route {
    method: &'static str,
    path: String,
    body: Option<Vec<u8>>,
    content_type: Option<&'static str>,
    /// Status for the allowed user.
    ok: u16,
    /// The user who is authenticated but not allowed (None: any user may).
    denied: Option<&'static str>,
    allowed: &'static str,
    /// registry:2's access records for the 401 detail (Type, Name, Action).
    records: Vec<(&'static str, &'static str, &'static str)>,
}

/// The repository the routes below act on.
const REPO: &str = "team/app";

impl Route {
    /// Any authenticated user may.
    fn open(method: &'static str, path: &str) -> Route {
        Route::new(method, path.into(), 200, "outsider", None, vec![])
    }

    /// Listing repositories: no authenticated user is refused.
    fn catalog(path: &str) -> Route {
        let records = vec![("registry", "catalog", "*")];
        Route::new("GET", path.into(), 200, "reader", None, records)
    }

    /// Pulling from [`REPO`]: the reader may, the outsider may not.
    fn pull(method: &'static str, path: impl Into<String>) -> Route {
        let records = vec![("repository", REPO, "pull")];
        Route::new(
            method,
            path.into(),
            200,
            "reader",
            Some("outsider"),
            records,
        )
    }

    /// Pushing to [`REPO`]: the writer may, the reader may not.
    fn push(method: &'static str, path: impl Into<String>, ok: u16) -> Route {
        let records = vec![("repository", REPO, "pull"), ("repository", REPO, "push")];
        Route::new(method, path.into(), ok, "writer", Some("reader"), records)
    }

    /// Deleting from [`REPO`]: the writer may, the reader may not.
    fn delete(path: impl Into<String>) -> Route {
        let records = vec![("repository", REPO, "delete")];
        Route::new(
            "DELETE",
            path.into(),
            202,
            "writer",
            Some("reader"),
            records,
        )
    }

    fn new(
        method: &'static str,
        path: String,
        ok: u16,
        allowed: &'static str,
        denied: Option<&'static str>,
        records: Vec<(&'static str, &'static str, &'static str)>,
    ) -> Route {
        Route {
            method,
            path,
            body: None,
            content_type: None,
            ok,
            denied,
            allowed,
            records,
        }
    }

    fn with_body(self, content_type: &'static str, body: Vec<u8>) -> Route {
        Route {
            body: Some(body),
            content_type: Some(content_type),
            ..self
        }
    }
}

#[test]
fn every_route_with_every_kind_of_caller() {
    // Seed a repository without auth, then serve the same storage with auth.
    let data = tempfile::tempdir().expect("tempdir");
    let storage = data.path().join("data");
    let (manifest, config_digest, upload_id) = {
        let open = Server::builder().storage(&storage).start();
        let c = client();
        let m = push_image(&c, &open, "team/app", "v1", "table");
        push_image(&c, &open, "team/app", "v2", "second");
        push_image(&c, &open, "other/secret", "v1", "hidden");
        let cd = push_blob(&c, &open, "team/app", br#"{"a":"config"}"#);
        let r = c
            .post(open.url("/v2/team/app/blobs/uploads/"))
            .expect_status(202);
        let loc = r.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned();
        let id = loc.rsplit('/').next().expect("id").to_owned();
        (m, cd, id)
    };
    let users = data.path().join("users");
    let us = users.to_str().expect("utf-8");
    our_htpasswd(&["-cbB", "-C", "5", us, "reader", "read pw"]);
    our_htpasswd(&["-bB", "-C", "5", us, "writer", "write pw"]);
    our_htpasswd(&["-bB", "-C", "5", us, "outsider", "out pw"]);
    let access = data.path().join("access.yml");
    std::fs::write(
        &access,
        "rules:\n  - repositories: ['**']\n    users: [reader]\n    actions: [pull]\n  - repositories: ['team/**']\n    users: [writer]\n    actions: ['*']\n",
    )
    .expect("write access file");
    let s = Server::builder()
        .storage(&storage)
        .delete_enabled()
        .args_from(&["--htpasswd", us, "--auth-realm", "Test \"Realm\""])
        .file_arg("--access-file", &access)
        .start();
    let password = |u: &str| match u {
        "reader" => "read pw",
        "writer" => "write pw",
        _ => "out pw",
    };

    let manifest_body = image_manifest((&config_digest, br#"{"a":"config"}"#.len()), &[]);
    let routes = vec![
        Route::open("GET", "/v2/"),
        Route::catalog("/v2/_catalog"),
        Route::catalog("/v1/search?q="),
        Route::catalog("/v2/_catalog/search?q="),
        Route::pull("GET", "/v2/team/app/tags/list"),
        Route::pull("GET", "/v2/team/app/manifests/v1"),
        Route::pull("HEAD", format!("/v2/team/app/manifests/{manifest}")),
        Route::pull("GET", format!("/v2/team/app/blobs/{config_digest}")),
        Route::pull("GET", format!("/v2/team/app/referrers/{manifest}")),
        Route::push(
            "GET",
            format!("/v2/team/app/blobs/uploads/{upload_id}"),
            204,
        ),
        Route::push(
            "PATCH",
            format!("/v2/team/app/blobs/uploads/{upload_id}"),
            202,
        )
        .with_body("application/octet-stream", b"chunk".to_vec()),
        Route::push("POST", "/v2/team/app/blobs/uploads/", 202),
        Route::push("PUT", "/v2/team/app/manifests/v3", 201).with_body(
            "application/vnd.oci.image.manifest.v1+json",
            manifest_body.into_bytes(),
        ),
        Route::push(
            "DELETE",
            format!("/v2/team/app/blobs/uploads/{upload_id}"),
            204,
        ),
        Route::delete("/v2/team/app/manifests/v2"),
        Route::delete(format!("/v2/team/app/blobs/{config_digest}")),
    ];

    // Warm the cache for the three users so the wrong-password rows below (which count as
    // failures per user) never throttle a user whose right password is already proven.
    for u in ["reader", "writer", "outsider"] {
        let r = client()
            .get(s.url("/v2/"))
            .header("authorization", basic(u, password(u)))
            .send()
            .expect("login");
        assert_eq!(r.status(), 200, "{u} logs in");
    }
    let huge = format!("Basic {}", "QUJD".repeat(3000));
    let nocolon = {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("readernocolon")
        )
    };
    for (i, route) in routes.iter().enumerate() {
        // Each row from its own loopback address: its failures stay below the per-address burst.
        let c = client_from(format!("127.0.0.{}", 10 + i).parse().expect("ip"));
        let send = |auth: Option<&str>| {
            let mut rb = c.request(route.method.parse().expect("method"), s.url(&route.path));
            if let Some(a) = auth {
                rb = rb.header("authorization", a);
            }
            if let Some(ct) = route.content_type {
                rb = rb.header("content-type", ct);
            }
            if let Some(b) = &route.body {
                rb = rb.body(b.clone());
            }
            let r = rb.send().expect("request");
            let status = r.status().as_u16();
            let challenge = r
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().expect("ascii").to_owned());
            (status, challenge, r.text().unwrap_or_default())
        };
        let what = format!("{} {}", route.method, route.path);
        let wrong_user = ["reader", "writer", "outsider"][i % 3];
        let wrong = basic(wrong_user, "not the password");
        for (case, auth) in [
            ("anonymous", None),
            ("wrong password", Some(wrong.as_str())),
            ("bad base64", Some("Basic !!!not-base64!!!")),
            ("no colon", Some(nocolon.as_str())),
            ("huge header", Some(huge.as_str())),
            ("another scheme", Some("Bearer abc.def.ghi")),
        ] {
            let (status, challenge, body) = send(auth);
            assert_eq!(status, 401, "{what} {case}: {body}");
            assert_eq!(
                challenge.as_deref(),
                Some(r#"Basic realm="Test \"Realm\"""#),
                "{what} {case}"
            );
            if route.method != "HEAD" {
                let v: serde_json::Value = serde_json::from_str(&body).expect("json");
                assert_eq!(v["errors"][0]["code"], "UNAUTHORIZED", "{what} {case}");
                assert_eq!(v["errors"][0]["message"], "authentication required");
                let expected: Vec<serde_json::Value> = route
                    .records
                    .iter()
                    .map(|(t, n, a)| serde_json::json!({"Type": t, "Class": "", "Name": n, "Action": a}))
                    .collect();
                if expected.is_empty() {
                    assert!(v["errors"][0].get("detail").is_none(), "{what}: {body}");
                } else {
                    assert_eq!(
                        v["errors"][0]["detail"],
                        serde_json::Value::Array(expected),
                        "{what} {case}"
                    );
                }
            }
        }
        if let Some(denied) = route.denied {
            let (status, challenge, body) = send(Some(&basic(denied, password(denied))));
            assert_eq!(status, 403, "{what} as {denied}: {body}");
            assert_eq!(challenge, None);
            if route.method != "HEAD" {
                assert_eq!(error_code(&body), "DENIED", "{what}");
            }
        }
        let (status, _, body) = send(Some(&basic(route.allowed, password(route.allowed))));
        assert_eq!(status, route.ok, "{what} as {}: {body}", route.allowed);
    }

    // Listings show only what the caller may pull.
    let list = |u: &str, path: &str| -> serde_json::Value {
        let r = client()
            .get(s.url(path))
            .header("authorization", basic(u, password(u)))
            .send()
            .expect("list");
        assert_eq!(r.status(), 200, "{path} as {u}");
        r.json().expect("json")
    };
    assert_eq!(
        list("reader", "/v2/_catalog")["repositories"],
        serde_json::json!(["other/secret", "team/app"])
    );
    assert_eq!(
        list("writer", "/v2/_catalog")["repositories"],
        serde_json::json!(["team/app"])
    );
    assert_eq!(
        list("outsider", "/v2/_catalog")["repositories"],
        serde_json::json!([])
    );
    assert_eq!(list("writer", "/v1/search?q=")["num_results"], 1);
    assert_eq!(list("reader", "/v1/search?q=")["num_results"], 2);
    assert_eq!(list("outsider", "/v1/search?q=")["num_results"], 0);
    assert_eq!(
        list("writer", "/v2/_catalog/search?q=a")["repositories"],
        serde_json::json!([{"name": "team/app", "description": "", "match": "name"}])
    );
    assert_eq!(list("reader", "/v2/_catalog/search?q=")["num_results"], 2);
    // Open endpoints stay open.
    for p in ["/_ping", "/v1/_ping"] {
        assert_eq!(
            client().get(s.url(p)).send().expect("ping").status(),
            200,
            "{p}"
        );
    }
}

#[test]
fn anonymous_pull_rule_lets_anyone_pull_only_there() {
    let data = tempfile::tempdir().expect("tempdir");
    let storage = data.path().join("data");
    {
        let open = Server::builder().storage(&storage).start();
        push_image(&client(), &open, "public/tool", "v1", "pub");
        push_image(&client(), &open, "private/tool", "v1", "priv");
    }
    let users = data.path().join("users");
    our_htpasswd(&["-cbB", "-C", "4", users.to_str().expect("utf-8"), "u", "p"]);
    let access = data.path().join("access.yml");
    std::fs::write(
        &access,
        "rules:\n  - repositories: ['public/**']\n    anonymous: true\n    actions: [pull]\n",
    )
    .expect("write");
    let s = Server::builder()
        .storage(&storage)
        .file_arg("--htpasswd", &users)
        .file_arg("--access-file", &access)
        .start();
    let c = client();
    assert_eq!(
        c.get(s.url("/v2/public/tool/manifests/v1"))
            .send()
            .expect("get")
            .status(),
        200
    );
    c.get(s.url("/v2/private/tool/manifests/v1"))
        .expect_status(401);
    c.post(s.url("/v2/public/tool/blobs/uploads/"))
        .expect_status(401);
    // /v2/ still challenges, so clients can log in.
    c.get(s.url("/v2/")).expect_status(401);
    let cat: serde_json::Value = c
        .get(s.url("/v2/_catalog"))
        .send()
        .expect("get")
        .json()
        .expect("json");
    assert_eq!(cat["repositories"], serde_json::json!(["public/tool"]));
    // A user with no rule of their own gets what anonymous callers get, no more.
    c.get(s.url("/v2/private/tool/manifests/v1"))
        .header("authorization", basic("u", "p"))
        .expect_status(403);
    c.get(s.url("/v2/public/tool/manifests/v1"))
        .header("authorization", basic("u", "p"))
        .expect_status(200);
}

#[test]
fn one_hash_verification_per_credential_and_reloads_pick_up_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let users = dir.path().join("users");
    let us = users.to_str().expect("utf-8");
    our_htpasswd(&["-cbB", "-C", "10", us, "alice", "first"]);
    let mut s = Server::builder()
        .args_from(&["--htpasswd", us, "--log-level", "debug"])
        .start();
    const VERIFY: &str = "password hash verification for";
    let get = |auth: &str| -> u16 {
        client()
            .get(s.url("/v2/"))
            .header("authorization", auth)
            .send()
            .expect("get")
            .status()
            .as_u16()
    };
    let alice = basic("alice", "first");
    // 50 requests, 20 of them at once: one bcrypt.
    for _ in 0..30 {
        assert_eq!(get(&alice), 200);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20).map(|_| scope.spawn(|| get(&alice))).collect();
        for h in handles {
            assert_eq!(h.join().expect("thread"), 200);
        }
    });
    assert_eq!(
        settled_count(&s, VERIFY, 1),
        1,
        "one verification for 50 requests:\n{}",
        s.log_text()
    );
    // A wrong password is verified (and not cached as good).
    assert_eq!(get(&basic("alice", "nope")), 401);
    assert_eq!(settled_count(&s, VERIFY, 2), 2);
    assert_eq!(get(&alice), 200);
    assert_eq!(
        settled_count(&s, VERIFY, 2),
        2,
        "the good credential is still cached"
    );

    // The file changes (our command replaces it by rename): picked up without a signal.
    our_htpasswd(&["-bB", "-C", "4", us, "bob", "second"]);
    // Wait on the log, not by retrying bob: each refused try counts toward throttling.
    eventually("the reload on change", Duration::from_secs(10), || {
        s.log_text().contains("changed on disk: reloaded")
    });
    assert_eq!(get(&basic("bob", "second")), 200);
    // The reload emptied the cache: alice is verified again, once.
    let before = settled_count(&s, VERIFY, 0);
    assert_eq!(get(&alice), 200);
    assert_eq!(get(&alice), 200);
    assert_eq!(settled_count(&s, VERIFY, before + 1), before + 1);

    // SIGHUP: alice's password changed in place; the old one stops working at once.
    let new_line = Command::new(BIN)
        .args(["htpasswd", "-nbB", "-C", "4", "alice", "third"])
        .output()
        .expect("htpasswd -n");
    let mut text = String::from_utf8(new_line.stdout).expect("utf-8");
    text.push_str(
        &std::fs::read_to_string(&users)
            .expect("read")
            .lines()
            .filter(|l| l.starts_with("bob:"))
            .collect::<String>(),
    );
    text.push('\n');
    std::fs::write(&users, text).expect("rewrite");
    unsafe_kill(s.pid(), 1);
    eventually("SIGHUP reload", Duration::from_secs(10), || {
        s.log_text()
            .contains("SIGHUP: authentication files reloaded")
    });
    assert_eq!(get(&alice), 401, "old password after reload");
    assert_eq!(get(&basic("alice", "third")), 200);
    assert_eq!(get(&basic("bob", "second")), 200);

    // A broken file keeps the running users (and says why).
    std::fs::write(&users, "alice:plaintext\n").expect("break");
    unsafe_kill(s.pid(), 1);
    eventually("the refused reload", Duration::from_secs(10), || {
        s.log_text().contains("keeping the running ones")
            || s.log_text().contains("keeping the previous ones")
    });
    assert_eq!(get(&basic("alice", "third")), 200);
    assert!(s.signal_and_wait(15).is_some());
}

#[test]
fn failed_attempts_are_throttled_with_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let users = dir.path().join("users");
    let us = users.to_str().expect("utf-8");
    our_htpasswd(&["-cbB", "-C", "4", us, "victim", "right"]);
    our_htpasswd(&["-bB", "-C", "4", us, "other", "fine"]);
    let s = Server::builder().args_from(&["--htpasswd", us]).start();
    // The victim logged in from home before the attack.
    let home = client_from("127.0.0.4".parse().expect("ip"));
    home.get(s.url("/v2/"))
        .header("authorization", basic("victim", "right"))
        .expect_status(200);
    let attacker = client_from("127.0.0.2".parse().expect("ip"));
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let r = attacker
            .get(s.url("/v2/"))
            .header("authorization", basic("victim", "guess"))
            .send()
            .expect("get");
        statuses.push((
            r.status().as_u16(),
            r.headers()
                .get("retry-after")
                .map(|v| v.to_str().expect("ascii").to_owned()),
            r.text().unwrap_or_default(),
        ));
    }
    let first_429 = statuses
        .iter()
        .position(|(st, _, _)| *st == 429)
        .expect("throttled after a burst");
    assert_eq!(
        first_429, 10,
        "a burst of 10 failures, then 429: {statuses:?}"
    );
    let (_, retry, body) = &statuses[first_429];
    let secs: u64 = retry
        .as_deref()
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&secs), "{secs}");
    assert_eq!(error_code(body), "TOOMANYREQUESTS");
    // The throttled address is throttled for other users' guesses too, even right ones not yet
    // verified; another address with another user is not affected.
    attacker
        .get(s.url("/v2/"))
        .header("authorization", basic("other", "fine"))
        .expect_status(429);
    let elsewhere = client_from("127.0.0.3".parse().expect("ip"));
    elsewhere
        .get(s.url("/v2/"))
        .header("authorization", basic("other", "fine"))
        .expect_status(200);
    // Once the victim's verified credential is no longer cached (the file changes, the
    // registry reloads it and must verify passwords again), the attacked user is throttled
    // from addresses they never logged in from ...
    our_htpasswd(&["-bB", "-C", "4", us, "third", "user"]);
    eventually("the reload", Duration::from_secs(10), || {
        count(&s, "authentication files changed on disk: reloaded") >= 1
    });
    elsewhere
        .get(s.url("/v2/"))
        .header("authorization", basic("victim", "right"))
        .expect_status(429);
    // ... but not from home.
    let r = home
        .get(s.url("/v2/"))
        .header("authorization", basic("victim", "right"))
        .send()
        .expect("get");
    assert_eq!(r.status(), 200, "the real user is not locked out at home");
}

#[test]
fn the_htpasswd_command_warns_when_bcrypt_would_ignore_part_of_a_password() {
    let long = "x".repeat(80);
    let out = Command::new(BIN)
        .args(["htpasswd", "-nbB", "-C", "4", "user", &long])
        .output()
        .expect("run docker-registry htpasswd");
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("only the first 72 bytes") && err.contains("last 8 of this one's 80"),
        "{err}"
    );
    let out = Command::new(BIN)
        .args(["htpasswd", "-nbB", "-C", "4", "user", &"x".repeat(72)])
        .output()
        .expect("run docker-registry htpasswd");
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
}
