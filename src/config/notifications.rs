//! registry:2's `notifications.endpoints` list, from either file format (in a flavored file,
//! under `notifications:` as in a registry:2 file): each endpoint
//! `{name, url, headers, timeout, threshold, backoff, ignoredmediatypes,
//! ignore: {mediatypes, actions}, disabled}` with registry:2's meaning. An unknown key is
//! an error, so that a misspelt `url` or `ignore` is not silently an endpoint that gets
//! everything or nothing.

use super::kinds::{node_text, node_with, Bool, Count, Dur};
use super::model::NotificationEndpoint;
use super::setting::{key_name, Kind};
use super::source::{entry_source, list_items, node_source, ConfigError, Source, Sourced};
use super::yaml::{Entry, Node, NodeKind};
use std::path::Path;
use std::time::Duration;

/// Reads a `notifications.endpoints` entry; `None` when it had errors (all in `errors`).
pub fn read(
    file: &Path,
    entry: &Entry,
    errors: &mut Vec<ConfigError>,
) -> Option<Sourced<Vec<NotificationEndpoint>>> {
    let items = list_items(file, entry, "endpoints (- name: ..., url: ...)", errors)?;
    let before = errors.len();
    let endpoints: Vec<_> = items
        .iter()
        .filter_map(|item| endpoint(file, item, &node_source(file, item), errors))
        .collect();
    (errors.len() == before).then(|| Sourced::new(endpoints, entry_source(file, entry)))
}

fn endpoint(
    file: &Path,
    item: &Node,
    at: &Source,
    errors: &mut Vec<ConfigError>,
) -> Option<NotificationEndpoint> {
    let Some(entries) = item.entries() else {
        errors.push(ConfigError::at(
            at,
            "an endpoint is a mapping (name: ..., url: ...)",
        ));
        return None;
    };
    let before = errors.len();
    let mut e = NotificationEndpoint {
        name: String::new(),
        url: String::new(),
        headers: Vec::new(),
        timeout: Duration::from_secs(5),
        threshold: 10,
        backoff: Duration::from_secs(1),
        ignored_media_types: Vec::new(),
        ignore_actions: Vec::new(),
        disabled: false,
    };
    for c in entries {
        let result = match key_name(&c.key).as_str() {
            "name" => text(&c.value).map(|v| e.name = v),
            "url" => text(&c.value).map(|v| e.url = v),
            "headers" => headers(&c.value).map(|v| e.headers = v),
            "timeout" => node_with(&c.value, Dur::text).map(|v| e.timeout = v.unwrap_or(e.timeout)),
            "backoff" => node_with(&c.value, Dur::text).map(|v| e.backoff = v.unwrap_or(e.backoff)),
            "threshold" => node_with(&c.value, Count::text).map(|v| {
                e.threshold = v.map_or(e.threshold, |n| n.clamp(1, u32::MAX as usize) as u32)
            }),
            "disabled" => node_with(&c.value, Bool::text).map(|v| e.disabled = v.unwrap_or(false)),
            "ignoredmediatypes" => list(&c.value).map(|v| e.ignored_media_types.extend(v)),
            "ignore" => ignore(&c.value, &mut e),
            _ => Err(format!(
                "unknown endpoint key {:?} (an endpoint has name, url, headers, timeout, \
                 threshold, backoff, ignoredmediatypes, ignore and disabled)",
                c.key
            )),
        };
        if let Err(m) = result {
            errors.push(ConfigError::at(&entry_source(file, c), m));
        }
    }
    if e.name.is_empty() {
        errors.push(ConfigError::at(
            at,
            "an endpoint needs a name (it names its queue and its log lines)",
        ));
    }
    if !(e.url.starts_with("http://") || e.url.starts_with("https://")) {
        errors.push(ConfigError::at(
            at,
            format!(
                "an endpoint needs an http:// or https:// url, found {:?}",
                e.url
            ),
        ));
    }
    (errors.len() == before).then_some(e)
}

pub(super) fn text(node: &Node) -> Result<String, String> {
    Ok(node_text(node)?.unwrap_or_default())
}

/// A scalar or a list of scalars.
pub(super) fn list(node: &Node) -> Result<Vec<String>, String> {
    match &node.kind {
        NodeKind::Seq(items) => items.iter().map(text).collect(),
        _ => Ok(node_text(node)?.into_iter().collect()),
    }
}

/// `headers: {Authorization: [Bearer x]}`: each name with its values (registry:2 writes a
/// list; one value is read too).
fn headers(node: &Node) -> Result<Vec<(String, String)>, String> {
    let Some(entries) = node.entries() else {
        return if node.is_null() {
            Ok(Vec::new())
        } else {
            Err(format!(
                "expected a mapping of header names to values, found {}",
                node.describe()
            ))
        };
    };
    let mut out = Vec::new();
    for h in entries {
        http::HeaderName::from_bytes(h.key.as_bytes())
            .map_err(|_| format!("not a header name: {:?}", h.key))?;
        for v in list(&h.value)? {
            http::HeaderValue::from_str(&v)
                .map_err(|_| format!("header {}: not a header value: {v:?}", h.key))?;
            out.push((h.key.clone(), v));
        }
    }
    Ok(out)
}

fn ignore(node: &Node, e: &mut NotificationEndpoint) -> Result<(), String> {
    for c in node.entries().unwrap_or_default() {
        match key_name(&c.key).as_str() {
            "mediatypes" => e.ignored_media_types.extend(list(&c.value)?),
            "actions" => e.ignore_actions.extend(list(&c.value)?),
            _ => {
                return Err(format!(
                    "unknown key ignore.{} (mediatypes or actions)",
                    c.key
                ))
            }
        }
    }
    Ok(())
}
