//! The programs the tests drive besides ours: skopeo, podman, distribution 2.8.2, Apache's
//! htpasswd, nginx, openssl, curl... `tests/run-all.sh` installs every one of them and sets
//! `DOCKER_REGISTRY_TEST_TOOLS=required`, so in CI a missing tool fails the test that needs
//! it. Run on its own, a test that needs a tool that is not installed prints
//! `SKIPPED: needs ...` with the package to install (`cargo nextest run --no-capture` shows
//! it) and passes.

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// A program a test runs, and the Debian package that has it.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    pub program: &'static str,
    pub package: &'static str,
}

pub const SKOPEO: Tool = Tool::new("skopeo", "skopeo");
pub const PODMAN: Tool = Tool::new("podman", "podman");
/// registry:2: CNCF distribution 2.8.2 as Debian ships it.
pub const DISTRIBUTION: Tool = Tool::new("/usr/bin/docker-registry", "docker-registry");
pub const HTPASSWD: Tool = Tool::new("htpasswd", "apache2-utils");
pub const NGINX: Tool = Tool::new("nginx", "nginx-light");
pub const OPENSSL: Tool = Tool::new("openssl", "openssl");
pub const CURL: Tool = Tool::new("curl", "curl");
pub const PRLIMIT: Tool = Tool::new("prlimit", "util-linux");
/// Debian's Chromium and its WebDriver server, for the web UI's tests (`browser`).
pub const CHROMIUM: Tool = Tool::new("/usr/bin/chromium", "chromium");
pub const CHROMEDRIVER: Tool = Tool::new("chromedriver", "chromium-driver");
pub const SOCKET_ACTIVATE: Tool = Tool::new("systemd-socket-activate", "systemd");

/// The program, as a message names it.
impl std::fmt::Display for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.program)
    }
}

impl Tool {
    const fn new(program: &'static str, package: &'static str) -> Tool {
        Tool { program, package }
    }

    /// Whether the program is there: a path that exists, or a name found on `PATH`.
    pub fn installed(&self) -> bool {
        if self.program.contains('/') {
            return Path::new(self.program).is_file();
        }
        std::env::var_os("PATH").is_some_and(|paths| {
            std::env::split_paths(&paths).any(|d| d.join(self.program).is_file())
        })
    }
}

/// Whether every tool the test needs is installed. When one is not: under
/// `tests/run-all.sh` (`DOCKER_REGISTRY_TEST_TOOLS=required`) the test fails saying which;
/// otherwise this prints why the test is skipped and returns false, and the test returns.
pub fn have(tools: &[Tool]) -> bool {
    let missing: Vec<&Tool> = tools.iter().filter(|t| !t.installed()).collect();
    if missing.is_empty() {
        return true;
    }
    let names: Vec<&str> = missing.iter().map(|t| t.program).collect();
    let packages: Vec<&str> = missing.iter().map(|t| t.package).collect();
    let what = format!(
        "needs {} (apt-get install {})",
        names.join(", "),
        packages.join(" ")
    );
    if std::env::var("DOCKER_REGISTRY_TEST_TOOLS").is_ok_and(|v| v == "required") {
        panic!(
            "{what}; DOCKER_REGISTRY_TEST_TOOLS=required, so this test fails instead of skipping"
        );
    }
    eprintln!("SKIPPED: {what}");
    false
}

/// Runs a program to its end: whether it succeeded, and its stdout followed by its stderr.
/// One that cannot be started fails the test, naming it.
pub fn output_of(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    (out.status.success(), text_of(&out))
}

/// Runs a program that must succeed (else the test fails with its output); returns its
/// output.
pub fn checked(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed:\n{}", text_of(&out));
    out
}

fn text_of(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs skopeo with the flags every test needs; returns (success, stdout and stderr).
pub fn skopeo(args: &[&str]) -> (bool, String) {
    output_of(&mut skopeo_command(args))
}

/// Runs skopeo, which must succeed; returns its stdout (`inspect --raw`: the manifest's
/// bytes, as served).
pub fn skopeo_ok(args: &[&str]) -> String {
    String::from_utf8_lossy(&checked(&mut skopeo_command(args)).stdout).into_owned()
}

fn skopeo_command(args: &[&str]) -> Command {
    let mut c = Command::new(SKOPEO.program);
    c.arg("--insecure-policy")
        .args(args)
        .env("TMPDIR", std::env::temp_dir())
        .stdin(Stdio::null());
    c
}
