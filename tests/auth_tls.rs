//! Transport security through the real binary: native TLS (certificates made by openssl in
//! the test) with skopeo pushing and pulling over it, HTTP/2 by ALPN, TLS 1.2 as the floor,
//! certificate reload on SIGHUP, mutual TLS; and the shipped nginx example in front of the
//! registry (a real nginx, unprivileged), with absolute Locations from trusted proxy headers.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A self-signed certificate for 127.0.0.1 (cert.pem, key.pem) with the given common name.
fn self_signed(dir: &Path, cn: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    checked(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .args([
                "-subj",
                &format!("/CN={cn}"),
                "-addext",
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ]),
    );
    (cert, key)
}

/// A directory as skopeo's --cert-dir wants it: the server's CA as ca.crt.
fn cert_dir(dir: &Path, ca: &Path) -> PathBuf {
    let d = dir.join("certs.d");
    std::fs::create_dir_all(&d).expect("mkdir");
    std::fs::copy(ca, d.join("ca.crt")).expect("copy ca");
    d
}

/// A cert dir for skopeo with the CA and a client certificate and key, for mutual TLS.
fn client_cert_dir(dir: &Path, ca: &Path, cert: &Path, key: &Path) -> PathBuf {
    let d = cert_dir(dir, ca);
    std::fs::copy(cert, d.join("client.cert")).expect("copy client certificate");
    std::fs::copy(key, d.join("client.key")).expect("copy client key");
    d
}

fn users(dir: &Path) -> PathBuf {
    let f = dir.join("users");
    checked(
        Command::new("htpasswd")
            .args(["-cbB", "-C", "5"])
            .arg(&f)
            .args(["tls-user", "tls pw"]),
    );
    f
}

fn curl(args: &[&str]) -> (bool, String) {
    output_of(
        Command::new(CURL.program)
            .args(["-sS", "--max-time", "20"])
            .args(args),
    )
}

/// curl with `args`, the URL last, must get a 200.
#[track_caller]
fn curl_200(args: &[&str]) {
    let (url, options) = args.split_last().expect("a URL");
    let mut all = options.to_vec();
    all.extend(["-o", "/dev/null", "-w", "%{http_code}", *url]);
    let (ok, code) = curl(&all);
    assert!(ok && code == "200", "{url}: {code}");
}

fn served_subject(port: u16) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -subject"
        ))
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn skopeo_pushes_and_pulls_over_native_tls_with_basic_auth() {
    if !have(&[SKOPEO, HTPASSWD, OPENSSL, CURL]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = self_signed(dir.path(), "first");
    let users = users(dir.path());
    let mut s = Server::builder()
        .file_arg("--tls-cert", &cert)
        .file_arg("--tls-key", &key)
        .file_arg("--htpasswd", &users)
        .start();
    // The harness learns the port before the line reaches its log copy: wait for it.
    s.wait_for_log(&format!("listening on https://127.0.0.1:{}", s.port));
    let host = s.host();
    let certs = cert_dir(dir.path(), &cert);
    let certs = certs.to_str().expect("utf-8");
    let layouts = oci_layouts();
    let src = format!("oci:{}:1.0", layouts.path().join("b").display());
    let dst = format!("docker://{host}/secure/b:1.0");

    // The certificate is checked: without the CA skopeo refuses.
    let (ok, out) = skopeo(&["copy", "--dest-creds", "tls-user:tls pw", &src, &dst]);
    assert!(!ok && out.contains("certificate"), "{out}");
    push_tls(certs, "tls-user:tls pw", &src, &dst).expect("push");
    pull_tls(certs, "tls-user:tls pw", &dst, &dir.path().join("pulled"));
    let (ok, out) = skopeo(&["inspect", "--cert-dir", certs, &dst]);
    assert!(!ok, "anonymous inspect must fail: {out}");

    // Plain HTTP on the TLS port gets nothing useful.
    let (ok, _) = curl(&[&format!("http://{host}/v2/")]);
    assert!(!ok);
    // HTTP/2 by ALPN, HTTP/1.1 for those who ask; TLS 1.1 is refused.
    let ca = cert.to_str().expect("utf-8");
    let url = format!("https://{host}/v2/");
    let (ok, v) = curl(&[
        "--cacert",
        ca,
        "-u",
        "tls-user:tls pw",
        "--http2",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
        &url,
    ]);
    assert!(ok, "{v}");
    assert_eq!(v, "2 200");
    let (ok, v) = curl(&[
        "--cacert",
        ca,
        "-u",
        "tls-user:tls pw",
        "--http1.1",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
        &url,
    ]);
    assert!(ok, "{v}");
    assert_eq!(v, "1.1 200");
    let (ok, v) = curl(&["--cacert", ca, "--tlsv1.0", "--tls-max", "1.1", &url]);
    assert!(!ok, "TLS 1.1 must be refused: {v}");

    // SIGHUP re-reads the certificate (a renewal), no restart.
    assert!(
        served_subject(s.port).contains("CN = first"),
        "{}",
        served_subject(s.port)
    );
    let renewed = dir.path().join("renewed");
    std::fs::create_dir_all(&renewed).expect("mkdir");
    let (c2, k2) = self_signed(&renewed, "renewed");
    std::fs::copy(&k2, &key).expect("key");
    std::fs::copy(&c2, &cert).expect("cert");
    unsafe_kill(s.pid(), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.log_text().contains("TLS certificates reloaded") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        served_subject(s.port).contains("CN = renewed"),
        "{}",
        s.log_text()
    );
    curl_200(&[
        "--cacert",
        c2.to_str().expect("utf-8"),
        "-u",
        "tls-user:tls pw",
        &url,
    ]);
    assert!(s.signal_and_wait(15).is_some());
}

/// A client CA (ca/cert.pem) and a client certificate signed by it, for mutual TLS:
/// (CA certificate, client certificate, client key).
fn client_ca(d: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_dir = d.join("ca");
    std::fs::create_dir_all(&ca_dir).expect("mkdir");
    let (ca_cert, ca_key) = self_signed(&ca_dir, "client-ca");
    let client_key = d.join("client.key");
    let client_csr = d.join("client.csr");
    let client_cert = d.join("client.cert");
    let ext = d.join("client.ext");
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    .expect("write ext");
    checked(
        Command::new("openssl")
            .args([
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                "/CN=ci-robot",
            ])
            .arg("-keyout")
            .arg(&client_key)
            .arg("-out")
            .arg(&client_csr),
    );
    checked(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "2"])
            .arg("-in")
            .arg(&client_csr)
            .arg("-CA")
            .arg(&ca_cert)
            .arg("-CAkey")
            .arg(&ca_key)
            // A v3 certificate for client authentication (webpki refuses v1 certificates).
            .arg("-extfile")
            .arg(&ext)
            .args(["-CAcreateserial", "-out"])
            .arg(&client_cert),
    );
    (ca_cert, client_cert, client_key)
}

#[test]
fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    if !have(&[SKOPEO, OPENSSL, CURL]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (cert, key) = self_signed(d, "server");
    let (ca_cert, client_cert, client_key) = client_ca(d);
    let s = Server::builder()
        .file_arg("--tls-cert", &cert)
        .file_arg("--tls-key", &key)
        .file_arg("--tls-client-ca", &ca_cert)
        .start();
    let url = format!("https://{}/v2/", s.host());
    let ca = cert.to_str().expect("utf-8");
    let (ok, out) = curl(&["--cacert", ca, &url]);
    assert!(!ok, "no client certificate must fail: {out}");
    // A certificate from another CA is refused too (the server's own self-signed one).
    let (ok, out) = curl(&[
        "--cacert",
        ca,
        "--cert",
        ca,
        "--key",
        key.to_str().expect("utf-8"),
        &url,
    ]);
    assert!(!ok, "a client certificate from another CA must fail: {out}");
    curl_200(&[
        "--cacert",
        ca,
        "--cert",
        client_cert.to_str().expect("utf-8"),
        "--key",
        client_key.to_str().expect("utf-8"),
        &url,
    ]);
    // skopeo with the client certificate in its cert dir.
    let certs = client_cert_dir(d, &cert, &client_cert, &client_key);
    let layouts = oci_layouts();
    skopeo_ok(&[
        "copy",
        "--dest-cert-dir",
        certs.to_str().expect("utf-8"),
        &format!("oci:{}:latest", layouts.path().join("a").display()),
        &format!("docker://{}/mtls/a:latest", s.host()),
    ]);
}

/// Everything from a registry:2 file, no authentication or TLS flags: HTTPS with client
/// certificates from `http.tls.clientcas`, htpasswd users, and the access file
/// (`auth.htpasswd.accessfile`) deciding who may push.
#[test]
fn a_registry_2_file_alone_gives_mutual_tls_htpasswd_and_access_rules() {
    if !have(&[SKOPEO, HTPASSWD, OPENSSL, CURL]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (cert, key) = self_signed(d, "server");
    let (ca_cert, client_cert, client_key) = client_ca(d);
    let users = users(d);
    checked(
        Command::new("htpasswd")
            .args(["-bB", "-C", "5"])
            .arg(&users)
            .args(["reader", "read pw"]),
    );
    let access = d.join("access.yml");
    std::fs::write(
        &access,
        "rules:\n  - repositories: ['secure/**']\n    users: [tls-user]\n    actions: [pull, push]\n  \
         - repositories: ['secure/**']\n    users: [reader]\n    actions: [pull]\n",
    )
    .expect("write access file");
    let yml = d.join("config.yml");
    std::fs::write(
        &yml,
        format!(
            "version: 0.1\nhttp:\n  tls:\n    certificate: {}\n    key: {}\n    clientcas:\n      - {}\n\
             auth:\n  htpasswd:\n    realm: file-realm\n    path: {}\n    accessfile: {}\n",
            cert.display(),
            key.display(),
            ca_cert.display(),
            users.display(),
            access.display()
        ),
    )
    .expect("write config");
    let s = Server::builder()
        .arg("--config")
        .arg(yml.to_str().expect("utf-8"))
        .start();
    s.wait_for_log(&format!("listening on https://127.0.0.1:{}", s.port));
    let url = format!("https://{}/v2/", s.host());
    let ca = cert.to_str().expect("utf-8");
    let (cc, ck) = (
        client_cert.to_str().expect("utf-8"),
        client_key.to_str().expect("utf-8"),
    );

    // No client certificate: no TLS session, whatever the password.
    let (ok, out) = curl(&["--cacert", ca, "-u", "tls-user:tls pw", &url]);
    assert!(!ok, "no client certificate must fail: {out}");
    // A client certificate, no password: the file's realm in the Basic challenge.
    let (ok, out) = curl(&["--cacert", ca, "--cert", cc, "--key", ck, "-i", &url]);
    assert!(
        ok && out.contains(" 401") && out.contains(r#"Basic realm="file-realm""#),
        "{out}"
    );
    curl_200(&[
        "--cacert",
        ca,
        "--cert",
        cc,
        "--key",
        ck,
        "-u",
        "reader:read pw",
        &url,
    ]);

    // skopeo with the client certificate: tls-user may push, reader only pull.
    let certs = client_cert_dir(d, &cert, &client_cert, &client_key);
    let certs = certs.to_str().expect("utf-8");
    let layouts = oci_layouts();
    let src = format!("oci:{}:latest", layouts.path().join("a").display());
    let dst = format!("docker://{}/secure/a:latest", s.host());
    push_tls(certs, "tls-user:tls pw", &src, &dst).expect("push");
    pull_tls(certs, "reader:read pw", &dst, &d.join("pulled"));
    push_tls(
        certs,
        "reader:read pw",
        &src,
        &format!("docker://{}/secure/b:latest", s.host()),
    )
    .expect_err("the access file gives reader no push");
    push_tls(
        certs,
        "tls-user:tls pw",
        &src,
        &format!("docker://{}/elsewhere/a:latest", s.host()),
    )
    .expect_err("the access file gives tls-user nothing outside secure/");
}

struct Nginx {
    child: Child,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its workers; SIGKILL would leave them orphaned.
        unsafe_kill(self.child.id() as i32, 15);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the shipped example (etc/nginx/docker-registry.conf) unprivileged: its listen
/// port, upstream and certificate paths replaced, everything else as shipped.
fn start_nginx(prefix: &Path, port: u16, upstream: u16, cert: &Path, key: &Path) -> Nginx {
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/nginx/docker-registry.conf"),
    )
    .expect("the nginx example");
    let mut conf = example.clone();
    for (from, to) in [
        (
            "listen 443 ssl http2;",
            format!("listen 127.0.0.1:{port} ssl http2;"),
        ),
        ("listen [::]:443 ssl http2;", String::new()),
        (
            "server 127.0.0.1:5000;",
            format!("server 127.0.0.1:{upstream};"),
        ),
        (
            "/etc/nginx/ssl/registry.example.com.crt",
            cert.display().to_string(),
        ),
        (
            "/etc/nginx/ssl/registry.example.com.key",
            key.display().to_string(),
        ),
    ] {
        assert!(conf.contains(from), "the example no longer has {from:?}");
        conf = conf.replace(from, &to);
    }
    std::fs::write(prefix.join("docker-registry.conf"), conf).expect("write site");
    let p = prefix.display();
    let main = format!(
        "error_log {p}/error.log info;\npid {p}/nginx.pid;\nevents {{}}\nhttp {{\n  access_log {p}/access.log;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n  fastcgi_temp_path {p}/fastcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n  include {p}/docker-registry.conf;\n}}\n"
    );
    std::fs::write(prefix.join("nginx.conf"), main).expect("write nginx.conf");
    let child = Command::new("nginx")
        .arg("-p")
        .arg(prefix)
        .arg("-c")
        .arg(prefix.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx is installed (apt-get install nginx-light)");
    let n = Nginx { child };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not start: {}",
            std::fs::read_to_string(prefix.join("error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    n
}

#[test]
fn behind_the_shipped_nginx_example_with_registry_auth() {
    if !have(&[SKOPEO, HTPASSWD, NGINX, OPENSSL, CURL]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = self_signed(dir.path(), "proxy");
    let users = users(dir.path());
    let s = Server::builder()
        .file_arg("--htpasswd", &users)
        .arg("--trust-forwarded-headers")
        .start();
    let port = free_port();
    let _nginx = start_nginx(dir.path(), port, s.port, &cert, &key);
    let host = format!("127.0.0.1:{port}");
    let ca = cert.to_str().expect("utf-8");

    // Pings are open; the API asks for credentials through the proxy.
    for p in ["/_ping", "/v1/_ping"] {
        curl_200(&["--cacert", ca, &format!("https://{host}{p}")]);
    }
    let (ok, out) = curl(&["--cacert", ca, "-i", &format!("https://{host}/v2/")]);
    assert!(
        ok && out.contains(" 401") && out.to_lowercase().contains("www-authenticate: basic"),
        "{out}"
    );

    // Locations are absolute URLs of the proxy, from X-Forwarded-Proto/Host.
    let (ok, out) = curl(&[
        "--cacert",
        ca,
        "-i",
        "-X",
        "POST",
        "-u",
        "tls-user:tls pw",
        "-H",
        "X-Forwarded-For: 203.0.113.7",
        &format!("https://{host}/v2/proxied/x/blobs/uploads/"),
    ]);
    assert!(ok, "{out}");
    let location = out
        .lines()
        .find(|l| l.to_lowercase().starts_with("location:"))
        .unwrap_or_else(|| panic!("no Location: {out}"));
    assert!(
        location.contains(&format!("https://{host}/v2/proxied/x/blobs/uploads/")),
        "{location}"
    );
    // The client address is the one nginx appended, not what the client claimed before it.
    s.wait_for_log("127.0.0.1 tls-user POST /v2/proxied/x/blobs/uploads/ 202");
    assert!(!s.log_text().contains("203.0.113.7"), "{}", s.log_text());
    // (The registry does read the header: the last X-Forwarded-For entry is what it logs.)
    client()
        .get(s.url("/v2/"))
        .header("x-forwarded-for", "198.51.100.9")
        .expect_status(401);
    s.wait_for_log("198.51.100.9 - GET /v2/ 401");

    // skopeo through nginx: login, push, pull.
    let certs = cert_dir(dir.path(), &cert);
    let certs = certs.to_str().expect("utf-8");
    let authfile = dir.path().join("auth.json");
    skopeo_ok(&[
        "login",
        "--cert-dir",
        certs,
        "--authfile",
        authfile.to_str().expect("utf-8"),
        "-u",
        "tls-user",
        "-p",
        "tls pw",
        &host,
    ]);
    let layouts = oci_layouts();
    let dst = format!("docker://{host}/proxied/multi:latest");
    skopeo_ok(&[
        "copy",
        "--all",
        "--dest-cert-dir",
        certs,
        "--dest-creds",
        "tls-user:tls pw",
        &format!("oci:{}:multi", layouts.path().join("multi").display()),
        &dst,
    ]);
    pull_tls(certs, "tls-user:tls pw", &dst, &dir.path().join("pulled"));
    let (ok, out) = skopeo(&["inspect", "--cert-dir", certs, &dst]);
    assert!(!ok, "anonymous pull through nginx must fail: {out}");
}

/// skopeo copies `src` to `dst`, a registry over TLS: `certs` is a skopeo cert dir (the CA,
/// and a client certificate where the registry asks for one), `creds` is `user:password`.
/// The error is skopeo's output.
fn push_tls(certs: &str, creds: &str, src: &str, dst: &str) -> Result<(), String> {
    let (ok, out) = skopeo(&[
        "copy",
        "--dest-cert-dir",
        certs,
        "--dest-creds",
        creds,
        src,
        dst,
    ]);
    if ok {
        Ok(())
    } else {
        Err(out)
    }
}

/// skopeo pulls `src` from a registry over TLS (see [`push_tls`]) into the directory `into`,
/// which must then hold the image.
fn pull_tls(certs: &str, creds: &str, src: &str, into: &Path) {
    skopeo_ok(&[
        "copy",
        "--src-cert-dir",
        certs,
        "--src-creds",
        creds,
        src,
        &format!("dir:{}", into.display()),
    ]);
    assert!(into.join("manifest.json").exists(), "{src} pulled whole");
}
