//! Real S3 servers for tests, each on a loopback port it picks itself, stopped by its PID
//! when dropped: `moto_server` (PyPI `moto[server]`; everything the driver uses, signatures
//! not checked) and `s3s-fs` (crates.io, `binary` feature; checks SigV4 signatures, has no
//! ListMultipartUploads). Used by the driver's unit tests and, through `#[path]`, by the
//! integration tests, so it depends on nothing but std and nix.
//!
//! `tests/run-all.sh` installs both and sets `MOTO_SERVER` and `S3S_FS`; there a missing
//! server fails the test. Run on its own without one, a test that needs it says so and
//! passes.

// Each test binary that includes this uses a part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// S3 requests a server answered, by operation.
pub type Requests = BTreeMap<&'static str, u64>;

pub struct Moto {
    child: Child,
    pub port: u16,
    /// Counted from moto's log, a line per request answered.
    requests: Arc<Mutex<Requests>>,
}

/// A server's program: `$variable`, else `name` on `PATH`; `None` after saying why when it
/// is not installed (a failure when the variable is set but empty).
fn binary(variable: &str, name: &str, install: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(variable) {
        if p.is_empty() {
            panic!("{variable} is set but empty");
        }
        return Some(PathBuf::from(p));
    }
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        eprintln!("SKIPPED: {name} not found; install it ({install}) or run tests/run-all.sh");
    }
    found
}

/// Where a server writes its log.
enum Log {
    Stdout,
    Stderr,
}

/// Starts `cmd`, a server told to listen on 127.0.0.1 port 0, and reads the port it got from
/// its log; it dies with the test whatever happens.
/// Each line of its log after the port's goes to `each_line`.
fn spawn_on_port_0(
    mut cmd: Command,
    what: &Path,
    log: Log,
    each_line: Box<dyn FnMut(&str) + Send>,
) -> (Child, u16) {
    let (out, err) = match log {
        Log::Stdout => (Stdio::piped(), Stdio::null()),
        Log::Stderr => (Stdio::null(), Stdio::piped()),
    };
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => panic!("cannot start {}: {e}", what.display()),
    };
    let port = match log {
        Log::Stdout => child
            .stdout
            .take()
            .and_then(|l| announced_port(l, each_line)),
        Log::Stderr => child
            .stderr
            .take()
            .and_then(|l| announced_port(l, each_line)),
    };
    let Some(port) = port else {
        let _ = child.kill();
        let status = child.wait();
        panic!(
            "{} did not say which port it listens on ({status:?})",
            what.display()
        );
    };
    (child, port)
}

impl Moto {
    /// Starts a server, or returns `None` after saying why when moto is not installed (and
    /// `MOTO_SERVER` is not set, as `tests/run-all.sh` sets it).
    ///
    /// moto binds port 0 itself and we read the port it got from its log: a port found free
    /// beforehand could be taken by another test's server while moto starts (seconds under
    /// load), and a readiness probe would then find that server and take it for ours.
    pub fn start() -> Option<Moto> {
        let bin = binary("MOTO_SERVER", "moto_server", "pip install 'moto[server]'")?;
        let mut cmd = Command::new(&bin);
        cmd.args(["-H", "127.0.0.1", "-p", "0"]);
        let requests = Arc::new(Mutex::new(Requests::new()));
        let counted = requests.clone();
        let count = Box::new(move |line: &str| {
            if let Some(op) = s3_operation(line) {
                let mut map = counted.lock().unwrap_or_else(|e| e.into_inner());
                *map.entry(op).or_default() += 1;
            }
        });
        let (child, port) = spawn_on_port_0(cmd, &bin, Log::Stderr, count);
        let mut moto = Moto {
            child,
            port,
            requests,
        };
        if let Err(e) = moto.wait_ready() {
            panic!("moto_server ({}) did not start: {e}", bin.display());
        }
        Some(moto)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}"));
            }
            if self.request("GET", "/").is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("not answering after 60 s".to_owned())
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The requests answered so far, by S3 operation. moto logs a request once it has
    /// answered it, so this settles first: until no new line came for 300 ms (3 s at most).
    pub fn requests(&self) -> Requests {
        let read = || {
            self.requests
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        };
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut last = read();
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let now = read();
            if now == last || Instant::now() > deadline {
                return now;
            }
            last = now;
        }
    }

    /// One request without a body; returns the status code.
    fn request(&self, method: &str, path: &str) -> std::io::Result<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        answer
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad answer: {answer:.100}")))
    }

    pub fn create_bucket(&self, name: &str) {
        match self.request("PUT", &format!("/{name}")) {
            Ok(200) => {}
            other => panic!("creating bucket {name}: {other:?}"),
        }
    }
}

/// The port in the first line of a server's log naming `http://127.0.0.1:PORT` (moto's
/// " * Running on ...", s3s-fs's "server is running at ..."), within 120 s; the rest of its log (a line per request) is drained by a thread, so that
/// moto never blocks on a full pipe. `None` if moto ends or stays silent.
fn announced_port(
    log: impl Read + Send + 'static,
    mut each_line: Box<dyn FnMut(&str) + Send>,
) -> Option<u16> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(log).lines();
        for line in lines.by_ref() {
            let Ok(line) = line else { return };
            if let Some(rest) = line.split("http://127.0.0.1:").nth(1) {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                let _ = tx.send(digits.parse::<u16>().ok());
                break;
            }
        }
        for line in lines {
            let Ok(line) = line else { return };
            each_line(&line);
        }
    });
    rx.recv_timeout(Duration::from_secs(120)).ok().flatten()
}

/// The S3 operation of a line of moto's log (`127.0.0.1 - - [date] "PUT /bucket/key?partNumber=1&uploadId=x HTTP/1.1" 200 -`,
/// colored); `None` for other lines. Path style: a path of one segment is the bucket. What
/// the log cannot tell apart (a copy is a PUT with a header) shares a name.
pub fn s3_operation(line: &str) -> Option<&'static str> {
    let quoted = line.split('"').nth(1)?;
    // Strip the terminal colors (ESC [ ... m).
    let mut request = String::new();
    let mut in_escape = false;
    for c in quoted.chars() {
        match (in_escape, c) {
            (false, '\u{1b}') => in_escape = true,
            (true, 'm') => in_escape = false,
            (false, c) => request.push(c),
            (true, _) => {}
        }
    }
    let mut words = request.split(' ');
    let (method, target) = (words.next()?, words.next()?);
    words.next()?.strip_prefix("HTTP/")?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let has = |k: &str| {
        query
            .split('&')
            .any(|p| p == k || p.strip_prefix(k).is_some_and(|r| r.starts_with('=')))
    };
    let bucket = path.trim_matches('/').split('/').count() <= 1;
    Some(match method {
        "GET" if has("uploads") => "ListMultipartUploads",
        "GET" if has("uploadId") => "ListParts",
        "GET" if bucket => "ListObjects",
        "GET" => "GetObject",
        "HEAD" => "HeadObject",
        "PUT" if has("partNumber") => "UploadPart or UploadPartCopy",
        "PUT" if bucket => "CreateBucket",
        "PUT" => "PutObject or CopyObject",
        "POST" if has("uploads") => "CreateMultipartUpload",
        "POST" if has("uploadId") => "CompleteMultipartUpload",
        "POST" if has("delete") => "DeleteObjects",
        "DELETE" if has("uploadId") => "AbortMultipartUpload",
        "DELETE" => "DeleteObject",
        _ => "other",
    })
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// s3s-fs serving the directories under `root` as buckets, with one key pair.
pub struct S3sFs {
    child: Child,
    pub port: u16,
}

impl S3sFs {
    /// Starts a server on `root` accepting only requests signed with this key pair, or
    /// returns `None` after saying why when s3s-fs is not installed.
    pub fn start(root: &Path, access_key: &str, secret_key: &str) -> Option<S3sFs> {
        let bin = binary("S3S_FS", "s3s-fs", "cargo install s3s-fs --features binary")?;
        let mut cmd = Command::new(&bin);
        cmd.args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--access-key", access_key, "--secret-key", secret_key])
            .arg(root)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        let (child, port) = spawn_on_port_0(cmd, &bin, Log::Stdout, Box::new(|_| {}));
        Some(S3sFs { child, port })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
