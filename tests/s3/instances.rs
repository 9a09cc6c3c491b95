//! Several instances on one bucket: three daemons on one moto bucket, reached directly (to
//! choose which instance serves a request) and through a real nginx round-robin upstream,
//! as a scaled-out deployment runs them (`etc/nginx/docker-registry.conf`).

use super::*;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a write's marks protect its blobs in the clusters here
/// (`storage.maintenance.gc.marklifetime`; a minute by default): enough for a push from its
/// marks to its links on a loaded test machine, short enough that a test waits it out.
const MARK_LIFETIME: Duration = Duration::from_secs(5);

/// Three daemons on one bucket, each with its own admin socket.
pub(crate) struct Cluster {
    moto: Moto,
    pub instances: Vec<Server>,
    /// Each instance's directory: its config and admin socket.
    dirs: Vec<tempfile::TempDir>,
}

impl Cluster {
    pub fn start(n: usize) -> Option<Cluster> {
        let moto = moto()?;
        let mut dirs = Vec::new();
        let mut instances = Vec::new();
        for _ in 0..n {
            let dir = tempfile::tempdir().expect("tempdir");
            let mark_lifetime = format!("{}s", MARK_LIFETIME.as_secs());
            instances.push(
                ours_builder(&moto, "", dir.path())
                    .env(
                        "REGISTRY_STORAGE_MAINTENANCE_GC_MARKLIFETIME",
                        mark_lifetime,
                    )
                    .start(),
            );
            dirs.push(dir);
        }
        Some(Cluster {
            moto,
            instances,
            dirs,
        })
    }
}

/// nginx in front of the instances, round robin, started for one test and stopped (by its
/// PID) when dropped.
pub(crate) struct Nginx {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// `None` (the test is skipped, having said why) without nginx, except under
    /// `tests/run-all.sh`, which installs it.
    pub fn start(upstreams: &[&Server]) -> Option<Nginx> {
        let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists());
        let Some(binary) = binary else {
            assert!(
                std::env::var_os("MOTO_SERVER").is_none(),
                "nginx is not installed (tests/run-all.sh installs nginx-light)"
            );
            eprintln!("skipped: nginx is not installed");
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let servers: String = upstreams
            .iter()
            .map(|s| format!("        server 127.0.0.1:{};\n", s.port))
            .collect();
        // The settings a registry needs behind nginx, as etc/nginx/docker-registry.conf
        // has them: bodies of any size streamed both ways, and the client's Host kept so
        // that Location headers point back at the balancer.
        let conf = format!(
            "worker_processes 1;\n\
             daemon off;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n\
                 access_log off;\n\
                 client_body_temp_path {d}/body;\n\
                 proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fastcgi;\n\
                 uwsgi_temp_path {d}/uwsgi;\n\
                 scgi_temp_path {d}/scgi;\n\
                 upstream registry {{\n{servers}        keepalive 16;\n    }}\n\
                 server {{\n\
                     listen 127.0.0.1:{port};\n\
                     client_max_body_size 0;\n\
                     chunked_transfer_encoding on;\n\
                     location /v2/ {{\n\
                         proxy_pass http://registry;\n\
                         proxy_http_version 1.1;\n\
                         proxy_set_header Connection \"\";\n\
                         proxy_set_header Host $http_host;\n\
                         proxy_set_header X-Forwarded-Proto $scheme;\n\
                         proxy_request_buffering off;\n\
                         proxy_buffering off;\n\
                         proxy_read_timeout 900;\n\
                     }}\n\
                 }}\n\
             }}\n",
            d = dir.path().display()
        );
        let file = dir.path().join("nginx.conf");
        std::fs::write(&file, conf).expect("write nginx.conf");
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nginx");
        let n = Nginx {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on {port}: {}",
                std::fs::read_to_string(n._dir.path().join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(n)
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: nginx's fast shutdown, its workers with it.
        unsafe_kill(self.child.id() as i32, 15);
        let _ = self.child.wait();
    }
}

fn location(r: &reqwest::blocking::Response) -> String {
    r.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned()
}

fn patch(
    c: &reqwest::blocking::Client,
    s: &Server,
    location: &str,
    from: usize,
    body: reqwest::blocking::Body,
    len: usize,
) -> reqwest::blocking::Response {
    c.patch(absolute(&s.url(""), location))
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("{from}-{}", from + len - 1))
        .body(body)
        .send()
        .expect("patch")
}

fn finish(c: &reqwest::blocking::Client, s: &Server, location: &str, digest: &str) {
    let url = absolute(&s.url(""), location);
    let sep = if url.contains('?') { '&' } else { '?' };
    c.put(format!("{url}{sep}digest={digest}"))
        .expect_status(201);
}

fn blob(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i + seed).wrapping_mul(2654435761) >> 9) as u8)
        .collect()
}

/// An upload started on one instance, continued by PATCHes on each of the others and
/// finished on the first (whose memory of the session is out of date by then): the session
/// and its digest state live in the bucket, and the blob lands whole under its digest.
#[test]
fn a_chunked_upload_moves_between_instances() {
    let Some(cl) = Cluster::start(3) else { return };
    let [a, b, c] = [&cl.instances[0], &cl.instances[1], &cl.instances[2]];
    let http = client();
    let data = blob(2 * CHUNK + 777, 1);
    let digest = digest_of(&data);
    let r = http
        .post(a.url("/v2/spread/blobs/uploads/"))
        .expect_status(202);
    let mut loc = location(&r);
    let cuts = [0, 1000, CHUNK + 3, data.len()];
    for (w, s) in cuts.windows(2).zip([a, b, c]) {
        let part = data[w[0]..w[1]].to_vec();
        let r = patch(&http, s, &loc, w[0], part.into(), w[1] - w[0]);
        assert_eq!(r.status(), 202, "PATCH at {} on :{}", w[0], s.port);
        loc = location(&r);
    }
    finish(&http, a, &loc, &digest);
    for s in [a, b, c] {
        let got = get_blob(&http, s, "spread", &digest);
        assert_eq!(digest_of(&got), digest, "served by :{}", s.port);
    }
}

/// A body that trickles out, holding its request open.
struct Trickle {
    data: Vec<u8>,
    at: usize,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at >= self.data.len() {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(40));
        let n = buf.len().min(64 << 10).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Two PATCHes racing on one session from two instances: while the first is still
/// streaming, the second is refused with 416 and the range the upload holds, so only one
/// appends; the blob is the first one's bytes.
#[test]
fn racing_patches_on_two_instances_do_not_both_append() {
    let Some(cl) = Cluster::start(2) else { return };
    let [a, b] = [&cl.instances[0], &cl.instances[1]];
    let http = client();
    let r = http
        .post(a.url("/v2/race/blobs/uploads/"))
        .expect_status(202);
    let loc = location(&r);
    let slow = blob(1 << 20, 2);
    let digest = digest_of(&slow);
    let first = {
        let (http, loc, url) = (http.clone(), loc.clone(), a.url(""));
        let body = Trickle {
            data: slow.clone(),
            at: 0,
        };
        std::thread::spawn(move || {
            http.patch(absolute(&url, &loc))
                .header("content-type", "application/octet-stream")
                .header("content-range", format!("0-{}", (1 << 20) - 1))
                .body(reqwest::blocking::Body::new(body))
                .send()
                .expect("slow patch")
                .status()
        })
    };
    std::thread::sleep(Duration::from_millis(150));
    let other = blob(1 << 20, 3);
    let r = patch(&http, b, &loc, 0, other.into(), 1 << 20);
    let status = r.status();
    assert_eq!(status, 416, "{}", r.text().unwrap_or_default());
    assert_eq!(first.join().expect("join"), 202);
    let r = http.get(absolute(&b.url(""), &loc)).expect_status(204);
    assert_eq!(r.headers()["range"], format!("0-{}", (1 << 20) - 1));
    finish(&http, b, &loc, &digest);
    assert_eq!(digest_of(&get_blob(&http, a, "race", &digest)), digest);
}

/// An instance killed (SIGKILL) while a PATCH streams into it leaves its append claim in
/// the bucket; the client asks another instance where the upload stands and continues from
/// there at once (the claim's holder is a dead process of this machine; on another machine
/// the claim would end unrenewed within a minute), and the blob lands whole.
#[test]
fn a_patch_cut_short_by_a_dead_instance_is_continued_through_another() {
    let Some(mut cl) = Cluster::start(2) else {
        return;
    };
    let http = client();
    let data = blob(3 << 20, 7);
    let digest = digest_of(&data);
    let first = 1 << 20;
    let a = &cl.instances[0];
    let r = http
        .post(a.url("/v2/dead/blobs/uploads/"))
        .expect_status(202);
    let loc = location(&r);
    let r = patch(&http, a, &loc, 0, data[..first].to_vec().into(), first);
    assert_eq!(r.status(), 202);
    let loc = location(&r);
    let id = loc
        .split('?')
        .next()
        .and_then(|p| p.rsplit('/').next())
        .expect("upload id")
        .to_owned();
    let claims = format!("docker/registry/v2/repositories/dead/_uploads/{id}/appending/");
    let cut = {
        let (http, url, loc, rest) = (http.clone(), a.url(""), loc.clone(), data[first..].to_vec());
        let len = data.len();
        std::thread::spawn(move || {
            http.patch(absolute(&url, &loc))
                .header("content-type", "application/octet-stream")
                .header("content-range", format!("{first}-{}", len - 1))
                .body(reqwest::blocking::Body::new(Trickle { data: rest, at: 0 }))
                .send()
                .map(|r| r.status().as_u16())
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while objects(&cl.moto, &claims).is_empty() {
        assert!(Instant::now() < deadline, "the PATCH never held its claim");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        cl.instances[0].signal_and_wait(9).is_some(),
        "a did not die"
    );
    assert_ne!(cut.join().expect("join").ok(), Some(202));
    assert!(
        !objects(&cl.moto, &claims).is_empty(),
        "the dead PATCH's claim is left"
    );

    let b = &cl.instances[1];
    let r = http.get(absolute(&b.url(""), &loc)).expect_status(204);
    assert_eq!(
        r.headers()["range"],
        format!("0-{}", first - 1),
        "nothing of the cut PATCH"
    );
    let r = patch(
        &http,
        b,
        &loc,
        first,
        data[first..].to_vec().into(),
        data.len() - first,
    );
    assert_eq!(r.status(), 202, "{}", b.log_text());
    finish(&http, b, &location(&r), &digest);
    assert_eq!(digest_of(&get_blob(&http, b, "dead", &digest)), digest);
    assert!(
        objects(&cl.moto, &claims).is_empty(),
        "claims left: {}",
        b.log_text()
    );
}

/// A manifest deleted through one instance is gone through the others at once, as the OCI
/// conformance suite checks it through a balancer (a HEAD right after the DELETE), even
/// where they had just served it: on a shared store tags and revisions are read from the
/// bucket, not from memory.
#[test]
fn a_delete_through_one_instance_is_seen_through_the_others_at_once() {
    let Some(cl) = Cluster::start(3) else { return };
    let [a, b, c] = [&cl.instances[0], &cl.instances[1], &cl.instances[2]];
    let http = client();
    let digest = push_image(&http, a, "gone/app", "v1", "deleted soon");
    let head = |s: &Server, reference: &str| {
        http.head(s.url(&format!("/v2/gone/app/manifests/{reference}")))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .expect("head")
            .status()
            .as_u16()
    };
    for s in [b, c] {
        assert_eq!((head(s, "v1"), head(s, &digest)), (200, 200), ":{}", s.port);
    }
    http.delete(a.url(&format!("/v2/gone/app/manifests/{digest}")))
        .expect_status(202);
    for s in [b, c] {
        assert_eq!((head(s, "v1"), head(s, &digest)), (404, 404), ":{}", s.port);
    }
}

/// skopeo through nginx round-robin over three instances: every request of a push (and of
/// a pull) may land on a different instance.
#[test]
fn skopeo_round_trips_through_a_round_robin_balancer() {
    if !have(&[SKOPEO]) {
        return;
    }
    let Some(cl) = Cluster::start(3) else { return };
    let Some(lb) = Nginx::start(&cl.instances.iter().collect::<Vec<_>>()) else {
        return;
    };
    let layouts = oci_layouts();
    round_trips(&lb.host(), layouts.path(), IMAGES);
    for s in &cl.instances {
        pull_and_check(
            &s.host(),
            "library/a:latest",
            &layout_digest(&layouts.path().join("a"), "latest"),
            false,
        );
    }
}

/// What `registry::changes` promises: a write through one instance is served by the
/// others within the journal's poll (1 s) plus one listing of it. Allowed here with room
/// for a loaded test machine; the figure measured is printed.
const VISIBILITY_BOUND: Duration = Duration::from_secs(3);

/// Polls `seen` every 20 ms until it holds; returns how long that took.
fn time_until(what: &str, mut seen: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !seen() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what}: not seen after 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

fn tags(http: &reqwest::blocking::Client, s: &Server, repo: &str) -> Vec<String> {
    let v: serde_json::Value = http
        .get(s.url(&format!("/v2/{repo}/tags/list")))
        .expect_status(200)
        .json()
        .expect("json");
    v["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect()
}

fn tag_digest(http: &reqwest::blocking::Client, s: &Server, repo: &str, tag: &str) -> String {
    let r = http
        .head(s.url(&format!("/v2/{repo}/manifests/{tag}")))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .expect("head");
    r.headers()
        .get("docker-content-digest")
        .and_then(|d| d.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Tags written, moved and a repository created through one instance, while the two others
/// have the tag list, the tag and the catalog cached: each reader serves the change within
/// [`VISIBILITY_BOUND`] of the write's answer.
#[test]
fn writes_through_one_instance_are_seen_through_the_others_within_the_bound() {
    let Some(cl) = Cluster::start(3) else { return };
    let [a, b, c] = [&cl.instances[0], &cl.instances[1], &cl.instances[2]];
    let http = client();
    let mut v1 = push_image(&http, a, "bound/app", "v1", "one");
    let mut worst = Duration::ZERO;
    for round in 0..3 {
        // The readers cache what they serve now, and follow the journal a while.
        for s in [b, c] {
            time_until("v1 on a reader", || {
                tag_digest(&http, s, "bound/app", "v1") == v1
            });
            tags(&http, s, "bound/app");
            catalog(&http, &s.url(""));
        }
        std::thread::sleep(Duration::from_millis(1500));
        let new_tag = format!("r{round}");
        let new_repo = format!("bound/new{round}");
        v1 = push_image(&http, a, "bound/app", "v1", &format!("moved {round}"));
        let mut took = time_until("the moved tag", || {
            [b, c]
                .iter()
                .all(|s| tag_digest(&http, s, "bound/app", "v1") == v1)
        });
        push_image(&http, a, "bound/app", &new_tag, "tagged");
        took = took.max(time_until("the new tag", || {
            [b, c]
                .iter()
                .all(|s| tags(&http, s, "bound/app").contains(&new_tag))
        }));
        push_image(&http, a, &new_repo, "latest", "new");
        took = took.max(time_until("the new repository", || {
            [b, c]
                .iter()
                .all(|s| catalog(&http, &s.url("")).contains(&new_repo))
        }));
        eprintln!("round {round}: each write seen through both other instances within {took:?}");
        worst = worst.max(took);
    }
    eprintln!("tag visibility across instances: at most {worst:?}");
    assert!(
        worst <= VISIBILITY_BOUND,
        "took {worst:?}, more than {VISIBILITY_BOUND:?}"
    );
}

/// `garbage-collect --online --grace 0s` through instance `i`'s admin socket: the digests
/// it removed.
fn collect_online(cl: &Cluster, i: usize) -> Vec<String> {
    let out = command(
        cl.dirs[i].path(),
        &["garbage-collect", "--online", "--grace", "0s"],
    );
    assert!(out.ok, "garbage-collect --online: {out}");
    out.lines
}

/// One image pushed through `s` the way a client does it: its shared layer mounted from
/// where it was first uploaded (uploaded again when the mount is refused), its own layer
/// and config uploaded, then the manifest. `Some(manifest digest)` when the registry
/// acknowledged it.
fn push_reusing(
    http: &reqwest::blocking::Client,
    s: &Server,
    repo: &str,
    shared: &[u8],
    own: &str,
) -> Option<String> {
    let d = digest_of(shared);
    let r = http
        .post(s.url(&format!("/v2/{repo}/blobs/uploads/?mount={d}&from=gc/old")))
        .send()
        .expect("mount");
    if r.status() != 201 {
        push_blob(http, s, repo, shared);
    }
    let config = format!(r#"{{"architecture":"amd64","os":"linux","own":"{own}"}}"#);
    let layer = format!("own layer {own}").into_bytes();
    let cd = push_blob(http, s, repo, config.as_bytes());
    let ld = push_blob(http, s, repo, &layer);
    let m = image_manifest(
        (&cd, config.len()),
        &[(&d, shared.len()), (&ld, layer.len())],
    );
    let r = http
        .put(s.url(&format!("/v2/{repo}/manifests/latest")))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(m.clone())
        .send()
        .expect("manifest put");
    (r.status() == 201).then(|| digest_of(m.as_bytes()))
}

/// Online collection on one instance, again and again with no grace, while pushes through
/// the two others reuse the very blobs it is sweeping (uploaded once, referenced by no
/// manifest): every image the registry acknowledged pulls whole afterwards from every
/// instance, and what nothing references is gone.
#[test]
fn collecting_on_one_instance_while_pushing_through_the_others_loses_no_image() {
    let Some(cl) = Cluster::start(3) else { return };
    let [a, b, c] = [&cl.instances[0], &cl.instances[1], &cl.instances[2]];
    let http = client();
    let shared: Vec<Vec<u8>> = (0..6).map(|i| blob(64 << 10, 100 + i)).collect();
    for l in &shared {
        push_blob(&http, b, "gc/old", l);
    }
    // Every write marks what it relies on, which keeps it for the mark lifetime whatever the
    // grace: this one is collected at the end, once that is over.
    let junk = push_blob(&http, b, "gc/junk", &blob(10_000, 999));
    let junk_written = Instant::now();
    let mut removed = Vec::new();
    let acked: Vec<(String, String)> = std::thread::scope(|scope| {
        let pushers: Vec<_> = [b, c]
            .into_iter()
            .enumerate()
            .map(|(p, s)| {
                let (http, shared) = (&http, &shared);
                scope.spawn(move || {
                    let mut acked = Vec::new();
                    for k in 0..12 {
                        let repo = format!("gc/new{p}-{k}");
                        if let Some(d) = push_reusing(http, s, &repo, &shared[k % 6], &repo) {
                            acked.push((repo, d));
                        }
                    }
                    acked
                })
            })
            .collect();
        for _ in 0..4 {
            removed.extend(collect_online(&cl, 0));
        }
        pushers
            .into_iter()
            .flat_map(|p| p.join().expect("pusher"))
            .collect()
    });
    std::thread::sleep(
        (MARK_LIFETIME + Duration::from_secs(1)).saturating_sub(junk_written.elapsed()),
    );
    removed.extend(collect_online(&cl, 0));
    assert!(
        removed.contains(&junk),
        "the unreferenced blob stayed: {removed:?}"
    );
    assert!(
        acked.len() >= 12,
        "only {} pushes acknowledged",
        acked.len()
    );
    for (repo, digest) in &acked {
        for s in [a, b, c] {
            let r = http
                .get(s.url(&format!("/v2/{repo}/manifests/latest")))
                .header("accept", "application/vnd.oci.image.manifest.v1+json")
                .expect_status(200);
            let body = r.bytes().expect("manifest");
            assert_eq!(&digest_of(&body), digest, "{repo} on :{}", s.port);
            let m: serde_json::Value = serde_json::from_slice(&body).expect("json");
            let mut blobs = vec![m["config"]["digest"].as_str().expect("config").to_owned()];
            for l in m["layers"].as_array().expect("layers") {
                blobs.push(l["digest"].as_str().expect("layer").to_owned());
            }
            for d in blobs {
                assert_eq!(digest_of(&get_blob(&http, s, repo, &d)), d, "{repo} {d}");
            }
        }
    }
}

/// The search index of every instance follows the others' writes through the change
/// journal: a repository pushed with a description through one instance is found by it
/// through the two others, its deleted tag is gone there, within [`VISIBILITY_BOUND`].
#[test]
fn search_on_every_instance_follows_pushes_and_deletions_through_another() {
    let Some(cl) = Cluster::start(3) else { return };
    let [a, b, c] = [&cl.instances[0], &cl.instances[1], &cl.instances[2]];
    let http = client();
    let found = |s: &Server, q: &str| -> Vec<String> {
        let v: serde_json::Value = http
            .get(s.url(&format!("/v2/_catalog/search?q={q}")))
            .expect_status(200)
            .json()
            .expect("json");
        v["repositories"]
            .as_array()
            .expect("repositories")
            .iter()
            .map(|r| {
                format!(
                    "{} {}",
                    r["name"].as_str().unwrap_or(""),
                    r["description"].as_str().unwrap_or("")
                )
            })
            .collect()
    };
    // Both readers have built their index (empty) before the push.
    for s in [b, c] {
        s.wait_for_log("search index: 0 repositories indexed in");
    }
    let config = r#"{"architecture":"amd64","os":"linux"}"#;
    let cd = push_blob(&http, a, "find/me", config.as_bytes());
    let mut m: serde_json::Value =
        serde_json::from_str(&image_manifest((&cd, config.len()), &[])).expect("manifest");
    m["annotations"] =
        serde_json::json!({"org.opencontainers.image.description": "a needle in the bucket"});
    put_manifest(&http, a, "find/me", "v1", &m.to_string());
    let mut took = time_until("the description on the readers", || {
        [b, c]
            .iter()
            .all(|s| found(s, "needle") == ["find/me a needle in the bucket"])
    });
    http.delete(a.url("/v2/find/me/manifests/v1"))
        .expect_status(202);
    took = took.max(time_until("the deleted tag on the readers", || {
        [b, c].iter().all(|s| found(s, "needle").is_empty())
    }));
    eprintln!("search changes seen through both other instances within {took:?}");
    assert!(
        took <= VISIBILITY_BOUND,
        "took {took:?}, more than {VISIBILITY_BOUND:?}"
    );
}
