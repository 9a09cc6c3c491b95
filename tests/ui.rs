//! The web UI at `/ui/`, in a real headless Chromium (Debian's `chromium` driven through
//! `chromedriver`) against the real daemon, with images pushed by skopeo: browsing,
//! searching, a multi-arch image, the copy button, login, deleting with and without
//! permission and CSRF token, keyboard use, a phone-sized window, dark mode, and 10,000
//! repositories. Each page is saved as a screenshot under `target/ui-screenshots/`.

mod common;

use common::browser::Browser;
use common::*;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

const TAB: &str = "\u{E004}";
const ENTER: &str = "\u{E007}";

fn have_browser() -> bool {
    have(&[SKOPEO, CHROMIUM, CHROMEDRIVER])
}

/// Writes an OCI layout at `dir` with one image tagged `tag` whose config has what the
/// image page shows: created time, entrypoint, command, environment (with a secret),
/// labels; and an annotated manifest. Returns the manifest digest.
fn labelled_layout(dir: &Path, tag: &str) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir");
    let put = |bytes: &[u8]| {
        let hex = sha256_hex(bytes);
        std::fs::write(blobs.join(&hex), bytes).expect("write blob");
        json!({"digest": format!("sha256:{hex}"), "size": bytes.len()})
    };
    let tar = layer_bytes(7, 3000);
    let layer = put(&images::gzip(&tar));
    let config = json!({
        "created": "2024-05-06T07:08:09Z", "architecture": "arm64", "os": "linux",
        "config": {
            "Entrypoint": ["/usr/bin/web"], "Cmd": ["--port", "8080"],
            "Env": ["PATH=/usr/bin", "DB_PASSWORD=hunter2"],
            "Labels": {"org.opencontainers.image.title": "Web <b>app</b>", "team": "blue"},
            "ExposedPorts": {"8080/tcp": {}}
        },
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha256_hex(&tar))]}
    });
    let mut c = put(config.to_string().as_bytes());
    c["mediaType"] = json!("application/vnd.oci.image.config.v1+json");
    let mut l = layer;
    l["mediaType"] = json!("application/vnd.oci.image.layer.v1.tar+gzip");
    let manifest = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": c, "layers": [l],
        "annotations": {"org.opencontainers.image.source": "https://example.com/web"}
    })
    .to_string();
    let m = put(manifest.as_bytes());
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("layout");
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": m["digest"], "size": m["size"],
        "annotations": {"org.opencontainers.image.ref.name": tag}}]});
    std::fs::write(dir.join("index.json"), index.to_string()).expect("index");
    m["digest"].as_str().expect("digest").to_owned()
}

/// Pushes the test images: `library/alpha:latest`, `library/beta:1.0`, the two-platform
/// `tools/multi:multi`, and `apps/web:2.0` with labels and a secret in its environment.
fn push_images(s: &Server) -> tempfile::TempDir {
    let layouts = oci_layouts();
    let host = s.host();
    skopeo_push_layout(
        &host,
        layouts.path(),
        "a",
        "latest",
        "library/alpha:latest",
        false,
    );
    skopeo_push_layout(&host, layouts.path(), "b", "1.0", "library/beta:1.0", false);
    skopeo_push_layout(
        &host,
        layouts.path(),
        "multi",
        "multi",
        "tools/multi:multi",
        true,
    );
    labelled_layout(&layouts.path().join("web"), "2.0");
    skopeo_push_layout(&host, layouts.path(), "web", "2.0", "apps/web:2.0", false);
    layouts
}

/// Pushes an SBOM-like artifact whose subject is `repo:tag` (by digest, untagged);
/// returns its digest.
fn push_sbom(s: &Server, repo: &str, tag: &str) -> String {
    let c = client();
    let subject = c
        .get(s.url(&format!("/v2/{repo}/manifests/{tag}")))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .expect_status(200)
        .bytes()
        .expect("the subject");
    let empty = push_blob(&c, s, repo, b"{}");
    let doc = br#"{"spdxVersion":"SPDX-2.3"}"#;
    let layer = push_blob(&c, s, repo, doc);
    let m = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/spdx+json", "digest": layer, "size": doc.len()}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest_of(&subject), "size": subject.len()}
    })
    .to_string();
    put_manifest(&c, s, repo, &digest_of(m.as_bytes()), &m)
}

/// Waits until the page's URL satisfies `ok` (a navigation after a click or Enter).
fn wait_for_url(b: &Browser, ok: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let u = b.url();
        if ok(&u) {
            return u;
        }
        assert!(std::time::Instant::now() < deadline, "still at {u}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn active(b: &Browser, what: &str) -> String {
    b.script(&format!("return document.activeElement.{what} || ''"))
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn browsing_lists_searches_and_shows_images() {
    if !have_browser() {
        return;
    }
    let s = Server::builder().delete_enabled().start();
    let _layouts = push_images(&s);
    let sbom = push_sbom(&s, "apps/web", "2.0");
    let b = Browser::start("browsing", 1280, 900);

    // A browser asking / is sent to the UI.
    b.goto(&s.url("/"));
    assert!(b.url().ends_with("/ui/"), "{}", b.url());
    assert_eq!(b.title(), "Repositories · Registry");
    assert_eq!(
        b.texts("#repositories li"),
        ["apps/web", "library/alpha", "library/beta", "tools/multi"]
    );
    b.screenshot("1-repositories");

    let q = b.find("#q");
    b.type_into(&q, &format!("multi{ENTER}"));
    wait_for_url(&b, |u| u.contains("q=multi"));
    assert_eq!(b.texts("#repositories li"), ["tools/multi"]);
    b.screenshot("2-search");

    b.click(&b.find("#repositories a"));
    wait_for_url(&b, |u| u.ends_with("/ui/r/tools/multi"));
    let row = b.texts("#tags tbody tr");
    assert_eq!(row.len(), 1, "{row:?}");
    assert!(row[0].contains("linux/amd64, linux/arm64"), "{row:?}");
    assert!(
        row[0].contains(" KiB") || row[0].contains(" B"),
        "a size: {row:?}"
    );
    b.screenshot("3-repository");

    b.click(&b.find("#tags tbody a"));
    wait_for_url(&b, |u| u.ends_with("/-/multi"));
    let platforms = b.texts("#platforms tbody th");
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    let pull = b.find("#pull");
    assert_eq!(
        b.attribute(&pull, "value").as_deref(),
        Some(format!("docker pull {}/tools/multi:multi", s.host()).as_str())
    );
    // The copy button runs the (external, CSP-allowed) script: it says what it did.
    b.click(&b.find("button[data-copy=pull]"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !b.text(&b.find(".copied")).is_empty(),
        "the copy button did nothing"
    );
    b.screenshot("4-multi-arch-image");

    // A platform's own page: its layers and config.
    b.click(&b.find("#platforms tbody a"));
    wait_for_url(&b, |u| u.contains("/-/sha256:"));
    assert!(!b.find_all("#layers tbody tr").is_empty());

    // An image with labels, annotations and a secret in its environment.
    b.goto(&s.url("/ui/r/apps/web/-/2.0"));
    let page = b.text(&b.find("main"));
    assert!(page.contains("DB_PASSWORD=(hidden)"), "{page}");
    assert!(!page.contains("hunter2"), "a secret shown: {page}");
    assert!(
        page.contains("/usr/bin/web") && page.contains("--port 8080"),
        "{page}"
    );
    assert!(
        page.contains("2024-05-06 07:08") && page.contains("linux/arm64"),
        "{page}"
    );
    let labels = b.texts("#labels tbody tr");
    assert!(
        labels.iter().any(|l| l.contains("Web <b>app</b>")),
        "escaped: {labels:?}"
    );
    assert!(b
        .texts("#annotations tbody tr")
        .iter()
        .any(|a| a.contains("https://example.com/web")));
    let referrers = b.texts("#referrers tbody tr");
    assert_eq!(referrers.len(), 1, "{referrers:?}");
    assert!(referrers[0].contains("application/vnd.example.sbom") && referrers[0].contains(&sbom));
    b.screenshot("5-image");

    b.goto(&s.url("/ui/storage"));
    assert!(b.text(&b.find("#used")).contains("KiB"));
    assert!(b.text(&b.find("#gc")).contains("None since"));
    b.screenshot("6-storage");

    // Dark mode follows the system.
    b.prefer_dark();
    b.goto(&s.url("/ui/r/apps/web/-/2.0"));
    let bg = b.script("return getComputedStyle(document.documentElement).backgroundColor");
    assert_eq!(bg, "rgb(13, 17, 23)");
    b.screenshot("7-dark");
    drop(b);

    // On a phone: nothing wider than the screen but the tables' own scrolling boxes.
    let phone = Browser::start("phone", 390, 844);
    for path in ["/ui/", "/ui/r/tools/multi", "/ui/r/apps/web/-/2.0"] {
        phone.goto(&s.url(path));
        let fits = phone.script("return document.documentElement.scrollWidth <= window.innerWidth");
        assert_eq!(fits, true, "{path} is wider than a phone");
    }
    phone.screenshot("phone-image");

    // What other clients see is unchanged; the UI's headers are strict.
    let c = client();
    let root = c.get(s.url("/")).expect_status(200);
    assert_eq!(root.text().expect("body"), "\"docker-registry server\"");
    let ui = c.get(s.url("/ui/")).expect_status(200);
    let h = ui.headers();
    let csp = h["content-security-policy"].to_str().expect("ascii");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "same-origin");
}

#[test]
fn the_keyboard_reaches_search_and_results() {
    if !have_browser() {
        return;
    }
    let s = Server::builder().start();
    let _layouts = push_images(&s);
    let b = Browser::start("keyboard", 1280, 900);
    b.goto(&s.url("/ui/"));
    b.press(TAB);
    assert_eq!(
        active(&b, "className"),
        "skip",
        "the first Tab is the skip link"
    );
    b.press(ENTER);
    // Skipping lands in the main content; the search field is the next stop.
    b.press(TAB);
    assert_eq!(active(&b, "id"), "q");
    b.press(&format!("alp{ENTER}"));
    wait_for_url(&b, |u| u.contains("q=alp"));
    assert_eq!(b.texts("#repositories li"), ["library/alpha"]);
    let mut reached = false;
    for _ in 0..12 {
        b.press(TAB);
        if active(&b, "textContent") == "library/alpha" {
            reached = true;
            break;
        }
    }
    assert!(reached, "Tab never reached the result");
    b.press(ENTER);
    wait_for_url(&b, |u| u.ends_with("/ui/r/library/alpha"));
    // The column headers sort, by keyboard too.
    let sort = b.find("#tags thead a[href*=created]");
    b.type_into(&sort, ENTER);
    wait_for_url(&b, |u| u.contains("sort=created"));
    b.screenshot("sorted-by-keyboard");
}

/// An htpasswd file with `admin` (may delete under team/) and `reader` (pull only), and
/// an access file saying so.
fn users(dir: &Path) -> (String, String) {
    let file = dir.join("users");
    let f = file.to_str().expect("utf-8").to_owned();
    for (flag, user, pw) in [
        ("-cbB", "admin", "admin pw"),
        ("-bB", "reader", "reader pw"),
    ] {
        ours_ok(dir, &["htpasswd", flag, "-C", "5", &f, user, pw]);
    }
    let access = dir.join("access.yml");
    std::fs::write(
        &access,
        "rules:\n  - repositories: ['**']\n    users: [reader, admin]\n    actions: [pull]\n  \
         - repositories: ['team/**']\n    users: [admin]\n    actions: ['*']\n",
    )
    .expect("access file");
    (f, access.to_str().expect("utf-8").to_owned())
}

fn log_in(b: &Browser, s: &Server, user: &str, password: &str) {
    b.goto(&s.url("/ui/login"));
    b.type_into(&b.find("#username"), user);
    b.type_into(&b.find("#password"), &format!("{password}{ENTER}"));
    wait_for_url(b, |u| !u.contains("/ui/login"));
}

#[test]
fn deleting_needs_login_permission_and_a_csrf_token() {
    if !have_browser() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("data");
    let layouts = oci_layouts();
    {
        let open = Server::builder().storage(&storage).start();
        let host = open.host();
        skopeo_push_layout(
            &host,
            layouts.path(),
            "a",
            "latest",
            "team/app:latest",
            false,
        );
        skopeo_push_layout(&host, layouts.path(), "a", "latest", "team/app:also", false);
        skopeo_push_layout(&host, layouts.path(), "b", "1.0", "team/app:1.0", false);
    }
    let (htpasswd, access) = users(dir.path());
    let s = Server::builder()
        .storage(&storage)
        .delete_enabled()
        .args_from(&["--htpasswd", &htpasswd, "--access-file", &access])
        .start();
    let b = Browser::start("delete", 1280, 900);

    // Login required: the form, a wrong password refused.
    b.goto(&s.url("/ui/"));
    assert!(b.url().contains("/ui/login?next="), "{}", b.url());
    b.screenshot("1-login");
    b.type_into(&b.find("#username"), "admin");
    b.type_into(&b.find("#password"), &format!("wrong{ENTER}"));
    let alert = b.text(&b.find("[role=alert]"));
    assert!(alert.contains("Wrong user or password"), "{alert}");

    // A reader sees no delete button, and cannot reach the form.
    log_in(&b, &s, "reader", "reader pw");
    b.goto(&s.url("/ui/r/team/app"));
    assert_eq!(b.find_all("#tags tbody tr").len(), 3);
    assert!(
        b.find_all("a.danger").is_empty(),
        "a delete link for a reader"
    );
    b.goto(&s.url("/ui/r/team/app/-/latest/delete"));
    assert!(b.text(&b.find("main")).contains("403"));
    b.goto(&s.url("/ui/"));
    b.click(&b.find("header button"));
    wait_for_url(&b, |u| u.contains("/ui/login"));

    // The admin deletes a tag: the form says which other tag keeps the image.
    log_in(&b, &s, "admin", "admin pw");
    let cookie = b
        .cookies()
        .into_iter()
        .find(|c| c["name"] == "registry_ui_session")
        .expect("a session cookie");
    assert_eq!(cookie["httpOnly"], true);
    assert_eq!(cookie["sameSite"], "Strict");
    b.goto(&s.url("/ui/r/team/app"));
    b.screenshot("2-admin-tags");
    b.click(&b.find("a[aria-label='Delete tag latest']"));
    assert_eq!(b.texts("#untags li"), ["also"]);
    b.screenshot("3-confirm");
    b.click(&b.find("#confirm"));
    wait_for_url(&b, |u| u.contains("deleted=latest"));
    assert!(b.text(&b.find(".notice")).contains("Deleted latest"));
    let tags: Vec<String> = b.texts("#tags tbody th");
    assert_eq!(tags, ["1.0", "also"]);
    let c = client();
    let api = |t: &str| {
        c.get(s.url(&format!("/v2/team/app/manifests/{t}")))
            .basic_auth("admin", Some("admin pw"))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .expect("GET manifest")
            .status()
            .as_u16()
    };
    assert_eq!(api("latest"), 404, "the tag is gone through the API too");
    assert_eq!(api("also"), 200);

    // Deleting the manifest of 1.0 lists the tags it takes with it.
    b.goto(&s.url("/ui/r/team/app/-/1.0"));
    b.click(&b.find("a.danger[href*='sha256:']"));
    assert_eq!(b.texts("#untags li"), ["1.0"]);
    b.click(&b.find("#confirm"));
    wait_for_url(&b, |u| u.contains("deleted=sha256"));
    assert_eq!(api("1.0"), 404);

    // Forged requests: the session cookie alone, a wrong token, another site's form.
    let session = format!(
        "registry_ui_session={}",
        cookie["value"].as_str().expect("value")
    );
    let forge = |body: &str, origin: Option<&str>| {
        let mut r = c
            .post(s.url("/ui/r/team/app/-/also/delete"))
            .header("cookie", &session)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned());
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send().expect("POST").status().as_u16()
    };
    assert_eq!(forge("", None), 403);
    assert_eq!(forge("csrf=00", None), 403);
    let token = b
        .script("return document.querySelector('input[name=csrf]').value")
        .as_str()
        .expect("the page's token")
        .to_owned();
    assert_eq!(
        forge(&format!("csrf={token}"), Some("http://evil.example")),
        403
    );
    // Basic credentials alone do not make a form valid either.
    let basic = c
        .post(s.url("/ui/r/team/app/-/also/delete"))
        .basic_auth("admin", Some("admin pw"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=")
        .send()
        .expect("POST");
    assert_eq!(basic.status().as_u16(), 403);
    assert_eq!(api("also"), 200, "a forged request deleted something");

    // The browser's Basic dialog works as the API's does.
    let r = c
        .get(s.url("/ui/"))
        .basic_auth("admin", Some("nope"))
        .expect_status(401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .starts_with("Basic realm="));
    c.get(s.url("/ui/"))
        .basic_auth("reader", Some("reader pw"))
        .expect_status(200);

    // A collection in the daemon shows on the storage page.
    b.goto(&s.url("/ui/storage"));
    assert!(b.text(&b.find("#gc")).contains("None since"));
    let before = b.text(&b.find("#used"));
    ours_ok(&storage, &["garbage-collect", "--online", "--grace", "0s"]);
    b.goto(&s.url("/ui/storage"));
    let gc = b.text(&b.find("#gc"));
    assert!(
        gc.contains("Blobs removed") && !gc.contains("Blobs removed\n0"),
        "{gc}"
    );
    assert_ne!(
        b.text(&b.find("#used")),
        before,
        "the storage used is from before"
    );
    b.screenshot("4-storage-after-gc");
}

#[test]
fn ten_thousand_repositories_render_fast() {
    if !have_browser() {
        return;
    }
    // In memory where there is a tmpfs: removing 10,000 directories from some disks'
    // file systems takes the best part of a minute.
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("tempdir");
    let storage = dir.path().join("data");
    let repos = storage.join("docker/registry/v2/repositories");
    for i in 0..10_000 {
        std::fs::create_dir_all(repos.join(format!("project-{i:05}/_manifests"))).expect("mkdir");
    }
    let s = Server::builder().storage(&storage).start();
    let c = client();
    // The catalog is walked once (in the background at start, or by this request).
    c.get(s.url("/v2/_catalog?n=1")).expect_status(200);
    for path in ["/ui/", "/ui/?page=57", "/ui/?q=project-0999"] {
        let mut times: Vec<f64> = (0..5)
            .map(|_| {
                let r = c.get(s.url(path)).expect_status(200);
                let t = r.headers()["server-timing"]
                    .to_str()
                    .expect("ascii")
                    .to_owned();
                t.trim_start_matches("app;dur=").parse::<f64>().expect("ms")
            })
            .collect();
        times.sort_by(f64::total_cmp);
        eprintln!("{path}: server time {times:?} ms");
        assert!(
            times[2] < 300.0,
            "{path}: median server time {} ms",
            times[2]
        );
    }
    let b = Browser::start("ten-thousand", 1280, 900);
    b.goto(&s.url("/ui/"));
    assert_eq!(b.find_all("#repositories li").len(), 100);
    assert!(b.text(&b.find("#count")).contains("1–100 of 10000"));
    b.click(&b.find("a[rel=next]"));
    wait_for_url(&b, |u| u.contains("page=2"));
    assert_eq!(b.texts("#repositories li")[0], "project-00100");
    b.screenshot("page-2");
}
