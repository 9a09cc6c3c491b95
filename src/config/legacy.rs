//! The legacy (Python docker-registry) YAML format: a `common` section plus flavor sections
//! (`local`, `s3`, `dev`, `prod`, any name), usually sharing keys through anchors and merge
//! keys. The flavor named by `SETTINGS_FLAVOR` is laid over `common` (one level deep, as the
//! old registry did), its `_env:NAME[:default]` values are resolved, and the keys we honour are
//! read. Every other key is named in one warning, never silently dropped.
//!
//! Our additions to the format, in the same style: `gc_interval`, `gc_grace`,
//! `gc_delete_untagged`, `gc_socket` (collection inside the daemon), `retention` (a list
//! of rules, see [`super::retention`]; `_env:` works inside it too), `tls_certificate`,
//! `tls_key`, `tls_client_cas` (one file or a list: mutual TLS) and `trust_forwarded_headers`.
//! `auth:` is the registry:2 block (`htpasswd` or `token`, with our access file and token
//! endpoint keys), read by [`read_auth`].

use super::distribution::read_auth;
use super::layer::{set, Layer, StorageChoice};
use super::values::*;
use super::yaml::{Entry, Node};
use super::{entry_source, ConfigError, Source, Sourced};
use std::path::Path;

/// Reads the flavor `flavor` of a legacy file.
pub fn read(
    file: &Path,
    root: &Node,
    flavor: &Sourced<String>,
    lookup: &dyn Fn(&str) -> Option<(String, Source)>,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) -> Layer {
    let mut layer = Layer::default();
    let Some(sections) = root.entries() else {
        errors.push(ConfigError {
            file: Some(file.to_path_buf()),
            line: Some(root.line),
            key: String::new(),
            message: "expected flavor sections (common:, local:, ...) or a registry:2 file (version: 0.1)".into(),
        });
        return layer;
    };
    let available: Vec<&str> = sections
        .iter()
        .filter(|e| e.value.entries().is_some())
        .map(|e| e.key.as_str())
        .collect();
    let Some(section) = root.get(&flavor.value) else {
        let hint = if root.get("storage").is_some() || root.get("http").is_some() {
            "; this looks like a registry:2 file: add `version: 0.1` at the top".to_string()
        } else if available.is_empty() {
            "; the file has no flavor sections".to_string()
        } else {
            format!("; flavors available: {}", available.join(", "))
        };
        errors.push(ConfigError {
            file: Some(file.to_path_buf()),
            line: None,
            key: "SETTINGS_FLAVOR".into(),
            message: format!(
                "flavor {:?} ({}) is not a section of this file{hint}",
                flavor.value, flavor.source
            ),
        });
        return layer;
    };
    let Some(flavor_entries) = section.value.entries() else {
        errors.push(ConfigError {
            file: Some(file.to_path_buf()),
            line: Some(section.key_line),
            key: section.key.clone(),
            message: format!(
                "flavor {:?} must be a mapping of settings, found {}",
                flavor.value,
                section.value.describe()
            ),
        });
        return layer;
    };

    // The old registry did `config = common; config.update(flavor)`: one level deep.
    let mut merged: Vec<Entry> = Vec::new();
    if flavor.value != "common" {
        match root.get("common").map(|c| (c, c.value.entries())) {
            Some((_, Some(common))) => merged.extend(common.iter().cloned()),
            Some((c, None)) if !c.value.is_null() => errors.push(ConfigError {
                file: Some(file.to_path_buf()),
                line: Some(c.key_line),
                key: "common".into(),
                message: format!(
                    "must be a mapping of settings, found {}",
                    c.value.describe()
                ),
            }),
            _ => {}
        }
    }
    for e in flavor_entries {
        match merged.iter_mut().find(|m| m.key == e.key) {
            Some(m) => *m = e.clone(),
            None => merged.push(e.clone()),
        }
    }

    let mut ignored: Vec<String> = Vec::new();
    let mut storage_path = None;
    for raw in &merged {
        let entry = Entry {
            key: raw.key.clone(),
            key_line: raw.key_line,
            value: raw.value.substitute_env(lookup),
        };
        let v = &entry.value;
        let src = entry_source(file, &entry);
        match entry.key.as_str() {
            "storage" => match node_text(v) {
                Ok(None) => {}
                Ok(Some(name)) => {
                    let choice = match name.as_str() {
                        "local" | "file" | "filesystem" => StorageChoice::Filesystem,
                        _ => StorageChoice::Unsupported { name },
                    };
                    layer.storage = Some(Sourced::new(choice, src));
                }
                Err(m) => errors.push(ConfigError::at(&src, m)),
            },
            "storage_path" => match node_with(v, path_text) {
                Ok(p) => storage_path = p.map(|p| Sourced::new(p, src)),
                Err(m) => errors.push(ConfigError::at(&src, m)),
            },
            "loglevel" => set(
                &mut layer.log_level,
                node_with(v, log_level_text),
                src,
                errors,
            ),
            "log_target" => set(
                &mut layer.log_target,
                node_with(v, log_target_text),
                src,
                errors,
            ),
            "search_backend" => match node_text(v) {
                Ok(backend) => layer.search_backend = Some(Sourced::new(backend, src)),
                Err(m) => errors.push(ConfigError::at(&src, m)),
            },
            "storage_delete_enabled" | "delete_enabled" => {
                set(&mut layer.delete_enabled, node_bool(v), src, errors)
            }
            "issue" => set(&mut layer.issue, node_text(v), src, errors),
            "auth" => read_auth(file, &entry, &mut layer, errors, &mut ignored),
            "gc_interval" => set(
                &mut layer.gc_interval,
                node_with(v, gc_interval_text),
                src,
                errors,
            ),
            "gc_grace" => set(
                &mut layer.gc_grace,
                node_with(v, duration_text),
                src,
                errors,
            ),
            "gc_delete_untagged" => set(&mut layer.gc_delete_untagged, node_bool(v), src, errors),
            "gc_socket" => set(&mut layer.gc_socket, node_with(v, path_text), src, errors),
            "tls_certificate" => set(
                &mut layer.tls_certificate,
                node_with(v, path_text),
                src,
                errors,
            ),
            "tls_key" => set(&mut layer.tls_key, node_with(v, path_text), src, errors),
            "tls_client_cas" => set(&mut layer.tls_client_cas, node_paths(v), src, errors),
            "trust_forwarded_headers" => set(
                &mut layer.trust_forwarded_headers,
                node_bool(v),
                src,
                errors,
            ),
            "retention" => {
                if let Some(rules) = super::retention::read(file, &entry, errors) {
                    layer.retention = Some(rules);
                }
            }
            _ => ignored.push(entry.key.clone()),
        }
    }
    // `storage_path` is a directory only for local storage; for s3 it is a key prefix.
    if matches!(
        layer.storage.as_ref().map(|s| &s.value),
        None | Some(StorageChoice::Filesystem)
    ) {
        layer.storage_root = storage_path;
    }
    if !ignored.is_empty() {
        warnings.push(format!(
            "{}: flavor {}: ignoring keys this registry does not use: {}",
            file.display(),
            flavor.value,
            ignored.join(", ")
        ));
    }
    layer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml;
    use crate::config::LogLevel;
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::time::Duration;

    fn load(
        text: &str,
        flavor: &str,
        env: &[(&str, &str)],
    ) -> (Layer, Vec<ConfigError>, Vec<String>) {
        let root = yaml::parse(text)
            .expect("valid yaml")
            .0
            .expect("a document");
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = |n: &str| env.get(n).map(|v| (v.clone(), Source::Env(n.to_string())));
        let (mut errors, mut warnings) = (Vec::new(), Vec::new());
        let flavor = Sourced::new(flavor.to_string(), Source::Default);
        let layer = read(
            Path::new("/etc/docker-registry.yml"),
            &root,
            &flavor,
            &lookup,
            &mut errors,
            &mut warnings,
        );
        (layer, errors, warnings)
    }

    const FILE: &str = "\
common: &common
    issue: '\"docker-registry server\"'
    loglevel: _env:LOGLEVEL:info
    debug: _env:DEBUG:false
    search_backend: _env:SEARCH_BACKEND
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
    auth:
        htpasswd:
            realm: basic-realm
            path: /etc/docker-registry/htpasswd
";

    #[test]
    fn local_flavor_reads_common_and_its_own_keys() {
        let (l, errors, warnings) = load(FILE, "local", &[]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(l.storage.map(|s| s.value), Some(StorageChoice::Filesystem));
        let root = l.storage_root.expect("root");
        assert_eq!(root.value, PathBuf::from("/var/lib/docker-registry"));
        assert!(
            root.source.to_string().contains(":9 (local.storage_path"),
            "{}",
            root.source
        );
        let level = l.log_level.expect("level");
        assert_eq!(level.value, LogLevel::Info);
        assert!(
            level.source.to_string().contains(":3 (common.loglevel"),
            "{}",
            level.source
        );
        assert_eq!(l.search_backend.map(|s| s.value), Some(None));
        assert_eq!(
            l.issue.map(|s| s.value),
            Some("\"docker-registry server\"".to_string())
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].ends_with("flavor local: ignoring keys this registry does not use: debug"),
            "{warnings:?}"
        );
    }

    #[test]
    fn env_values_override_defaults_even_with_colons() {
        let (l, errors, _) = load(
            FILE,
            "local",
            &[("STORAGE_PATH", "/srv/a:b"), ("LOGLEVEL", "warning")],
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            l.storage_root.map(|r| r.value),
            Some(PathBuf::from("/srv/a:b"))
        );
        let level = l.log_level.expect("level");
        assert_eq!(level.value, LogLevel::Warn);
        assert!(
            level
                .source
                .to_string()
                .contains("_env:LOGLEVEL from the environment"),
            "{}",
            level.source
        );
    }

    #[test]
    fn dev_inherits_through_two_merges_and_reads_auth() {
        let (l, errors, _) = load(FILE, "dev", &[]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(l.log_level.map(|s| s.value), Some(LogLevel::Debug));
        assert_eq!(l.delete_enabled.map(|s| s.value), Some(true));
        assert_eq!(
            l.storage_root.map(|s| s.value),
            Some(PathBuf::from("/var/lib/docker-registry"))
        );
        assert!(l.auth.is_some());
        assert_eq!(
            l.auth_path.map(|p| p.value),
            Some(PathBuf::from("/etc/docker-registry/htpasswd"))
        );
    }

    #[test]
    fn s3_flavor_chooses_s3_and_keeps_the_prefix_out_of_the_root() {
        let (l, errors, _) = load(FILE, "s3", &[]);
        assert!(errors.is_empty(), "{errors:?}");
        let storage = l.storage.expect("storage");
        assert_eq!(
            storage.value,
            StorageChoice::Unsupported { name: "s3".into() }
        );
        assert!(
            storage.source.to_string().contains(":12 (s3.storage)"),
            "{}",
            storage.source
        );
        assert!(l.storage_root.is_none());
    }

    #[test]
    fn a_missing_flavor_names_the_flavors_available() {
        let (_, errors, _) = load(FILE, "staging", &[]);
        assert_eq!(errors.len(), 1);
        let text = errors[0].to_string();
        assert!(
            text.starts_with("/etc/docker-registry.yml: SETTINGS_FLAVOR: flavor \"staging\""),
            "{text}"
        );
        assert!(
            text.ends_with("flavors available: common, local, s3, dev"),
            "{text}"
        );
    }

    #[test]
    fn bad_values_are_all_reported_with_lines() {
        let text = "common:\n  loglevel: loud\nlocal:\n  storage: local\n  storage_delete_enabled: sometimes\n  storage_path: [a]\n";
        let (_, errors, _) = load(text, "local", &[]);
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 3, "{shown:?}");
        assert!(
            shown[0].starts_with("/etc/docker-registry.yml:2: common.loglevel: unknown log level"),
            "{shown:?}"
        );
        assert!(shown[1].starts_with(
            "/etc/docker-registry.yml:5: local.storage_delete_enabled: expected true"
        ));
        assert!(shown[2].starts_with(
            "/etc/docker-registry.yml:6: local.storage_path: expected a single value"
        ));
    }

    const GC: &str = "\
common: &common
    gc_interval: _env:GC_INTERVAL:24h
    gc_grace: 2h
    gc_socket: /run/docker-registry/admin.sock
    retention:
        - repositories: library/*
          keep_tags: _env:KEEP_TAGS:10
          protect_tags: release-*
local:
    <<: *common
    storage: local
dev:
    <<: *common
    gc_interval: 1h
    gc_delete_untagged: true
    retention:
";

    #[test]
    fn gc_and_retention_keys_in_common_with_env_references() {
        let (l, errors, warnings) = load(GC, "local", &[("KEEP_TAGS", "3")]);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(warnings.is_empty(), "{warnings:?}");
        let interval = l.gc_interval.expect("interval");
        assert_eq!(interval.value, Some(Duration::from_secs(24 * 3600)));
        assert_eq!(
            interval.source.to_string(),
            "/etc/docker-registry.yml:2 (common.gc_interval: _env:GC_INTERVAL unset, the default written there)"
        );
        let grace = l.gc_grace.expect("grace");
        assert_eq!(grace.value, Duration::from_secs(7200));
        assert_eq!(
            grace.source.to_string(),
            "/etc/docker-registry.yml:3 (common.gc_grace)"
        );
        assert!(l.gc_delete_untagged.is_none());
        assert_eq!(
            l.gc_socket.map(|s| s.value),
            Some(PathBuf::from("/run/docker-registry/admin.sock"))
        );
        let rules = l.retention.expect("retention");
        assert_eq!(rules.value.len(), 1);
        assert_eq!(rules.value[0].keep_tags, Some(3));
        assert_eq!(rules.value[0].protect_tags.as_deref(), Some("release-*"));
        assert_eq!(
            rules.source.to_string(),
            "/etc/docker-registry.yml:6 (common.retention[0])"
        );
        // An interval of 0 from the environment turns the schedule off.
        let (l, errors, _) = load(GC, "local", &[("GC_INTERVAL", "0")]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(l.gc_interval.map(|s| s.value), Some(None));
    }

    #[test]
    fn a_flavor_overrides_gc_keys_and_can_empty_the_retention_list() {
        let (l, errors, _) = load(GC, "dev", &[]);
        assert!(errors.is_empty(), "{errors:?}");
        let interval = l.gc_interval.expect("interval");
        assert_eq!(interval.value, Some(Duration::from_secs(3600)));
        assert_eq!(
            interval.source.to_string(),
            "/etc/docker-registry.yml:14 (dev.gc_interval)"
        );
        assert_eq!(l.gc_delete_untagged.map(|s| s.value), Some(true));
        let rules = l.retention.expect("retention");
        assert!(rules.value.is_empty());
        assert_eq!(
            rules.source.to_string(),
            "/etc/docker-registry.yml:16 (dev.retention)"
        );
    }

    #[test]
    fn bad_gc_and_retention_values_name_line_key_and_variable() {
        let (l, errors, _) = load(
            GC,
            "local",
            &[("GC_INTERVAL", "nightly"), ("KEEP_TAGS", "all")],
        );
        assert!(l.retention.is_none());
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(
            shown[0].starts_with(
                "/etc/docker-registry.yml:2: common.gc_interval: not a duration: \"nightly\""
            ) && shown[0].ends_with("(value from _env:GC_INTERVAL, set in the environment)"),
            "{shown:?}"
        );
        assert!(
            shown[1].starts_with(
                "/etc/docker-registry.yml:7: common.retention[0].keep_tags: not a number of tags: \"all\""
            ) && shown[1].ends_with("(value from _env:KEEP_TAGS, set in the environment)"),
            "{shown:?}"
        );
        let (_, errors, _) = load(
            "local:\n  gc_delete_untagged: perhaps\n  gc_grace: forever\n  retention: keep 5\n",
            "local",
            &[],
        );
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(shown.len(), 3, "{shown:?}");
        assert!(shown[0].starts_with(
            "/etc/docker-registry.yml:2: local.gc_delete_untagged: expected true or false"
        ));
        assert!(shown[1].starts_with("/etc/docker-registry.yml:3: local.gc_grace: not a duration"));
        assert!(shown[2]
            .starts_with("/etc/docker-registry.yml:4: local.retention: expected a list of rules"));
    }

    const SECURE: &str = "\
common: &common
    trust_forwarded_headers: _env:TRUST_PROXY:false
local:
    <<: *common
    storage: local
    tls_certificate: /etc/r/tls.crt
    tls_key: /etc/r/tls.key
    tls_client_cas: _env:CLIENT_CA:/etc/r/ca.pem
    auth:
        htpasswd:
            path: /etc/r/users
            access_file: /etc/r/access.yml
dev:
    <<: *common
    tls_client_cas: [/a.pem, /b.pem]
    auth:
        token:
            realm: https://r.example/token
            service: r.example
            issuer: r.example
            rootcertbundle: /etc/r/token.crt
            signing_key: /etc/r/token.key
            htpasswd: /etc/r/users
";

    #[test]
    fn tls_proxy_and_auth_keys_in_a_flavor() {
        let (l, errors, warnings) = load(SECURE, "local", &[("TRUST_PROXY", "true")]);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(warnings.is_empty(), "{warnings:?}");
        let trust = l.trust_forwarded_headers.expect("trust");
        assert!(trust.value);
        assert_eq!(
            trust.source.to_string(),
            "/etc/docker-registry.yml:2 (common.trust_forwarded_headers: _env:TRUST_PROXY from the environment)"
        );
        assert_eq!(
            l.tls_certificate.map(|s| s.value),
            Some(PathBuf::from("/etc/r/tls.crt"))
        );
        let cas = l.tls_client_cas.expect("cas");
        assert_eq!(cas.value, vec![PathBuf::from("/etc/r/ca.pem")]);
        assert!(
            cas.source
                .to_string()
                .starts_with("/etc/docker-registry.yml:8 (local.tls_client_cas"),
            "{}",
            cas.source
        );
        let access = l.auth_access_file.expect("access file");
        assert_eq!(access.value, PathBuf::from("/etc/r/access.yml"));
        assert_eq!(
            access.source.to_string(),
            "/etc/docker-registry.yml:12 (local.auth.htpasswd.access_file)"
        );
        let (l, errors, _) = load(SECURE, "dev", &[]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            l.tls_client_cas.map(|s| s.value),
            Some(vec![PathBuf::from("/a.pem"), PathBuf::from("/b.pem")])
        );
        assert_eq!(
            l.auth.map(|s| s.value),
            Some(crate::config::layer::AuthChoice::Token)
        );
        let key = l.token.signing_key.expect("signing key");
        assert_eq!(
            key.source.to_string(),
            "/etc/docker-registry.yml:22 (dev.auth.token.signing_key)"
        );
        let (_, errors, _) = load(
            "local:\n  trust_forwarded_headers: maybe\n  tls_client_cas: [[a]]\n",
            "local",
            &[],
        );
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            shown,
            [
                "/etc/docker-registry.yml:2: local.trust_forwarded_headers: expected true or false, found \"maybe\"",
                "/etc/docker-registry.yml:3: local.tls_client_cas: item 0 of the list: expected a single value, found a list",
            ]
        );
    }

    #[test]
    fn a_bad_env_value_names_the_variable() {
        let (_, errors, _) = load(FILE, "local", &[("LOGLEVEL", "chatty")]);
        assert_eq!(errors.len(), 1);
        let text = errors[0].to_string();
        assert!(
            text.starts_with(
                "/etc/docker-registry.yml:3: common.loglevel: unknown log level \"chatty\""
            ),
            "{text}"
        );
        assert!(text.contains("_env:LOGLEVEL"), "{text}");
    }
}
