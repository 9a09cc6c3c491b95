//! The pull-through cache's upstreams beyond registry:2's single `proxy.remoteurl`: our
//! extension `proxy.upstreams`, a list read from either file format (in a flavored file,
//! under `proxy:` as in a registry:2 file), each entry
//! `{prefix, remoteurl, username, password, ttl, stripprefix, namespaces}`. The single
//! `proxy.remoteurl` of the table (and `REGISTRY_PROXY_*`, and the legacy `mirroring.source`)
//! is the catch-all after them: `Config::resolve` appends it with the prefix `**`. An
//! unknown key is an error: a misspelt `prefix` would send every repository upstream.

use super::kinds::{node_text, node_with, Bool, ProxyTtl};
use super::model::ProxyUpstream;
use super::notifications::{list, text};
use super::setting::{key_name, Kind};
use super::source::{entry_source, list_items, node_source, ConfigError, Source, Sourced};
use super::yaml::{Entry, Node};
use std::path::Path;

/// Reads a `proxy.upstreams` entry; `None` when it had errors (all in `errors`).
pub fn read(
    file: &Path,
    entry: &Entry,
    errors: &mut Vec<ConfigError>,
) -> Option<Sourced<Vec<ProxyUpstream>>> {
    let items = list_items(
        file,
        entry,
        "upstreams (- prefix: ..., remoteurl: ...)",
        errors,
    )?;
    let before = errors.len();
    let upstreams: Vec<_> = items
        .iter()
        .filter_map(|item| upstream(file, item, &node_source(file, item), errors))
        .collect();
    (errors.len() == before).then(|| Sourced::new(upstreams, entry_source(file, entry)))
}

fn upstream(
    file: &Path,
    item: &Node,
    at: &Source,
    errors: &mut Vec<ConfigError>,
) -> Option<ProxyUpstream> {
    let Some(entries) = item.entries() else {
        errors.push(ConfigError::at(
            at,
            "an upstream is a mapping (prefix: ..., remoteurl: ...)",
        ));
        return None;
    };
    let before = errors.len();
    let mut u = ProxyUpstream::catch_all(String::new());
    u.prefix = String::new();
    for c in entries {
        let result = match key_name(&c.key).as_str() {
            "prefix" => text(&c.value).map(|v| u.prefix = v),
            "remoteurl" => text(&c.value).map(|v| u.remoteurl = v),
            "username" => node_text(&c.value).map(|v| u.username = v),
            "password" => node_text(&c.value).map(|v| u.password = v),
            "ttl" => node_with(&c.value, ProxyTtl::text).map(|v| u.ttl = v.flatten()),
            "stripprefix" => {
                node_with(&c.value, Bool::text).map(|v| u.strip_prefix = v.unwrap_or(false))
            }
            "namespaces" | "ns" => list(&c.value).map(|v| u.namespaces = v),
            _ => Err(format!(
                "unknown upstream key {:?} (an upstream has prefix, remoteurl, username, \
                 password, ttl, stripprefix and namespaces)",
                c.key
            )),
        };
        if let Err(m) = result {
            errors.push(ConfigError::at(&entry_source(file, c), m));
        }
    }
    if u.prefix.is_empty() {
        errors.push(ConfigError::at(
            at,
            "an upstream needs a prefix: the local repositories it serves (library/**, quay/**, ** for all)",
        ));
    }
    if let Err(m) = u.check() {
        errors.push(ConfigError::at(at, m));
    }
    (errors.len() == before).then_some(u)
}
