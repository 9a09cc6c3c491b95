//! The kinds of value a setting has ([`Kind`] implementations): how each is read from text
//! (a variable, a flag) and from a YAML value, and how `config` shows it. Every error is a
//! message written for the operator; the caller adds the file, line and key.

use super::model::{AuthChoice, StorageChoice};
use super::setting::Kind;
use super::yaml::{Node, NodeKind, Scalar};
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// The most worker threads we accept: far more than any machine has cores, low enough that a
/// typo (`GUNICORN_WORKERS=80000`) is caught before the runtime tries to spawn them.
pub const MAX_WORKERS: usize = 1024;

/// A kind from its two functions: `kind!(Name: Type, "PLACEHOLDER", text, show)`.
macro_rules! kind {
    ($(#[doc = $doc:literal])* $name:ident: $t:ty, $value:literal, $text:expr, $show:expr) => {
        $(#[doc = $doc])*
        pub struct $name;
        impl Kind for $name {
            type Value = $t;
            const VALUE_NAME: &'static str = $value;
            fn text(s: &str) -> Result<$t, String> {
                let text: fn(&str) -> Result<$t, String> = $text;
                text(s)
            }
            fn show(v: &$t) -> String {
                let show: fn(&$t) -> String = $show;
                show(v)
            }
        }
    };
}

/// An enum whose values a setting names, in one place: the enum, its names (`as_str`, which
/// `config` shows) and the kind that reads them, ignoring case. A variant's first name is
/// its own, the others are spellings accepted for it; `otherwise` reads what none names.
macro_rules! named_values {
    (
        $(#[$attr:meta])*
        pub enum $T:ident as $Kind:ident($value:literal, $unknown:literal) {
            $( $(#[$vattr:meta])* $V:ident = $name:literal $(| $alias:literal)*, )+
        }
        $(otherwise $otherwise:expr)?
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $T {
            $( $(#[$vattr])* $V, )+
        }

        impl $T {
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $T::$V => $name, )+
                }
            }
        }

        #[doc = concat!("Reads a [`", stringify!($T), "`].")]
        pub struct $Kind;
        impl Kind for $Kind {
            type Value = $T;
            const VALUE_NAME: &'static str = $value;
            fn text(s: &str) -> Result<$T, String> {
                match s.trim().to_ascii_lowercase().as_str() {
                    $( $name $(| $alias)* => Ok($T::$V), )+
                    _ => {
                        $(
                            let otherwise: fn(&str) -> Option<$T> = $otherwise;
                            if let Some(v) = otherwise(s) {
                                return Ok(v);
                            }
                        )?
                        Err(format!($unknown, s))
                    }
                }
            }
            fn show(v: &$T) -> String {
                v.as_str().into()
            }
        }
    };
}
pub(super) use named_values;

/// Booleans as the shell, Go's `strconv.ParseBool` and YAML 1.1 write them.
pub struct Bool;
impl Kind for Bool {
    type Value = bool;
    const VALUE_NAME: &'static str = "BOOL";
    fn text(s: &str) -> Result<bool, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" | "t" | "y" => Ok(true),
            "false" | "no" | "off" | "0" | "f" | "n" => Ok(false),
            _ => Err(format!("expected true or false, found {s:?}")),
        }
    }
    fn node(node: &Node) -> Result<Option<bool>, String> {
        match node.scalar() {
            Some(Scalar::Null) => Ok(None),
            Some(Scalar::Bool(b)) => Ok(Some(b)),
            Some(Scalar::Str(s)) => Bool::text(s).map(Some),
            _ => Err(format!("expected true or false, found {}", node.describe())),
        }
    }
    fn show(v: &bool) -> String {
        v.to_string()
    }
}

kind!(
    /// A whole number (of connections).
    Count: usize, "N",
    |s| s.trim().parse().map_err(|_| format!("not a whole number: {s:?} (e.g. 10)")),
    |v| v.to_string()
);

kind!(
    /// A size in bytes, a whole number as registry:2 reads it (`10485760`).
    ByteSize: u64, "BYTES",
    |s| s.trim().parse().map_err(|_| format!("not a whole number of bytes: {s:?} (e.g. 10485760)")),
    |v| v.to_string()
);

kind!(
    /// The most connections at once; 0 chooses from the limit of open files.
    MaxConnections: usize, "N",
    Count::text,
    |v| match v {
        0 => "0 (automatic: from the limit of open files)".into(),
        n => n.to_string(),
    }
);

kind!(
    /// Runtime worker threads; 0 = one per CPU.
    Workers: usize, "N",
    |s| match s.trim().parse::<usize>() {
        Ok(n) if n <= MAX_WORKERS => Ok(n),
        Ok(n) => Err(format!("{n} worker threads is too many (at most {MAX_WORKERS}; 0 = one per CPU)")),
        Err(_) => Err(format!("not a number of worker threads: {s:?} (0 = one per CPU)")),
    },
    |v| match v {
        0 => "0 (one per CPU)".into(),
        n => n.to_string(),
    }
);

kind!(
    /// A TCP port; 0 asks the kernel for any free port.
    Port: u16, "PORT",
    |s| s.trim().parse().map_err(|_| format!("not a port number: {s:?} (0 to 65535; 0 = any free port)")),
    |v| v.to_string()
);

kind!(
    /// An IP address to bind: IPv4, IPv6 with or without brackets, or `localhost`.
    Address: IpAddr, "IP",
    |s| {
        let t = s.trim();
        let inner = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(t);
        if inner.eq_ignore_ascii_case("localhost") {
            return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        inner.parse().map_err(|_| {
            format!("not an IP address: {s:?} (e.g. 0.0.0.0, 127.0.0.1, ::, ::1 or [::1])")
        })
    },
    |v| v.to_string()
);

kind!(
    /// `registry:2`'s `http.addr`: `host:port`, `:port` (all IPv4 interfaces, like our default
    /// address), `[v6]:port`.
    HttpAddr: SocketAddr, "HOST:PORT",
    |s| {
        let t = s.trim();
        let bad = || format!("not an address: {s:?} (expected host:port, :port or [v6]:port, e.g. 127.0.0.1:5000)");
        let (host, port) = match t.strip_prefix('[') {
            Some(rest) => {
                let (host, after) = rest.split_once(']').ok_or_else(bad)?;
                (host, after.strip_prefix(':').ok_or_else(bad)?)
            }
            None => t.rsplit_once(':').ok_or_else(bad)?,
        };
        if host.contains(':') && !t.starts_with('[') {
            return Err(format!("{s:?}: write an IPv6 address in brackets, e.g. [::1]:5000"));
        }
        let ip = match host {
            "" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            host => Address::text(host).map_err(|_| bad())?,
        };
        Ok(SocketAddr::new(ip, Port::text(port)?))
    },
    |v| v.to_string()
);

kind!(
    /// `http.net`: only TCP is served.
    Net: String, "NET",
    |s| match s.trim() {
        "tcp" => Ok("tcp".into()),
        net => Err(format!("listening on {net:?} is not supported (only tcp); remove http.net")),
    },
    String::clone
);

kind!(
    /// A duration as Go writes it (`168h`, `30m`, `1h30m`, `10s`).
    Dur: Duration, "DURATION",
    |s| humantime::parse_duration(s.trim()).map_err(|_| format!("not a duration: {s:?} (e.g. 168h, 30m, 1h30m)")),
    |v| humantime::format_duration(*v).to_string()
);

kind!(
    /// The proxy's `ttl`: a duration as Go writes it, or a number of seconds (the legacy
    /// `tags_cache_ttl`); zero means none: tags are checked upstream on every pull.
    ProxyTtl: Option<Duration>, "DURATION",
    |s| {
        let d = match s.trim().parse::<u64>() {
            Ok(secs) => Duration::from_secs(secs),
            Err(_) => Dur::text(s)?,
        };
        Ok((!d.is_zero()).then_some(d))
    },
    |v| v.as_ref().map_or_else(|| "0 (tags checked upstream on every pull)".into(), Dur::show)
);

kind!(
    /// A time limit: a duration longer than 0.
    Timeout: Duration, "DURATION",
    |s| match Dur::text(s)? {
        d if d.is_zero() => Err(format!("a time limit must be longer than 0, found {s:?}")),
        d => Ok(d),
    },
    Dur::show
);

kind!(
    /// `gc.interval`: how often the daemon collects; a zero duration (`0`, `0s`) means never on
    /// a schedule (`None`), so the environment can turn off an interval a file sets.
    GcInterval: Option<Duration>, "DURATION",
    |s| match s.trim() {
        "0" => Ok(None),
        _ => Dur::text(s).map(|d| (!d.is_zero()).then_some(d)),
    },
    |v| v.as_ref().map_or_else(|| "off (only garbage-collect --online)".into(), Dur::show)
);

kind!(
    Path: PathBuf, "FILE",
    |s| match s {
        "" => Err("empty path".into()),
        s if s.contains('\0') => Err("a path cannot contain a NUL byte".into()),
        s => Ok(PathBuf::from(s)),
    },
    |v| v.display().to_string()
);

kind!(
    /// A directory.
    Dir: PathBuf, "DIR",
    Path::text,
    Path::show
);

kind!(
    /// The daemon's admin socket; none: `docker-registry-admin.sock` in the storage root.
    AdminSocket: Option<PathBuf>, "FILE",
    |s| Path::text(s).map(Some),
    |v| v.as_ref().map_or_else(|| "docker-registry-admin.sock in the storage root".into(), Path::show)
);

kind!(Text: String, "TEXT", |s| Ok(s.to_string()), String::clone);

kind!(
    /// The path of the metrics on the debug listener: its own, beside `/debug/health`.
    MetricsPath: String, "PATH",
    |s| match s {
        s if !s.starts_with('/') || s == "/debug/health" => {
            Err("the metrics path must start with / and not be /debug/health (e.g. /metrics)".into())
        }
        s => Ok(s.to_string()),
    },
    String::clone
);

kind!(
    /// Which storage driver; `local` and `file` are the legacy format's names of `filesystem`.
    Driver: StorageChoice, "DRIVER",
    |s| Ok(match s.trim() {
        "filesystem" | "local" | "file" => StorageChoice::Filesystem,
        "s3" => StorageChoice::S3,
        other => StorageChoice::Unsupported { name: other.to_string() },
    }),
    |v| match v {
        StorageChoice::Filesystem => "filesystem".into(),
        StorageChoice::S3 => "s3".into(),
        StorageChoice::Unsupported { name } => name.clone(),
    }
);

kind!(
    /// Which authentication.
    Method: AuthChoice, "METHOD",
    |s| Ok(match s.trim() {
        "htpasswd" => AuthChoice::Htpasswd,
        "token" => AuthChoice::Token,
        other => AuthChoice::Unsupported { name: other.to_string() },
    }),
    |v| match v {
        AuthChoice::Htpasswd => "htpasswd".into(),
        AuthChoice::Token => "token".into(),
        AuthChoice::Unsupported { name } => name.clone(),
    }
);

/// Files: in a variable one path or a YAML flow list as registry:2 reads list variables
/// (`[/etc/a.pem, /etc/b.pem]`); in a YAML file a list, or one path on its own.
pub struct Paths;
impl Kind for Paths {
    type Value = Vec<PathBuf>;
    const VALUE_NAME: &'static str = "FILE";
    fn text(s: &str) -> Result<Vec<PathBuf>, String> {
        let t = s.trim();
        let Some(inner) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) else {
            return Path::text(t).map(|p| vec![p]);
        };
        let paths = inner
            .split(',')
            .map(|p| p.trim().trim_matches(|c| c == '"' || c == '\''))
            .filter(|p| !p.is_empty())
            .map(Path::text)
            .collect::<Result<Vec<_>, _>>()?;
        if paths.is_empty() {
            return Err(format!("an empty list of files: {s:?}"));
        }
        Ok(paths)
    }
    fn node(node: &Node) -> Result<Option<Vec<PathBuf>>, String> {
        let NodeKind::Seq(items) = &node.kind else {
            return node_with(node, Path::text).map(|p| p.map(|p| vec![p]));
        };
        let mut paths = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match node_with(item, Path::text) {
                Ok(Some(p)) => paths.push(p),
                Ok(None) => return Err(format!("item {i} of the list is empty")),
                Err(m) => return Err(format!("item {i} of the list: {m}")),
            }
        }
        if paths.is_empty() {
            return Err("an empty list of files (remove the key for none)".into());
        }
        Ok(Some(paths))
    }
    fn show(v: &Vec<PathBuf>) -> String {
        match v.is_empty() {
            true => "(none)".into(),
            false => v.iter().map(Path::show).collect::<Vec<_>>().join(", "),
        }
    }
}

/// An optional value of kind `K`: `(none)` until a level gives one.
pub struct Opt<K>(PhantomData<K>);
impl<K: Kind> Kind for Opt<K> {
    type Value = Option<K::Value>;
    const VALUE_NAME: &'static str = K::VALUE_NAME;
    fn text(s: &str) -> Result<Self::Value, String> {
        K::text(s).map(Some)
    }
    fn node(node: &Node) -> Result<Option<Self::Value>, String> {
        K::node(node).map(|v| v.map(Some))
    }
    fn show(v: &Self::Value) -> String {
        v.as_ref().map_or_else(|| "(none)".into(), K::show)
    }
}

/// A retention rule's `keeptags`: how many of the newest tags to keep (0 keeps none by count).
pub fn tag_count_text(s: &str) -> Result<usize, String> {
    s.trim()
        .parse::<usize>()
        .map_err(|_| format!("not a number of tags: {s:?} (a whole number, e.g. 10)"))
}

/// A glob over repository names or tags, checked as the retention code will read it
/// (`registry::retention::GlobPattern`): `*` any characters including `/`, `?` one.
pub fn glob_text(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("an empty pattern matches nothing; write * for everything".into());
    }
    if s.chars().any(char::is_control) {
        return Err(format!("pattern {s:?} contains control characters"));
    }
    Ok(s.to_string())
}

/// The text of a scalar node, or an error for a list or mapping. `None` for null.
pub fn node_text(node: &Node) -> Result<Option<String>, String> {
    match &node.kind {
        NodeKind::Scalar { text, .. } => match node.scalar() {
            Some(Scalar::Null) => Ok(None),
            _ => Ok(Some(text.clone())),
        },
        NodeKind::Seq(_) | NodeKind::Map(_) => Err(format!(
            "expected a single value, found {}",
            node.describe()
        )),
    }
}

/// Reads a node's text and converts it; null gives `None`.
pub fn node_with<T>(
    node: &Node,
    convert: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, String> {
    match node_text(node)? {
        None => Ok(None),
        Some(t) => convert(&t).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_accept_ipv6_with_or_without_brackets() {
        assert_eq!(Address::text("::1"), Ok("::1".parse().expect("ip")));
        assert_eq!(Address::text("[::1]"), Ok("::1".parse().expect("ip")));
        assert_eq!(Address::text("0.0.0.0"), Ok("0.0.0.0".parse().expect("ip")));
        assert_eq!(
            Address::text("localhost"),
            Ok("127.0.0.1".parse().expect("ip"))
        );
        assert!(Address::text("example.invalid").is_err());
    }

    #[test]
    fn http_addr_forms() {
        for (written, read) in [
            (":5000", "0.0.0.0:5000"),
            ("127.0.0.1:6000", "127.0.0.1:6000"),
            ("[::1]:5000", "[::1]:5000"),
            ("[::]:0", "[::]:0"),
        ] {
            assert_eq!(HttpAddr::text(written), Ok(read.parse().expect("addr")));
        }
        for bad in ["::1:5000", "127.0.0.1", "127.0.0.1:99999"] {
            assert!(HttpAddr::text(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ports_workers_and_counts() {
        assert_eq!(Port::text("0"), Ok(0));
        assert!(Port::text("65536").is_err());
        assert_eq!(Workers::text("0"), Ok(0));
        assert!(Workers::text("-1").is_err());
        assert!(Workers::text("100000").is_err());
        assert_eq!(Count::text(" 256 "), Ok(256));
        assert!(Count::text("many").is_err());
    }

    #[test]
    fn durations_as_go_writes_them_and_time_limits_above_zero() {
        assert_eq!(Dur::text("168h"), Ok(Duration::from_secs(168 * 3600)));
        assert_eq!(Dur::text("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(Dur::text("soon").is_err());
        assert_eq!(Timeout::text("1m30s"), Ok(Duration::from_secs(90)));
        assert!(Timeout::text("0s").is_err());
    }

    #[test]
    fn a_zero_gc_interval_means_no_schedule() {
        assert_eq!(
            GcInterval::text("24h"),
            Ok(Some(Duration::from_secs(86400)))
        );
        assert_eq!(GcInterval::text("0"), Ok(None));
        assert_eq!(GcInterval::text("0s"), Ok(None));
        assert!(GcInterval::text("daily").is_err());
    }

    #[test]
    fn tag_counts_and_patterns() {
        assert_eq!(tag_count_text("10"), Ok(10));
        assert_eq!(tag_count_text("0"), Ok(0));
        assert!(tag_count_text("-1").is_err());
        assert!(tag_count_text("ten").is_err());
        assert_eq!(glob_text("library/*"), Ok("library/*".into()));
        assert!(glob_text("").is_err());
        assert!(glob_text("a\tb").is_err());
        assert!(glob_text("a\u{7}b").is_err());
    }

    #[test]
    fn metrics_paths_are_their_own() {
        assert_eq!(MetricsPath::text("/m"), Ok("/m".into()));
        assert!(MetricsPath::text("metrics").is_err());
        assert!(MetricsPath::text("/debug/health").is_err());
    }

    #[test]
    fn named_values_read_every_spelling_and_show_their_own_name() {
        use super::super::model::{Level, SendfileWhen};
        use crate::config::{LogLevel, Sendfile};
        assert_eq!(Level::text(" Critical"), Ok(LogLevel::Error));
        assert_eq!(Level::show(&LogLevel::Warn), "warn");
        assert!(Level::text("loud").is_err());
        assert_eq!(SendfileWhen::text("yes"), Ok(Sendfile::Always));
        assert_eq!(SendfileWhen::text("NEVER"), Ok(Sendfile::Never));
        assert_eq!(
            SendfileWhen::text("sometimes"),
            Err("expected auto, always or never, found \"sometimes\"".into())
        );
    }

    #[test]
    fn path_lists_in_variables() {
        assert_eq!(Paths::text("/a.pem"), Ok(vec![PathBuf::from("/a.pem")]));
        assert_eq!(
            Paths::text("[/a.pem, '/b c.pem']"),
            Ok(vec![PathBuf::from("/a.pem"), PathBuf::from("/b c.pem")])
        );
        assert!(Paths::text("[]").is_err());
    }
}
