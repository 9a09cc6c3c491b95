//! The one test harness, used by every integration test and benchmark: the real
//! `docker-registry` binary on a free loopback port with a temporary storage directory,
//! stopped (by PID) when the handle drops (`Server`), our commands run on a store (`ours`),
//! HTTP helpers and request-then-check assertions. Beside it: the programs the tests drive
//! and what happens when one is missing (`tools`), the test images (`images`) and OCI
//! layouts for skopeo (`oci`), what is on disk in a store (`store`), a data directory
//! written by registry:2 and distribution itself as a server (`registry2`), htpasswd files
//! written by Apache's `htpasswd` (`htpasswd`), a seeded generator (`rng`), a headless
//! Chromium for the web UI (`browser`) and a network namespace standing for another host
//! (`netns`, for benchmarks).
#![allow(dead_code)]

pub mod browser;
pub mod htpasswd;
pub mod http;
pub mod images;
pub mod netns;
pub mod oci;
pub mod registry2;
pub mod rng;
pub mod store;
pub mod tools;

// Not every test file uses all of them.
#[allow(unused_imports)]
pub use http::*;
#[allow(unused_imports)]
pub use oci::*;
#[allow(unused_imports)]
pub use registry2::{registry2_expected, registry2_store, Distribution};
#[allow(unused_imports)]
pub use store::*;
#[allow(unused_imports)]
pub use tools::*;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_docker-registry");

/// A running registry.
pub struct Server {
    pub child: Child,
    /// Where it listens: `127.0.0.1`, `[::1]`.
    pub address: String,
    pub port: u16,
    pub storage: PathBuf,
    pub log: Arc<Mutex<Vec<String>>>,
    _dir: Option<tempfile::TempDir>,
}

pub struct ServerBuilder {
    args: Vec<String>,
    envs: Vec<(String, String)>,
    storage: Option<PathBuf>,
    /// A command the binary runs under (`prlimit --nofile=256`), which must exec it.
    wrapper: Vec<String>,
    /// Pass `--storage-path` (which chooses filesystem storage); off for other storage.
    storage_flag: bool,
    /// `--address` and `--port` (default 127.0.0.1, port 0: the test reads the port it got).
    address: String,
    port: u16,
}

impl ServerBuilder {
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args_from(mut self, list: &[&str]) -> Self {
        self.args.extend(list.iter().map(|a| a.to_string()));
        self
    }

    /// A flag whose value is a file: `.file_arg("--tls-cert", &cert)`.
    pub fn file_arg(self, flag: &str, path: &Path) -> Self {
        self.arg(flag).arg(path.display().to_string())
    }

    pub fn env(mut self, k: &str, v: impl Into<String>) -> Self {
        self.envs.push((k.into(), v.into()));
        self
    }

    pub fn storage(mut self, p: &Path) -> Self {
        self.storage = Some(p.to_owned());
        self
    }

    /// Runs the binary under `command` (which must exec it, keeping the PID): `prlimit`,
    /// `setpriv`...
    pub fn under(mut self, command: &[&str]) -> Self {
        self.wrapper = command.iter().map(|a| a.to_string()).collect();
        self
    }

    /// Storage comes from the configuration (S3): no `--storage-path`, which would choose
    /// the filesystem. With no data directory, the admin socket goes in `dir`; the
    /// machine's CA bundle stays out (the test servers are plain HTTP on loopback).
    pub fn configured_storage(mut self, dir: &Path) -> Self {
        self.storage_flag = false;
        self.env("AWS_CA_BUNDLE", "").env(
            "REGISTRY_STORAGE_MAINTENANCE_GC_SOCKET",
            dir.join("admin.sock").display().to_string(),
        )
    }

    pub fn delete_enabled(self) -> Self {
        self.arg("--delete-enabled")
    }

    /// Listens on this address (`::1`) instead of 127.0.0.1.
    pub fn address(mut self, address: &str) -> Self {
        self.address = address.into();
        self
    }

    /// Listens on this port instead of one the kernel picks.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Runs the daemon as `start` would, expecting it to stop by itself (a startup that
    /// fails): waits for its exit, at most 30 s.
    pub fn run_to_end(self) -> Ran {
        let (mut child, _dir, _storage, _empty) = self.spawn(Stdio::piped());
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("docker-registry did not stop by itself within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().expect("its output").into()
    }

    /// Starts the daemon, stderr piped; returns it with what must outlive it: the temporary
    /// directory of its storage (when the test gave none), the storage path and the empty
    /// configuration file.
    fn spawn(
        &self,
        stdout: Stdio,
    ) -> (
        Child,
        Option<tempfile::TempDir>,
        PathBuf,
        tempfile::NamedTempFile,
    ) {
        let (dir, storage) = self.storage_dir();
        let empty = tempfile::NamedTempFile::new().expect("temp sysconfig");
        let child = self
            .command(&storage, empty.path())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start docker-registry");
        (child, dir, storage, empty)
    }

    /// The storage directory, and the temporary directory it is in when the test gave none.
    fn storage_dir(&self) -> (Option<tempfile::TempDir>, PathBuf) {
        match &self.storage {
            Some(p) => (None, p.clone()),
            None => {
                let d = tempfile::tempdir().expect("tempdir");
                let p = d.path().join("data");
                (Some(d), p)
            }
        }
    }

    /// The command line: ours (under the wrapper, if any) with an empty configuration
    /// `empty` where the test names none, on `storage`, without the machine's settings.
    fn command(&self, storage: &Path, empty: &Path) -> Command {
        let mut cmd = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        if !self.args.iter().any(|a| a == "--sysconfig") {
            cmd.arg("--sysconfig").arg(empty);
        }
        if !self.args.iter().any(|a| a == "--config") {
            cmd.arg("--config").arg(empty);
        }
        cmd.args(["--address", &self.address, "--port", &self.port.to_string()]);
        if self.storage_flag {
            cmd.arg("--storage-path").arg(storage);
        }
        cmd.args(&self.args);
        without_machine_settings(&mut cmd)
            .env_remove("NOTIFY_SOCKET")
            .env("DOCKER_REGISTRY_CONFIG", empty)
            .stdin(Stdio::null());
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn start(self) -> Server {
        let (mut child, dir, storage, empty) = self.spawn(Stdio::null());
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // https:// when serving TLS.
                let found = ["listening on http://", "listening on https://"]
                    .iter()
                    .find_map(|m| line.find(m).map(|i| i + m.len()));
                let port = found.and_then(|i| {
                    let addr = line[i..].split_whitespace().next().unwrap_or("");
                    addr.rsplit(':').next().and_then(|p| p.parse::<u16>().ok())
                });
                // Logged before the port is handed over, so a started server's log has it.
                log2.lock().expect("log").push(line);
                if let Some(port) = port {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(port);
                    }
                }
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(p) => p,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("registry did not start: {:?}", log.lock().expect("log"));
            }
        };
        // Keep the empty config file alive as long as the process might re-read it (SIGHUP).
        std::mem::forget(empty);
        let address = if self.address.contains(':') {
            format!("[{}]", self.address)
        } else {
            self.address.clone()
        };
        Server {
            child,
            address,
            port,
            storage,
            log,
            _dir: dir,
        }
    }
}

impl Server {
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            args: Vec::new(),
            envs: Vec::new(),
            storage: None,
            wrapper: Vec::new(),
            storage_flag: true,
            address: "127.0.0.1".into(),
            port: 0,
        }
    }

    pub fn start() -> Server {
        Server::builder().start()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}:{}{}", self.address, self.port, path)
    }

    pub fn host(&self) -> String {
        format!("{}:{}", self.address, self.port)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log_text(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }

    /// Waits (5 s at most) for a line of the log to contain `needle`, and fails the test
    /// with the whole log if none does: the log reaches the harness through a pipe and a
    /// thread, so a line the daemon wrote may not be here yet.
    pub fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.log_text().contains(needle) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            self.log_text().contains(needle),
            "{needle:?} not in:\n{}",
            self.log_text()
        );
    }

    /// Sends a signal and waits for the exit status (bounded).
    pub fn signal_and_wait(&mut self, sig: i32) -> Option<std::process::ExitStatus> {
        unsafe_kill(self.pid(), sig);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Peak resident memory (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:")
    }

    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }
}

/// Removes the variables through which this machine's configuration would reach the
/// binary (`REGISTRY_*`, `DOCKER_REGISTRY_CONFIG`, `SETTINGS_FLAVOR`).
pub fn without_machine_settings(c: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("REGISTRY_") || k == "DOCKER_REGISTRY_CONFIG" || k == "SETTINGS_FLAVOR" {
            c.env_remove(k);
        }
    }
    c
}

/// What one of our commands did: whether it succeeded, its stdout a line each, its stderr.
pub struct Ran {
    pub ok: bool,
    /// The exit status; `None` when a signal ended it.
    pub code: Option<i32>,
    pub lines: Vec<String>,
    pub stderr: String,
}

impl From<std::process::Output> for Ran {
    fn from(out: std::process::Output) -> Ran {
        Ran {
            ok: out.status.success(),
            code: out.status.code(),
            lines: String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// The whole of it, for a failure message.
impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.lines.join("\n"),
            self.stderr
        )
    }
}

impl Ran {
    /// The stdout lines, sorted.
    pub fn sorted_lines(&self) -> Vec<String> {
        let mut lines = self.lines.clone();
        lines.sort();
        lines
    }

    /// The stdout lines as a set (digests, `REPOSITORY:TAG`s).
    pub fn line_set(&self) -> std::collections::BTreeSet<String> {
        self.lines.iter().cloned().collect()
    }
}

/// Runs one of our commands (`garbage-collect`, `fsck`, ...) on the store at `storage`, to
/// its end, without this machine's settings (nor its files, unless `args` name some).
pub fn ours<S: AsRef<std::ffi::OsStr>>(storage: &Path, args: &[S]) -> Ran {
    let mut c = Command::new(BIN);
    without_machine_settings(&mut c);
    for flag in ["--sysconfig", "--config"] {
        if !args.iter().any(|a| a.as_ref() == flag) {
            c.arg(flag).arg("/dev/null");
        }
    }
    let out = c
        .arg("--storage-path")
        .arg(storage)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{BIN}: {e}"));
    out.into()
}

/// `ours` that must succeed (else the test fails with its stderr).
pub fn ours_ok<S: AsRef<std::ffi::OsStr>>(storage: &Path, args: &[S]) -> Ran {
    let ran = ours(storage, args);
    assert!(
        ran.ok,
        "{:?} failed: {}",
        args.iter().map(|a| a.as_ref()).collect::<Vec<_>>(),
        ran.stderr
    );
    ran
}

/// A loopback port that was free a moment ago, for a server that cannot listen on port 0
/// and say which port it got (registry:2, nginx, a realm naming the registry's own port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// utime+stime of a process in clock ticks (1/100 s here), for CPU-seconds per GiB.
pub fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

/// Waits (`limit` at most) until process `pid` has used no CPU for half a second, for
/// benchmarks: what a daemon does after it answers (ours indexes the store for search and
/// warms its catalog in the background) must not be counted in the first measurement.
/// Returns whether it settled.
pub fn wait_until_idle(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut last = cpu_ticks(pid);
    let mut still = 0;
    while still < 2 {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(250));
        let now = cpu_ticks(pid);
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
    true
}

pub fn proc_status_kib(pid: i32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub fn unsafe_kill(pid: i32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(data))
}

/// Bytes as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// A benchmark's numeric option (`--repos 1000`), if given.
pub fn bench_arg(name: &str) -> Option<u64> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

// The debug listener's metrics (`--debug-addr`, `--metrics`).

/// Starts ours with the debug listener on a free loopback port and metrics on.
pub fn with_metrics(builder: ServerBuilder) -> Server {
    builder
        .args_from(&["--debug-addr", "127.0.0.1:0", "--metrics"])
        .start()
}

/// `http://127.0.0.1:PORT` of the debug listener, from the line the daemon logs for it.
pub fn debug_base(s: &Server) -> String {
    let log = s.log_text();
    let marker = "debug listener on ";
    let at = log
        .find(marker)
        .unwrap_or_else(|| panic!("no debug listener in the log:\n{log}"));
    let rest = &log[at + marker.len()..];
    rest.split(':').take(3).collect::<Vec<_>>().join(":")
}

/// The metrics as scraped, checked to be OpenMetrics text.
pub fn scrape(s: &Server) -> String {
    let r = client()
        .get(format!("{}/metrics", debug_base(s)))
        .expect_status(200);
    let ct = r.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    let text = r.text().expect("text");
    assert!(text.ends_with("# EOF\n"), "{text}");
    text
}

/// The value of one sample (`name{labels}` exactly as written), 0 when absent.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().expect("a number"))
        .unwrap_or(0.0)
}
