//! Reading one setting's value, from text (sysconfig, environment) or from a YAML node, into
//! its type. Every function returns a message written for the operator; the caller adds the
//! file, line and key.

use super::yaml::{Node, NodeKind, Scalar};
use super::LogLevel;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// The most worker threads we accept: far more than any machine has cores, low enough that a
/// typo (`GUNICORN_WORKERS=80000`) is caught before the runtime tries to spawn them.
pub const MAX_WORKERS: usize = 1024;

/// Booleans as the shell, Go's `strconv.ParseBool` and YAML 1.1 write them.
pub fn bool_text(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" | "t" | "y" => Ok(true),
        "false" | "no" | "off" | "0" | "f" | "n" => Ok(false),
        _ => Err(format!("expected true or false, found {s:?}")),
    }
}

pub fn log_level_text(s: &str) -> Result<LogLevel, String> {
    LogLevel::parse(s).ok_or_else(|| {
        format!("unknown log level {s:?} (use error, warn, info, debug or trace; critical, warning, fatal and panic are accepted too)")
    })
}

pub fn log_target_text(s: &str) -> Result<super::LogTarget, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "stderr" | "journal" | "journald" => Ok(super::LogTarget::Stderr),
        "syslog" => Ok(super::LogTarget::Syslog),
        _ => Err(format!("unknown log target {s:?} (use stderr or syslog)")),
    }
}

/// An IP address to bind: IPv4, IPv6 with or without brackets, or `localhost`.
pub fn address_text(s: &str) -> Result<IpAddr, String> {
    let t = s.trim();
    let inner = t
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(t);
    if inner.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    inner.parse::<IpAddr>().map_err(|_| {
        format!("not an IP address: {s:?} (e.g. 0.0.0.0, 127.0.0.1, ::, ::1 or [::1])")
    })
}

/// A TCP port; 0 asks the kernel for any free port.
pub fn port_text(s: &str) -> Result<u16, String> {
    s.trim()
        .parse::<u16>()
        .map_err(|_| format!("not a port number: {s:?} (0 to 65535; 0 = any free port)"))
}

pub fn workers_text(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n <= MAX_WORKERS => Ok(n),
        Ok(n) => Err(format!(
            "{n} worker threads is too many (at most {MAX_WORKERS}; 0 = one per CPU)"
        )),
        Err(_) => Err(format!(
            "not a number of worker threads: {s:?} (0 = one per CPU)"
        )),
    }
}

/// `registry:2`'s `http.addr`: `host:port`, `:port` (all IPv4 interfaces, like our default
/// address), `[v6]:port`.
pub fn http_addr_text(s: &str) -> Result<SocketAddr, String> {
    let t = s.trim();
    let bad = || {
        format!(
            "not an address: {s:?} (expected host:port, :port or [v6]:port, e.g. 127.0.0.1:5000)"
        )
    };
    let (host, port) = if let Some(rest) = t.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        (host, after.strip_prefix(':').ok_or_else(bad)?)
    } else {
        t.rsplit_once(':').ok_or_else(bad)?
    };
    if host.contains(':') && !t.starts_with('[') {
        return Err(format!(
            "{s:?}: write an IPv6 address in brackets, e.g. [::1]:5000"
        ));
    }
    let ip = if host.is_empty() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        address_text(host).map_err(|_| bad())?
    };
    let port = port_text(port)?;
    Ok(SocketAddr::new(ip, port))
}

/// A duration as Go writes it (`168h`, `30m`, `1h30m`, `10s`).
pub fn duration_text(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|_| format!("not a duration: {s:?} (e.g. 168h, 30m, 1h30m)"))
}

/// `gc.interval`: how often the daemon collects; a zero duration (`0`, `0s`) means never on
/// a schedule (`None`), so the environment can turn off an interval a file sets.
pub fn gc_interval_text(s: &str) -> Result<Option<Duration>, String> {
    if s.trim() == "0" {
        return Ok(None);
    }
    let d = duration_text(s)?;
    Ok((!d.is_zero()).then_some(d))
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

/// The keys of our own extensions (`storage.maintenance.gc.*`, retention rules) are matched
/// ignoring case, `_` and `-`, so `keeptags` (registry:2's all-lowercase style), `keep_tags`
/// (the legacy format's) and `keepTags` all name the same setting.
pub fn extension_key(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

pub fn path_text(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("empty path".into());
    }
    if s.contains('\0') {
        return Err("a path cannot contain a NUL byte".into());
    }
    Ok(PathBuf::from(s))
}

/// A list of paths in a variable (`REGISTRY_HTTP_TLS_CLIENTCAS`): one path, or a YAML flow
/// list as registry:2 reads list variables (`[/etc/a.pem, /etc/b.pem]`).
pub fn path_list_text(s: &str) -> Result<Vec<PathBuf>, String> {
    let t = s.trim();
    let Some(inner) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) else {
        return path_text(t).map(|p| vec![p]);
    };
    let paths = inner
        .split(',')
        .map(|p| p.trim().trim_matches(|c| c == '"' || c == '\''))
        .filter(|p| !p.is_empty())
        .map(path_text)
        .collect::<Result<Vec<_>, _>>()?;
    if paths.is_empty() {
        return Err(format!("an empty list of files: {s:?}"));
    }
    Ok(paths)
}

/// A list of paths in a YAML file: a list of scalars, or one path on its own. `None` for null.
pub fn node_paths(node: &Node) -> Result<Option<Vec<PathBuf>>, String> {
    match &node.kind {
        NodeKind::Seq(items) => {
            let mut paths = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match node_with(item, path_text) {
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
        _ => node_with(node, path_text).map(|p| p.map(|p| vec![p])),
    }
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

pub fn node_bool(node: &Node) -> Result<Option<bool>, String> {
    match node.scalar() {
        Some(Scalar::Null) => Ok(None),
        Some(Scalar::Bool(b)) => Ok(Some(b)),
        Some(Scalar::Str(s)) => bool_text(s).map(Some),
        _ => Err(format!("expected true or false, found {}", node.describe())),
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
        assert_eq!(address_text("::1"), Ok("::1".parse().expect("ip")));
        assert_eq!(address_text("[::1]"), Ok("::1".parse().expect("ip")));
        assert_eq!(address_text("0.0.0.0"), Ok("0.0.0.0".parse().expect("ip")));
        assert_eq!(
            address_text("localhost"),
            Ok("127.0.0.1".parse().expect("ip"))
        );
        assert!(address_text("example.invalid").is_err());
    }

    #[test]
    fn http_addr_forms() {
        assert_eq!(
            http_addr_text(":5000"),
            Ok("0.0.0.0:5000".parse().expect("addr"))
        );
        assert_eq!(
            http_addr_text("127.0.0.1:6000"),
            Ok("127.0.0.1:6000".parse().expect("addr"))
        );
        assert_eq!(
            http_addr_text("[::1]:5000"),
            Ok("[::1]:5000".parse().expect("addr"))
        );
        assert_eq!(
            http_addr_text("[::]:0"),
            Ok("[::]:0".parse().expect("addr"))
        );
        assert!(http_addr_text("::1:5000").is_err());
        assert!(http_addr_text("127.0.0.1").is_err());
        assert!(http_addr_text("127.0.0.1:99999").is_err());
    }

    #[test]
    fn ports_and_workers() {
        assert_eq!(port_text("0"), Ok(0));
        assert!(port_text("65536").is_err());
        assert_eq!(workers_text("0"), Ok(0));
        assert!(workers_text("-1").is_err());
        assert!(workers_text("100000").is_err());
    }

    #[test]
    fn durations_as_go_writes_them() {
        assert_eq!(duration_text("168h"), Ok(Duration::from_secs(168 * 3600)));
        assert_eq!(duration_text("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(duration_text("soon").is_err());
    }

    #[test]
    fn a_zero_gc_interval_means_no_schedule() {
        assert_eq!(
            gc_interval_text("24h"),
            Ok(Some(Duration::from_secs(86400)))
        );
        assert_eq!(gc_interval_text("0"), Ok(None));
        assert_eq!(gc_interval_text("0s"), Ok(None));
        assert!(gc_interval_text("daily").is_err());
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
    fn path_lists_in_variables() {
        assert_eq!(path_list_text("/a.pem"), Ok(vec![PathBuf::from("/a.pem")]));
        assert_eq!(
            path_list_text("[/a.pem, '/b c.pem']"),
            Ok(vec![PathBuf::from("/a.pem"), PathBuf::from("/b c.pem")])
        );
        assert!(path_list_text("[]").is_err());
    }

    #[test]
    fn extension_keys_ignore_case_and_separators() {
        for k in ["keeptags", "keep_tags", "keepTags", "KeepTags", "keep-tags"] {
            assert_eq!(extension_key(k), "keeptags", "{k}");
        }
    }
}
