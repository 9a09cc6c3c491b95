//! The daemon's maintenance tasks and read-only mode, driven through the library with the
//! settings the YAML parser will set (`upload_purging`, `gc.interval`, `readonly`), over a
//! real filesystem store and a real HTTP listener on 127.0.0.1.

mod common;

use common::*;
use docker_registry::api::{self, AppState};
use docker_registry::config::{Config, StorageConfig};
use docker_registry::registry::{Registry, RegistryOptions};
use docker_registry::server::{admin, maintenance};
use docker_registry::storage::FilesystemDriver;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn config(root: &std::path::Path) -> Config {
    let mut c = Config::defaults(&Default::default());
    c.storage.value = StorageConfig::Filesystem {
        root: root.to_path_buf(),
    };
    c
}

fn registry(root: &std::path::Path, options: RegistryOptions) -> Arc<Registry> {
    Arc::new(Registry::new(
        Arc::new(FilesystemDriver::new(root)),
        options,
    ))
}

fn state(root: &std::path::Path, options: RegistryOptions) -> Arc<AppState> {
    Arc::new(AppState {
        registry: registry(root, options),
        issue: String::new(),
        auth: None,
        token: None,
        token_issuer: None,
        trust_forwarded_headers: false,
        json_log: false,
        events: None,
        proxy: None,
        ui: Default::default(),
    })
}

/// Polls `done` every 100 ms for at most `limit`.
async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_purges_stale_uploads_and_collects_on_its_schedule() {
    let tmp = registry2_store();
    let want = registry2_expected();
    let upload = want.upload_dir(tmp.path());
    let garbage = &want.gc_eligible;
    let mut c = config(tmp.path());
    c.upload_purging.value.age = Duration::from_secs(1);
    c.upload_purging.value.interval = Duration::from_secs(1);
    c.gc.value.interval = Some(Duration::from_secs(1));
    c.gc.value.grace = Duration::ZERO;
    let tasks = maintenance::spawn(registry(tmp.path(), RegistryOptions::default()), &c);
    let root = tmp.path().to_path_buf();
    let purged = eventually(Duration::from_secs(15), || !upload.exists()).await;
    let collected = eventually(Duration::from_secs(15), || {
        let left = stored_blobs(&root);
        garbage.iter().all(|g| !left.contains(g))
    })
    .await;
    assert!(
        tmp.path().join(admin::SOCKET_NAME).exists(),
        "admin socket opened"
    );
    tasks.stop();
    assert!(
        !tmp.path().join(admin::SOCKET_NAME).exists(),
        "admin socket removed on stop"
    );
    assert!(purged, "the stale upload was not purged");
    assert!(collected, "the scheduled collection did not run");
    assert_eq!(
        stored_blobs(tmp.path()).len(),
        want.gc_blobs_marked,
        "only garbage was collected"
    );
}

#[test]
fn read_only_mode_refuses_writes_with_405_unsupported_and_serves_reads() {
    if !have(&[SKOPEO, DISTRIBUTION]) {
        return;
    }
    let tmp = registry2_store();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let state = state(
        tmp.path(),
        RegistryOptions {
            delete_enabled: true,
            readonly: true,
            redirect: false,
            ..RegistryOptions::default()
        },
    );
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server =
        rt.spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    break;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        let req = req.map(|b| api::body::Incoming::new(b, Duration::from_secs(60)));
                        async move {
                            Ok::<_, std::convert::Infallible>(api::handle(state, req, peer).await)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
                });
            }
        });
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let base = format!("http://{addr}/v2");
    let digest = registry2_expected().tags["library/alpine"]["latest"].clone();
    let writes = [
        client.post(format!("{base}/library/alpine/blobs/uploads/")),
        client
            .put(format!("{base}/library/alpine/manifests/new"))
            .body("{}"),
        client.delete(format!("{base}/library/alpine/manifests/{digest}")),
        client.delete(format!("{base}/library/alpine/blobs/{digest}")),
    ];
    for w in writes {
        let r = w.expect_status(405);
        let body: serde_json::Value = r.json().expect("error body");
        assert_eq!(body["errors"][0]["code"], "UNSUPPORTED");
        assert!(body["errors"][0]["message"]
            .as_str()
            .expect("message")
            .contains("read-only"));
    }
    let r = client
        .get(format!("{base}/library/alpine/manifests/latest"))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .expect_status(200);
    assert_eq!(
        format!("sha256:{}", sha256_hex(&r.bytes().expect("body"))),
        digest
    );
    client.get(format!("{base}/_catalog")).expect_status(200);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_socket_refuses_bad_requests_and_reports_a_collection() {
    let tmp = registry2_store();
    let c = config(tmp.path());
    let tasks = maintenance::spawn(registry(tmp.path(), RegistryOptions::default()), &c);
    let path = admin::socket_path(&c);
    let ask = |line: &'static str| {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut s = std::os::unix::net::UnixStream::connect(&path).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(20)))
                .expect("timeout");
            s.write_all(line.as_bytes()).expect("write");
            let mut out = String::new();
            s.read_to_string(&mut out).expect("read");
            out
        })
    };
    let bad = ask("not json\n").await.expect("task");
    assert!(bad.starts_with("error request is not valid JSON"), "{bad}");
    let unknown = ask("{\"command\":\"format-disk\"}\n").await.expect("task");
    assert!(unknown.starts_with("error unknown command"), "{unknown}");
    let dry = ask("{\"command\":\"garbage-collect\",\"dry_run\":true,\"grace_seconds\":0}\n")
        .await
        .expect("task");
    let want = registry2_expected();
    let blobs: Vec<&str> = dry.lines().filter(|l| l.starts_with("blob ")).collect();
    assert_eq!(blobs.len(), want.gc_eligible.len(), "{dry}");
    let done = dry.lines().last().expect("last line");
    let report: docker_registry::registry::gc::GcReport =
        serde_json::from_str(done.strip_prefix("done ").expect("done line")).expect("report");
    assert_eq!(
        (report.blobs_marked, report.blobs_removed, report.dry_run),
        (want.gc_blobs_marked, want.gc_eligible.len(), true)
    );
    tasks.stop();
}
