//! A real browser for the web UI's tests: Debian's headless Chromium driven through
//! `chromedriver` with the W3C WebDriver protocol (plain JSON over HTTP, spoken here with
//! the tests' HTTP client). `Browser` starts chromedriver on a free port and one session;
//! both end (the session deleted, chromedriver killed by PID) when it drops.

use super::free_port;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The key WebDriver names an element reference by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::blocking::Client,
    /// Where screenshots go: `target/ui-screenshots/<test>/`.
    shots: PathBuf,
}

/// An element found on the page.
#[derive(Clone, Debug)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver and a headless Chromium session with a window of `width`×`height`
    /// (a phone's, or a desktop's); screenshots go under `target/ui-screenshots/<test>`.
    pub fn start(test: &str, width: u32, height: u32) -> Browser {
        let port = free_port();
        let driver = Command::new(super::CHROMEDRIVER.program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        let root = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{root}/status")).send().is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut b = Browser {
            driver,
            base: root.clone(),
            http,
            shots: Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join("..")
                .join("ui-screenshots")
                .join(test),
        };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": super::CHROMIUM.program,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--no-first-run",
                         format!("--window-size={width},{height}")]
            }
        }}});
        let v = b.call("POST", "/session", caps);
        let id = v["sessionId"].as_str().expect("a session id").to_owned();
        b.base = format!("{root}/session/{id}");
        std::fs::create_dir_all(&b.shots).expect("screenshot directory");
        b
    }

    /// One WebDriver command; its `value`. A WebDriver error fails the test, saying which.
    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url).json(&body),
        };
        let resp = req
            .send()
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let v: Value = resp.json().expect("a JSON answer from chromedriver");
        if let Some(e) = v["value"]["error"].as_str() {
            panic!("{method} {path}: {e}: {}", v["value"]["message"]);
        }
        v["value"].clone()
    }

    fn try_call(&self, path: &str, body: Value) -> Option<Value> {
        let url = format!("{}{path}", self.base);
        let v: Value = self.http.post(&url).json(&body).send().ok()?.json().ok()?;
        if v["value"]["error"].is_string() {
            None
        } else {
            Some(v["value"].clone())
        }
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", json!({"url": url}));
    }

    pub fn url(&self) -> String {
        self.call("GET", "/url", Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn title(&self) -> String {
        self.call("GET", "/title", Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The first element matching a CSS selector, waiting up to 5 s for it.
    pub fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(e) = self.try_find(css) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no element matches {css:?} on {}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn try_find(&self, css: &str) -> Option<Element> {
        let v = self.try_call("/element", json!({"using": "css selector", "value": css}))?;
        v[ELEMENT].as_str().map(|id| Element(id.to_owned()))
    }

    pub fn find_all(&self, css: &str) -> Vec<Element> {
        let v = self.call(
            "POST",
            "/elements",
            json!({"using": "css selector", "value": css}),
        );
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(|id| Element(id.to_owned())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The visible text of every element matching `css`.
    pub fn texts(&self, css: &str) -> Vec<String> {
        self.find_all(css).iter().map(|e| self.text(e)).collect()
    }

    pub fn text(&self, e: &Element) -> String {
        self.call("GET", &format!("/element/{}/text", e.0), Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn attribute(&self, e: &Element, name: &str) -> Option<String> {
        self.call(
            "GET",
            &format!("/element/{}/attribute/{name}", e.0),
            Value::Null,
        )
        .as_str()
        .map(str::to_owned)
    }

    pub fn click(&self, e: &Element) {
        self.call("POST", &format!("/element/{}/click", e.0), json!({}));
    }

    /// Types into an element (WebDriver key codes allowed: `\u{E007}` is Enter).
    pub fn type_into(&self, e: &Element, text: &str) {
        self.call(
            "POST",
            &format!("/element/{}/value", e.0),
            json!({"text": text}),
        );
    }

    /// Presses keys on whatever has the focus (`\u{E004}` is Tab, `\u{E007}` Enter).
    pub fn press(&self, keys: &str) {
        let mut actions = Vec::new();
        for k in keys.chars() {
            actions.push(json!({"type": "keyDown", "value": k.to_string()}));
            actions.push(json!({"type": "keyUp", "value": k.to_string()}));
        }
        self.call(
            "POST",
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        );
    }

    /// Runs a script in the page; its return value.
    pub fn script(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
    }

    /// The browser's cookies (name, httpOnly, sameSite...).
    pub fn cookies(&self) -> Vec<Value> {
        self.call("GET", "/cookie", Value::Null)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Makes the page prefer the dark colour scheme, as a system in dark mode does.
    pub fn prefer_dark(&self) {
        self.call(
            "POST",
            "/goog/cdp/execute",
            json!({"cmd": "Emulation.setEmulatedMedia",
                   "params": {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}}),
        );
    }

    /// Saves a PNG of the window as `<name>.png`; returns its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let v = self.call("GET", "/screenshot", Value::Null);
        let png = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            v.as_str().expect("base64 PNG"),
        )
        .expect("a PNG");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write the screenshot");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.http.delete(&self.base).send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
