//! The settings whose value is a list of records (`notifications.endpoints`,
//! `proxy.upstreams`): one row each, naming the key in a file, the variable that can hold the
//! whole list as YAML (as distribution reads a list from one), and the reader. Files and
//! variables both go through this table, so a new list setting is one row here plus its
//! reader.

use super::source::{ConfigError, Source};
use super::yaml::Entry;
use super::Config;
use std::path::Path;

/// One list-valued setting.
pub struct ListSetting {
    /// Its key path in a registry:2 file (a flavored file writes it the same way).
    pub path: &'static str,
    /// The variable holding the whole list as YAML.
    pub variable: &'static str,
    /// What one item looks like, for error messages.
    pub example: &'static str,
    /// Reads the entry into the configuration, recording errors; `source` replaces the
    /// entry's own (a variable's list is parsed from a made-up file).
    pub read: fn(&mut Config, &Path, &Entry, Option<Source>, &mut Vec<ConfigError>),
}

pub const LISTS: &[ListSetting] = &[
    ListSetting {
        path: "notifications.endpoints",
        variable: "REGISTRY_NOTIFICATIONS_ENDPOINTS",
        example: "[{name: ..., url: ...}]",
        read: |c, file, entry, source, errors| {
            if let Some(mut list) = super::notifications::read(file, entry, errors) {
                if let Some(source) = source {
                    list.source = source;
                }
                c.notifications = list;
            }
        },
    },
    ListSetting {
        path: "proxy.upstreams",
        variable: "REGISTRY_PROXY_UPSTREAMS",
        example: "[{prefix: ..., remoteurl: ...}]",
        read: |c, file, entry, source, errors| {
            if let Some(mut list) = super::proxy::read(file, entry, errors) {
                if let Some(source) = source {
                    list.source = source;
                }
                c.proxy_upstreams = list;
            }
        },
    },
];

/// The list setting at a key path, if it is one.
pub fn at_path(path: &str) -> Option<&'static ListSetting> {
    LISTS.iter().find(|l| l.path == path)
}

/// Whether a variable holds one of the lists.
pub fn is_variable(name: &str) -> bool {
    LISTS.iter().any(|l| l.variable == name)
}
