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
