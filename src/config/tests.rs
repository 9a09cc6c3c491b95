//! The configuration as a whole: every level, its precedence, the sources, the errors with
//! `file:line: key`, and `config`'s output, through [`Config::load`] on real files.

use super::*;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Files for one test, and the options that read them (never the host's /etc files).
struct Setup {
    dir: tempfile::TempDir,
    opts: LoadOptions,
}

impl Setup {
    fn new(sysconfig: &str, yaml: &str, env: &[(&str, &str)]) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            let mut f = std::fs::File::create(&path).expect("create");
            f.write_all(text.as_bytes()).expect("write");
            path
        };
        let opts = LoadOptions {
            sysconfig: Some(write("sysconfig", sysconfig)),
            config: Some(write("registry.yml", yaml)),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            cli: Vec::new(),
        };
        Setup { dir, opts }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn load(&self) -> Config {
        Config::load(&self.opts).unwrap_or_else(|e| panic!("errors:\n{e}"))
    }

    fn errors(&self) -> Vec<String> {
        match Config::load(&self.opts) {
            Ok(_) => panic!("expected errors"),
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    /// The errors, the files named without their directory (`registry.yml:3: key: ...`).
    fn problems(&self) -> Vec<String> {
        self.errors().iter().map(|e| self.short(e)).collect()
    }

    /// The warnings, likewise.
    fn warned(&self) -> Vec<String> {
        self.load().warnings.iter().map(|w| self.short(w)).collect()
    }

    fn short(&self, text: &str) -> String {
        text.replace(&format!("{}/", self.dir.path().display()), "")
    }

    fn flag(mut self, flag: &'static str, value: &str) -> Setup {
        self.opts.cli.push((flag, value.to_string()));
        self
    }
}

/// Where a group's field came from, files without their directory.
fn part<T>(s: &Setup, value: &Sourced<T>, name: &str) -> String {
    s.short(&value.source.part(name).to_string())
}

const LEGACY: &str = "common: &common\n  loglevel: _env:LOGLEVEL:info\nlocal:\n  <<: *common\n  storage: local\n  \
                      storage_path: _env:STORAGE_PATH:/srv/registry\ns3:\n  <<: *common\n  storage: s3\n";

#[test]
fn sysconfig_port_replaces_only_the_port_of_http_addr() {
    let s = Setup::new(
        "REGISTRY_PORT=7000\n",
        "version: 0.1\nhttp:\n  addr: 127.0.0.1:6000\n",
        &[],
    );
    let c = s.load();
    assert_eq!(c.listen.value, "127.0.0.1:7000".parse().expect("addr"));
    assert_eq!(
        c.listen.source.to_string(),
        format!(
            "address: {}:3 (http.addr); port: {}:1 (REGISTRY_PORT)",
            s.path("registry.yml"),
            s.path("sysconfig")
        )
    );
}

#[test]
fn each_level_wins_over_the_ones_below() {
    let yaml = "version: 0.1\nlog:\n  level: error\n";
    let s = Setup::new("REGISTRY_LOG_LEVEL=warn\n", yaml, &[]);
    assert_eq!(s.load().log_level.value, LogLevel::Warn);
    let mut s = Setup::new(
        "REGISTRY_LOG_LEVEL=warn\n",
        yaml,
        &[("REGISTRY_LOG_LEVEL", "debug")],
    );
    let c = s.load();
    assert_eq!(
        (c.log_level.value, c.log_level.source),
        (LogLevel::Debug, Source::Env("REGISTRY_LOG_LEVEL".into()))
    );
    s.opts.cli.push(("--log-level", "trace".into()));
    let c = s.load();
    assert_eq!(
        (c.log_level.value, c.log_level.source),
        (LogLevel::Trace, Source::Cli("--log-level".into()))
    );
    let s = Setup::new("", yaml, &[]);
    assert_eq!(s.load().log_level.value, LogLevel::Error);
}

#[test]
fn a_variable_systemd_passed_from_the_file_keeps_the_files_precedence() {
    // EnvironmentFile= exports REGISTRY_PORT=5000; a drop-in sets REGISTRY_HTTP_ADDR.
    let s = Setup::new(
        "REGISTRY_PORT=5000\n",
        "",
        &[
            ("REGISTRY_PORT", "5000"),
            ("REGISTRY_HTTP_ADDR", "127.0.0.1:6000"),
        ],
    );
    let c = s.load();
    assert_eq!(c.listen.value, "127.0.0.1:6000".parse().expect("addr"));
    // A different value in the environment is the environment's.
    let s = Setup::new("REGISTRY_PORT=5000\n", "", &[("REGISTRY_PORT", "5001")]);
    let c = s.load();
    assert_eq!(c.listen.value.port(), 5001);
    assert_eq!(
        c.listen.source.part("port"),
        &Source::Env("REGISTRY_PORT".into())
    );
}

#[test]
fn sysconfig_variables_feed_env_references_and_the_process_wins() {
    let s = Setup::new(
        "STORAGE_PATH=/srv/from-sysconfig\nLOGLEVEL=debug\n",
        LEGACY,
        &[("LOGLEVEL", "warning")],
    );
    let c = s.load();
    assert_eq!(
        c.storage.value,
        StorageConfig::Filesystem {
            root: "/srv/from-sysconfig".into()
        }
    );
    assert!(
        c.storage
            .source
            .to_string()
            .ends_with(&format!("from {}:1)", s.path("sysconfig"))),
        "{}",
        c.storage.source
    );
    assert_eq!(c.log_level.value, LogLevel::Warn);
    // Variables read by _env: are not "unknown".
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn docker_registry_config_in_the_sysconfig_file_chooses_the_yaml_file() {
    let mut s = Setup::new("", LEGACY, &[]);
    let yml = s.path("registry.yml");
    std::fs::write(
        s.dir.path().join("sysconfig"),
        format!("DOCKER_REGISTRY_CONFIG={yml}\n"),
    )
    .expect("write");
    s.opts.config = None;
    let c = s.load();
    assert_eq!(c.config_file.value, Some(PathBuf::from(&yml)));
    assert_eq!(c.file_format, FileFormat::Legacy);
    std::fs::write(
        s.dir.path().join("sysconfig"),
        "DOCKER_REGISTRY_CONFIG=/nonexistent/registry.yml\n",
    )
    .expect("write");
    let errors = s.errors();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with(
            "/nonexistent/registry.yml: cannot read this file (given by DOCKER_REGISTRY_CONFIG"
        ),
        "{errors:?}"
    );
}

#[test]
fn every_error_of_every_level_is_reported() {
    let s = Setup::new(
        "REGISTRY_PORT=http\nGUNICORN_WORKERS=many\n",
        "common:\n  loglevel: loud\nlocal:\n  storage: local\n",
        &[("REGISTRY_STORAGE_DELETE_ENABLED", "sometimes")],
    );
    let errors = s.errors();
    let sys = s.path("sysconfig");
    let yml = s.path("registry.yml");
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(
        errors[0].starts_with(&format!("{yml}:2: common.loglevel: unknown log level")),
        "{errors:?}"
    );
    assert!(
        errors[1].starts_with(&format!("{sys}:1: REGISTRY_PORT: not a port number")),
        "{errors:?}"
    );
    assert!(
        errors[2].starts_with(&format!("{sys}:2: GUNICORN_WORKERS: not a number")),
        "{errors:?}"
    );
    assert!(
        errors[3].starts_with("REGISTRY_STORAGE_DELETE_ENABLED: expected true or false"),
        "{errors:?}"
    );
}

#[test]
fn unknown_variables_are_warned_about_by_name() {
    let s = Setup::new(
        "GUNICORN_OPTS=--preload\nSETTINGS_FLAVOR=local\n",
        LEGACY,
        &[("REGISTRY_HTTP_SECRET", "x"), ("HOME", "/root")],
    );
    let c = s.load();
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    assert!(
        c.warnings[0].ends_with("does not use: GUNICORN_OPTS (line 1)"),
        "{:?}",
        c.warnings
    );
    assert!(
        c.warnings[1].ends_with("does not use: REGISTRY_HTTP_SECRET"),
        "{:?}",
        c.warnings
    );
}

#[test]
fn distribution_overrides_work_on_a_flavored_file() {
    let s = Setup::new(
        "SETTINGS_FLAVOR=s3\n",
        LEGACY,
        &[
            ("REGISTRY_STORAGE", "filesystem"),
            ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/srv/fs"),
            ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
        ],
    );
    let c = s.load();
    assert_eq!(
        c.storage.value,
        StorageConfig::Filesystem {
            root: "/srv/fs".into()
        }
    );
    assert!(c.delete_enabled.value);
    // Without REGISTRY_STORAGE the flavor's s3 stands, and is refused.
    let s = Setup::new(
        "SETTINGS_FLAVOR=s3\n",
        LEGACY,
        &[("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/srv/fs")],
    );
    let errors = s.errors();
    assert!(
        errors[0].contains(
            "s3.storage: flavor s3 uses storage s3: S3 storage arrives in a later release"
        ),
        "{errors:?}"
    );
}

#[test]
fn a_flavor_set_for_a_registry_2_file_is_reported_as_unused() {
    let s = Setup::new("SETTINGS_FLAVOR=dev\n", "version: 0.1\n", &[]);
    let c = s.load();
    assert_eq!(c.file_format, FileFormat::Distribution);
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(
        c.warnings[0].starts_with("SETTINGS_FLAVOR=dev ("),
        "{:?}",
        c.warnings
    );
    assert!(
        c.warnings[0].ends_with("is a registry:2 file, which has no flavors"),
        "{:?}",
        c.warnings
    );
}

#[test]
fn htpasswd_needs_a_password_file_and_has_a_default_realm() {
    let s = Setup::new("", "", &[("REGISTRY_AUTH", "htpasswd")]);
    let errors = s.errors();
    assert_eq!(errors, ["REGISTRY_AUTH: htpasswd authentication needs a password file: set auth.htpasswd.path (or REGISTRY_AUTH_HTPASSWD_PATH) (set in the environment)"]);
    let s = Setup::new(
        "REGISTRY_AUTH_HTPASSWD_PATH=/etc/registry/htpasswd\n",
        "",
        &[],
    );
    let c = s.load();
    assert_eq!(
        c.auth.value,
        Some(AuthConfig::Htpasswd {
            realm: DEFAULT_REALM.into(),
            path: "/etc/registry/htpasswd".into(),
            access_file: None,
        })
    );
    let s = Setup::new("", "", &[("REGISTRY_AUTH", "ldap")]);
    assert!(s.errors()[0].contains("authentication \"ldap\" is not supported"));
}

#[test]
fn token_auth_from_a_file_needs_its_four_settings_and_the_endpoint_its_users() {
    let s = Setup::new("", "", &[("REGISTRY_AUTH", "token")]);
    assert_eq!(
        s.errors(),
        [
            "REGISTRY_AUTH: token authentication needs auth.token.realm, auth.token.service, \
          auth.token.issuer, auth.token.rootcertbundle (or REGISTRY_AUTH_TOKEN_REALM, \
          REGISTRY_AUTH_TOKEN_SERVICE, REGISTRY_AUTH_TOKEN_ISSUER, \
          REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE) (set in the environment)"
        ]
    );
    let yaml = "version: 0.1\nauth:\n  token:\n    realm: https://r.example/token\n    \
                service: r.example\n    issuer: r.example\n    rootcertbundle: /etc/r/token.crt\n    \
                signingkey: /etc/r/token.key\n";
    let s = Setup::new("", yaml, &[]);
    let errors = s.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with(&format!(
            "{}:8: auth.token.signingkey: the built-in token endpoint needs its users",
            s.path("registry.yml")
        )),
        "{errors:?}"
    );
    // The sysconfig file supplies the users; the environment overrides the access file.
    let s = Setup::new(
        "REGISTRY_AUTH_TOKEN_HTPASSWD=/etc/r/users\n",
        yaml,
        &[("REGISTRY_AUTH_TOKEN_ACCESSFILE", "/etc/r/access.yml")],
    );
    let c = s.load();
    assert_eq!(
        c.auth.value,
        Some(AuthConfig::Token {
            realm: "https://r.example/token".into(),
            service: "r.example".into(),
            issuer: "r.example".into(),
            rootcertbundle: "/etc/r/token.crt".into(),
            endpoint: Some(TokenEndpoint {
                htpasswd: "/etc/r/users".into(),
                access_file: Some("/etc/r/access.yml".into()),
                signing_key: "/etc/r/token.key".into(),
            }),
        })
    );
    assert_eq!(
        c.auth.source.part("rootcertbundle").to_string(),
        format!("{}:7 (auth.token.rootcertbundle)", s.path("registry.yml"))
    );
    assert_eq!(
        c.auth.source.part("accessfile"),
        &Source::Env("REGISTRY_AUTH_TOKEN_ACCESSFILE".into())
    );
    // --access-file overrides the endpoint's access file only.
    let mut s = s;
    s.opts.cli.push(("--access-file", "/cli/access.yml".into()));
    let c = s.load();
    let Some(AuthConfig::Token {
        endpoint: Some(e), ..
    }) = &c.auth.value
    else {
        panic!("{:?}", c.auth)
    };
    assert_eq!(e.access_file, Some(PathBuf::from("/cli/access.yml")));
    assert_eq!(
        c.auth.source.part("accessfile"),
        &Source::Cli("--access-file".into())
    );
    assert_eq!(
        c.auth.source.part("htpasswd").to_string(),
        format!("{}:1 (REGISTRY_AUTH_TOKEN_HTPASSWD)", s.path("sysconfig"))
    );
}

#[test]
fn token_and_htpasswd_keys_without_a_method_are_ambiguous() {
    let s = Setup::new(
        "REGISTRY_AUTH_HTPASSWD_PATH=/etc/r/users\n",
        "",
        &[("REGISTRY_AUTH_TOKEN_REALM", "https://r.example/token")],
    );
    let errors = s.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("REGISTRY_AUTH_TOKEN_REALM: both token and htpasswd settings"),
        "{errors:?}"
    );
    // Naming the method settles it.
    let s = Setup::new(
        "REGISTRY_AUTH_HTPASSWD_PATH=/etc/r/users\nREGISTRY_AUTH=htpasswd\n",
        "",
        &[("REGISTRY_AUTH_HTPASSWD_ACCESSFILE", "/etc/r/access.yml")],
    );
    assert_eq!(
        s.load().auth.value,
        Some(AuthConfig::Htpasswd {
            realm: DEFAULT_REALM.into(),
            path: "/etc/r/users".into(),
            access_file: Some("/etc/r/access.yml".into()),
        })
    );
}

#[test]
fn client_cas_need_a_certificate_and_flags_override_them_key_by_key() {
    let yaml = "version: 0.1\nhttp:\n  trustforwardedheaders: true\n  tls:\n    clientcas:\n      - /ca1.pem\n      - /ca2.pem\n";
    let s = Setup::new("", yaml, &[]);
    let errors = s.errors();
    assert!(
        errors[0].ends_with(":5: http.tls.clientcas: client CAs (mutual TLS) without a TLS certificate and key: set http.tls.certificate and http.tls.key (or REGISTRY_HTTP_TLS_CERTIFICATE and _KEY) too"),
        "{errors:?}"
    );
    // The flags give the certificate; the file's client CAs stay (no silent downgrade).
    let mut s = Setup::new("", yaml, &[]);
    s.opts.cli.push(("--tls-cert", "/c.pem".into()));
    s.opts.cli.push(("--tls-key", "/k.pem".into()));
    let c = s.load();
    assert_eq!(
        c.tls.value,
        Some(TlsConfig {
            certificate: "/c.pem".into(),
            key: "/k.pem".into(),
            client_cas: vec!["/ca1.pem".into(), "/ca2.pem".into()],
        })
    );
    assert!(c.trust_forwarded_headers.value);
    s.opts.cli.push(("--tls-client-ca", "/cli-ca.pem".into()));
    s.opts
        .cli
        .push(("--trust-forwarded-headers", "false".into()));
    let c = s.load();
    let tls = c.tls.value.expect("tls");
    assert_eq!(tls.client_cas, vec![PathBuf::from("/cli-ca.pem")]);
    assert_eq!(
        c.tls.source.part("clientcas"),
        &Source::Cli("--tls-client-ca".into())
    );
    assert_eq!(
        (
            c.trust_forwarded_headers.value,
            c.trust_forwarded_headers.source
        ),
        (false, Source::Cli("--trust-forwarded-headers".into()))
    );
}

#[test]
fn tls_needs_both_certificate_and_key() {
    let s = Setup::new(
        "",
        "version: 0.1\nhttp:\n  tls:\n    certificate: /c.pem\n",
        &[],
    );
    let errors = s.errors();
    assert!(errors[0].ends_with(":4: http.tls.certificate: a TLS certificate without its key: set http.tls.key (or REGISTRY_HTTP_TLS_KEY) too"), "{errors:?}");
    let s = Setup::new(
        "",
        "version: 0.1\nhttp:\n  tls:\n    certificate: /c.pem\n",
        &[("REGISTRY_HTTP_TLS_KEY", "/k.pem")],
    );
    assert_eq!(
        s.load().tls.value,
        Some(TlsConfig {
            certificate: "/c.pem".into(),
            key: "/k.pem".into(),
            client_cas: Vec::new(),
        })
    );
}

#[test]
fn ipv6_addresses_with_or_without_brackets() {
    for (written, expected) in [
        ("::1", "[::1]:5000"),
        ("[::]", "[::]:5000"),
        ("'[::1]'", "[::1]:5000"),
    ] {
        let s = Setup::new(&format!("REGISTRY_ADDRESS={written}\n"), "", &[]);
        assert_eq!(
            s.load().listen.value,
            expected.parse::<SocketAddr>().expect("addr"),
            "{written}"
        );
    }
    let s = Setup::new("REGISTRY_ADDRESS=example\n", "", &[]);
    assert!(s.errors()[0].contains(":1: REGISTRY_ADDRESS: not an IP address"));
}

#[test]
fn a_flavor_missing_from_the_file_lists_those_available() {
    let s = Setup::new("SETTINGS_FLAVOR=staging\n", LEGACY, &[]);
    let errors = s.errors();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].contains("SETTINGS_FLAVOR: flavor \"staging\""),
        "{errors:?}"
    );
    assert!(
        errors[0].contains(&format!("{}:1 (SETTINGS_FLAVOR)", s.path("sysconfig"))),
        "{errors:?}"
    );
    assert!(
        errors[0].ends_with("flavors available: common, local, s3"),
        "{errors:?}"
    );
}

#[test]
fn an_unsupported_version_is_an_error_and_an_empty_file_a_warning() {
    let s = Setup::new("", "version: 0.2\n", &[]);
    assert!(s.errors()[0].ends_with(
        ":1: version: unsupported registry:2 configuration version \"0.2\" (expected 0.1)"
    ));
    let s = Setup::new("", "", &[]);
    let c = s.load();
    assert!(
        c.warnings[0].ends_with("the file is empty; using the built-in defaults"),
        "{:?}",
        c.warnings
    );
}

#[test]
fn storage_defaults_to_state_directory_when_nothing_configures_it() {
    let s = Setup::new(
        "",
        "",
        &[("STATE_DIRECTORY", "/var/lib/docker-registry-test:/other")],
    );
    let c = s.load();
    assert_eq!(
        c.storage.value,
        StorageConfig::Filesystem {
            root: "/var/lib/docker-registry-test".into()
        }
    );
    assert_eq!(
        c.storage.source,
        Source::Derived("systemd STATE_DIRECTORY".into())
    );
    let mut s = Setup::new("", LEGACY, &[("STATE_DIRECTORY", "/x")]);
    s.opts.cli.push(("--storage-path", "/cli".into()));
    let c = s.load();
    assert_eq!(
        (c.storage.value, c.storage.source),
        (
            StorageConfig::Filesystem {
                root: "/cli".into()
            },
            Source::Cli("--storage-path".into())
        )
    );
}

const GC_YAML: &str = "version: 0.1\nstorage:\n  maintenance:\n    gc:\n      interval: 24h\n      grace: 2h\n      \
                       deleteuntagged: true\nretention:\n  - repositories: library/*\n    keeptags: 10\n\
                       \x20 - repositories: '*'\n    keepyoungerthan: 720h\n    protecttags: v*\n";

#[test]
fn gc_settings_take_the_environment_over_sysconfig_over_the_file() {
    let s = Setup::new("", GC_YAML, &[]);
    let c = s.load();
    let yml = s.path("registry.yml");
    assert_eq!(
        c.gc.value,
        GcConfig {
            interval: Some(Duration::from_secs(24 * 3600)),
            grace: Duration::from_secs(7200),
            delete_untagged: true,
            socket: None,
        }
    );
    assert_eq!(
        c.gc.source.part("interval").to_string(),
        format!("{yml}:5 (storage.maintenance.gc.interval)")
    );
    assert_eq!(c.gc.source.part("socket"), &Source::Default);
    assert_eq!(c.retention.value.len(), 2);
    assert_eq!(
        c.retention.source.part("retention[1]").to_string(),
        format!("{yml}:11 (retention[1])")
    );
    let s = Setup::new(
        "REGISTRY_STORAGE_MAINTENANCE_GC_GRACE=10m\nREGISTRY_STORAGE_MAINTENANCE_GC_INTERVAL=6h\n",
        GC_YAML,
        &[
            ("REGISTRY_STORAGE_MAINTENANCE_GC_INTERVAL", "0"),
            ("REGISTRY_STORAGE_MAINTENANCE_GC_SOCKET", "/run/admin.sock"),
        ],
    );
    let c = s.load();
    assert_eq!(c.gc.value.interval, None);
    assert_eq!(
        c.gc.source.part("interval"),
        &Source::Env("REGISTRY_STORAGE_MAINTENANCE_GC_INTERVAL".into())
    );
    assert_eq!(c.gc.value.grace, Duration::from_secs(600));
    assert_eq!(
        c.gc.source.part("grace").to_string(),
        format!(
            "{}:1 (REGISTRY_STORAGE_MAINTENANCE_GC_GRACE)",
            s.path("sysconfig")
        )
    );
    assert!(c.gc.value.delete_untagged);
    assert_eq!(c.gc.value.socket, Some(PathBuf::from("/run/admin.sock")));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn gc_and_retention_errors_of_every_level_are_reported_together() {
    let s = Setup::new(
        "REGISTRY_STORAGE_MAINTENANCE_GC_GRACE=soon\n",
        "version: 0.1\nstorage:\n  maintenance:\n    gc:\n      interval: often\nretention:\n  - keeptags: 1\n",
        &[("REGISTRY_STORAGE_MAINTENANCE_GC_DELETEUNTAGGED", "maybe")],
    );
    let errors = s.errors();
    let yml = s.path("registry.yml");
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(
        errors[0].starts_with(&format!(
            "{yml}:5: storage.maintenance.gc.interval: not a duration: \"often\""
        )),
        "{errors:?}"
    );
    assert!(
        errors[1].starts_with(&format!(
            "{yml}:7: retention[0]: a retention rule needs repositories"
        )),
        "{errors:?}"
    );
    assert!(
        errors[2].starts_with(&format!(
            "{}:1: REGISTRY_STORAGE_MAINTENANCE_GC_GRACE: not a duration",
            s.path("sysconfig")
        )),
        "{errors:?}"
    );
    assert!(
        errors[3].starts_with("REGISTRY_STORAGE_MAINTENANCE_GC_DELETEUNTAGGED: expected true"),
        "{errors:?}"
    );
}

#[test]
fn describe_shows_gc_and_retention_with_their_sources() {
    let s = Setup::new(
        "",
        GC_YAML,
        &[("REGISTRY_STORAGE_MAINTENANCE_GC_DELETEUNTAGGED", "false")],
    );
    let text = s.load().describe();
    let yml = s.path("registry.yml");
    let line = |key: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("{key} in\n{text}"))
            .to_string()
    };
    let l = line("storage.maintenance.gc.interval");
    assert!(
        l.contains(" 1day ")
            && l.ends_with(&format!("# {yml}:5 (storage.maintenance.gc.interval)")),
        "{l}"
    );
    assert!(
        line("storage.maintenance.gc.grace").contains(" 2h "),
        "{text}"
    );
    let l = line("storage.maintenance.gc.deleteuntagged");
    assert!(
        l.contains(" false ")
            && l.ends_with(" # environment (REGISTRY_STORAGE_MAINTENANCE_GC_DELETEUNTAGGED)"),
        "{text}"
    );
    assert!(
        line("storage.maintenance.gc.socket")
            .contains(" docker-registry-admin.sock in the storage root "),
        "{text}"
    );
    let l = line("retention[0]");
    assert!(
        l.contains(" repositories=library/* keeptags=10 ")
            && l.ends_with(&format!("# {yml}:9 (retention[0])")),
        "{l}"
    );
    let l = line("retention[1]");
    assert!(
        l.contains(" repositories=* keepyoungerthan=30days protecttags=v* ")
            && l.ends_with(&format!("# {yml}:11 (retention[1])")),
        "{l}"
    );
    assert!(!text.lines().any(|l| l.starts_with("retention ")), "{text}");
    // Without rules, one line says so; without an interval, collection is on demand.
    let text = Setup::new("", "version: 0.1\n", &[]).load().describe();
    assert!(
        text.lines().any(|l| l.starts_with("retention ")
            && l.contains(" (none) ")
            && l.ends_with("# default")),
        "{text}"
    );
    assert!(
        text.contains("off (only garbage-collect --online)"),
        "{text}"
    );
}

#[test]
fn describe_shows_every_setting_with_its_source() {
    let s = Setup::new(
        "GUNICORN_WORKERS=3\n",
        LEGACY,
        &[("REGISTRY_STORAGE_DELETE_ENABLED", "true")],
    );
    let text = s.load().describe();
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("{key} in\n{text}"))
            .to_string()
    };
    assert!(
        line("workers").contains(" 3 ")
            && line("workers")
                .ends_with(&format!("# {}:1 (GUNICORN_WORKERS)", s.path("sysconfig")))
    );
    assert!(
        line("storage.delete.enabled").ends_with("# environment (REGISTRY_STORAGE_DELETE_ENABLED)")
    );
    assert!(line("storage.filesystem.rootdirectory").contains("/srv/registry"));
    assert!(
        line("log.level")
            .contains(":2 (common.loglevel: _env:LOGLEVEL unset, the default written there)"),
        "{text}"
    );
    assert!(
        line("http.addr").contains(" 0.0.0.0:5000 ") && line("http.addr").ends_with(" # default"),
        "{text}"
    );
}

/// The column where each line's source starts.
fn source_columns(text: &str) -> Vec<usize> {
    let column = |l: &str| l.find(" # ").map(|i| l[..i].chars().count());
    let mut columns: Vec<usize> = text.lines().filter_map(column).collect();
    columns.dedup();
    columns
}

#[test]
fn describe_keeps_its_columns_aligned_for_long_values() {
    let long = format!("/srv/{}", "registry-data/".repeat(6));
    let s = Setup::new(
        "",
        &format!("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {long}\n"),
        &[
            ("REGISTRY_HTTP_TLS_CERTIFICATE", "/c.pem"),
            ("REGISTRY_HTTP_TLS_KEY", "/k.pem"),
            ("REGISTRY_HTTP_TLS_CLIENTCAS", "[/a.pem, /b.pem]"),
        ],
    );
    let text = s.load().describe();
    assert_eq!(source_columns(&text).len(), 1, "{text}");
    let values = text
        .lines()
        .map(|l| l.split_whitespace().nth(1))
        .collect::<Vec<_>>();
    assert!(values.contains(&Some(long.as_str())), "{text}");
}

#[test]
fn variables_of_one_level_apply_in_the_tables_order() {
    let s = Setup::new(
        "",
        "",
        &[
            ("REGISTRY_HTTP_ADDR", "127.0.0.1:6000"),
            ("REGISTRY_PORT", "7000"),
            ("GUNICORN_WORKERS", "8"),
            ("REGISTRY_WORKERS", "3"),
            ("REGISTRY_LOGLEVEL", "error"),
            ("REGISTRY_LOG_LEVEL", "debug"),
            ("REGISTRY_STORAGE_DELETE_ENABLED", ""),
        ],
    );
    let c = s.load();
    assert_eq!(c.listen.value, "127.0.0.1:7000".parse().expect("addr"));
    assert_eq!(
        c.listen.source.part("port"),
        &Source::Env("REGISTRY_PORT".into())
    );
    assert_eq!(c.workers.value, 3);
    assert_eq!(c.log_level.value, LogLevel::Debug);
    // An empty value counts as unset, as in the shell.
    assert_eq!(c.delete_enabled.source, Source::Default);
}

#[test]
fn every_bad_variable_is_an_error_naming_it() {
    let s = Setup::new(
        "",
        "",
        &[
            ("REGISTRY_PORT", "http"),
            ("REGISTRY_STORAGE_DELETE_ENABLED", "maybe"),
            ("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE", "a week"),
            ("REGISTRY_STORAGE_MAINTENANCE_GC_INTERVAL", "weekly"),
            ("REGISTRY_STORAGE_MAINTENANCE_GC_GRACE", "-1h"),
            ("REGISTRY_STORAGE_MAINTENANCE_GC_DELETEUNTAGGED", "2"),
            ("REGISTRY_HTTP_TRUSTFORWARDEDHEADERS", "proxy"),
            ("REGISTRY_HTTP_TLS_CLIENTCAS", "[]"),
        ],
    );
    assert_eq!(
        s.problems(),
        [
            "REGISTRY_PORT: not a port number: \"http\" (0 to 65535; 0 = any free port) (set in the environment)",
            "REGISTRY_STORAGE_DELETE_ENABLED: expected true or false, found \"maybe\" (set in the environment)",
            "REGISTRY_HTTP_TLS_CLIENTCAS: an empty list of files: \"[]\" (set in the environment)",
            "REGISTRY_HTTP_TRUSTFORWARDEDHEADERS: expected true or false, found \"proxy\" (set in the environment)",
            "REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE: not a duration: \"a week\" (e.g. 168h, 30m, 1h30m) (set in the environment)",
            "REGISTRY_STORAGE_MAINTENANCE_GC_INTERVAL: not a duration: \"weekly\" (e.g. 168h, 30m, 1h30m) (set in the environment)",
            "REGISTRY_STORAGE_MAINTENANCE_GC_GRACE: not a duration: \"-1h\" (e.g. 168h, 30m, 1h30m) (set in the environment)",
            "REGISTRY_STORAGE_MAINTENANCE_GC_DELETEUNTAGGED: expected true or false, found \"2\" (set in the environment)",
        ]
    );
}

#[test]
fn auth_tls_and_proxy_variables_registry_2s_names_and_ours() {
    let s = Setup::new(
        "",
        "",
        &[
            ("REGISTRY_AUTH", "token"),
            ("REGISTRY_AUTH_TOKEN_REALM", "https://r.example/token"),
            ("REGISTRY_AUTH_TOKEN_SERVICE", "r.example"),
            ("REGISTRY_AUTH_TOKEN_ISSUER", "issuer"),
            ("REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE", "/b.pem"),
            ("REGISTRY_AUTH_TOKEN_SIGNINGKEY", "/s.key"),
            ("REGISTRY_AUTH_TOKEN_HTPASSWD", "/users"),
            ("REGISTRY_AUTH_TOKEN_ACCESSFILE", "/a.yml"),
            ("REGISTRY_HTTP_TLS_CERTIFICATE", "/c.pem"),
            ("REGISTRY_HTTP_TLS_KEY", "/k.pem"),
            ("REGISTRY_HTTP_TLS_CLIENTCAS", "[/ca1.pem, /ca2.pem]"),
            ("REGISTRY_HTTP_TRUSTFORWARDEDHEADERS", "true"),
        ],
    );
    let c = s.load();
    assert_eq!(
        c.auth.value,
        Some(AuthConfig::Token {
            realm: "https://r.example/token".into(),
            service: "r.example".into(),
            issuer: "issuer".into(),
            rootcertbundle: "/b.pem".into(),
            endpoint: Some(TokenEndpoint {
                htpasswd: "/users".into(),
                access_file: Some("/a.yml".into()),
                signing_key: "/s.key".into(),
            }),
        })
    );
    assert_eq!(
        c.auth.source.part("realm"),
        &Source::Env("REGISTRY_AUTH_TOKEN_REALM".into())
    );
    let tls = c.tls.value.expect("tls");
    assert_eq!(
        tls.client_cas,
        [PathBuf::from("/ca1.pem"), "/ca2.pem".into()]
    );
    assert!(c.trust_forwarded_headers.value);
}

const REGISTRY_2: &str = "version: 0.1\nlog:\n  level: debug\n  formatter: text\nstorage:\n  filesystem:\n    \
    rootdirectory: /srv/r\n  delete:\n    enabled: true\n  cache:\n    blobdescriptor: inmemory\n  maintenance:\n    \
    uploadpurging:\n      enabled: false\n      age: 48h\n      interval: 1h\n      dryrun: true\n    readonly:\n      \
    enabled: true\nhttp:\n  addr: '[::1]:5001'\n  secret: s\n  tls:\n    certificate: /c.pem\n    key: /k.pem\n\
    auth:\n  htpasswd:\n    realm: basic-realm\n    path: /etc/htpasswd\nnotifications: {}\n";

#[test]
fn a_registry_2_file_sets_what_we_implement_and_names_the_rest() {
    let s = Setup::new("", REGISTRY_2, &[]);
    let c = s.load();
    assert_eq!(c.log_level.value, LogLevel::Debug);
    assert_eq!(
        (c.storage.value, s.short(&c.storage.source.to_string())),
        (
            StorageConfig::Filesystem {
                root: "/srv/r".into()
            },
            "registry.yml:7 (storage.filesystem.rootdirectory)".into()
        )
    );
    assert!(c.delete_enabled.value && c.readonly.value);
    assert_eq!(
        c.upload_purging.value,
        UploadPurging {
            enabled: false,
            age: Duration::from_secs(48 * 3600),
            interval: Duration::from_secs(3600),
            dry_run: true,
        }
    );
    assert_eq!(c.listen.value, "[::1]:5001".parse().expect("addr"));
    assert_eq!(c.tls.value.map(|t| t.key), Some("/k.pem".into()));
    assert_eq!(
        c.auth.value,
        Some(AuthConfig::Htpasswd {
            realm: "basic-realm".into(),
            path: "/etc/htpasswd".into(),
            access_file: None,
        })
    );
    assert_eq!(
        s.warned(),
        ["registry.yml: ignoring registry:2 settings this registry does not use: log.formatter, storage.cache, http.secret, notifications"]
    );
}

#[test]
fn our_keys_in_a_registry_2_file_ignore_case_and_separators() {
    let s = Setup::new(
        "",
        "version: 0.1\nhttp:\n  trust_forwarded_headers: yes\n  tls:\n    minimumtls: tls1.2\n\
         auth:\n  token:\n    realm: https://r.example/token\n    service: r.example\n    issuer: i\n    \
         rootcertbundle: /b.pem\n    signingKey: /s.key\n    htpasswd: /users\n    access_file: /a.yml\n    \
         jwks: /j.json\nstorage:\n  maintenance:\n    gc:\n      delete_untagged: true\n      deleteUntagged: false\n      \
         sweep: always\n",
        &[],
    );
    let c = s.load();
    assert!(c.trust_forwarded_headers.value);
    assert_eq!(
        part(&s, &c.auth, "signingkey"),
        "registry.yml:12 (auth.token.signingKey)"
    );
    assert!(
        matches!(c.auth.value, Some(AuthConfig::Token { endpoint: Some(e), .. }) if e.access_file == Some("/a.yml".into()))
    );
    // Both spellings name one setting: the later line is the one in effect.
    assert!(!c.gc.value.delete_untagged);
    assert_eq!(
        part(&s, &c.gc, "delete_untagged"),
        "registry.yml:20 (storage.maintenance.gc.deleteUntagged)"
    );
    assert_eq!(
        s.warned(),
        ["registry.yml: ignoring registry:2 settings this registry does not use: http.tls.minimumtls, auth.token.jwks, storage.maintenance.gc.sweep"]
    );
    for key in ["keeptags", "keep_tags", "keepTags", "KeepTags", "keep-tags"] {
        assert_eq!(setting::key_name(key), "keeptags", "{key}");
    }
}

#[test]
fn wrong_values_in_a_registry_2_file_are_errors_with_lines() {
    let s = Setup::new(
        "",
        "version: 0.1\nhttp:\n  addr: localhost\n  net: unix\n  trustforwardedheaders: sometimes\n  tls:\n    \
         clientcas: {a: b}\nstorage:\n  filesystem: {}\n  inmemory: {}\n  delete:\n    enabled: perhaps\n  \
         maintenance:\n    gc:\n      interval: daily\n      grace: [1h]\n      socket: ''\n\
         auth:\n  token:\n    rootcertbundle: [a, b]\n    signingkey: ''\nlog: debug\n",
        &[],
    );
    assert_eq!(
        s.problems(),
        [
            "registry.yml:3: http.addr: not an address: \"localhost\" (expected host:port, :port or [v6]:port, e.g. 127.0.0.1:5000)",
            "registry.yml:4: http.net: listening on \"unix\" is not supported (only tcp); remove http.net",
            "registry.yml:5: http.trustforwardedheaders: expected true or false, found \"sometimes\"",
            "registry.yml:7: http.tls.clientcas: expected a single value, found a mapping",
            "registry.yml:12: storage.delete.enabled: expected true or false, found \"perhaps\"",
            "registry.yml:15: storage.maintenance.gc.interval: not a duration: \"daily\" (e.g. 168h, 30m, 1h30m)",
            "registry.yml:16: storage.maintenance.gc.grace: expected a single value, found a list",
            "registry.yml:17: storage.maintenance.gc.socket: empty path",
            "registry.yml:8: storage: more than one storage driver configured (filesystem, inmemory); keep one",
            "registry.yml:20: auth.token.rootcertbundle: expected a single value, found a list",
            "registry.yml:21: auth.token.signingkey: empty path",
            "registry.yml:22: log: expected a mapping, found \"debug\"",
            "registry.yml:10: storage.inmemory: storage \"inmemory\" is not supported by docker-registry (filesystem storage only; S3 arrives in a later release)",
            "registry.yml:19: auth.token: token authentication needs auth.token.realm, auth.token.service, auth.token.issuer, auth.token.rootcertbundle (or REGISTRY_AUTH_TOKEN_REALM, REGISTRY_AUTH_TOKEN_SERVICE, REGISTRY_AUTH_TOKEN_ISSUER, REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE)",
        ]
    );
}

#[test]
fn filesystem_without_rootdirectory_means_registry_2s_default() {
    let s = Setup::new("", "version: 0.1\nstorage:\n  filesystem: {}\n", &[]);
    let c = s.load();
    assert_eq!(
        (c.storage.value, s.short(&c.storage.source.to_string())),
        (
            StorageConfig::Filesystem {
                root: "/var/lib/registry".into()
            },
            "default (registry:2's default for storage.filesystem at registry.yml:3)".into()
        )
    );
    let s = Setup::new(
        "",
        "version: 0.1\nauth:\n  silly:\n    realm: x\n  htpasswd: {}\n",
        &[],
    );
    assert_eq!(
        s.problems(),
        [
            "registry.yml:2: auth: more than one authentication method configured (silly, htpasswd); keep one (the built-in token endpoint's users are auth.token.htpasswd)",
            "registry.yml:5: auth.htpasswd: htpasswd authentication needs a password file: set auth.htpasswd.path (or REGISTRY_AUTH_HTPASSWD_PATH)",
        ]
    );
}

#[test]
fn gc_section_and_retention_list_of_a_registry_2_file() {
    let s = Setup::new(
        "",
        "version: 0.1\nstorage:\n  maintenance:\n    gc:\n      interval: 0s\n      grace: 30m\n      \
         socket: /run/r/admin.sock\nretention:\n  - repositories: library/*\n    keeptags: many\n",
        &[],
    );
    assert_eq!(
        s.problems(),
        ["registry.yml:10: retention[0].keeptags: not a number of tags: \"many\" (a whole number, e.g. 10)"]
    );
    std::fs::write(s.path("registry.yml"), "version: 0.1\nstorage:\n  maintenance:\n    gc:\n      interval: 0s\n      grace: 30m\n      \
         socket: /run/r/admin.sock\nretention:\n  - repositories: library/*\n    keeptags: 5\n").expect("write");
    let c = s.load();
    assert_eq!(
        c.gc.value,
        GcConfig {
            interval: None,
            grace: Duration::from_secs(1800),
            delete_untagged: false,
            socket: Some("/run/r/admin.sock".into()),
        }
    );
    assert_eq!(
        part(&s, &c.gc, "interval"),
        "registry.yml:5 (storage.maintenance.gc.interval)"
    );
    assert_eq!(c.retention.value[0].keep_tags, Some(5));
    assert_eq!(
        s.short(&c.retention.source.to_string()),
        "registry.yml:9 (retention[0])"
    );
}

const FLAVORED: &str = "\
common: &common
    issue: '\"docker-registry server\"'
    loglevel: _env:LOGLEVEL:info
    debug: _env:DEBUG:false
    search_backend: _env:SEARCH_BACKEND
    gc_interval: _env:GC_INTERVAL:24h
    gc_grace: 2h
    retention:
        - repositories: library/*
          keep_tags: _env:KEEP_TAGS:10
local: &local
    <<: *common
    storage: local
    storage_path: _env:STORAGE_PATH:/var/lib/docker-registry
s3: &s3
    <<: *common
    storage: s3
    storage_path: _env:STORAGE_PATH:/registry
dev:
    <<: *local
    loglevel: _env:LOGLEVEL:debug
    storage_delete_enabled: true
    gc_interval: 1h
    retention:
    tls_certificate: /etc/r/tls.crt
    tls_key: /etc/r/tls.key
    tls_client_cas: [/a.pem, /b.pem]
    trust_forwarded_headers: _env:TRUST_PROXY:false
    auth:
        token:
            realm: https://r.example/token
            service: r.example
            issuer: r.example
            rootcertbundle: /etc/r/token.crt
            signing_key: /etc/r/token.key
            htpasswd: /etc/r/users
            access_file: /etc/r/access.yml
";

#[test]
fn a_flavor_reads_common_and_its_own_keys_by_their_legacy_names() {
    let s = Setup::new(
        "",
        FLAVORED,
        &[("STORAGE_PATH", "/srv/a:b"), ("KEEP_TAGS", "3")],
    );
    let c = s.load();
    assert_eq!(
        c.storage.value,
        StorageConfig::Filesystem {
            root: "/srv/a:b".into()
        }
    );
    assert_eq!(
        s.short(&c.storage.source.to_string()),
        "registry.yml:14 (local.storage_path: _env:STORAGE_PATH from the environment)"
    );
    assert_eq!(
        (c.log_level.value, s.short(&c.log_level.source.to_string())),
        (
            LogLevel::Info,
            "registry.yml:3 (common.loglevel: _env:LOGLEVEL unset, the default written there)"
                .into()
        )
    );
    assert_eq!(c.issue.value, "\"docker-registry server\"");
    assert_eq!(c.search_backend.value, None);
    assert_eq!(c.gc.value.interval, Some(Duration::from_secs(24 * 3600)));
    assert_eq!(part(&s, &c.gc, "grace"), "registry.yml:7 (common.gc_grace)");
    assert_eq!(c.retention.value[0].keep_tags, Some(3));
    assert_eq!(
        s.warned(),
        ["registry.yml: flavor local: ignoring keys this registry does not use: debug"]
    );
}

#[test]
fn a_flavor_inherits_through_merges_and_overrides_gc_tls_and_auth() {
    let s = Setup::new(
        "SETTINGS_FLAVOR=dev\n",
        FLAVORED,
        &[("TRUST_PROXY", "true")],
    );
    let c = s.load();
    assert_eq!(c.log_level.value, LogLevel::Debug);
    assert!(c.delete_enabled.value && c.trust_forwarded_headers.value);
    assert_eq!(
        c.storage.value,
        StorageConfig::Filesystem {
            root: "/var/lib/docker-registry".into()
        }
    );
    assert_eq!(
        part(&s, &c.gc, "interval"),
        "registry.yml:23 (dev.gc_interval)"
    );
    assert!(c.retention.value.is_empty());
    assert_eq!(
        s.short(&c.retention.source.to_string()),
        "registry.yml:24 (dev.retention)"
    );
    assert_eq!(
        c.tls.value.map(|t| t.client_cas),
        Some(vec!["/a.pem".into(), "/b.pem".into()])
    );
    assert_eq!(
        part(&s, &c.auth, "signingkey"),
        "registry.yml:35 (dev.auth.token.signing_key)"
    );
    assert_eq!(
        part(&s, &c.auth, "accessfile"),
        "registry.yml:37 (dev.auth.token.access_file)"
    );
}

#[test]
fn an_s3_flavor_keeps_its_prefix_out_of_the_storage_root() {
    let s = Setup::new(
        "SETTINGS_FLAVOR=s3\n",
        FLAVORED,
        &[("REGISTRY_STORAGE", "filesystem")],
    );
    let c = s.load();
    assert_eq!(
        c.storage.source,
        Source::Derived("no HOME: a temporary directory".into())
    );
}

#[test]
fn bad_values_of_a_flavor_name_line_key_and_variable() {
    let s = Setup::new(
        "",
        "common:\n  loglevel: _env:LOGLEVEL:loud\nlocal:\n  storage: local\n  storage_delete_enabled: sometimes\n  \
         storage_path: [a]\n  gc_grace: forever\n  retention: keep 5\n  tls_client_cas: [[a]]\n",
        &[("LOGLEVEL", "chatty")],
    );
    assert_eq!(
        s.problems(),
        [
            "registry.yml:2: common.loglevel: unknown log level \"chatty\" (use error, warn, info, debug or trace; critical, warning, fatal and panic are accepted too) (value from _env:LOGLEVEL, set in the environment)",
            "registry.yml:5: local.storage_delete_enabled: expected true or false, found \"sometimes\"",
            "registry.yml:6: local.storage_path: expected a single value, found a list",
            "registry.yml:7: local.gc_grace: not a duration: \"forever\" (e.g. 168h, 30m, 1h30m)",
            "registry.yml:8: local.retention: expected a list of rules (- repositories: ..., keeptags: ...), found \"keep 5\"",
            "registry.yml:9: local.tls_client_cas: item 0 of the list: expected a single value, found a list",
        ]
    );
}

#[test]
fn connection_limits_come_from_every_level() {
    let yaml = "version: 0.1\nhttp:\n  timeouts:\n    header: 1m30s\n    bodyidle: 10s\n  connections:\n    max: 500\n";
    let s = Setup::new(
        "REGISTRY_HTTP_TIMEOUTS_IDLE=5m\n",
        yaml,
        &[("REGISTRY_HTTP_CONNECTIONS_MAX", "100")],
    );
    let c = s.load();
    assert_eq!(
        c.connections.value,
        Connections {
            header_timeout: Duration::from_secs(90),
            body_idle_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max: 100,
            per_client: 256,
        }
    );
    assert_eq!(
        part(&s, &c.connections, "header_timeout"),
        "registry.yml:4 (http.timeouts.header)"
    );
    assert_eq!(
        part(&s, &c.connections, "idle_timeout"),
        "sysconfig:1 (REGISTRY_HTTP_TIMEOUTS_IDLE)"
    );
    let s = s
        .flag("--max-connections-per-client", "8")
        .flag("--header-timeout", "5s");
    let c = s.load();
    assert_eq!(
        (
            c.connections.value.per_client,
            c.connections.value.header_timeout
        ),
        (8, Duration::from_secs(5))
    );
    assert_eq!(
        c.connections.source.part("per_client"),
        &Source::Cli("--max-connections-per-client".into())
    );
    let s = Setup::new(
        "",
        "local:\n  http_header_timeout: 0s\n  http_idle_timeout: 2m\n  max_connections: lots\n  max_connections_per_client: 4\n",
        &[],
    );
    assert_eq!(
        s.problems(),
        [
            "registry.yml:2: local.http_header_timeout: a time limit must be longer than 0, found \"0s\"",
            "registry.yml:4: local.max_connections: not a whole number: \"lots\" (e.g. 10)",
        ]
    );
    let text = Setup::new("", "", &[]).load().describe();
    for (key, value) in [
        ("http.timeouts.header", " 30s "),
        ("http.timeouts.bodyidle", " 1m "),
        ("http.timeouts.idle", " 2m "),
        (
            "http.connections.max",
            " 0 (automatic: from the limit of open files) ",
        ),
        ("http.connections.perclient", " 256 "),
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(key) && l.contains(value)),
            "{key}\n{text}"
        );
    }
}

#[test]
fn flags_say_what_they_are_for() {
    let token = "version: 0.1\nauth:\n  token:\n    realm: https://r.example/token\n    service: r\n    issuer: r\n    \
                 rootcertbundle: /b.pem\n";
    // --htpasswd over a file's token authentication asks for htpasswd.
    let c = Setup::new("", token, &[])
        .flag("--htpasswd", "/users")
        .load();
    assert_eq!(
        (c.auth.value, c.auth.source.part("method")),
        (
            Some(AuthConfig::Htpasswd {
                realm: DEFAULT_REALM.into(),
                path: "/users".into(),
                access_file: None
            }),
            &Source::Cli("--htpasswd".into())
        )
    );
    // With --token-realm it names the built-in endpoint's users; --access-file follows.
    let c = Setup::new("", "", &[])
        .flag("--htpasswd", "/users")
        .flag("--access-file", "/a.yml")
        .flag("--token-realm", "https://r/token")
        .flag("--token-service", "r")
        .flag("--token-issuer", "r")
        .flag("--token-rootcertbundle", "/b.pem")
        .flag("--token-signing-key", "/s.key")
        .load();
    let Some(AuthConfig::Token {
        endpoint: Some(e), ..
    }) = c.auth.value
    else {
        panic!("{:?}", c.auth)
    };
    assert_eq!(
        (e.htpasswd, e.access_file),
        ("/users".into(), Some("/a.yml".into()))
    );
    // --storage-path chooses the filesystem over a flavor's s3.
    let c = Setup::new("SETTINGS_FLAVOR=s3\n", FLAVORED, &[])
        .flag("--storage-path", "/cli")
        .load();
    assert_eq!(
        c.storage.value,
        StorageConfig::Filesystem {
            root: "/cli".into()
        }
    );
    // A realm or an access file alone needs a password file.
    let s = Setup::new("", "", &[]).flag("--auth-realm", "r");
    assert_eq!(
        s.problems(),
        ["--auth-realm: htpasswd authentication needs a password file: set auth.htpasswd.path (or REGISTRY_AUTH_HTPASSWD_PATH)"]
    );
    let s = Setup::new("", "", &[]).flag("--port", "http");
    assert_eq!(
        s.problems(),
        ["--port: not a port number: \"http\" (0 to 65535; 0 = any free port)"]
    );
}

#[test]
fn every_name_in_the_table_is_one_settings() {
    let mut names: Vec<String> = Vec::new();
    for s in SETTINGS {
        names.push(format!("key {}", s.key));
        names.extend(s.also.iter().map(|p| format!("key {p}")));
        names.extend(
            s.legacy
                .iter()
                .map(|l| format!("legacy {}", setting::key_name(l))),
        );
        names.extend(s.variables().map(|v| format!("var {v}")));
        names.extend(s.flag.map(|f| format!("flag {f}")));
        assert!(
            !s.doc.trim().is_empty() && !s.value_name.is_empty(),
            "{}",
            s.key
        );
        assert!(s.flag.is_none_or(|f| f.starts_with("--")), "{}", s.key);
    }
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "a name used twice: {names:?}");
}
