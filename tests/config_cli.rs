//! The configuration through the real binary: `docker-registry config` shows every value and
//! its source, `config --check` fails with `file:line: key: message`, the legacy package's
//! files and the files we ship load, and `serve` listens where the configuration says.
//! Every run passes `--sysconfig` and `--config` and a cleared environment, so the host's
//! /etc files and variables never leak in.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_docker-registry");
/// Our copies of the legacy package's files (config_sample.yml, /etc/docker-registry.yml).
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/legacy-config");
const SHIPPED_SYSCONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sysconfig/docker-registry");
const SHIPPED_YAML: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/etc/docker-registry.yml");

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write test file");
    path
}

/// A temporary directory holding the sysconfig file and the YAML file `name`.
fn files(sysconfig: &str, name: &str, yaml: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let sys = write(dir.path(), "sysconfig", sysconfig);
    let yml = write(dir.path(), name, yaml);
    (dir, sys, yml)
}

/// Runs the binary with only `env` (and HOME) in its environment.
fn run(dir: &Path, sysconfig: &Path, config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("HOME", dir)
        .arg("--sysconfig")
        .arg(sysconfig)
        .arg("--config")
        .arg(config)
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run docker-registry")
}

/// The line of `config` output for `key` shows `value` and ends with `# source`.
fn assert_setting(stdout: &str, key: &str, value: &str, source: &str) {
    let line = setting(stdout, key);
    assert!(
        line.contains(&format!(" {value} ")),
        "{key}: {line}\n{stdout}"
    );
    assert_source(stdout, key, source);
}

/// `config`'s line for `key` says its value came from `source`.
#[track_caller]
fn assert_source(stdout: &str, key: &str, source: &str) {
    let line = setting(stdout, key);
    assert!(
        line.ends_with(&format!("# {source}")),
        "{key}: {line}\n{stdout}"
    );
}

/// `run` that must succeed: its stdout and stderr.
fn run_ok(
    dir: &Path,
    sysconfig: &Path,
    config: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (String, String) {
    let out = run(dir, sysconfig, config, args, env);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{args:?}: {stdout}{stderr}");
    (stdout, stderr)
}

/// `config --check` that must fail printing exactly these lines on stderr, each starting
/// with the text given for it (`file:line: key: message`); nothing on stdout.
fn check_fails_with(dir: &Path, sysconfig: &Path, config: &Path, lines: &[String]) {
    let out = run(dir, sysconfig, config, &["config", "--check"], &[]);
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "a broken configuration must fail the check: {stderr}"
    );
    let got: Vec<&str> = stderr.lines().collect();
    assert_eq!(got.len(), lines.len(), "{stderr}");
    for (line, start) in got.iter().zip(lines) {
        assert!(line.starts_with(start.as_str()), "{start}\n{stderr}");
    }
    assert!(out.stdout.is_empty());
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The line of `config` output for `key`.
fn setting(stdout: &str, key: &str) -> String {
    stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(key))
        .unwrap_or_else(|| panic!("no {key} in:\n{stdout}"))
        .to_string()
}

#[test]
fn config_prints_each_value_with_where_it_came_from() {
    let (dir, sys, yml) = files("# ours\nexport REGISTRY_PORT=\"7000\"\nGUNICORN_WORKERS='3'\n", "registry.yml", "version: 0.1\nhttp:\n  addr: 127.0.0.1:6000\nstorage:\n  filesystem:\n    rootdirectory: /srv/registry\n");
    let (stdout, _) = run_ok(
        dir.path(),
        &sys,
        &yml,
        &["config"],
        &[("REGISTRY_STORAGE_DELETE_ENABLED", "true")],
    );
    let (s, y) = (sys.display(), yml.display());
    let listen = format!("address: {y}:3 (http.addr); port: {s}:2 (REGISTRY_PORT)");
    assert_setting(&stdout, "http.addr", "127.0.0.1:7000", &listen);
    assert_source(&stdout, "workers", &format!("{s}:3 (GUNICORN_WORKERS)"));
    assert_setting(
        &stdout,
        "storage.filesystem.rootdirectory",
        "/srv/registry",
        &format!("{y}:6 (storage.filesystem.rootdirectory)"),
    );
    assert_setting(
        &stdout,
        "storage.delete.enabled",
        "true",
        "environment (REGISTRY_STORAGE_DELETE_ENABLED)",
    );
    assert!(
        setting(&stdout, "config.format").contains("registry:2"),
        "{stdout}"
    );
}

#[test]
fn config_shows_gc_and_retention_settings_with_their_sources() {
    let (dir, sys, yml) = files("REGISTRY_STORAGE_MAINTENANCE_GC_GRACE=15m\n", "registry.yml", "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /srv/registry\n  maintenance:\n    \
         gc:\n      interval: 12h\n      grace: 2h\n      delete_untagged: true\n\
         retention:\n  - repositories: library/*\n    keepTags: 5\n    protecttags: release-*\n");
    let (stdout, stderr) = run_ok(
        dir.path(),
        &sys,
        &yml,
        &["config"],
        &[(
            "REGISTRY_STORAGE_MAINTENANCE_GC_SOCKET",
            "/run/registry/admin.sock",
        )],
    );
    assert_eq!(stderr, "", "no warnings expected");
    let (s, y) = (sys.display(), yml.display());
    assert_setting(
        &stdout,
        "storage.maintenance.gc.interval",
        "12h",
        &format!("{y}:7 (storage.maintenance.gc.interval)"),
    );
    assert_setting(
        &stdout,
        "storage.maintenance.gc.grace",
        "15m",
        &format!("{s}:1 (REGISTRY_STORAGE_MAINTENANCE_GC_GRACE)"),
    );
    assert_setting(
        &stdout,
        "storage.maintenance.gc.deleteuntagged",
        "true",
        &format!("{y}:9 (storage.maintenance.gc.delete_untagged)"),
    );
    assert_setting(
        &stdout,
        "storage.maintenance.gc.socket",
        "/run/registry/admin.sock",
        "environment (REGISTRY_STORAGE_MAINTENANCE_GC_SOCKET)",
    );
    assert_setting(
        &stdout,
        "retention[0]",
        "repositories=library/* keeptags=5 protecttags=release-*",
        &format!("{y}:11 (retention[0])"),
    );

    // A bad rule and a bad interval stop `config --check` with file:line: key: message.
    let bad = write(
        dir.path(),
        "bad.yml",
        "version: 0.1\nstorage:\n  maintenance:\n    gc:\n      interval: hourly\n\
         retention:\n  - repositories: a/*\n    protect_tag: v*\n",
    );
    let b = bad.display();
    check_fails_with(
        dir.path(),
        &sys,
        &bad,
        &[
            format!("{b}:5: storage.maintenance.gc.interval: not a duration: \"hourly\""),
            format!("{b}:8: retention[0].protect_tag: unknown retention rule key"),
            format!("{b}:7: retention[0]: a retention rule needs keeptags"),
        ],
    );
}

#[test]
fn config_shows_token_auth_client_cas_and_the_proxy_switch_of_a_registry_2_file() {
    let (dir, sys, yml) = files("REGISTRY_AUTH_TOKEN_HTPASSWD=/etc/r/users\n", "registry.yml", "version: 0.1\nhttp:\n  trustforwardedheaders: true\n  tls:\n    certificate: /etc/r/tls.crt\n    \
         key: /etc/r/tls.key\n    clientcas:\n      - /etc/r/ca1.pem\n      - /etc/r/ca2.pem\n\
         auth:\n  token:\n    realm: https://r.example/token\n    service: r.example\n    \
         issuer: r-issuer\n    rootcertbundle: /etc/r/token.crt\n    signingkey: /etc/r/token.key\n");
    let (stdout, stderr) = run_ok(
        dir.path(),
        &sys,
        &yml,
        &["config"],
        &[("REGISTRY_AUTH_TOKEN_ACCESSFILE", "/etc/r/access.yml")],
    );
    assert_eq!(stderr, "", "no warnings expected");
    let (s, y) = (sys.display(), yml.display());
    for (key, value, source) in [
        (
            "http.trustforwardedheaders",
            "true",
            format!("{y}:3 (http.trustforwardedheaders)"),
        ),
        (
            "http.tls.certificate",
            "/etc/r/tls.crt",
            format!("{y}:5 (http.tls.certificate)"),
        ),
        (
            "http.tls.clientcas",
            "/etc/r/ca1.pem, /etc/r/ca2.pem",
            format!("{y}:7 (http.tls.clientcas)"),
        ),
        (
            "auth.token.realm",
            "https://r.example/token",
            format!("{y}:12 (auth.token.realm)"),
        ),
        (
            "auth.token.service",
            "r.example",
            format!("{y}:13 (auth.token.service)"),
        ),
        (
            "auth.token.issuer",
            "r-issuer",
            format!("{y}:14 (auth.token.issuer)"),
        ),
        (
            "auth.token.rootcertbundle",
            "/etc/r/token.crt",
            format!("{y}:15 (auth.token.rootcertbundle)"),
        ),
        (
            "auth.token.signingkey",
            "/etc/r/token.key",
            format!("{y}:16 (auth.token.signingkey)"),
        ),
        (
            "auth.token.htpasswd",
            "/etc/r/users",
            format!("{s}:1 (REGISTRY_AUTH_TOKEN_HTPASSWD)"),
        ),
        (
            "auth.token.accessfile",
            "/etc/r/access.yml",
            "environment (REGISTRY_AUTH_TOKEN_ACCESSFILE)".to_string(),
        ),
    ] {
        assert_setting(&stdout, key, value, &source);
    }

    // The variables alone, registry:2's names and ours, give the same settings.
    let empty = write(dir.path(), "empty.yml", "version: 0.1\n");
    let (stdout, _) = run_ok(
        dir.path(),
        &sys,
        &empty,
        &["config"],
        &[
            ("REGISTRY_AUTH", "htpasswd"),
            ("REGISTRY_AUTH_HTPASSWD_PATH", "/etc/r/users"),
            ("REGISTRY_AUTH_HTPASSWD_ACCESSFILE", "/etc/r/access.yml"),
            ("REGISTRY_HTTP_TLS_CERTIFICATE", "/etc/r/tls.crt"),
            ("REGISTRY_HTTP_TLS_KEY", "/etc/r/tls.key"),
            (
                "REGISTRY_HTTP_TLS_CLIENTCAS",
                "[/etc/r/ca1.pem, /etc/r/ca2.pem]",
            ),
            ("REGISTRY_HTTP_TRUSTFORWARDEDHEADERS", "true"),
        ],
    );
    // (The sysconfig file's REGISTRY_AUTH_TOKEN_HTPASSWD is not used: the method is htpasswd.)
    for (key, value, var) in [
        (
            "auth.htpasswd.accessfile",
            "/etc/r/access.yml",
            "REGISTRY_AUTH_HTPASSWD_ACCESSFILE",
        ),
        (
            "http.tls.clientcas",
            "/etc/r/ca1.pem, /etc/r/ca2.pem",
            "REGISTRY_HTTP_TLS_CLIENTCAS",
        ),
        (
            "http.trustforwardedheaders",
            "true",
            "REGISTRY_HTTP_TRUSTFORWARDEDHEADERS",
        ),
    ] {
        assert_setting(&stdout, key, value, &format!("environment ({var})"));
    }
    let (stdout, _) = run_ok(
        dir.path(),
        &sys,
        &empty,
        &["config"],
        &[
            ("REGISTRY_AUTH", "token"),
            ("REGISTRY_AUTH_TOKEN_REALM", "https://r.example/token"),
            ("REGISTRY_AUTH_TOKEN_SERVICE", "r.example"),
            ("REGISTRY_AUTH_TOKEN_ISSUER", "r-issuer"),
            ("REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE", "/etc/r/token.crt"),
            ("REGISTRY_AUTH_TOKEN_SIGNINGKEY", "/etc/r/token.key"),
        ],
    );
    for (key, var) in [
        ("auth.token.realm", "REGISTRY_AUTH_TOKEN_REALM"),
        ("auth.token.service", "REGISTRY_AUTH_TOKEN_SERVICE"),
        ("auth.token.issuer", "REGISTRY_AUTH_TOKEN_ISSUER"),
        (
            "auth.token.rootcertbundle",
            "REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE",
        ),
        ("auth.token.signingkey", "REGISTRY_AUTH_TOKEN_SIGNINGKEY"),
    ] {
        assert_source(&stdout, key, &format!("environment ({var})"));
    }
    let htpasswd = format!("{s}:1 (REGISTRY_AUTH_TOKEN_HTPASSWD)");
    assert_source(&stdout, "auth.token.htpasswd", &htpasswd);
}

#[test]
fn config_shows_the_auth_tls_and_proxy_keys_of_a_flavored_file() {
    let (dir, sys, yml) = files("CLIENT_CA=/etc/r/clients.pem\n", "docker-registry.yml", "common: &common\n  trust_forwarded_headers: true\nlocal:\n  <<: *common\n  storage: local\n  \
         tls_certificate: /etc/r/tls.crt\n  tls_key: /etc/r/tls.key\n  tls_client_cas: _env:CLIENT_CA:/etc/r/ca.pem\n  \
         auth:\n    htpasswd:\n      realm: r\n      path: /etc/r/users\n      access_file: /etc/r/access.yml\n");
    let (stdout, stderr) = run_ok(dir.path(), &sys, &yml, &["config"], &[]);
    assert_eq!(stderr, "", "no warnings expected");
    let (s, y) = (sys.display(), yml.display());
    for (key, value, source) in [
        (
            "http.trustforwardedheaders",
            "true",
            format!("{y}:2 (common.trust_forwarded_headers)"),
        ),
        (
            "http.tls.key",
            "/etc/r/tls.key",
            format!("{y}:7 (local.tls_key)"),
        ),
        (
            "http.tls.clientcas",
            "/etc/r/clients.pem",
            format!("{y}:8 (local.tls_client_cas: _env:CLIENT_CA from {s}:1)"),
        ),
        (
            "auth.htpasswd.path",
            "/etc/r/users",
            format!("{y}:12 (local.auth.htpasswd.path)"),
        ),
        (
            "auth.htpasswd.accessfile",
            "/etc/r/access.yml",
            format!("{y}:13 (local.auth.htpasswd.access_file)"),
        ),
    ] {
        assert_setting(&stdout, key, value, &source);
    }
    // A flag overrides its own key only.
    let (stdout, _) = run_ok(
        dir.path(),
        &sys,
        &yml,
        &["config", "--access-file", "/cli/access.yml"],
        &[],
    );
    let access = "command line (--access-file)";
    assert_setting(
        &stdout,
        "auth.htpasswd.accessfile",
        "/cli/access.yml",
        access,
    );
    let path = format!("{y}:12 (local.auth.htpasswd.path)");
    assert_source(&stdout, "auth.htpasswd.path", &path);
}

#[test]
fn check_reports_bad_auth_tls_and_proxy_values_with_file_line_and_key() {
    let (dir, sys, yml) = files(
        "",
        "registry.yml",
        "version: 0.1\nhttp:\n  trustforwardedheaders: maybe\n  tls:\n    clientcas: [/ca.pem]\n\
         auth:\n  token:\n    realm: https://r.example/token\n    service: r.example\n    \
         signingkey: [a, b]\n",
    );
    let y = yml.display();
    check_fails_with(
        dir.path(),
        &sys,
        &yml,
        &[
            format!("{y}:3: http.trustforwardedheaders: expected true or false, found \"maybe\""),
            format!("{y}:10: auth.token.signingkey: expected a single value, found a list"),
            format!("{y}:7: auth.token: token authentication needs auth.token.issuer, auth.token.rootcertbundle (or REGISTRY_AUTH_TOKEN_ISSUER, REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE)"),
            format!("{y}:5: http.tls.clientcas: client CAs (mutual TLS) without a TLS certificate and key"),
        ],
    );

    // Keys of distribution's token auth we do not implement are named in a warning.
    let yml = write(
        dir.path(),
        "registry.yml",
        "version: 0.1\nauth:\n  token:\n    realm: https://r.example/token\n    service: r.example\n    \
         issuer: r-issuer\n    rootcertbundle: /etc/r/token.crt\n    autoredirect: true\n    jwks: /etc/r/jwks.json\n",
    );
    let out = run(dir.path(), &sys, &yml, &["config", "--check"], &[]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!("warning: {y}: ignoring registry:2 settings this registry does not use: auth.token.autoredirect, auth.token.jwks"),
    );
}

#[test]
fn check_reports_every_problem_as_file_line_key_and_fails() {
    let (dir, sys, yml) = files("SETTINGS_FLAVOR=local\nREGISTRY_PORT=http\n", "registry.yml", "common: &common\n  issue: x\n  loglevel: loud\nlocal:\n  <<: *common\n  storage: local\n  storage_delete_enabled: maybe\n");
    let (s, y) = (sys.display(), yml.display());
    check_fails_with(
        dir.path(),
        &sys,
        &yml,
        &[
            format!("{y}:3: common.loglevel: unknown log level \"loud\""),
            format!("{y}:7: local.storage_delete_enabled: expected true or false"),
            format!("{s}:2: REGISTRY_PORT: not a port number: \"http\""),
        ],
    );
}

#[test]
fn check_reports_yaml_and_shell_syntax_errors_with_their_lines() {
    let (dir, sys, yml) = files(
        "REGISTRY_ADDRESS=0.0.0.0\nREGISTRY_PORT='5000\n",
        "registry.yml",
        "common:\n  issue: [unclosed\nlocal:\n  storage: local\n",
    );
    let out = run(dir.path(), &sys, &yml, &["config", "--check"], &[]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:2: REGISTRY_PORT: single quote opened on line 2",
            sys.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}:", yml.display())) && stderr.contains("not valid YAML"),
        "{stderr}"
    );
}

#[test]
fn the_legacy_package_files_load_for_local_and_dev() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sys = write(dir.path(), "sysconfig", "");
    for (file, root) in [
        ("config_sample.yml", "/tmp/registry"),
        ("docker-registry.yml", "/var/lib/docker-registry"),
    ] {
        let yml = Path::new(FIXTURES).join(file);
        for (flavor, level) in [("local", "info"), ("dev", "debug")] {
            let out = run(
                dir.path(),
                &sys,
                &yml,
                &["config"],
                &[("SETTINGS_FLAVOR", flavor)],
            );
            let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
            assert!(out.status.success(), "{file} {flavor}: {stderr}");
            assert!(
                setting(&stdout, "storage.filesystem.rootdirectory").contains(&format!(" {root} ")),
                "{stdout}"
            );
            assert!(
                setting(&stdout, "log.level").contains(&format!(" {level} ")),
                "{stdout}"
            );
            assert!(
                setting(&stdout, "issue").contains(" \"docker-registry server\" "),
                "{stdout}"
            );
            // The keys we do not implement are named, in one warning line.
            let warnings: Vec<&str> = stderr
                .lines()
                .filter(|l| l.starts_with("warning: "))
                .collect();
            assert_eq!(warnings.len(), 1, "{stderr}");
            for key in [
                "debug",
                "standalone",
                "mirroring.source_index",
                "cache",
                "cors",
                "email_exceptions",
                "bugsnag",
            ] {
                assert!(
                    warnings[0].contains(&format!(" {key},"))
                        || warnings[0].ends_with(&format!(" {key}")),
                    "{key}: {stderr}"
                );
            }
        }
    }
}

#[test]
fn the_legacy_s3_flavors_need_their_bucket() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sys = write(dir.path(), "sysconfig", "SETTINGS_FLAVOR=prod\n");
    for file in ["config_sample.yml", "docker-registry.yml"] {
        let yml = Path::new(FIXTURES).join(file);
        let out = run(dir.path(), &sys, &yml, &["config", "--check"], &[]);
        assert!(!out.status.success());
        let stderr = text(&out.stderr);
        assert!(
            stderr.starts_with(&format!(
                "{}:79: s3.storage: storage.s3.bucket: no bucket given",
                yml.display()
            )),
            "{stderr}"
        );
        // The same flavor with the filesystem chosen in the environment loads.
        let root = dir.path().join("data");
        let root_text = root.display().to_string();
        let out = run(
            dir.path(),
            &sys,
            &yml,
            &["config"],
            &[
                ("REGISTRY_STORAGE", "filesystem"),
                ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &root_text),
            ],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            setting(&text(&out.stdout), "storage.filesystem.rootdirectory").contains(&root_text)
        );
    }
}

#[test]
fn the_shipped_files_load_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (sys, yml) = (Path::new(SHIPPED_SYSCONFIG), Path::new(SHIPPED_YAML));
    let out = run(dir.path(), sys, yml, &["config", "--check"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "", "the shipped files must not warn");
    let out = run(dir.path(), sys, yml, &["config"], &[]);
    let stdout = text(&out.stdout);
    assert!(
        setting(&stdout, "http.addr").contains(" 0.0.0.0:5000 "),
        "{stdout}"
    );
    assert!(setting(&stdout, "workers").contains(" 8 "), "{stdout}");
    assert!(setting(&stdout, "flavor").contains(" local "), "{stdout}");
    assert!(
        setting(&stdout, "storage.filesystem.rootdirectory").contains(" /var/lib/docker-registry "),
        "{stdout}"
    );
    for flavor in ["local", "dev"] {
        let out = run(
            dir.path(),
            sys,
            yml,
            &["config", "--check"],
            &[("SETTINGS_FLAVOR", flavor)],
        );
        assert!(out.status.success(), "{flavor}: {}", text(&out.stderr));
    }
    for flavor in ["s3", "prod"] {
        let check = |env: &[(&str, &str)]| {
            let mut env = env.to_vec();
            env.push(("SETTINGS_FLAVOR", flavor));
            run(dir.path(), sys, yml, &["config", "--check"], &env)
        };
        let out = check(&[]);
        assert!(!out.status.success());
        assert!(
            text(&out.stderr).contains("storage.s3.bucket: no bucket given"),
            "{}",
            text(&out.stderr)
        );
        let out = check(&[("AWS_BUCKET", "images"), ("AWS_REGION", "eu-west-1")]);
        assert!(out.status.success(), "{flavor}: {}", text(&out.stderr));
    }
}

/// The gc and retention examples commented out in the shipped file, uncommented, load
/// without warnings and mean what the comments say, so the examples cannot rot.
#[test]
fn the_shipped_gc_and_retention_examples_load_when_uncommented() {
    let dir = tempfile::tempdir().expect("temp dir");
    let shipped = std::fs::read_to_string(SHIPPED_YAML).expect("shipped yml");
    let mut uncommented = 0;
    let edited: String = shipped
        .lines()
        .map(|l| {
            let example = l.strip_prefix("    # ").filter(|rest| {
                rest.starts_with("gc_")
                    || rest.starts_with("retention:")
                    || rest.starts_with("    ")
            });
            match example {
                Some(rest) => {
                    uncommented += 1;
                    format!("    {rest}\n")
                }
                None => format!("{l}\n"),
            }
        })
        .collect();
    assert_eq!(uncommented, 9, "the examples changed:\n{edited}");
    let yml = write(dir.path(), "docker-registry.yml", &edited);
    let sys = Path::new(SHIPPED_SYSCONFIG);
    let (stdout, stderr) = run_ok(dir.path(), sys, &yml, &["config"], &[]);
    assert_eq!(stderr, "", "the examples must not warn");
    let y = yml.display();
    assert!(
        setting(&stdout, "storage.maintenance.gc.interval").contains(" 1day "),
        "{stdout}"
    );
    assert!(
        setting(&stdout, "storage.maintenance.gc.grace").contains(" 1h "),
        "{stdout}"
    );
    let rule = setting(&stdout, "retention[0]");
    assert!(
        rule.contains(" repositories=library/* keeptags=10 protecttags=release-* ")
            && rule.contains(&format!("# {y}:")),
        "{stdout}"
    );
    assert!(
        setting(&stdout, "retention[1]").contains(" repositories=* keepyoungerthan=30days "),
        "{stdout}"
    );
}

/// Starts `serve`, waits (bounded) for its `listening on http://...` line, returns the URL.
fn start(dir: &Path, sys: &Path, yml: &Path) -> (Child, String) {
    let mut child = Command::new(BIN)
        .env_clear()
        .env("HOME", dir)
        .arg("--sysconfig")
        .arg(sys)
        .arg("--config")
        .arg(yml)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start docker-registry");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let url = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    return (child, url);
                }
                seen.push(line);
            }
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("no `listening on` line; stderr:\n{}", seen.join("\n"));
}

#[test]
fn serve_listens_where_the_sysconfig_says_and_answers_the_configured_issue() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    for (address, host) in [("127.0.0.1", "127.0.0.1"), ("::1", "[::1]")] {
        let sys = write(
            dir.path(),
            "sysconfig",
            &format!("REGISTRY_ADDRESS={address}\nREGISTRY_PORT=0\nGUNICORN_WORKERS=2\n"),
        );
        let yml = write(
            dir.path(),
            "registry.yml",
            &format!(
                "common: &common\n  issue: '\"configured issue\"'\nlocal:\n  <<: *common\n  storage: local\n  storage_path: {}\n",
                data.display()
            ),
        );
        let (mut child, url) = start(dir.path(), &sys, &yml);
        assert!(url.starts_with(&format!("http://{host}:")), "{url}");
        let body = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client")
            .get(format!("{url}/"))
            .send()
            .and_then(|r| r.text());
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(body.expect("GET /"), "\"configured issue\"");
        assert!(data.is_dir(), "storage_path is where data goes");
    }
}

/// With no keys written, `config` names the link of the AWS credential chain that gives
/// them (a profile of ~/.aws/credentials chosen by AWS_PROFILE, the environment's keys, the
/// default profile), masks the keys, and names a profile that does not exist.
#[test]
fn config_shows_where_the_s3_credentials_come_from() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    std::fs::create_dir(d.join(".aws")).expect("mkdir");
    write(
        d,
        ".aws/credentials",
        "[default]\naws_access_key_id = AKIADEFAULTKEY\naws_secret_access_key = defaultsecret\n\
         [dev]\naws_access_key_id = ASIADEVKEY\naws_secret_access_key = devsecret\n\
         aws_session_token = devtoken\n",
    );
    let sys = write(d, "sysconfig", "");
    let yml = write(
        d,
        "registry.yml",
        "version: 0.1\nstorage:\n  s3:\n    bucket: b\n    region: eu-west-1\n",
    );
    let credentials = d.join(".aws/credentials").display().to_string();
    let shown = |env: &[(&str, &str)]| {
        let (stdout, _) = run_ok(d, &sys, &yml, &["config"], env);
        for secret in [
            "devsecret",
            "defaultsecret",
            "devtoken",
            "DEVKEY",
            "envsecret",
        ] {
            assert!(!stdout.contains(secret), "{secret} shown:\n{stdout}");
        }
        setting(&stdout, "storage.s3.credentials")
    };
    let line = shown(&[("AWS_PROFILE", "dev")]);
    assert!(
        line.contains(&format!(
            "profile dev in {credentials} (access key ASIA****, session token)"
        )) && line.ends_with("# environment (AWS_PROFILE)"),
        "{line}"
    );
    let line = shown(&[]);
    assert!(
        line.contains("profile default in") && line.contains("AWS_PROFILE unset"),
        "{line}"
    );
    let line = shown(&[
        ("AWS_PROFILE", "dev"),
        ("AWS_ACCESS_KEY_ID", "AKIAENVKEY"),
        ("AWS_SECRET_ACCESS_KEY", "envsecret"),
    ]);
    assert!(
        line.contains("AWS_ACCESS_KEY_ID AKIA**** and AWS_SECRET_ACCESS_KEY")
            && line.ends_with("# environment (AWS_ACCESS_KEY_ID)"),
        "{line}"
    );
    let line = shown(&[("AWS_PROFILE", "nope")]);
    assert!(line.contains("AWS_PROFILE=nope: no such profile"), "{line}");
}
