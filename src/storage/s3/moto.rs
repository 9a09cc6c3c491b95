//! A real S3 server for tests: `moto_server` (PyPI `moto[server]`) on a free loopback port,
//! stopped by its PID when dropped. Used by the driver's unit tests and, through
//! `#[path]`, by the integration tests, so it depends on nothing but std and nix.
//!
//! `tests/run-all.sh` installs moto and sets `MOTO_SERVER`; there a missing server fails the
//! test. Run on its own without moto, a test that needs it says so and passes.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
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
        let mut last = String::new();
        // A port found free can be taken before moto binds it: try a few.
        for _ in 0..3 {
            let port = match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
                Ok(a) => a.port(),
                Err(e) => panic!("no free port: {e}"),
            };
            let mut cmd = Command::new(&bin);
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // Whatever happens to the test, the server goes with it.
            unsafe {
                use std::os::unix::process::CommandExt;
                cmd.pre_exec(|| {
                    nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL);
                    Ok(())
                });
            }
            let child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => panic!("cannot start {}: {e}", bin.display()),
            };
            let mut moto = Moto { child, port };
            match moto.wait_ready() {
                Ok(()) => return Some(moto),
                Err(e) => last = e,
            }
        }
        panic!("moto_server ({}) did not start: {last}", bin.display());
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

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
