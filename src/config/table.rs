//! The settings table: every setting once, with its key path in a registry:2 file, its keys
//! in the legacy flavored file, its variables, its flag, its kind, its default and the
//! [`Config`] field it fills. Reading every level, the precedence, `docker-registry config`,
//! `config --check` and the command line's flags all come from here, so a new setting is a
//! row here plus the code that uses its field. (The macro is in `setting.rs`; the kinds, in
//! `kinds.rs`.)
//!
//! Singles are fields of their own; a group's fields share one `Sourced` field, whose source
//! has a part per field. The `pub(crate)` fields feed what [`Config::resolve`] builds from
//! several of them (`listen`, `storage`, `auth`, `tls`); the code uses those.
//!
//! Adding a setting: a row (in a group when it belongs with others), and the code that reads
//! its field; the variable comes from the key path, the documentation test names the man page
//! and the shipped file. A row under a choice's section (`storage.s3.bucket` under `storage`,
//! as `auth.token.realm` is under `auth`) is read inside that section of a registry:2 file
//! and shown by `config` only while that choice is in effect; `secret: true` masks its value
//! there (`storage.s3.secretkey`).

use super::kinds::*;
use super::model::*;
use super::setting::{read, settings, Choice, Kind, Setting};
use super::source::{with_part, Sourced};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

const UNSPECIFIED: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// registry:2's storage drivers: `storage.<driver>` chooses one; all but the filesystem are
/// refused (running on the wrong storage would be worse than not starting).
static STORAGE_DRIVERS: Choice = Choice {
    names: &[
        "filesystem",
        "inmemory",
        "s3",
        "azure",
        "gcs",
        "swift",
        "oss",
        "cloudfront",
        "redirect-only",
    ],
    what: "storage driver",
    hint: "",
    // registry:2's filesystem driver defaults to /var/lib/registry; a file written for it
    // that omits rootdirectory means that directory, not ours.
    defaults: &[(
        "filesystem",
        "storage.filesystem.rootdirectory",
        DISTRIBUTION_DEFAULT_ROOT,
    )],
};

/// `auth.<method>`: any key names a method; one we do not have is refused.
static AUTH_METHODS: Choice = Choice {
    names: &[],
    what: "authentication method",
    hint: " (the built-in token endpoint's users are auth.token.htpasswd)",
    defaults: &[],
};

settings! {
    /// The effective configuration of one daemon: every setting of the table with where its
    /// value came from, and what is resolved from several of them.
    #[derive(Debug, Clone)]
    pub struct Config {
        /// The address to bind: `http.addr`, refined by `REGISTRY_ADDRESS`/`REGISTRY_PORT`.
        pub listen: Sourced<SocketAddr> = Sourced::default_value(SocketAddr::new(UNSPECIFIED, 5000)),
        /// The legacy flavor section in use (`SETTINGS_FLAVOR`).
        pub flavor: Sourced<String> = Sourced::default_value("local".into()),
        /// The YAML file read, if any existed.
        pub config_file: Sourced<Option<PathBuf>> = Sourced::default_value(None),
        /// The format of that file.
        pub file_format: FileFormat = FileFormat::None,
        /// The sysconfig file read, if any existed.
        pub sysconfig_file: Sourced<Option<PathBuf>> = Sourced::default_value(None),
        pub storage: Sourced<StorageConfig> = Sourced::default_value(StorageConfig::Filesystem { root: PathBuf::new() }),
        /// Retention rules, in order; the first rule whose pattern matches a repository
        /// applies. Only files set them, a list as a whole (see `retention.rs`).
        pub retention: Sourced<Vec<RetentionRule>> = Sourced::default_value(Vec::new()),
        /// registry:2's `notifications.endpoints`, read from files only (see
        /// `notifications.rs`).
        pub notifications: Sourced<Vec<NotificationEndpoint>> = Sourced::default_value(Vec::new()),
        pub auth: Sourced<Option<AuthConfig>> = Sourced::default_value(None),
        pub tls: Sourced<Option<TlsConfig>> = Sourced::default_value(None),
        /// The pull-through cache's upstreams chosen by prefix (`proxy.upstreams`, our
        /// extension), read from files only (see `proxy.rs`); `proxy.remoteurl` comes after
        /// them as the catch-all (see [`Config::proxy_upstreams`]).
        pub proxy_upstreams: Sourced<Vec<ProxyUpstream>> = Sourced::default_value(Vec::new()),
        /// Things the operator should know: unsupported keys by name, ignored variables.
        pub warnings: Vec<String> = Vec::new(),
    }
    singles {
        /// The address and the port to listen on, at once.
        pub(crate) http_addr: SocketAddr = SocketAddr::new(UNSPECIFIED, 5000), HttpAddr, "http.addr" {
            hidden: true,
        } => split_http_addr
        /// Address to bind (0.0.0.0, ::, 127.0.0.1, ::1)
        pub(crate) address: IpAddr = UNSPECIFIED, Address, "address" {
            file: false, vars: &["REGISTRY_ADDRESS"], flag: Some("--address"), hidden: true,
        }
        /// Port to bind, 0 for any free port
        pub(crate) port: u16 = 5000, Port, "port" {
            file: false, vars: &["REGISTRY_PORT"], flag: Some("--port"), short: Some('p'), hidden: true,
        }
        /// Runtime worker threads; 0 = one per CPU
        pub workers: usize = 0, Workers, "workers" {
            file: false, vars: &["GUNICORN_WORKERS", "REGISTRY_WORKERS"], flag: Some("--workers"),
        }
        /// Log level: error, warn, info, debug, trace
        pub log_level: LogLevel = LogLevel::Info, Level, "log.level" {
            also: &["loglevel"], legacy: &["loglevel"], flag: Some("--log-level"),
        }
        /// Where the log goes: stderr (the journal) or syslog
        pub log_target: LogTarget = LogTarget::Stderr, Target, "log.target" {
            legacy: &["log_target"],
        }
        /// How log lines are written: text, or json (one object per line, for log shippers)
        pub log_formatter: LogFormat = LogFormat::Text, Formatter, "log.formatter" {
            legacy: &["log_formatter"], flag: Some("--log-formatter"),
        }
        /// The storage driver: filesystem or s3
        pub(crate) storage_driver: StorageChoice = StorageChoice::Filesystem, Driver, "storage" {
            legacy: &["storage"], choice: Some(&STORAGE_DRIVERS), hidden: true,
        }
        /// Storage directory, in registry:2's layout
        pub(crate) storage_root: PathBuf = PathBuf::new(), Dir, "storage.filesystem.rootdirectory" {
            legacy: &["storage_path"], flag: Some("--storage-path"),
        }
        /// Write pushed blobs past the page cache (O_DIRECT) where the filesystem allows: no
        /// kernel copy per byte, and the cache stays with what pulls read
        pub direct_writes: bool = true, Bool, "storage.filesystem.directwrites" {
            legacy: &["storage_direct_writes"], flag: Some("--direct-writes"),
        }
        /// Allow deleting manifests, tags and blobs
        pub delete_enabled: bool = false, Bool, "storage.delete.enabled" {
            legacy: &["storage_delete_enabled", "delete_enabled"], flag: Some("--delete-enabled"),
        }
        /// Refuse pushes and deletes (for maintenance)
        pub readonly: bool = false, Bool, "storage.maintenance.readonly.enabled" {}
        /// Serve blobs ourselves even where the storage could send clients to it directly
        /// (S3: a 307 to a presigned URL)
        pub redirect_disable: bool = false, Bool, "storage.redirect.disable" {}
        /// The legacy flavor's switch the other way round: true sends blob GETs to the storage
        pub(crate) storage_redirect: Option<bool> = None, Opt<Bool>, "storage_redirect" {
            file: false, legacy: &["storage_redirect"], hidden: true,
        }
        /// Serve HTTPS with this certificate chain (PEM)
        pub(crate) tls_certificate: Option<PathBuf> = None, Opt<Path>, "http.tls.certificate" {
            legacy: &["tls_certificate"], flag: Some("--tls-cert"),
        }
        /// The private key (PEM) of the TLS certificate
        pub(crate) tls_key: Option<PathBuf> = None, Opt<Path>, "http.tls.key" {
            legacy: &["tls_key"], flag: Some("--tls-key"),
        }
        /// Require client certificates signed by these CAs (PEM): mutual TLS
        pub(crate) tls_client_cas: Vec<PathBuf> = Vec::new(), Paths, "http.tls.clientcas" {
            legacy: &["tls_client_cas"], flag: Some("--tls-client-ca"),
        }
        /// Trust X-Forwarded-For/-Proto/-Host from a reverse proxy in front (client address
        /// for throttling and logs, absolute Location headers); off, a client could forge them
        pub trust_forwarded_headers: bool = false, Bool, "http.trustforwardedheaders" {
            legacy: &["trust_forwarded_headers"], flag: Some("--trust-forwarded-headers"),
        }
        /// Send blobs from the page cache to plain HTTP/1.1 clients with sendfile(2): auto (to
        /// clients on other hosts), always, never
        pub sendfile: Sendfile = Sendfile::Auto, SendfileWhen, "http.sendfile" {
            legacy: &["http_sendfile"], flag: Some("--sendfile"),
        }
        /// The network to listen on: tcp only
        pub(crate) http_net: String = "tcp".into(), Net, "http.net" { hidden: true, }
        /// The authentication method: htpasswd or token
        pub(crate) auth_method: Option<AuthChoice> = None, Opt<Method>, "auth" {
            legacy: &["auth"], choice: Some(&AUTH_METHODS), hidden: true,
        }
        /// The realm named in the Basic authentication challenge
        pub(crate) htpasswd_realm: String = DEFAULT_REALM.into(), Text, "auth.htpasswd.realm" {
            flag: Some("--auth-realm"),
        }
        /// Require Basic authentication against this Apache htpasswd file (with --token-realm:
        /// the users of the built-in token endpoint)
        pub(crate) htpasswd_path: Option<PathBuf> = None, Opt<Path>, "auth.htpasswd.path" {
            flag: Some("--htpasswd"),
        }
        /// Who may pull, push and delete which repositories (YAML); as a flag, for the
        /// authentication in effect
        pub(crate) htpasswd_access_file: Option<PathBuf> = None, Opt<Path>, "auth.htpasswd.accessfile" {
            flag: Some("--access-file"),
        }
        /// Token authentication: the token server's URL for the Bearer challenge
        pub(crate) token_realm: Option<String> = None, Opt<Text>, "auth.token.realm" {
            flag: Some("--token-realm"),
        }
        /// The service name tokens must be issued for (their aud)
        pub(crate) token_service: Option<String> = None, Opt<Text>, "auth.token.service" {
            flag: Some("--token-service"),
        }
        /// The issuer tokens must name (their iss)
        pub(crate) token_issuer: Option<String> = None, Opt<Text>, "auth.token.issuer" {
            flag: Some("--token-issuer"),
        }
        /// Certificates (PEM) of the keys allowed to sign tokens
        pub(crate) token_rootcertbundle: Option<PathBuf> = None, Opt<Path>, "auth.token.rootcertbundle" {
            flag: Some("--token-rootcertbundle"),
        }
        /// Issue tokens at GET /token to the htpasswd users, signed with this key (PKCS#8 PEM,
        /// RSA or EC P-256); point the realm at that URL
        pub(crate) token_signing_key: Option<PathBuf> = None, Opt<Path>, "auth.token.signingkey" {
            flag: Some("--token-signing-key"),
        }
        /// The users of the built-in token endpoint (an htpasswd file)
        pub(crate) token_htpasswd: Option<PathBuf> = None, Opt<Path>, "auth.token.htpasswd" {}
        /// What the built-in token endpoint's users may do (YAML)
        pub(crate) token_access_file: Option<PathBuf> = None, Opt<Path>, "auth.token.accessfile" {}
        /// The legacy flavor's S3 endpoint host: with boto_port and s3_secure it makes
        /// storage.s3.regionendpoint
        pub(crate) boto_host: Option<String> = None, Opt<Text>, "boto_host" {
            file: false, legacy: &["boto_host"], hidden: true,
        }
        /// The legacy flavor's S3 endpoint port
        pub(crate) boto_port: Option<u16> = None, Opt<Port>, "boto_port" {
            file: false, legacy: &["boto_port"], hidden: true,
        }
        /// The legacy flavor's boto calling format: OrdinaryCallingFormat is path style
        pub(crate) boto_calling_format: Option<String> = None, Opt<Text>, "boto_calling_format" {
            file: false, legacy: &["boto_calling_format"], hidden: true,
        }
        /// Accepted for compatibility; /v1/search always answers from the repository names
        pub search_backend: Option<String> = None, Opt<Text>, "search_backend" {
            file: false, legacy: &["search_backend"],
        }
        /// The string GET / answers
        pub issue: String = "\"docker-registry server\"".into(), Text, "issue" {
            file: false, legacy: &["issue"],
        }
    }
    groups {
        /// Removing unfinished uploads.
        pub upload_purging: UploadPurging {
            /// Purge unfinished uploads
            enabled: bool = true, Bool, "storage.maintenance.uploadpurging.enabled" {}
            /// Uploads older than this are purged
            age: Duration = Duration::from_secs(168 * 3600), Dur, "storage.maintenance.uploadpurging.age" {}
            /// How often to look for them
            interval: Duration = Duration::from_secs(24 * 3600), Dur, "storage.maintenance.uploadpurging.interval" {}
            /// Only log what would be purged
            dry_run: bool = false, Bool, "storage.maintenance.uploadpurging.dryrun" {}
        }
        /// Garbage collection inside the daemon (see `registry::gc` for what the grace protects).
        pub gc: GcConfig {
            /// Collect this often; none (0): only when asked (garbage-collect --online)
            interval: Option<Duration> = None, GcInterval, "storage.maintenance.gc.interval" {
                legacy: &["gc_interval"],
            }
            /// Blobs and untagged manifests younger than this are left to the next run: a
            /// push in progress has uploaded them but not yet referenced them
            grace: Duration = Duration::from_secs(3600), Dur, "storage.maintenance.gc.grace" {
                legacy: &["gc_grace"],
            }
            /// Scheduled runs also remove manifests no tag reaches
            delete_untagged: bool = false, Bool, "storage.maintenance.gc.deleteuntagged" {
                legacy: &["gc_delete_untagged"],
            }
            /// The admin socket of garbage-collect --online; none: in the storage root
            socket: Option<PathBuf> = None, AdminSocket, "storage.maintenance.gc.socket" {
                legacy: &["gc_socket"],
            }
            /// Several instances on one bucket: how long a write's mark keeps the blobs it
            /// relies on from a collection on another instance; longer than a push takes
            /// from its marks to its links, and the least time a new blob stays
            mark_lifetime: Duration = Duration::from_secs(60), Dur, "storage.maintenance.gc.marklifetime" {
                legacy: &["gc_mark_lifetime"],
            }
            /// Several instances on one bucket: how long the maintenance lease (one instance
            /// collects, purges uploads or applies retention at a time) lasts unless its
            /// holder renews it; maintenance on an instance that died blocks others this long
            lease_lifetime: Duration = Duration::from_secs(300), Dur, "storage.maintenance.gc.leaselifetime" {
                legacy: &["gc_lease_lifetime"],
            }
        }
        /// S3 storage (`storage: s3`), registry:2's keys and defaults (see
        /// `storage::S3Options`); the legacy flavor's s3_* keys set them too.
        pub s3: S3Settings {
            /// The bucket
            bucket: String = String::new(), Text, "storage.s3.bucket" {
                legacy: &["s3_bucket", "boto_bucket"],
            }
            /// The bucket's region; none: AWS_REGION, AWS_DEFAULT_REGION or the AWS profile's
            /// region in ~/.aws/config, else with a regionendpoint us-east-1
            region: String = String::new(), Text, "storage.s3.region" {
                legacy: &["s3_region"],
            }
            /// An S3-compatible endpoint (http://minio:9000); none: AWS
            regionendpoint: String = String::new(), Text, "storage.s3.regionendpoint" {}
            /// Path-style requests (endpoint/bucket/key); default: with a regionendpoint
            forcepathstyle: Option<bool> = None, Opt<Bool>, "storage.s3.forcepathstyle" {}
            /// The access key; none: the AWS credential chain (AWS_ACCESS_KEY_ID, roles)
            accesskey: String = String::new(), Text, "storage.s3.accesskey" {
                legacy: &["s3_access_key"],
            }
            /// The secret key
            secretkey: String = String::new(), Text, "storage.s3.secretkey" {
                legacy: &["s3_secret_key"], secret: true,
            }
            /// A prefix for every key (legacy: storage_path)
            rootdirectory: String = String::new(), Text, "storage.s3.rootdirectory" {}
            /// HTTPS to the endpoint
            secure: bool = true, Bool, "storage.s3.secure" {
                legacy: &["s3_secure"],
            }
            /// Accept any TLS certificate from the endpoint
            skipverify: bool = false, Bool, "storage.s3.skipverify" {}
            /// SigV4 signing (false is refused: only v4 is implemented)
            v4auth: bool = true, Bool, "storage.s3.v4auth" {
                legacy: &["s3_use_sigv4"],
            }
            /// Bytes per part of an upload (at least 5 MiB)
            chunksize: u64 = 10 << 20, ByteSize, "storage.s3.chunksize" {}
            /// Bytes per part of a server-side copy
            multipartcopychunksize: u64 = 32 << 20, ByteSize, "storage.s3.multipartcopychunksize" {}
            /// Part copies at once
            multipartcopymaxconcurrency: usize = 100, Count, "storage.s3.multipartcopymaxconcurrency" {}
            /// Objects larger than this are copied part by part
            multipartcopythresholdsize: u64 = 32 << 20, ByteSize, "storage.s3.multipartcopythresholdsize" {}
            /// Server-side encryption: SSE-S3, or SSE-KMS with keyid
            encrypt: bool = false, Bool, "storage.s3.encrypt" {
                legacy: &["s3_encrypt"],
            }
            /// The KMS key for encrypt
            keyid: String = String::new(), Text, "storage.s3.keyid" {}
            /// The storage class of new objects; NONE sends none
            storageclass: String = "STANDARD".into(), Text, "storage.s3.storageclass" {}
        }
        /// The debug listener (registry:2's `http.debug`): health and Prometheus metrics, on
        /// an address of its own so that they need not be exposed with the registry.
        pub debug: DebugListener {
            /// Serve /debug/health (and the metrics) on this address (host:port); none: no
            /// debug listener
            addr: Option<SocketAddr> = None, Opt<HttpAddr>, "http.debug.addr" {
                legacy: &["debug_addr"], flag: Some("--debug-addr"),
            }
            /// Serve Prometheus metrics on the debug listener
            prometheus_enabled: bool = false, Bool, "http.debug.prometheus.enabled" {
                legacy: &["prometheus_enabled"], flag: Some("--metrics"),
            }
            /// The path of the metrics on the debug listener
            prometheus_path: String = "/metrics".into(), MetricsPath, "http.debug.prometheus.path" {
                legacy: &["prometheus_path"],
            }
        }
        /// The pull-through cache (registry:2's `proxy`): every repository no
        /// `proxy.upstreams` entry serves comes from this upstream and is kept here; the
        /// legacy flavored file's `mirroring:` section sets it too.
        pub proxy: ProxySettings {
            /// Serve repositories from this registry, keeping what is pulled (a pull-through
            /// cache); pushes to them are refused
            remoteurl: Option<String> = None, Opt<Text>, "proxy.remoteurl" {
                legacy: &["mirroring.source"],
            }
            /// The user name for the upstream (Basic, or to get tokens)
            username: Option<String> = None, Opt<Text>, "proxy.username" {}
            /// The upstream user's password
            password: Option<String> = None, Opt<Text>, "proxy.password" {
                secret: true,
            }
            /// Tags are served from the cache this long after they were fetched or checked,
            /// then checked upstream (a HEAD); 0: on every pull
            ttl: Option<Duration> = None, ProxyTtl, "proxy.ttl" {
                legacy: &["mirroring.tags_cache_ttl"],
            }
        }
        /// The on-disk queue of notification events (ours: registry:2 keeps them in memory).
        pub events_queue: EventQueue {
            /// Where events wait for their endpoints, a directory per endpoint; none: in the
            /// storage directory (filesystem storage)
            directory: Option<PathBuf> = None, Opt<Path>, "notifications.queue.directory" {
                legacy: &["notifications_queue_directory"],
            }
            /// Events kept per endpoint; beyond, the oldest are dropped (and counted)
            limit: usize = 100_000, Count, "notifications.queue.limit" {
                legacy: &["notifications_queue_limit"],
            }
        }
        /// Limits on client connections: how long each phase of a request may take and how
        /// many connections are served at once.
        pub connections: Connections {
            /// Longest time from accepting a connection to a complete request head
            header_timeout: Duration = Duration::from_secs(30), Timeout, "http.timeouts.header" {
                legacy: &["http_header_timeout"], flag: Some("--header-timeout"),
            }
            /// A request body that sends no byte for this long ends the request
            body_idle_timeout: Duration = Duration::from_secs(60), Timeout, "http.timeouts.bodyidle" {
                legacy: &["http_body_idle_timeout"], flag: Some("--body-idle-timeout"),
            }
            /// A kept-alive connection idle this long between requests is closed
            idle_timeout: Duration = Duration::from_secs(120), Timeout, "http.timeouts.idle" {
                legacy: &["http_idle_timeout"], flag: Some("--idle-timeout"),
            }
            /// Connections served at once; 0: from the limit of open files
            max: usize = 0, MaxConnections, "http.connections.max" {
                legacy: &["max_connections"], flag: Some("--max-connections"),
            }
            /// Connections served at once for one client address; 0: no limit but max
            per_client: usize = 256, Count, "http.connections.perclient" {
                legacy: &["max_connections_per_client"], flag: Some("--max-connections-per-client"),
            }
        }
    }
}

impl S3Settings {
    /// The driver's options from these settings.
    pub(crate) fn options(&self) -> crate::storage::S3Options {
        crate::storage::S3Options {
            bucket: self.bucket.clone(),
            region: self.region.clone(),
            regionendpoint: self.regionendpoint.clone(),
            forcepathstyle: self.forcepathstyle,
            accesskey: self.accesskey.clone(),
            secretkey: self.secretkey.clone(),
            rootdirectory: self.rootdirectory.clone(),
            secure: self.secure,
            skipverify: self.skipverify,
            v4auth: self.v4auth,
            chunksize: self.chunksize,
            multipartcopychunksize: self.multipartcopychunksize,
            multipartcopymaxconcurrency: self.multipartcopymaxconcurrency,
            multipartcopythresholdsize: self.multipartcopythresholdsize,
            encrypt: self.encrypt,
            keyid: self.keyid.clone(),
            storageclass: self.storageclass.clone(),
        }
    }
}

/// Sets where one field of the s3 group came from, for a value `resolve` derives.
pub(super) fn set_s3_source(c: &mut Config, field: &str, source: super::source::Source) {
    c.s3.source = with_part(&c.s3.source, S3Settings::PARTS, field, source);
}
