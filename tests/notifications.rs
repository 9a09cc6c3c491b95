//! Notifications as registry:2 sends them, to a real HTTP receiver the test runs: every
//! action (push, pull, delete, mount) with its envelope checked field by field; a receiver
//! that is down for a while, across a restart of the daemon, then gets every event, in order.

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An HTTP receiver on a loopback port: records each POST's headers and body, answers 200.
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Receiver {
    fn start(port: u16) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the receiver");
        let port = listener.local_addr().expect("addr").port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let record = got.clone();
        // Ends with the test process; it only ever answers.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let record = record.clone();
                std::thread::spawn(move || serve(stream, &record));
            }
        });
        Receiver { port, got }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/events", self.port)
    }

    /// Waits (at most 20 s) for `n` events; returns them with their requests' content type.
    fn events(&self, n: usize) -> Vec<(String, Value)> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.got.lock().expect("events").clone();
            if got.len() >= n || Instant::now() > deadline {
                assert_eq!(got.len(), n, "{got:#?}");
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn serve(stream: std::net::TcpStream, record: &Mutex<Vec<(String, Value)>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let (mut length, mut content_type) = (0usize, String::new());
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (name, value) = h.split_once(':').unwrap_or((h, ""));
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "content-type" => content_type = value.trim().to_owned(),
                // The endpoint's configured headers come with every request.
                "authorization" => assert_eq!(value.trim(), "Bearer s3cr3t"),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let envelope: Value = serde_json::from_slice(&body).expect("a JSON envelope");
        for e in envelope["events"].as_array().expect("events").iter() {
            record
                .lock()
                .expect("events")
                .push((content_type.clone(), e.clone()));
        }
        let _ = writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    }
}

/// A registry:2 file sending every event to `url`.
fn config(dir: &std::path::Path, url: &str) -> String {
    let path = dir.join("config.yml");
    let text = format!(
        "version: 0.1\nnotifications:\n  endpoints:\n    - name: test-receiver\n      url: {url}\n      \
         headers:\n        Authorization: [Bearer s3cr3t]\n      timeout: 2s\n      threshold: 3\n      backoff: 100ms\n"
    );
    std::fs::write(&path, text).expect("write the config");
    path.display().to_string()
}

#[test]
fn every_action_is_sent_in_registry_2_s_envelope() {
    let receiver = Receiver::start(0);
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::builder()
        .arg("--config")
        .arg(config(dir.path(), &receiver.url()))
        .delete_enabled()
        .start();
    let c = client();
    let config_blob = br#"{"architecture":"amd64","os":"linux"}"#;
    let cd = push_blob(&c, &s, "team/app", config_blob);
    // A layer in two steps: POST, then PUT with the data.
    let layer = b"layer bytes".to_vec();
    let ld = digest_of(&layer);
    let started = c
        .post(s.url("/v2/team/app/blobs/uploads/"))
        .expect_status(202);
    let location = absolute(
        &s.url(""),
        started.headers()["location"].to_str().expect("ascii"),
    );
    let sep = if location.contains('?') { '&' } else { '?' };
    c.put(format!("{location}{sep}digest={ld}"))
        .body(layer.clone())
        .expect_status(201);
    let manifest = image_manifest((&cd, config_blob.len()), &[(&ld, layer.len())]);
    let md = put_manifest(&c, &s, "team/app", "v1", &manifest);
    c.get(s.url("/v2/team/app/manifests/v1"))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .header("user-agent", "notification-test/1.0")
        .expect_status(200);
    c.head(s.url("/v2/team/app/manifests/v1"))
        .expect_status(200);
    c.get(s.url(&format!("/v2/team/app/blobs/{ld}")))
        .expect_status(200);
    c.post(s.url(&format!(
        "/v2/other/blobs/uploads/?mount={ld}&from=team/app"
    )))
    .expect_status(201);
    c.delete(s.url(&format!("/v2/team/app/manifests/{md}")))
        .expect_status(202);

    let got = receiver.events(7);
    for (content_type, _) in &got {
        assert_eq!(
            content_type,
            "application/vnd.docker.distribution.events.v1+json"
        );
    }
    let e: Vec<&Value> = got.iter().map(|(_, e)| e).collect();
    let summary: Vec<(String, String, String)> = e
        .iter()
        .map(|e| {
            let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
            (
                s(&e["action"]),
                s(&e["target"]["repository"]),
                s(&e["target"]["digest"]),
            )
        })
        .collect();
    let row = |a: &str, r: &str, d: &str| (a.to_owned(), r.to_owned(), d.to_owned());
    assert_eq!(
        summary,
        vec![
            row("push", "team/app", &cd),
            row("push", "team/app", &ld),
            row("push", "team/app", &md),
            row("pull", "team/app", &md),
            row("pull", "team/app", &ld),
            row("mount", "other", &ld),
            row("delete", "team/app", &md),
        ]
    );
    // The blob pushed in two steps, field by field.
    let blob = e[1];
    assert_eq!(blob["target"]["mediaType"], "application/octet-stream");
    assert_eq!(blob["target"]["size"], layer.len());
    assert_eq!(blob["target"]["length"], layer.len());
    let host = s.host();
    assert_eq!(
        blob["target"]["url"],
        format!("http://{host}/v2/team/app/blobs/{ld}")
    );
    assert_eq!(blob["request"]["method"], "PUT");
    assert_eq!(blob["request"]["addr"], "127.0.0.1");
    assert_eq!(blob["request"]["host"], host);
    assert_eq!(blob["actor"], serde_json::json!({}));
    // The manifest push names its tag, type and size.
    let pushed = e[2];
    assert_eq!(pushed["target"]["tag"], "v1");
    assert_eq!(
        pushed["target"]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(pushed["target"]["size"], manifest.len());
    assert_eq!(
        pushed["target"]["url"],
        format!("http://{host}/v2/team/app/manifests/{md}")
    );
    let pulled = e[3];
    assert_eq!(pulled["target"]["size"], manifest.len());
    assert_eq!(pulled["request"]["useragent"], "notification-test/1.0");
    // The mount: the blob's size as registry:2 gives it (its stat in the source repository).
    let mounted = e[5];
    assert_eq!(mounted["target"]["fromRepository"], "team/app");
    assert_eq!(mounted["target"]["size"], layer.len());
    assert_eq!(mounted["target"]["length"], layer.len());
    assert_eq!(mounted["target"]["mediaType"], "application/octet-stream");
    assert_eq!(
        mounted["target"]["url"],
        format!("http://{host}/v2/other/blobs/{ld}")
    );
    assert_eq!(mounted["request"]["method"], "POST");
    // Every event has an id, a time and its source.
    let mut ids = std::collections::BTreeSet::new();
    for ev in &e {
        assert!(ids.insert(ev["id"].as_str().expect("id").to_owned()));
        let t = ev["timestamp"].as_str().expect("timestamp");
        assert!(t.starts_with("20") && t.ends_with('Z'), "{t}");
        assert!(ev["source"]["instanceID"]
            .as_str()
            .is_some_and(|i| i.len() == 36));
        assert!(ev["source"]["addr"].is_string());
        assert!(ev["request"]["id"].is_string());
    }
}

#[test]
fn a_receiver_down_across_a_restart_gets_every_event_in_order() {
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("data");
    let url = format!("http://127.0.0.1:{port}/events");
    let cfg = config(dir.path(), &url);
    let start = || {
        Server::builder()
            .storage(&storage)
            .arg("--config")
            .arg(cfg.clone())
            .start()
    };
    let c = client();
    let mut expected = Vec::new();
    let mut push = |s: &Server, blobs: std::ops::Range<u32>| {
        for i in blobs {
            let blob = format!("blob {i}");
            expected.push(push_blob(&c, s, "down/here", blob.as_bytes()));
        }
    };
    {
        let mut s = start();
        push(&s, 0..5);
        // Stopped as systemd stops it, with nothing delivered.
        assert!(s.signal_and_wait(15).is_some_and(|st| st.success()));
    }
    let queued = std::fs::read_dir(storage.join("docker-registry-events/test-receiver"))
        .expect("the queue")
        .count();
    assert_eq!(queued, 5);
    let s = start();
    push(&s, 5..8);
    // Up at last.
    let receiver = Receiver::start(port);
    let digests: Vec<String> = receiver
        .events(8)
        .iter()
        .map(|(_, e)| e["target"]["digest"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(digests, expected);
    // Delivered events leave the queue.
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_dir(storage.join("docker-registry-events/test-receiver"))
        .expect("the queue")
        .count()
        > 0
    {
        assert!(Instant::now() < deadline, "the queue is not emptied");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(s);
}

#[test]
fn a_full_queue_drops_its_oldest_events_saying_so() {
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), &format!("http://127.0.0.1:{port}/events"));
    let s = Server::builder()
        .arg("--config")
        .arg(cfg)
        .env("REGISTRY_NOTIFICATIONS_QUEUE_LIMIT", "3")
        .start();
    let c = client();
    let digests: Vec<String> = (0..5)
        .map(|i| push_blob(&c, &s, "full/queue", format!("blob {i}").as_bytes()))
        .collect();
    s.wait_for_log("event(s) dropped");
    let receiver = Receiver::start(port);
    let deadline = Instant::now() + Duration::from_secs(20);
    let got = loop {
        let got: Vec<String> = receiver
            .got
            .lock()
            .expect("events")
            .iter()
            .map(|(_, e)| e["target"]["digest"].as_str().unwrap_or("").to_owned())
            .collect();
        if got.last() == digests.last() || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // The three newest; the first too when it was already on its way as the queue filled
    // (a sender retries the event it holds), never the second.
    assert!(got.ends_with(&digests[2..]), "{got:?}");
    assert!(
        got.len() == 3 || (got.len() == 4 && got[0] == digests[0]),
        "{got:?}"
    );
    assert!(s.log_text().contains("notifications.queue.limit"));
}

/// registry:3's notification series (registry 2.8 had only expvar), scraped from the debug
/// listener: an event queued while its endpoint is down counts `Events` and stays pending,
/// each refused connection counts `Errors`; once a receiver listens it counts `Successes`
/// and a `200 OK` status, and nothing is pending. Ours stay beside them.
#[test]
fn registry_3_notification_metrics_count_queued_errors_and_deliveries() {
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("http://127.0.0.1:{port}/events");
    let s = with_metrics(
        Server::builder()
            .arg("--config")
            .arg(config(dir.path(), &url)),
    );
    let c = client();
    push_blob(&c, &s, "team/app", b"one blob");
    let series = |kind: &str| {
        format!("registry_notifications_events_total{{type=\"{kind}\",endpoint=\"test-receiver\"}}")
    };
    let pending = "registry_notifications_pending_total{endpoint=\"test-receiver\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = scrape(&s);
    while sample(&text, &series("Errors")) < 1.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        text = scrape(&s);
    }
    assert_eq!(sample(&text, &series("Events")), 1.0, "{text}");
    assert!(sample(&text, &series("Errors")) >= 1.0, "{text}");
    assert_eq!(sample(&text, pending), 1.0, "{text}");
    assert!(
        text.contains("# TYPE registry_notifications_pending_total gauge"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE registry_notifications_events counter"),
        "{text}"
    );

    let receiver = Receiver::start(port);
    receiver.events(1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = scrape(&s);
    while sample(&text, &series("Successes")) < 1.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        text = scrape(&s);
    }
    assert_eq!(sample(&text, &series("Successes")), 1.0, "{text}");
    assert_eq!(sample(&text, &series("Failures")), 0.0, "{text}");
    assert_eq!(
        sample(
            &text,
            "registry_notifications_status_total{code=\"200 OK\",endpoint=\"test-receiver\"}"
        ),
        1.0,
        "{text}"
    );
    assert_eq!(sample(&text, pending), 0.0, "{text}");
    assert_eq!(
        sample(&text, "registry_notifications_sent_total"),
        1.0,
        "{text}"
    );
}

/// An endpoint given as registry:2 users give one in a container: YAML in
/// `REGISTRY_NOTIFICATIONS_ENDPOINTS`, no file.
#[test]
fn an_endpoint_from_the_environment_gets_events() {
    let receiver = Receiver::start(0);
    let endpoints = format!(
        "[{{name: from-env, url: '{}', headers: {{Authorization: [Bearer s3cr3t]}}, backoff: 100ms}}]",
        receiver.url()
    );
    let s = Server::builder()
        .env("REGISTRY_NOTIFICATIONS_ENDPOINTS", endpoints)
        .start();
    let d = push_blob(&client(), &s, "team/env", b"from the environment");
    let got = receiver.events(1);
    assert_eq!(got[0].1["action"], "push");
    assert_eq!(got[0].1["target"]["digest"], d.as_str());
}
