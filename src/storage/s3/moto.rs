//! A real S3 server for tests: `moto_server` (PyPI `moto[server]`) on a free loopback port,
//! stopped by its PID when dropped. Used by the driver's unit tests and, through
//! `#[path]`, by the integration tests, so it depends on nothing but std and nix.
//!
//! `tests/run-all.sh` installs moto and sets `MOTO_SERVER`; there a missing server fails the
//! test. Run on its own without moto, a test that needs it says so and passes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Moto {
    child: Child,
    pub port: u16,
}

/// `moto_server`: `$MOTO_SERVER`, else on `PATH`.
fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MOTO_SERVER").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("moto_server"))
        .find(|p| p.is_file())
}

impl Moto {
    /// Starts a server, or returns `None` after saying why when moto is not installed (and
    /// `MOTO_SERVER` is not set, as `tests/run-all.sh` sets it).
    ///
    /// moto binds port 0 itself and we read the port it got from its log: a port found free
    /// beforehand could be taken by another test's server while moto starts (seconds under
    /// load), and a readiness probe would then find that server and take it for ours.
    pub fn start() -> Option<Moto> {
        let Some(bin) = binary() else {
            if std::env::var_os("MOTO_SERVER").is_some() {
                panic!("MOTO_SERVER is set but empty");
            }
            eprintln!(
                "SKIPPED: moto_server not found; install it (pip install 'moto[server]') or run tests/run-all.sh"
            );
            return None;
        };
        let mut cmd = Command::new(&bin);
        cmd.args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Whatever happens to the test, the server goes with it.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!("cannot start {}: {e}", bin.display()),
        };
        let port = match child.stderr.take() {
            Some(stderr) => announced_port(stderr),
            None => None,
        };
        let Some(port) = port else {
            let _ = child.kill();
            let status = child.wait();
            panic!(
                "moto_server ({}) did not say which port it listens on ({status:?})",
                bin.display()
            );
        };
        let mut moto = Moto { child, port };
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

/// The port in moto's " * Running on http://127.0.0.1:PORT" line (werkzeug's, on stderr),
/// within 120 s; the rest of its log (a line per request) is drained by a thread, so that
/// moto never blocks on a full pipe. `None` if moto ends or stays silent.
fn announced_port(stderr: std::process::ChildStderr) -> Option<u16> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stderr).lines();
        for line in lines.by_ref() {
            let Ok(line) = line else { return };
            if let Some(rest) = line.split("Running on http://127.0.0.1:").nth(1) {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                let _ = tx.send(digits.parse::<u16>().ok());
                break;
            }
        }
        lines.for_each(drop);
    });
    rx.recv_timeout(Duration::from_secs(120)).ok().flatten()
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
