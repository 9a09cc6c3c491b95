//! Operations as an administrator runs them: the debug listener (`http.debug.addr`) with
//! `/debug/health` and Prometheus metrics under registry:2's names, scraped from the real
//! endpoint after real pushes and pulls (HTTP and skopeo); authentication failures counted;
//! `/healthz` and `/readyz` on the registry's listener, open to probes without credentials,
//! failing while the storage cannot be written.

mod common;

use common::*;
use std::process::Command;

#[test]
fn metrics_count_pushes_and_pulls_under_registry_2_names() {
    let s = with_metrics(Server::builder());
    let c = client();
    let config = r#"{"architecture":"amd64","os":"linux","seed":"m"}"#;
    let layer = b"layer for m".to_vec();
    let cd = push_blob(&c, &s, "team/app", config.as_bytes());
    let ld = push_blob(&c, &s, "team/app", &layer);
    let manifest = image_manifest((&cd, config.len()), &[(&ld, layer.len())]);
    put_manifest(&c, &s, "team/app", "v1", &manifest);
    for _ in 0..3 {
        c.get(s.url("/v2/team/app/manifests/v1"))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .expect_status(200);
    }
    c.get(s.url(&format!("/v2/team/app/blobs/{ld}")))
        .expect_status(200);
    c.get(s.url("/v2/team/app/manifests/missing"))
        .expect_status(404);

    let m = scrape(&s);
    let requests = |labels: &str| sample(&m, &format!("registry_http_requests_total{{{labels}}}"));
    assert_eq!(
        requests(r#"handler="manifest",code="200",method="GET""#),
        3.0,
        "{m}"
    );
    assert_eq!(
        requests(r#"handler="manifest",code="404",method="GET""#),
        1.0,
        "{m}"
    );
    assert_eq!(
        requests(r#"handler="manifest",code="201",method="PUT""#),
        1.0,
        "{m}"
    );
    assert_eq!(
        requests(r#"handler="blob-upload",code="201",method="POST""#),
        2.0,
        "{m}"
    );
    assert_eq!(
        requests(r#"handler="blob",code="200",method="GET""#),
        1.0,
        "{m}"
    );
    let durations =
        r#"registry_http_request_duration_seconds_count{handler="manifest",method="GET"}"#;
    assert_eq!(sample(&m, durations), 4.0, "{m}");
    assert_eq!(
        sample(
            &m,
            r#"registry_http_in_flight_requests{handler="manifest"}"#
        ),
        0.0
    );
    // Monolithic uploads declare their sizes.
    let declared = config.len() + layer.len() + manifest.len();
    assert_eq!(
        sample(
            &m,
            r#"registry_http_request_size_bytes_sum{handler="blob-upload"}"#
        ),
        (config.len() + layer.len()) as f64
    );
    assert_eq!(sample(&m, "registry_pushed_bytes_total"), declared as f64);
    assert_eq!(
        sample(&m, "registry_pulled_bytes_total"),
        (3 * manifest.len() + layer.len()) as f64
    );
    assert_eq!(sample(&m, "registry_uploads_in_progress"), 0.0);
    for action in ["PutStaged", "GetContent", "Writer"] {
        let series = format!(
            r#"registry_storage_action_seconds_count{{driver="filesystem",action="{action}"}}"#
        );
        assert!(sample(&m, &series) >= 1.0, "{series} in\n{m}");
    }
}

#[test]
fn skopeo_pushes_and_pulls_are_counted() {
    if !have(&[SKOPEO]) {
        return;
    }
    let s = with_metrics(Server::builder());
    let layouts = oci_layouts();
    skopeo_push_layout(
        &s.host(),
        layouts.path(),
        "a",
        "latest",
        "library/a:latest",
        false,
    );
    let out = tempfile::tempdir().expect("tempdir");
    skopeo_ok(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/library/a:latest", s.host()),
        &format!("dir:{}", out.path().display()),
    ]);
    let pulled: u64 = std::fs::read_dir(out.path())
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().len() == 64 || e.file_name() == "manifest.json")
        .map(|e| e.metadata().expect("stat").len())
        .sum();
    let m = scrape(&s);
    let pushed = sample(&m, "registry_pushed_bytes_total");
    assert!(pushed > 0.0, "{m}");
    // The same image both ways: what was pushed is what was pulled.
    assert_eq!(
        sample(&m, "registry_pulled_bytes_total"),
        pulled as f64,
        "{m}"
    );
    assert_eq!(pushed, pulled as f64, "{m}");
    assert_eq!(sample(&m, "registry_uploads_in_progress"), 0.0);
    let total: f64 = m
        .lines()
        .filter(|l| l.starts_with("registry_http_requests_total{handler=\"blob-upload"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert!(total >= 2.0, "{m}");
}

/// An htpasswd file in `dir` with alice, password `right`.
fn alice(dir: &std::path::Path) -> String {
    let users = dir.join("htpasswd");
    let line = Command::new(BIN)
        .args(["htpasswd", "-nbB", "-C", "4", "alice", "right"])
        .output()
        .expect("htpasswd -n");
    std::fs::write(&users, line.stdout).expect("write");
    users.display().to_string()
}

#[test]
fn refused_credentials_are_counted_by_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = with_metrics(Server::builder().arg("--htpasswd").arg(alice(dir.path())));
    let c = client();
    c.get(s.url("/v2/"))
        .basic_auth("alice", Some("wrong"))
        .expect_status(401);
    c.get(s.url("/v2/"))
        .basic_auth("alice", Some("right"))
        .expect_status(200);
    let m = scrape(&s);
    assert_eq!(
        sample(
            &m,
            r#"registry_auth_failures_total{reason="bad_credentials"}"#
        ),
        1.0,
        "{m}"
    );
    assert_eq!(sample(&m, "registry_auth_throttled_total"), 0.0);
}

#[test]
fn the_debug_listener_without_metrics_answers_health_only() {
    let s = Server::builder()
        .args_from(&["--debug-addr", "127.0.0.1:0"])
        .start();
    let base = debug_base(&s);
    let c = client();
    let health = c.get(format!("{base}/debug/health")).expect_status(200);
    assert_eq!(health.text().expect("body"), "{}");
    c.get(format!("{base}/metrics")).expect_status(404);
}

#[test]
fn metrics_without_a_debug_listener_stop_the_start_saying_what_to_set() {
    let ran = Server::builder().arg("--metrics").run_to_end();
    assert!(!ran.ok);
    assert!(ran.stderr.contains("set http.debug.addr"), "{ran}");
}

#[test]
fn probes_need_no_credentials_and_readiness_follows_the_storage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("data");
    let s = Server::builder()
        .storage(&storage)
        .arg("--htpasswd")
        .arg(alice(dir.path()))
        .args_from(&["--debug-addr", "127.0.0.1:0"])
        .start();
    let c = client();
    c.get(s.url("/v2/")).expect_status(401);
    for path in ["/healthz", "/readyz"] {
        let r = c.get(s.url(path)).expect_status(200);
        assert_eq!(r.text().expect("body"), "ok\n");
    }
    c.head(s.url("/readyz")).expect_status(200);
    c.post(s.url("/readyz")).expect_status(405);

    // The store's directory gone and a file in its place: nothing can be written there.
    let moved = dir.path().join("moved");
    std::fs::rename(&storage, &moved).expect("move the store away");
    std::fs::write(&storage, b"not a directory").expect("a file in its place");
    // A result is kept for a second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let r = c.get(s.url("/readyz")).expect_status(503);
    assert_eq!(r.headers()["retry-after"], "5");
    let problem = r.text().expect("body");
    assert!(problem.starts_with("storage: "), "{problem}");
    let health = c
        .get(format!("{}/debug/health", debug_base(&s)))
        .expect_status(503);
    let v: serde_json::Value = health.json().expect("json");
    let why = v["storagedriver_filesystem"].as_str().unwrap_or_default();
    assert!(why.contains(&storage.display().to_string()), "{v}");
    // Still alive: liveness says nothing of the storage.
    c.get(s.url("/healthz")).expect_status(200);

    std::fs::remove_file(&storage).expect("remove the file");
    std::fs::rename(&moved, &storage).expect("the store back");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    c.get(s.url("/readyz")).expect_status(200);
    let log = s.log_text();
    assert!(log.contains("storage health check failed"), "{log}");
}

/// systemd's watchdog is pinged only while the storage passes the readiness check, so a
/// daemon that cannot write its store is restarted (`WatchdogSec=`).
#[test]
fn the_watchdog_stops_pinging_while_the_storage_cannot_be_written() {
    use std::os::unix::net::UnixDatagram;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&socket).expect("bind the notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let storage = dir.path().join("data");
    let _s = Server::builder()
        .storage(&storage)
        .env("NOTIFY_SOCKET", socket.display().to_string())
        .env("WATCHDOG_USEC", "400000")
        .start();
    // What arrives within `within`, until `until` is seen.
    let watch = |within: Duration, until: &str| {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = sock.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = m.contains(until);
                seen.push(m);
                if done {
                    break;
                }
            }
        }
        seen
    };
    let pings = |seen: &[String]| seen.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    assert!(pings(&watch(Duration::from_secs(5), "WATCHDOG=1")) > 0);

    let moved = dir.path().join("moved");
    std::fs::rename(&storage, &moved).expect("move the store away");
    std::fs::write(&storage, b"not a directory").expect("a file in its place");
    let seen = watch(Duration::from_secs(5), "STATUS=storage unhealthy");
    assert!(
        seen.iter().any(|m| m.contains("STATUS=storage unhealthy")),
        "{seen:?}"
    );
    // A ping or two may have been on the way; then none while the storage stays broken.
    let seen = watch(Duration::from_millis(1500), "never");
    assert_eq!(pings(&seen), 0, "{seen:?}");

    std::fs::remove_file(&storage).expect("remove the file");
    std::fs::rename(&moved, &storage).expect("the store back");
    assert!(pings(&watch(Duration::from_secs(5), "WATCHDOG=1")) > 0);
}

/// The first log line containing `needle`, once it is there.
fn log_line(s: &Server, needle: &str) -> String {
    s.wait_for_log(needle);
    let log = s.log_text();
    log.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn the_access_log_names_the_authenticated_user() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::builder()
        .arg("--htpasswd")
        .arg(alice(dir.path()))
        .start();
    let c = client();
    c.get(s.url("/v2/_catalog"))
        .basic_auth("alice", Some("right"))
        .expect_status(200);
    c.get(s.url("/v2/?anonymous")).expect_status(401);
    let line = log_line(&s, "GET /v2/_catalog");
    assert!(
        line.contains("127.0.0.1 alice GET /v2/_catalog 200 "),
        "{line}"
    );
    let line = log_line(&s, "GET /v2/ ");
    assert!(line.contains("127.0.0.1 - GET /v2/ 401 "), "{line}");
}

#[test]
fn json_log_lines_carry_the_request_as_fields() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::builder()
        .arg("--htpasswd")
        .arg(alice(dir.path()))
        .args_from(&["--log-formatter", "json"])
        .start();
    client()
        .get(s.url("/v2/"))
        .basic_auth("alice", Some("right"))
        .expect_status(200);
    let line = log_line(&s, r#""path":"/v2/""#);
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["message"], "request", "{v}");
    assert_eq!(v["level"], "INFO", "{v}");
    assert_eq!(v["user"], "alice", "{v}");
    assert_eq!(v["method"], "GET", "{v}");
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["client"], "127.0.0.1", "{v}");
    assert!(
        v["duration_ms"].as_f64().is_some() && v["timestamp"].is_string(),
        "{v}"
    );
    // Every line is one JSON object, the start-up lines too.
    for l in s.log_text().lines() {
        assert!(serde_json::from_str::<serde_json::Value>(l).is_ok(), "{l}");
    }
}

#[test]
fn an_online_collection_is_counted_with_what_it_freed() {
    let store = tempfile::tempdir().expect("tempdir");
    let s = with_metrics(Server::builder().storage(store.path()).delete_enabled());
    let c = client();
    let digest = push_image(&c, &s, "apps/gone", "v1", "gone");
    c.delete(s.url(&format!("/v2/apps/gone/manifests/{digest}")))
        .expect_status(202);
    let ran = ours_ok(
        store.path(),
        &["garbage-collect", "--online", "--grace", "0s"],
    );
    let m = scrape(&s);
    assert_eq!(sample(&m, "registry_gc_runs_total"), 1.0, "{m}");
    // The config, the layer and the manifest itself.
    assert_eq!(
        sample(&m, "registry_gc_removed_blobs_total"),
        3.0,
        "{}\n{m}",
        ran.stderr
    );
    let freed = sample(&m, "registry_gc_freed_bytes_total");
    assert!(
        ran.stderr.contains(&format!("({freed} bytes) freed")),
        "{freed} {}",
        ran.stderr
    );
    assert_eq!(sample(&m, "registry_gc_duration_seconds_count"), 1.0);
}
