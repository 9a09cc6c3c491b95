//! The configuration as a whole: every level, its precedence, the sources, the errors with
//! `file:line: key`, and `config`'s output, through [`Config::load`] on real files. Files are
//! named without their temporary directory (`registry.yml:3`, `sysconfig:1`).

use super::*;
use std::collections::BTreeMap;
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
            std::fs::write(&path, text).expect("write");
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

    fn flag(mut self, flag: &'static str, value: &str) -> Setup {
        self.opts.cli.push((flag, value.to_string()));
        self
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn load(&self) -> Config {
        Config::load(&self.opts).unwrap_or_else(|e| panic!("errors:\n{e}"))
    }

    fn problems(&self) -> Vec<String> {
        match Config::load(&self.opts) {
            Ok(_) => panic!("expected errors"),
            Err(e) => e.0.iter().map(|e| self.short(e)).collect(),
        }
    }

    fn warned(&self) -> Vec<String> {
        self.load().warnings.iter().map(|w| self.short(w)).collect()
    }

    /// A source, an error or a warning with the files named without their directory.
    fn short(&self, text: impl ToString) -> String {
        let dir = format!("{}/", self.dir.path().display());
        text.to_string().replace(&dir, "")
    }

    /// Where a part (of a group, of the address) came from.
    fn part<T>(&self, value: &Sourced<T>, name: &str) -> String {
        self.short(value.source.part(name))
    }

    /// `config`'s lines by key: (value, source).
    fn rows(&self) -> BTreeMap<String, (String, String)> {
        let text = self.short(self.load().describe());
        let row = |l: &str| {
            let (left, source) = l.split_once(" # ")?;
            let (key, value) = left.split_once(' ')?;
            Some((
                key.to_string(),
                (value.trim().to_string(), source.to_string()),
            ))
        };
        text.lines().filter_map(row).collect()
    }
}

/// htpasswd authentication with the default realm.
fn htpasswd(path: &str, access_file: Option<&str>) -> Option<AuthConfig> {
    Some(AuthConfig::Htpasswd {
        realm: DEFAULT_REALM.into(),
        path: path.into(),
        access_file: access_file.map(PathBuf::from),
    })
}

fn row(value: &str, source: &str) -> Option<(String, String)> {
    Some((value.to_string(), source.to_string()))
}

const LEGACY: &str = "common: &common\n  loglevel: _env:LOGLEVEL:info\nlocal:\n  <<: *common\n  storage: local\n  \
                      storage_path: _env:STORAGE_PATH:/srv/registry\ns3:\n  <<: *common\n  storage: s3\n";

#[test]
fn each_level_wins_over_the_ones_below() {
    let yaml = "version: 0.1\nlog:\n  level: error\n";
    let level = |s: Setup| {
        let c = s.load();
        (c.log_level.value, s.short(c.log_level.source))
    };
    let yml = (LogLevel::Error, "registry.yml:3 (log.level)".into());
    assert_eq!(level(Setup::new("", yaml, &[])), yml);
    let sys = (LogLevel::Warn, "sysconfig:1 (REGISTRY_LOG_LEVEL)".into());
    assert_eq!(
        level(Setup::new("REGISTRY_LOG_LEVEL=warn\n", yaml, &[])),
        sys
    );
    let env = [("REGISTRY_LOG_LEVEL", "debug")];
    let s = Setup::new("REGISTRY_LOG_LEVEL=warn\n", yaml, &env);
    let from_env = (LogLevel::Debug, "environment (REGISTRY_LOG_LEVEL)".into());
    assert_eq!(level(s), from_env);
    let s = Setup::new("REGISTRY_LOG_LEVEL=warn\n", yaml, &env).flag("--log-level", "trace");
    assert_eq!(
        level(s),
        (LogLevel::Trace, "command line (--log-level)".into())
    );
}

#[test]
fn the_address_and_the_port_come_from_their_own_levels() {
    let listen = |s: Setup| {
        let c = s.load();
        (c.listen.value.to_string(), s.short(c.listen.source))
    };
    // The sysconfig file's port replaces only the port of the file's http.addr.
    let s = Setup::new(
        "REGISTRY_PORT=7000\n",
        "version: 0.1\nhttp:\n  addr: 127.0.0.1:6000\n",
        &[],
    );
    let both = "address: registry.yml:3 (http.addr); port: sysconfig:1 (REGISTRY_PORT)";
    assert_eq!(listen(s), ("127.0.0.1:7000".into(), both.into()));
    // Within one level REGISTRY_PORT refines REGISTRY_HTTP_ADDR; the later names win.
    let env = [
        ("REGISTRY_HTTP_ADDR", "127.0.0.1:6000"),
        ("REGISTRY_PORT", "7000"),
        ("GUNICORN_WORKERS", "8"),
        ("REGISTRY_WORKERS", "3"),
        ("REGISTRY_LOGLEVEL", "error"),
        ("REGISTRY_LOG_LEVEL", "debug"),
        ("REGISTRY_STORAGE_DELETE_ENABLED", ""),
    ];
    let c = Setup::new("", "", &env).load();
    assert_eq!(c.listen.value.to_string(), "127.0.0.1:7000");
    assert_eq!((c.workers.value, c.log_level.value), (3, LogLevel::Debug));
    // An empty value counts as unset, as in the shell.
    assert_eq!(c.delete_enabled.source, Source::Default);
    // EnvironmentFile= exports REGISTRY_PORT=5000: still the file's, so a drop-in's
    // REGISTRY_HTTP_ADDR wins over it; a different value is the environment's.
    let env = [
        ("REGISTRY_PORT", "5000"),
        ("REGISTRY_HTTP_ADDR", "127.0.0.1:6000"),
    ];
    let s = Setup::new("REGISTRY_PORT=5000\n", "", &env);
    assert_eq!(listen(s).0, "127.0.0.1:6000");
    let s = Setup::new("REGISTRY_PORT=5000\n", "", &[("REGISTRY_PORT", "5001")]);
    let c = s.load();
    assert_eq!(
        (c.listen.value.port(), s.part(&c.listen, "port")),
        (5001, "environment (REGISTRY_PORT)".into())
    );
    for (written, expected) in [
        ("::1", "[::1]:5000"),
        ("[::]", "[::]:5000"),
        ("'[::1]'", "[::1]:5000"),
    ] {
        let s = Setup::new(&format!("REGISTRY_ADDRESS={written}\n"), "", &[]);
        assert_eq!(listen(s).0, expected, "{written}");
    }
    let s = Setup::new("REGISTRY_ADDRESS=example\n", "", &[]);
    assert_eq!(
        s.problems(),
        ["sysconfig:1: REGISTRY_ADDRESS: not an IP address: \"example\" (e.g. 0.0.0.0, 127.0.0.1, ::, ::1 or [::1])"]
    );
}

#[test]
fn sysconfig_variables_feed_env_references_and_choose_the_yaml_file() {
    let s = Setup::new(
        "STORAGE_PATH=/srv/from-sysconfig\nLOGLEVEL=debug\n",
        LEGACY,
        &[("LOGLEVEL", "warning")],
    );
    let c = s.load();
    assert_eq!(
        (c.storage.value, s.short(c.storage.source)),
        (
            StorageConfig::Filesystem {
                root: "/srv/from-sysconfig".into()
            },
            "registry.yml:6 (local.storage_path: _env:STORAGE_PATH from sysconfig:1)".into()
        )
    );
    assert_eq!(c.log_level.value, LogLevel::Warn);
    // Variables read by _env: are not "unknown".
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let mut s = Setup::new("", LEGACY, &[]);
    let sysconfig = format!("DOCKER_REGISTRY_CONFIG={}\n", s.path("registry.yml"));
    std::fs::write(s.path("sysconfig"), sysconfig).expect("write");
    s.opts.config = None;
    let c = s.load();
    assert_eq!(
        c.config_file.value,
        Some(PathBuf::from(s.path("registry.yml")))
    );
    assert_eq!(c.file_format, FileFormat::Legacy);
    std::fs::write(
        s.path("sysconfig"),
        "DOCKER_REGISTRY_CONFIG=/nonexistent/registry.yml\n",
    )
    .expect("write");
    let problems = s.problems();
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].starts_with("/nonexistent/registry.yml: cannot read this file (given by DOCKER_REGISTRY_CONFIG, sysconfig:1 (DOCKER_REGISTRY_CONFIG)): "),
        "{problems:?}"
    );
}

#[test]
fn every_error_of_every_level_is_reported_with_file_line_and_key() {
    let s = Setup::new(
        "REGISTRY_PORT=http\nGUNICORN_WORKERS=many\nREGISTRY_STORAGE_MAINTENANCE_GC_GRACE=soon\n",
        "common:\n  loglevel: loud\nlocal:\n  storage: local\n  retention:\n    - keeptags: 1\n",
        &[
            ("REGISTRY_STORAGE_DELETE_ENABLED", "maybe"),
            ("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE", "a week"),
            ("REGISTRY_STORAGE_MAINTENANCE_GC_INTERVAL", "weekly"),
            ("REGISTRY_STORAGE_MAINTENANCE_GC_GRACE", "-1h"),
            ("REGISTRY_STORAGE_MAINTENANCE_GC_DELETEUNTAGGED", "2"),
            ("REGISTRY_HTTP_TRUSTFORWARDEDHEADERS", "proxy"),
            ("REGISTRY_HTTP_TLS_CLIENTCAS", "[]"),
        ],
    )
    .flag("--workers", "100000");
    let env = "(set in the environment)";
    let duration = "(e.g. 168h, 30m, 1h30m)";
    assert_eq!(
        s.problems(),
        [
            "registry.yml:2: common.loglevel: unknown log level \"loud\" (use error, warn, info, debug or trace; critical, warning, fatal and panic are accepted too)".to_string(),
            "registry.yml:6: local.retention[0]: a retention rule needs repositories: the repository names it applies to (a pattern: library/*, team/app, or * for every repository)".into(),
            "sysconfig:1: REGISTRY_PORT: not a port number: \"http\" (0 to 65535; 0 = any free port)".into(),
            "sysconfig:2: GUNICORN_WORKERS: not a number of worker threads: \"many\" (0 = one per CPU)".into(),
            format!("sysconfig:3: REGISTRY_STORAGE_MAINTENANCE_GC_GRACE: not a duration: \"soon\" {duration}"),
            format!("REGISTRY_STORAGE_DELETE_ENABLED: expected true or false, found \"maybe\" {env}"),
            format!("REGISTRY_HTTP_TLS_CLIENTCAS: an empty list of files: \"[]\" {env}"),
            format!("REGISTRY_HTTP_TRUSTFORWARDEDHEADERS: expected true or false, found \"proxy\" {env}"),
            format!("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE: not a duration: \"a week\" {duration} {env}"),
            format!("REGISTRY_STORAGE_MAINTENANCE_GC_INTERVAL: not a duration: \"weekly\" {duration} {env}"),
            format!("REGISTRY_STORAGE_MAINTENANCE_GC_GRACE: not a duration: \"-1h\" {duration} {env}"),
            format!("REGISTRY_STORAGE_MAINTENANCE_GC_DELETEUNTAGGED: expected true or false, found \"2\" {env}"),
            "--workers: 100000 worker threads is too many (at most 1024; 0 = one per CPU)".into(),
        ]
    );
}

#[test]
fn what_is_not_used_is_named_in_a_warning() {
    let s = Setup::new(
        "GUNICORN_OPTS=--preload\nSETTINGS_FLAVOR=local\n",
        LEGACY,
        &[("REGISTRY_HTTP_SECRET", "x"), ("HOME", "/root")],
    );
    assert_eq!(
        s.warned(),
        [
            "sysconfig: ignoring variables docker-registry does not use: GUNICORN_OPTS (line 1)",
            "ignoring environment variables docker-registry does not use: REGISTRY_HTTP_SECRET",
        ]
    );
    let s = Setup::new("SETTINGS_FLAVOR=dev\n", "version: 0.1\n", &[]);
    assert_eq!(s.load().file_format, FileFormat::Distribution);
    assert_eq!(
        s.warned(),
        ["SETTINGS_FLAVOR=dev (sysconfig:1 (SETTINGS_FLAVOR)) is not used: registry.yml is a registry:2 file, which has no flavors"]
    );
    assert_eq!(
        Setup::new("", "", &[]).warned(),
        ["registry.yml: the file is empty; using the built-in defaults"]
    );
    assert_eq!(
        Setup::new("", "version: 0.2\n", &[]).problems(),
        ["registry.yml:1: version: unsupported registry:2 configuration version \"0.2\" (expected 0.1)"]
    );
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
    assert_eq!(c.log_formatter.value, LogFormat::Text);
    assert_eq!(
        (c.storage.value, s.short(c.storage.source)),
        (
            StorageConfig::Filesystem {
                root: "/srv/r".into()
            },
            "registry.yml:7 (storage.filesystem.rootdirectory)".into()
        )
    );
    assert!(c.delete_enabled.value && c.readonly.value);
    let (hour, age) = (Duration::from_secs(3600), Duration::from_secs(48 * 3600));
    let purging = UploadPurging {
        enabled: false,
        age,
        interval: hour,
        dry_run: true,
    };
    assert_eq!(c.upload_purging.value, purging);
    assert_eq!(c.listen.value.to_string(), "[::1]:5001");
    assert_eq!(c.tls.value.map(|t| t.key), Some("/k.pem".into()));
    let realm = "basic-realm".into();
    let htpasswd = AuthConfig::Htpasswd {
        realm,
        path: "/etc/htpasswd".into(),
        access_file: None,
    };
    assert_eq!(c.auth.value, Some(htpasswd));
    assert_eq!(
        s.warned(),
        ["registry.yml: ignoring registry:2 settings this registry does not use: storage.cache, http.secret"]
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
        s.part(&c.auth, "signingkey"),
        "registry.yml:12 (auth.token.signingKey)"
    );
    let Some(AuthConfig::Token {
        endpoint: Some(e), ..
    }) = &c.auth.value
    else {
        panic!("{:?}", c.auth)
    };
    assert_eq!(e.access_file, Some("/a.yml".into()));
    // Both spellings name one setting: the later line is the one in effect.
    assert!(!c.gc.value.delete_untagged);
    let untagged = "registry.yml:20 (storage.maintenance.gc.deleteUntagged)";
    assert_eq!(s.part(&c.gc, "delete_untagged"), untagged);
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
            "registry.yml:10: storage.inmemory: storage \"inmemory\" is not supported by docker-registry (filesystem and s3 are)",
            "registry.yml:19: auth.token: token authentication needs auth.token.realm, auth.token.service, auth.token.issuer, auth.token.rootcertbundle (or REGISTRY_AUTH_TOKEN_REALM, REGISTRY_AUTH_TOKEN_SERVICE, REGISTRY_AUTH_TOKEN_ISSUER, REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE)",
        ]
    );
}

#[test]
fn storage_is_where_the_levels_say_or_a_default_that_says_why() {
    let storage = |s: &Setup| {
        let c = s.load();
        let StorageConfig::Filesystem { root } = c.storage.value else {
            panic!("expected the filesystem, found {:?}", c.storage.value);
        };
        (root.display().to_string(), s.short(c.storage.source))
    };
    // registry:2's filesystem driver defaults to /var/lib/registry.
    let s = Setup::new("", "version: 0.1\nstorage:\n  filesystem: {}\n", &[]);
    let why = "default (registry:2's default for storage.filesystem at registry.yml:3)";
    assert_eq!(storage(&s), ("/var/lib/registry".into(), why.into()));
    let s = Setup::new(
        "",
        "",
        &[("STATE_DIRECTORY", "/var/lib/docker-registry-test:/other")],
    );
    let state = (
        "/var/lib/docker-registry-test".into(),
        "default (systemd STATE_DIRECTORY)".into(),
    );
    assert_eq!(storage(&s), state);
    let s = Setup::new("", LEGACY, &[("STATE_DIRECTORY", "/x")]).flag("--storage-path", "/cli");
    assert_eq!(
        storage(&s),
        ("/cli".into(), "command line (--storage-path)".into())
    );
    // The variables choose the filesystem over a flavor's s3, which keeps its storage_path (a
    // key prefix) out of the root.
    let env = [
        ("REGISTRY_STORAGE", "filesystem"),
        ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
    ];
    let s = Setup::new("SETTINGS_FLAVOR=s3\n", FLAVORED, &env);
    assert_eq!(
        storage(&s),
        (
            std::env::temp_dir()
                .join("docker-registry")
                .display()
                .to_string(),
            "default (no HOME: a temporary directory)".into()
        )
    );
    assert!(s.load().delete_enabled.value);
    let env = [("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/srv/fs")];
    assert_eq!(
        Setup::new("SETTINGS_FLAVOR=s3\n", LEGACY, &env).problems(),
        ["registry.yml:9: s3.storage: storage.s3.bucket: no bucket given"]
    );
}

const GC_YAML: &str = "version: 0.1\nstorage:\n  maintenance:\n    gc:\n      interval: 24h\n      grace: 2h\n      \
                       deleteuntagged: true\nretention:\n  - repositories: library/*\n    keeptags: 10\n\
                       \x20 - repositories: '*'\n    keepyoungerthan: 720h\n    protecttags: v*\n";

#[test]
fn gc_settings_take_the_environment_over_sysconfig_over_the_file() {
    let s = Setup::new("", GC_YAML, &[]);
    let c = s.load();
    let (day, hours) = (Duration::from_secs(24 * 3600), Duration::from_secs(7200));
    let gc = GcConfig {
        interval: Some(day),
        grace: hours,
        delete_untagged: true,
        socket: None,
        mark_lifetime: Duration::from_secs(60),
        lease_lifetime: Duration::from_secs(300),
    };
    assert_eq!(c.gc.value, gc);
    assert_eq!(
        s.part(&c.gc, "interval"),
        "registry.yml:5 (storage.maintenance.gc.interval)"
    );
    assert_eq!(c.gc.source.part("socket"), &Source::Default);
    assert_eq!(c.retention.value.len(), 2);
    assert_eq!(
        s.part(&c.retention, "retention[1]"),
        "registry.yml:11 (retention[1])"
    );
    let s = Setup::new(
        "REGISTRY_STORAGE_MAINTENANCE_GC_GRACE=10m\nREGISTRY_STORAGE_MAINTENANCE_GC_INTERVAL=6h\n",
        GC_YAML,
        &[
            ("REGISTRY_STORAGE_MAINTENANCE_GC_INTERVAL", "0"),
            ("REGISTRY_STORAGE_MAINTENANCE_GC_SOCKET", "/run/admin.sock"),
            ("REGISTRY_STORAGE_MAINTENANCE_GC_MARKLIFETIME", "5s"),
        ],
    );
    let c = s.load();
    let gc = GcConfig {
        interval: None,
        grace: Duration::from_secs(600),
        delete_untagged: true,
        socket: Some("/run/admin.sock".into()),
        mark_lifetime: Duration::from_secs(5),
        lease_lifetime: Duration::from_secs(300),
    };
    assert_eq!(c.gc.value, gc);
    let interval = "environment (REGISTRY_STORAGE_MAINTENANCE_GC_INTERVAL)";
    assert_eq!(s.part(&c.gc, "interval"), interval);
    let grace = "sysconfig:1 (REGISTRY_STORAGE_MAINTENANCE_GC_GRACE)";
    assert_eq!(s.part(&c.gc, "grace"), grace);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
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
        (c.storage.value, s.short(c.storage.source)),
        (
            StorageConfig::Filesystem {
                root: "/srv/a:b".into()
            },
            "registry.yml:14 (local.storage_path: _env:STORAGE_PATH from the environment)".into()
        )
    );
    let unset = "registry.yml:3 (common.loglevel: _env:LOGLEVEL unset, the default written there)";
    assert_eq!(
        (c.log_level.value, s.short(c.log_level.source)),
        (LogLevel::Info, unset.into())
    );
    assert_eq!(c.issue.value, "\"docker-registry server\"");
    assert_eq!(c.search_backend.value, None);
    assert_eq!(c.gc.value.interval, Some(Duration::from_secs(24 * 3600)));
    assert_eq!(s.part(&c.gc, "grace"), "registry.yml:7 (common.gc_grace)");
    assert_eq!(c.retention.value[0].keep_tags, Some(3));
    assert_eq!(
        s.part(&c.retention, "x"),
        "registry.yml:9 (common.retention[0])"
    );
    let debug = "registry.yml: flavor local: ignoring keys this registry does not use: debug";
    assert_eq!(s.warned(), [debug]);
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
    let root = "/var/lib/docker-registry".into();
    assert_eq!(c.storage.value, StorageConfig::Filesystem { root });
    assert_eq!(
        s.part(&c.gc, "interval"),
        "registry.yml:23 (dev.gc_interval)"
    );
    assert!(c.retention.value.is_empty());
    assert_eq!(
        s.short(&c.retention.source),
        "registry.yml:24 (dev.retention)"
    );
    let cas = Some(vec!["/a.pem".into(), "/b.pem".into()]);
    assert_eq!(c.tls.value.map(|t| t.client_cas), cas);
    let key = "registry.yml:35 (dev.auth.token.signing_key)";
    assert_eq!(s.part(&c.auth, "signingkey"), key);
    let access = "registry.yml:37 (dev.auth.token.access_file)";
    assert_eq!(s.part(&c.auth, "accessfile"), access);
    let trust =
        "registry.yml:28 (common.trust_forwarded_headers: _env:TRUST_PROXY from the environment)";
    assert_eq!(
        s.short(&c.trust_forwarded_headers.source),
        trust.replace("common", "dev")
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
    let s = Setup::new("SETTINGS_FLAVOR=staging\n", LEGACY, &[]);
    assert_eq!(
        s.problems(),
        ["registry.yml: SETTINGS_FLAVOR: flavor \"staging\" (sysconfig:1 (SETTINGS_FLAVOR)) is not a section of this file; flavors available: common, local, s3"]
    );
}

#[test]
fn the_auth_method_is_named_or_implied_by_its_keys() {
    let path = "set auth.htpasswd.path (or REGISTRY_AUTH_HTPASSWD_PATH)";
    assert_eq!(
        Setup::new("", "", &[("REGISTRY_AUTH", "htpasswd")]).problems(),
        [format!("REGISTRY_AUTH: htpasswd authentication needs a password file: {path} (set in the environment)")]
    );
    let c = Setup::new(
        "REGISTRY_AUTH_HTPASSWD_PATH=/etc/registry/htpasswd\n",
        "",
        &[],
    )
    .load();
    assert_eq!(c.auth.value, htpasswd("/etc/registry/htpasswd", None));
    let s = Setup::new("", "", &[("REGISTRY_AUTH", "ldap")]);
    assert_eq!(
        s.problems(),
        ["REGISTRY_AUTH: authentication \"ldap\" is not supported (only htpasswd and token); refusing to start without the authentication asked for (set in the environment)"]
    );
    let token = [("REGISTRY_AUTH_TOKEN_REALM", "https://r.example/token")];
    let s = Setup::new("REGISTRY_AUTH_HTPASSWD_PATH=/etc/r/users\n", "", &token);
    assert_eq!(
        s.problems(),
        ["REGISTRY_AUTH_TOKEN_REALM: both token and htpasswd settings are given (htpasswd: sysconfig:1 (REGISTRY_AUTH_HTPASSWD_PATH)): choose one with REGISTRY_AUTH=token or htpasswd (auth: in a file) (set in the environment)"]
    );
    // Naming the method settles it.
    let access = [("REGISTRY_AUTH_HTPASSWD_ACCESSFILE", "/etc/r/access.yml")];
    let s = Setup::new(
        "REGISTRY_AUTH_HTPASSWD_PATH=/etc/r/users\nREGISTRY_AUTH=htpasswd\n",
        "",
        &access,
    );
    let expected = htpasswd("/etc/r/users", Some("/etc/r/access.yml"));
    assert_eq!(s.load().auth.value, expected);
}

#[test]
fn token_auth_needs_its_four_settings_and_the_endpoint_its_users() {
    assert_eq!(
        Setup::new("", "", &[("REGISTRY_AUTH", "token")]).problems(),
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
    assert_eq!(
        Setup::new("", yaml, &[]).problems(),
        ["registry.yml:8: auth.token.signingkey: the built-in token endpoint needs its users: set auth.token.htpasswd (or REGISTRY_AUTH_TOKEN_HTPASSWD) too"]
    );
    // The sysconfig file supplies the users; the environment the access file, which
    // --access-file alone replaces.
    let access = [("REGISTRY_AUTH_TOKEN_ACCESSFILE", "/etc/r/access.yml")];
    let s = Setup::new("REGISTRY_AUTH_TOKEN_HTPASSWD=/etc/r/users\n", yaml, &access);
    let c = s.load();
    let endpoint = TokenEndpoint {
        htpasswd: "/etc/r/users".into(),
        access_file: Some("/etc/r/access.yml".into()),
        signing_key: "/etc/r/token.key".into(),
    };
    let token = AuthConfig::Token {
        realm: "https://r.example/token".into(),
        service: "r.example".into(),
        issuer: "r.example".into(),
        rootcertbundle: "/etc/r/token.crt".into(),
        endpoint: Some(endpoint),
    };
    assert_eq!(c.auth.value, Some(token));
    let bundle = "registry.yml:7 (auth.token.rootcertbundle)";
    assert_eq!(s.part(&c.auth, "rootcertbundle"), bundle);
    let access = "environment (REGISTRY_AUTH_TOKEN_ACCESSFILE)";
    assert_eq!(s.part(&c.auth, "accessfile"), access);
    let s = s.flag("--access-file", "/cli/access.yml");
    let c = s.load();
    let Some(AuthConfig::Token {
        endpoint: Some(e), ..
    }) = &c.auth.value
    else {
        panic!("{:?}", c.auth)
    };
    assert_eq!(e.access_file, Some(PathBuf::from("/cli/access.yml")));
    assert_eq!(
        s.part(&c.auth, "accessfile"),
        "command line (--access-file)"
    );
    assert_eq!(
        s.part(&c.auth, "htpasswd"),
        "sysconfig:1 (REGISTRY_AUTH_TOKEN_HTPASSWD)"
    );
}

#[test]
fn tls_needs_a_certificate_and_its_key_and_flags_override_them_key_by_key() {
    let yaml = "version: 0.1\nhttp:\n  trustforwardedheaders: true\n  tls:\n    clientcas:\n      - /ca1.pem\n      - /ca2.pem\n";
    assert_eq!(
        Setup::new("", yaml, &[]).problems(),
        ["registry.yml:5: http.tls.clientcas: client CAs (mutual TLS) without a TLS certificate and key: set http.tls.certificate and http.tls.key (or REGISTRY_HTTP_TLS_CERTIFICATE and _KEY) too"]
    );
    // The flags give the certificate; the file's client CAs stay (no silent downgrade).
    let s = Setup::new("", yaml, &[])
        .flag("--tls-cert", "/c.pem")
        .flag("--tls-key", "/k.pem");
    let c = s.load();
    let (certificate, key) = ("/c.pem".into(), "/k.pem".into());
    let client_cas = vec!["/ca1.pem".into(), "/ca2.pem".into()];
    assert_eq!(
        c.tls.value,
        Some(TlsConfig {
            certificate,
            key,
            client_cas
        })
    );
    assert!(c.trust_forwarded_headers.value);
    let s = s
        .flag("--tls-client-ca", "/cli-ca.pem")
        .flag("--trust-forwarded-headers", "false");
    let c = s.load();
    assert_eq!(
        c.tls.value.as_ref().map(|t| t.client_cas.clone()),
        Some(vec![PathBuf::from("/cli-ca.pem")])
    );
    assert_eq!(
        s.part(&c.tls, "clientcas"),
        "command line (--tls-client-ca)"
    );
    let trust = &c.trust_forwarded_headers;
    let flag = Source::Cli("--trust-forwarded-headers".into());
    assert_eq!((trust.value, &trust.source), (false, &flag));
    let certificate = "version: 0.1\nhttp:\n  tls:\n    certificate: /c.pem\n";
    assert_eq!(
        Setup::new("", certificate, &[]).problems(),
        ["registry.yml:4: http.tls.certificate: a TLS certificate without its key: set http.tls.key (or REGISTRY_HTTP_TLS_KEY) too"]
    );
    let c = Setup::new("", certificate, &[("REGISTRY_HTTP_TLS_KEY", "/k.pem")]).load();
    assert_eq!(c.tls.value.map(|t| t.key), Some("/k.pem".into()));
}

#[test]
fn flags_say_what_they_are_for() {
    let token = "version: 0.1\nauth:\n  token:\n    realm: https://r.example/token\n    service: r\n    issuer: r\n    \
                 rootcertbundle: /b.pem\n";
    // --htpasswd over a file's token authentication asks for htpasswd.
    let s = Setup::new("", token, &[]).flag("--htpasswd", "/users");
    let c = s.load();
    assert_eq!(c.auth.value, htpasswd("/users", None));
    assert_eq!(s.part(&c.auth, "method"), "command line (--htpasswd)");
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
    // A realm or an access file alone needs a password file.
    assert_eq!(
        Setup::new("", "", &[]).flag("--auth-realm", "r").problems(),
        ["--auth-realm: htpasswd authentication needs a password file: set auth.htpasswd.path (or REGISTRY_AUTH_HTPASSWD_PATH)"]
    );
}

#[test]
fn connection_limits_come_from_every_level() {
    let yaml = "version: 0.1\nhttp:\n  timeouts:\n    header: 1m30s\n    bodyidle: 10s\n  connections:\n    max: 500\n";
    let env = [("REGISTRY_HTTP_CONNECTIONS_MAX", "100")];
    let s = Setup::new("REGISTRY_HTTP_TIMEOUTS_IDLE=5m\n", yaml, &env);
    let c = s.load();
    let limits = Connections {
        header_timeout: Duration::from_secs(90),
        body_idle_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(300),
        max: 100,
        per_client: 256,
    };
    assert_eq!(c.connections.value, limits);
    let header = "registry.yml:4 (http.timeouts.header)";
    assert_eq!(s.part(&c.connections, "header_timeout"), header);
    let idle = "sysconfig:1 (REGISTRY_HTTP_TIMEOUTS_IDLE)";
    assert_eq!(s.part(&c.connections, "idle_timeout"), idle);
    let s = s
        .flag("--max-connections-per-client", "8")
        .flag("--header-timeout", "5s");
    let c = s.load();
    let header = Duration::from_secs(5);
    assert_eq!(
        (
            c.connections.value.per_client,
            c.connections.value.header_timeout
        ),
        (8, header)
    );
    let flag = "command line (--max-connections-per-client)";
    assert_eq!(s.part(&c.connections, "per_client"), flag);
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
    let s = Setup::new("", "", &[])
        .flag("--idle-timeout", "1m30s")
        .flag("--max-connections", "0");
    let rows = s.rows();
    assert_eq!(
        rows.get("http.timeouts.header").cloned(),
        row("30s", "default")
    );
    assert_eq!(
        rows.get("http.timeouts.bodyidle").cloned(),
        row("1m", "default")
    );
    let idle = row("1m 30s", "command line (--idle-timeout)");
    assert_eq!(rows.get("http.timeouts.idle").cloned(), idle);
    let max = row(
        "0 (automatic: from the limit of open files)",
        "command line (--max-connections)",
    );
    assert_eq!(rows.get("http.connections.max").cloned(), max);
    assert_eq!(
        rows.get("http.connections.perclient").cloned(),
        row("256", "default")
    );
}

#[test]
fn config_shows_every_setting_with_its_source() {
    let env = [("REGISTRY_STORAGE_DELETE_ENABLED", "true")];
    let rows = Setup::new("GUNICORN_WORKERS=3\n", LEGACY, &env).rows();
    let get = |key: &str| rows.get(key).cloned();
    assert_eq!(get("workers"), row("3", "sysconfig:1 (GUNICORN_WORKERS)"));
    let delete = row("true", "environment (REGISTRY_STORAGE_DELETE_ENABLED)");
    assert_eq!(get("storage.delete.enabled"), delete);
    let root =
        "registry.yml:6 (local.storage_path: _env:STORAGE_PATH unset, the default written there)";
    assert_eq!(
        get("storage.filesystem.rootdirectory"),
        row("/srv/registry", root)
    );
    let level = "registry.yml:2 (common.loglevel: _env:LOGLEVEL unset, the default written there)";
    assert_eq!(get("log.level"), row("info", level));
    assert_eq!(get("http.addr"), row("0.0.0.0:5000", "default"));
    assert_eq!(get("auth"), row("(none)", "default"));
    assert_eq!(get("http.tls"), row("(none)", "default"));
    assert_eq!(get("retention"), row("(none)", "default"));
    let interval = row("off (only garbage-collect --online)", "default");
    assert_eq!(get("storage.maintenance.gc.interval"), interval);
    let socket = row("docker-registry-admin.sock in the storage root", "default");
    assert_eq!(get("storage.maintenance.gc.socket"), socket);
    // A choice shows its own settings only: no auth.* without auth, no other driver's keys.
    assert!(!rows.keys().any(|k| k.starts_with("auth.")), "{rows:?}");
    let env = [("REGISTRY_STORAGE_MAINTENANCE_GC_DELETEUNTAGGED", "false")];
    let rows = Setup::new("", GC_YAML, &env).rows();
    let get = |key: &str| rows.get(key).cloned();
    let interval = row("1day", "registry.yml:5 (storage.maintenance.gc.interval)");
    assert_eq!(get("storage.maintenance.gc.interval"), interval);
    let untagged = row(
        "false",
        "environment (REGISTRY_STORAGE_MAINTENANCE_GC_DELETEUNTAGGED)",
    );
    assert_eq!(get("storage.maintenance.gc.deleteuntagged"), untagged);
    let first = row(
        "repositories=library/* keeptags=10",
        "registry.yml:9 (retention[0])",
    );
    assert_eq!(get("retention[0]"), first);
    let second = "repositories=* keepyoungerthan=30days protecttags=v*";
    assert_eq!(
        get("retention[1]"),
        row(second, "registry.yml:11 (retention[1])")
    );
    assert_eq!(get("retention"), None);
}

#[test]
fn config_keeps_its_columns_aligned_for_long_values() {
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
    let column = |l: &str| l.find(" # ").map(|i| l[..i].chars().count());
    let mut columns: Vec<usize> = text.lines().filter_map(column).collect();
    columns.dedup();
    assert_eq!(columns.len(), 1, "{text}");
    let clientcas = s.rows().get("http.tls.clientcas").cloned();
    assert_eq!(
        clientcas,
        row(
            "/a.pem, /b.pem",
            "environment (REGISTRY_HTTP_TLS_CLIENTCAS)"
        )
    );
    assert!(text.contains(&format!(" {long} ")), "{text}");
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

/// The man page and the shipped file name every key (a registry:2 key, or its section with
/// the keys listed after it), so a new row of the table cannot go undocumented.
#[test]
fn every_setting_is_documented_in_the_man_page_and_the_shipped_file() {
    let man = include_str!("../../packaging/man/docker-registry.yml.5").replace("\\-", "-");
    let shipped = include_str!("../../etc/docker-registry.yml");
    for s in SETTINGS {
        for key in s.legacy {
            assert!(man.contains(key) && shipped.contains(key), "{key}");
        }
        let section = s.key.rsplit_once('.').map_or(s.key, |(section, _)| section);
        let listed = man.contains(s.key) || man.contains(&format!("{section} \""));
        assert!(!s.file || listed, "{}", s.key);
    }
}

#[test]
fn secrets_are_masked_once_a_level_sets_them() {
    let secret = Setting {
        secret: true,
        ..Setting::BASE
    };
    let env = Source::Env("REGISTRY_STORAGE_S3_SECRETKEY".into());
    assert_eq!(describe::shown(&secret, "s3cr3t".into(), &env), "********");
    let unset = describe::shown(&secret, "(none)".into(), &Source::Default);
    assert_eq!(unset, "(none)");
    let plain = describe::shown(&Setting::BASE, "visible".into(), &env);
    assert_eq!(plain, "visible");
}

/// The options a configuration asks the S3 driver for.
fn s3_options(c: &Config) -> &crate::storage::S3Options {
    match &c.storage.value {
        StorageConfig::S3(o) => o,
        other => panic!("expected s3 storage, found {other:?}"),
    }
}

#[test]
fn s3_from_a_registry_2_file_and_its_variables() {
    let s = Setup::new(
        "",
        "version: 0.1\nstorage:\n  s3:\n    bucket: images\n    region: eu-west-1\n    \
         regionendpoint: http://127.0.0.1:9000\n    rootdirectory: /registry\n    \
         chunksize: 5242880\n    secure: false\n    accesskey: AKID\n    secretkey: s3cr3t-value\n  \
         delete:\n    enabled: true\n",
        &[
            ("REGISTRY_STORAGE_S3_BUCKET", "other"),
            ("REGISTRY_STORAGE_S3_STORAGECLASS", "NONE"),
        ],
    );
    let c = s.load();
    let o = s3_options(&c);
    assert_eq!(
        (
            o.bucket.as_str(),
            o.region.as_str(),
            o.regionendpoint.as_str()
        ),
        ("other", "eu-west-1", "http://127.0.0.1:9000")
    );
    assert_eq!(o.rootdirectory, "/registry");
    assert_eq!((o.chunksize, o.secure, o.v4auth), (5 << 20, false, true));
    assert_eq!(
        (o.accesskey.as_str(), o.storageclass.as_str()),
        ("AKID", "NONE")
    );
    assert_eq!(
        o.multipartcopythresholdsize,
        32 << 20,
        "registry:2's default"
    );
    assert!(c.delete_enabled.value);
    let shown = c.describe();
    assert!(!shown.contains("s3cr3t-value"), "{shown}");
    assert!(shown.contains("storage.s3.bucket"), "{shown}");
    assert!(
        !shown.contains("storage.filesystem.rootdirectory"),
        "{shown}"
    );
    let bucket = shown
        .lines()
        .find(|l| l.starts_with("storage.s3.bucket "))
        .expect("bucket line");
    assert!(bucket.contains("REGISTRY_STORAGE_S3_BUCKET"), "{bucket}");
}

/// The legacy S3 flavor as the old registry's users wrote it: everything through `_env:`,
/// the endpoint from boto_host and boto_port, `storage_path` the key prefix.
#[test]
fn s3_from_the_legacy_flavor_with_its_environment() {
    let yaml = "common: &common\n  loglevel: info\ns3:\n  <<: *common\n  storage: s3\n  \
                s3_region: _env:AWS_REGION\n  s3_bucket: _env:AWS_BUCKET\n  \
                boto_bucket: _env:AWS_BUCKET\n  storage_path: _env:STORAGE_PATH:/registry\n  \
                s3_encrypt: _env:AWS_ENCRYPT:true\n  s3_secure: _env:AWS_SECURE:true\n  \
                s3_access_key: _env:AWS_KEY\n  s3_secret_key: _env:AWS_SECRET\n  \
                s3_use_sigv4: _env:AWS_USE_SIGV4\n  boto_host: _env:AWS_HOST\n  \
                boto_port: _env:AWS_PORT\n  boto_calling_format: _env:AWS_CALLING_FORMAT\n";
    let env = [
        ("AWS_BUCKET", "images"),
        ("AWS_HOST", "minio.internal"),
        ("AWS_PORT", "9000"),
        ("AWS_SECURE", "false"),
        ("AWS_KEY", "AKID"),
        ("AWS_SECRET", "hush"),
        (
            "AWS_CALLING_FORMAT",
            "boto.s3.connection.OrdinaryCallingFormat",
        ),
    ];
    let s = Setup::new("SETTINGS_FLAVOR=s3\n", yaml, &env);
    let c = s.load();
    let o = s3_options(&c);
    assert_eq!(o.bucket, "images");
    assert_eq!(o.regionendpoint, "http://minio.internal:9000");
    assert_eq!(o.forcepathstyle, Some(true));
    assert_eq!(o.rootdirectory, "/registry");
    assert!(o.encrypt && !o.secure && o.v4auth);
    assert_eq!(
        (o.accesskey.as_str(), o.secretkey.as_str()),
        ("AKID", "hush")
    );
    let endpoint = c
        .describe()
        .lines()
        .find(|l| l.starts_with("storage.s3.regionendpoint "))
        .expect("endpoint line")
        .to_string();
    assert!(endpoint.contains("_env:AWS_HOST"), "{endpoint}");
    // A written regionendpoint wins over boto_host.
    let mut env = env.to_vec();
    env.push(("REGISTRY_STORAGE_S3_REGIONENDPOINT", "https://s3.example"));
    let s = Setup::new("SETTINGS_FLAVOR=s3\n", yaml, &env);
    assert_eq!(s3_options(&s.load()).regionendpoint, "https://s3.example");
}

#[test]
fn bad_s3_values_name_their_file_line_and_key() {
    let s = Setup::new(
        "",
        "version: 0.1\nstorage:\n  s3:\n    bucket: b\n    region: r\n    chunksize: 1024\n",
        &[],
    );
    assert_eq!(
        s.problems(),
        ["registry.yml:6: storage.s3.chunksize: 1024 is outside 5242880..=5368709120 bytes"]
    );
    let s = Setup::new(
        "",
        "version: 0.1\nstorage:\n  s3:\n    region: r\n    chunksize: ten\n",
        &[],
    );
    assert_eq!(
        s.problems(),
        [
            "registry.yml:5: storage.s3.chunksize: not a whole number of bytes: \"ten\" (e.g. 10485760)",
            "registry.yml:3: storage.s3: storage.s3.bucket: no bucket given",
        ]
    );
}

/// Redirects: on in registry:2 files and by default (registry:2's S3 driver redirects), off
/// in a legacy flavored file unless `storage_redirect: true` (the old registry served), and
/// storage.redirect.disable from any level wins over both.
#[test]
fn redirects_follow_the_file_format_their_legacy_key_and_registry_2_key() {
    let disabled =
        |yaml: &str, env: &[(&str, &str)]| Setup::new("", yaml, env).load().redirect_disable.value;
    assert!(!disabled("version: 0.1\n", &[]));
    assert!(disabled(
        "version: 0.1\nstorage:\n  redirect:\n    disable: true\n",
        &[]
    ));
    assert!(disabled("local:\n  storage: local\n", &[]));
    assert!(!disabled(
        "local:\n  storage: local\n  storage_redirect: true\n",
        &[]
    ));
    assert!(disabled(
        "local:\n  storage: local\n  storage_redirect: false\n",
        &[]
    ));
    let env = [("REGISTRY_STORAGE_REDIRECT_DISABLE", "false")];
    assert!(!disabled("local:\n  storage: local\n", &env));
}

#[test]
fn the_debug_listener_from_both_file_formats_variables_and_flags() {
    let r2 = Setup::new(
        "",
        "version: 0.1\nhttp:\n  debug:\n    addr: 127.0.0.1:5001\n    prometheus:\n      enabled: true\n      path: /m\n",
        &[],
    );
    let d = r2.load().debug.value;
    assert_eq!(
        (d.addr, d.prometheus_enabled, d.prometheus_path.as_str()),
        (Some("127.0.0.1:5001".parse().expect("addr")), true, "/m")
    );
    let flavored = Setup::new(
        "",
        "common:\n  debug_addr: _env:DEBUG_ADDR:127.0.0.1:5002\n  prometheus_enabled: true\nlocal:\n  prometheus_path: /metrics2\n",
        &[("REGISTRY_HTTP_DEBUG_PROMETHEUS_PATH", "/from-env")],
    );
    let c = flavored.load();
    assert_eq!(
        c.debug.value.addr,
        Some("127.0.0.1:5002".parse().expect("addr"))
    );
    assert_eq!(c.debug.value.prometheus_path, "/from-env");
    assert_eq!(
        flavored.part(&c.debug, "prometheus_path"),
        "environment (REGISTRY_HTTP_DEBUG_PROMETHEUS_PATH)"
    );
    let flags =
        Setup::new("", "", &[("REGISTRY_HTTP_DEBUG_ADDR", ":5003")]).flag("--metrics", "true");
    let d = flags.load().debug.value;
    assert_eq!(
        (d.addr.map(|a| a.port()), d.prometheus_enabled),
        (Some(5003), true)
    );
    // Metrics without the listener that serves them: said, not silently dropped.
    let alone = Setup::new(
        "",
        "",
        &[("REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED", "true")],
    );
    let problems = alone.problems();
    assert!(problems[0].contains("set http.debug.addr"), "{problems:?}");
}

#[test]
fn notification_endpoints_from_both_file_formats() {
    let r2 = Setup::new(
        "",
        "version: 0.1\nnotifications:\n  events:\n    includereferences: true\n  endpoints:\n    - name: ci\n      url: https://ci.example.com/events\n      \
         headers:\n        Authorization: [Bearer x, Bearer y]\n      timeout: 2s\n      threshold: 3\n      backoff: 250ms\n      \
         ignoredmediatypes: [application/octet-stream]\n      ignore:\n        actions: [pull]\n    - name: off\n      url: http://x\n      disabled: true\n  \
         queue:\n    limit: 7\n",
        &[("REGISTRY_NOTIFICATIONS_QUEUE_DIRECTORY", "/var/q")],
    );
    let c = r2.load();
    let e = &c.notifications.value;
    assert_eq!(e.len(), 2);
    assert_eq!(
        (e[0].name.as_str(), e[0].url.as_str()),
        ("ci", "https://ci.example.com/events")
    );
    assert_eq!(e[0].headers.len(), 2);
    assert_eq!((e[0].timeout, e[0].threshold), (Duration::from_secs(2), 3));
    assert_eq!(e[0].backoff, Duration::from_millis(250));
    assert_eq!(e[0].ignored_media_types, ["application/octet-stream"]);
    assert_eq!(e[0].ignore_actions, ["pull"]);
    assert!(e[1].disabled);
    assert_eq!(c.events_queue.value.limit, 7);
    assert_eq!(c.events_queue.value.directory, Some("/var/q".into()));
    assert_eq!(
        r2.warned(),
        ["registry.yml: ignoring registry:2 settings this registry does not use: notifications.events"]
    );
    let flavored = Setup::new(
        "",
        "local:\n  notifications:\n    endpoints:\n      - name: hook\n        url: http://127.0.0.1:1/\n  notifications_queue_limit: 9\n",
        &[],
    );
    let c = flavored.load();
    assert_eq!(c.notifications.value[0].name, "hook");
    assert_eq!(c.events_queue.value.limit, 9);
    let bad = Setup::new(
        "",
        "version: 0.1\nnotifications:\n  endpoints:\n    - name: x\n      uri: http://typo\n",
        &[],
    );
    let problems = bad.problems();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("unknown endpoint key \"uri\"")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("needs an http:// or https:// url")),
        "{problems:?}"
    );
}

/// With no region written, the S3 region is the AWS CLI's: `AWS_REGION`, else
/// `AWS_DEFAULT_REGION`, else the profile's `region` in `~/.aws/config`; `config` says which.
#[test]
fn s3_region_from_the_aws_variables_and_config_file() {
    let yaml = "version: 0.1\nstorage:\n  s3:\n    bucket: images\n";
    let region = |env: &[(&str, &str)]| {
        let mut s = Setup::new("", yaml, env);
        let home = s.path("home");
        std::fs::create_dir_all(s.dir.path().join("home/.aws")).expect("mkdir");
        std::fs::write(
            s.dir.path().join("home/.aws/config"),
            "[default]\nregion = eu-west-1\n\n[profile ops]\noutput = json\nregion = eu-central-1\n",
        )
        .expect("write");
        s.opts.env.insert("HOME".into(), home);
        s.rows()["storage.s3.region"].clone()
    };
    let from = |value: &str, source: &str| (value.to_string(), source.to_string());
    assert_eq!(
        region(&[]),
        from("eu-west-1", "home/.aws/config:2 ([default] region)")
    );
    assert_eq!(
        region(&[("AWS_PROFILE", "ops")]),
        from("eu-central-1", "home/.aws/config:6 ([profile ops] region)")
    );
    assert_eq!(
        region(&[("AWS_DEFAULT_REGION", "us-west-2")]),
        from("us-west-2", "environment (AWS_DEFAULT_REGION)")
    );
    assert_eq!(
        region(&[
            ("AWS_REGION", "ap-south-1"),
            ("AWS_DEFAULT_REGION", "us-west-2")
        ]),
        from("ap-south-1", "environment (AWS_REGION)")
    );
    // A region written in the file wins.
    let s = Setup::new(
        "",
        "version: 0.1\nstorage:\n  s3:\n    bucket: images\n    region: sa-east-1\n",
        &[("AWS_REGION", "ap-south-1")],
    );
    assert_eq!(s.rows()["storage.s3.region"].0, "sa-east-1");
}

/// `REGISTRY_NOTIFICATIONS_ENDPOINTS` holds the list as YAML, as distribution reads a list
/// from a variable (flow style, or a block sequence), in the environment or the sysconfig
/// file (the legacy setup's environment file), replacing a file's list; a wrong one is an
/// error naming the variable.
#[test]
fn notification_endpoints_from_a_variable_holding_yaml() {
    let file = "version: 0.1\nnotifications:\n  endpoints:\n    - name: from-file\n      url: http://file/\n";
    let flow = Setup::new(
        "",
        file,
        &[(
            "REGISTRY_NOTIFICATIONS_ENDPOINTS",
            "[{name: hook, url: 'http://127.0.0.1:9/events', timeout: 2s, headers: {Authorization: [Bearer t]}}]",
        )],
    );
    let c = flow.load();
    let e = &c.notifications.value;
    assert_eq!(e.len(), 1);
    assert_eq!(
        (e[0].name.as_str(), e[0].url.as_str()),
        ("hook", "http://127.0.0.1:9/events")
    );
    assert_eq!(e[0].timeout, Duration::from_secs(2));
    assert_eq!(
        e[0].headers,
        [("Authorization".to_owned(), "Bearer t".to_owned())]
    );
    assert!(flow.warned().is_empty(), "{:?}", flow.warned());
    let block = Setup::new(
        "",
        "",
        &[(
            "REGISTRY_NOTIFICATIONS_ENDPOINTS",
            "- name: a\n  url: http://a/\n- name: b\n  url: http://b/\n  ignore:\n    actions: [pull]\n",
        )],
    );
    let c = block.load();
    let names: Vec<&str> = c
        .notifications
        .value
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(c.notifications.value[1].ignore_actions, ["pull"]);
    let sysconfig = Setup::new(
        "REGISTRY_NOTIFICATIONS_ENDPOINTS=\"[{name: legacy, url: 'http://l/'}]\"\n",
        "",
        &[],
    );
    assert_eq!(sysconfig.load().notifications.value[0].name, "legacy");
    let bad = Setup::new(
        "",
        "",
        &[(
            "REGISTRY_NOTIFICATIONS_ENDPOINTS",
            "[{name: x, uri: 'http://typo'}]",
        )],
    );
    let problems = bad.problems();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("REGISTRY_NOTIFICATIONS_ENDPOINTS")
                && p.contains("unknown endpoint key")),
        "{problems:?}"
    );
}

/// `REGISTRY_PROXY_UPSTREAMS` holds the pull-through cache's upstreams as YAML, like
/// `REGISTRY_NOTIFICATIONS_ENDPOINTS`: in the environment or the sysconfig file, replacing
/// a file's list, shown with the variable as its source; a misspelt key is an error naming it.
#[test]
fn proxy_upstreams_from_a_variable_holding_yaml() {
    let file = "version: 0.1\nproxy:\n  upstreams:\n    - prefix: 'file/**'\n      remoteurl: http://file/\n";
    let env = Setup::new(
        "",
        file,
        &[(
            "REGISTRY_PROXY_UPSTREAMS",
            "[{prefix: 'library/**', remoteurl: 'https://registry-1.docker.io', ttl: 1h, namespaces: [docker.io]}, {prefix: 'quay/**', remoteurl: 'https://quay.io', stripprefix: true}]",
        )],
    );
    let c = env.load();
    let u = &c.proxy_upstreams.value;
    assert_eq!(u.len(), 2);
    assert_eq!(
        (u[0].prefix.as_str(), u[0].remoteurl.as_str()),
        ("library/**", "https://registry-1.docker.io")
    );
    assert_eq!(u[0].ttl, Some(Duration::from_secs(3600)));
    assert_eq!(u[0].namespaces, ["docker.io"]);
    assert!(u[1].strip_prefix);
    assert!(env.warned().is_empty(), "{:?}", env.warned());
    let rows = env.rows();
    let (_, source) = &rows["proxy.upstreams[0]"];
    assert!(source.contains("REGISTRY_PROXY_UPSTREAMS"), "{source}");
    let sysconfig = Setup::new(
        "REGISTRY_PROXY_UPSTREAMS=\"- prefix: 'mirror/**'\n  remoteurl: http://m/\n\"\n",
        "",
        &[],
    );
    assert_eq!(
        sysconfig.load().proxy_upstreams.value[0].prefix,
        "mirror/**"
    );
    let bad = Setup::new(
        "",
        "",
        &[(
            "REGISTRY_PROXY_UPSTREAMS",
            "[{prefx: 'a/**', remoteurl: 'http://a/'}]",
        )],
    );
    let problems = bad.problems();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("REGISTRY_PROXY_UPSTREAMS") && p.contains("prefx")),
        "{problems:?}"
    );
    let not_yaml = Setup::new("", "", &[("REGISTRY_PROXY_UPSTREAMS", "[{prefix: ")]);
    let problems = not_yaml.problems();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("REGISTRY_PROXY_UPSTREAMS: expected YAML for a list")),
        "{problems:?}"
    );
}
