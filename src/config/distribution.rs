//! The `registry:2` (CNCF distribution) configuration file, recognised by `version: 0.1`.
//!
//! We read the settings that mean something for this registry (filesystem storage, deletion,
//! maintenance, `http.addr`, TLS with `clientcas`, log level, htpasswd and token auth). Sections distribution knows and we
//! do not implement (`storage.cache`, `http.secret`, `notifications`, `redis`, ...) are named in
//! one warning. Storage drivers and authentication methods we do not have are errors: running
//! on the wrong storage, or without the authentication asked for, would be worse than not
//! starting.
//!
//! Two extensions of ours, which registry:2 itself ignores: `storage.maintenance.gc`
//! (`interval`, `grace`, `deleteuntagged`, `socket`: collection inside the daemon) next to
//! `uploadpurging` and `readonly`, and a top-level `retention:` list (see
//! [`super::retention`]). Their keys ignore case, `_` and `-` (`deleteuntagged`,
//! `delete_untagged`, `deleteUntagged`). Likewise for the settings registry:2 has no name
//! for: `http.trustforwardedheaders`, `auth.htpasswd.accessfile`, and the built-in token
//! endpoint's `auth.token.signingkey`, `.htpasswd`, `.accessfile`.

use super::layer::{set, AuthChoice, Layer, StorageChoice};
use super::values::*;
use super::yaml::{Entry, Node};
use super::{entry_source, ConfigError, Source, Sourced};
use std::path::{Path, PathBuf};

/// Where registry:2's filesystem driver keeps data when `rootdirectory` is not given.
pub const DISTRIBUTION_DEFAULT_ROOT: &str = "/var/lib/registry";

/// Storage drivers distribution has; any of them other than `filesystem` is refused.
const STORAGE_DRIVERS: &[&str] = &[
    "filesystem",
    "inmemory",
    "s3",
    "azure",
    "gcs",
    "swift",
    "oss",
    "cloudfront",
    "redirect-only",
];

/// Reads a `version: 0.1` file.
pub fn read(
    file: &Path,
    root: &Node,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) -> Layer {
    let mut layer = Layer::default();
    let mut ignored: Vec<String> = Vec::new();
    let Some(entries) = root.entries() else {
        return layer;
    };
    for entry in entries {
        let src = entry_source(file, entry);
        match entry.key.as_str() {
            "version" => {}
            // distribution's deprecated top-level log level.
            "loglevel" => set(
                &mut layer.log_level,
                node_with(&entry.value, log_level_text),
                src,
                errors,
            ),
            "log" => each(
                file,
                entry,
                errors,
                &mut ignored,
                |e, src, errors, ignored| match e.key.as_str() {
                    "level" => set(
                        &mut layer.log_level,
                        node_with(&e.value, log_level_text),
                        src,
                        errors,
                    ),
                    "target" => set(
                        &mut layer.log_target,
                        node_with(&e.value, log_target_text),
                        src,
                        errors,
                    ),
                    _ => ignored.push(format!("log.{}", e.key)),
                },
            ),
            "storage" => read_storage(file, entry, &mut layer, errors, &mut ignored),
            "http" => read_http(file, entry, &mut layer, errors, &mut ignored),
            "auth" => read_auth(file, entry, &mut layer, errors, &mut ignored),
            "retention" => {
                if let Some(rules) = super::retention::read(file, entry, errors) {
                    layer.retention = Some(rules);
                }
            }
            other => ignored.push(other.to_string()),
        }
    }
    if !ignored.is_empty() {
        warnings.push(format!(
            "{}: ignoring registry:2 settings this registry does not use: {}",
            file.display(),
            ignored.join(", ")
        ));
    }
    layer
}

/// Calls `f` for each entry of a mapping value; a non-mapping is an error, null is nothing.
fn each(
    file: &Path,
    entry: &Entry,
    errors: &mut Vec<ConfigError>,
    ignored: &mut Vec<String>,
    mut f: impl FnMut(&Entry, super::Source, &mut Vec<ConfigError>, &mut Vec<String>),
) {
    match entry.value.entries() {
        Some(children) => {
            for c in children {
                f(c, entry_source(file, c), errors, ignored);
            }
        }
        None if entry.value.is_null() => {}
        None => errors.push(ConfigError::at(
            &entry_source(file, entry),
            format!("expected a mapping, found {}", entry.value.describe()),
        )),
    }
}

fn read_storage(
    file: &Path,
    storage: &Entry,
    layer: &mut Layer,
    errors: &mut Vec<ConfigError>,
    ignored: &mut Vec<String>,
) {
    let mut drivers: Vec<String> = Vec::new();
    each(
        file,
        storage,
        errors,
        ignored,
        |e, src, errors, ignored| match e.key.as_str() {
            "filesystem" => {
                drivers.push(e.key.clone());
                layer.storage = Some(Sourced::new(StorageChoice::Filesystem, src));
                // registry:2's filesystem driver defaults to /var/lib/registry; a file written
                // for it that omits rootdirectory means that directory, not ours.
                layer.storage_root = Some(Sourced::new(
                    PathBuf::from(DISTRIBUTION_DEFAULT_ROOT),
                    Source::Derived(format!(
                        "registry:2's default for storage.filesystem at {}:{}",
                        file.display(),
                        e.key_line
                    )),
                ));
                each(
                    file,
                    e,
                    errors,
                    ignored,
                    |f, src, errors, ignored| match f.key.as_str() {
                        "rootdirectory" => set(
                            &mut layer.storage_root,
                            node_with(&f.value, path_text),
                            src,
                            errors,
                        ),
                        _ => ignored.push(format!("storage.filesystem.{}", f.key)),
                    },
                );
            }
            "delete" => each(file, e, errors, ignored, |d, src, errors, ignored| match d
                .key
                .as_str()
            {
                "enabled" => set(&mut layer.delete_enabled, node_bool(&d.value), src, errors),
                _ => ignored.push(format!("storage.delete.{}", d.key)),
            }),
            "maintenance" => each(file, e, errors, ignored, |m, _, errors, ignored| {
                match m.key.as_str() {
                    "uploadpurging" => {
                        each(file, m, errors, ignored, |p, src, errors, ignored| match p
                            .key
                            .as_str()
                        {
                            "enabled" => {
                                set(&mut layer.purge_enabled, node_bool(&p.value), src, errors)
                            }
                            "age" => set(
                                &mut layer.purge_age,
                                node_with(&p.value, duration_text),
                                src,
                                errors,
                            ),
                            "interval" => set(
                                &mut layer.purge_interval,
                                node_with(&p.value, duration_text),
                                src,
                                errors,
                            ),
                            "dryrun" => {
                                set(&mut layer.purge_dry_run, node_bool(&p.value), src, errors)
                            }
                            _ => {
                                ignored.push(format!("storage.maintenance.uploadpurging.{}", p.key))
                            }
                        })
                    }
                    "gc" => each(file, m, errors, ignored, |g, src, errors, ignored| {
                        read_gc(g, src, layer, errors, ignored)
                    }),
                    "readonly" => each(file, m, errors, ignored, |r, src, errors, ignored| match r
                        .key
                        .as_str()
                    {
                        "enabled" => set(&mut layer.readonly, node_bool(&r.value), src, errors),
                        _ => ignored.push(format!("storage.maintenance.readonly.{}", r.key)),
                    }),
                    _ => ignored.push(format!("storage.maintenance.{}", m.key)),
                }
            }),
            name if STORAGE_DRIVERS.contains(&name) => {
                drivers.push(e.key.clone());
                layer.storage = Some(Sourced::new(
                    StorageChoice::Unsupported {
                        name: name.to_string(),
                    },
                    src,
                ));
            }
            _ => ignored.push(format!("storage.{}", e.key)),
        },
    );
    if drivers.len() > 1 {
        errors.push(ConfigError::at(
            &entry_source(file, storage),
            format!(
                "more than one storage driver configured ({}); keep one",
                drivers.join(", ")
            ),
        ));
    }
}

/// One key of `storage.maintenance.gc`.
fn read_gc(
    g: &Entry,
    src: Source,
    layer: &mut Layer,
    errors: &mut Vec<ConfigError>,
    ignored: &mut Vec<String>,
) {
    match extension_key(&g.key).as_str() {
        "interval" => set(
            &mut layer.gc_interval,
            node_with(&g.value, gc_interval_text),
            src,
            errors,
        ),
        "grace" => set(
            &mut layer.gc_grace,
            node_with(&g.value, duration_text),
            src,
            errors,
        ),
        "deleteuntagged" => set(
            &mut layer.gc_delete_untagged,
            node_bool(&g.value),
            src,
            errors,
        ),
        "socket" => set(
            &mut layer.gc_socket,
            node_with(&g.value, path_text),
            src,
            errors,
        ),
        _ => ignored.push(format!("storage.maintenance.gc.{}", g.key)),
    }
}

fn read_http(
    file: &Path,
    http: &Entry,
    layer: &mut Layer,
    errors: &mut Vec<ConfigError>,
    ignored: &mut Vec<String>,
) {
    each(
        file,
        http,
        errors,
        ignored,
        |e, src, errors, ignored| match e.key.as_str() {
            "addr" => match node_with(&e.value, http_addr_text) {
                Ok(Some(addr)) => {
                    layer.address = Some(Sourced::new(addr.ip(), src.clone()));
                    layer.port = Some(Sourced::new(addr.port(), src));
                }
                Ok(None) => {}
                Err(m) => errors.push(ConfigError::at(&src, m)),
            },
            "net" => match node_text(&e.value) {
                Ok(None) => {}
                Ok(Some(net)) if net == "tcp" => {}
                Ok(Some(net)) => errors.push(ConfigError::at(
                    &src,
                    format!("listening on {net:?} is not supported (only tcp); remove http.net"),
                )),
                Err(m) => errors.push(ConfigError::at(&src, m)),
            },
            "tls" => each(
                file,
                e,
                errors,
                ignored,
                |t, src, errors, ignored| match t.key.as_str() {
                    "certificate" => set(
                        &mut layer.tls_certificate,
                        node_with(&t.value, path_text),
                        src,
                        errors,
                    ),
                    "key" => set(
                        &mut layer.tls_key,
                        node_with(&t.value, path_text),
                        src,
                        errors,
                    ),
                    "clientcas" => {
                        set(&mut layer.tls_client_cas, node_paths(&t.value), src, errors)
                    }
                    _ => ignored.push(format!("http.tls.{}", t.key)),
                },
            ),
            key if extension_key(key) == "trustforwardedheaders" => set(
                &mut layer.trust_forwarded_headers,
                node_bool(&e.value),
                src,
                errors,
            ),
            _ => ignored.push(format!("http.{}", e.key)),
        },
    );
}

/// `auth:` with one method: `htpasswd` (`realm`, `path`, and our `accessfile`) or `token`
/// (`realm`, `service`, `issuer`, `rootcertbundle`, and ours for the built-in token endpoint:
/// `signingkey`, `htpasswd`, `accessfile`). Our keys ignore case, `_` and `-`. Shared with
/// the legacy format, where we accept the same block.
pub fn read_auth(
    file: &Path,
    auth: &Entry,
    layer: &mut Layer,
    errors: &mut Vec<ConfigError>,
    ignored: &mut Vec<String>,
) {
    let mut methods: Vec<String> = Vec::new();
    each(file, auth, errors, ignored, |e, src, errors, ignored| {
        methods.push(e.key.clone());
        match e.key.as_str() {
            "htpasswd" => {
                layer.auth = Some(Sourced::new(AuthChoice::Htpasswd, src));
                each(
                    file,
                    e,
                    errors,
                    ignored,
                    |h, src, errors, ignored| match h.key.as_str() {
                        "realm" => set(&mut layer.auth_realm, node_text(&h.value), src, errors),
                        "path" => set(
                            &mut layer.auth_path,
                            node_with(&h.value, path_text),
                            src,
                            errors,
                        ),
                        key if extension_key(key) == "accessfile" => set(
                            &mut layer.auth_access_file,
                            node_with(&h.value, path_text),
                            src,
                            errors,
                        ),
                        _ => ignored.push(format!("auth.htpasswd.{}", h.key)),
                    },
                );
            }
            "token" => {
                layer.auth = Some(Sourced::new(AuthChoice::Token, src));
                each(file, e, errors, ignored, |t, src, errors, ignored| {
                    read_token(t, src, layer, errors, ignored)
                });
            }
            other => {
                layer.auth = Some(Sourced::new(
                    AuthChoice::Unsupported {
                        name: other.to_string(),
                    },
                    src,
                ))
            }
        }
    });
    if methods.len() > 1 {
        errors.push(ConfigError::at(
            &entry_source(file, auth),
            format!(
                "more than one authentication method configured ({}); keep one (the built-in \
                 token endpoint's users are auth.token.htpasswd)",
                methods.join(", ")
            ),
        ));
    }
}

/// One key of `auth.token`.
fn read_token(
    t: &Entry,
    src: Source,
    layer: &mut Layer,
    errors: &mut Vec<ConfigError>,
    ignored: &mut Vec<String>,
) {
    let path = |slot: &mut Option<Sourced<PathBuf>>, errors: &mut Vec<ConfigError>| {
        set(slot, node_with(&t.value, path_text), src.clone(), errors)
    };
    match t.key.as_str() {
        "realm" => set(&mut layer.token.realm, node_text(&t.value), src, errors),
        "service" => set(&mut layer.token.service, node_text(&t.value), src, errors),
        "issuer" => set(&mut layer.token.issuer, node_text(&t.value), src, errors),
        "rootcertbundle" => path(&mut layer.token.rootcertbundle, errors),
        key => match extension_key(key).as_str() {
            "signingkey" => path(&mut layer.token.signing_key, errors),
            "htpasswd" => path(&mut layer.token.htpasswd, errors),
            "accessfile" => path(&mut layer.token.access_file, errors),
            _ => ignored.push(format!("auth.token.{}", t.key)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml;
    use crate::config::LogLevel;
    use std::time::Duration;

    fn load(text: &str) -> (Layer, Vec<ConfigError>, Vec<String>) {
        let root = yaml::parse(text)
            .expect("valid yaml")
            .0
            .expect("a document");
        let (mut errors, mut warnings) = (Vec::new(), Vec::new());
        let layer = read(
            Path::new("/etc/registry.yml"),
            &root,
            &mut errors,
            &mut warnings,
        );
        (layer, errors, warnings)
    }

    #[test]
    fn reads_the_settings_we_implement() {
        let (l, errors, warnings) = load(
            "version: 0.1\nlog:\n  level: debug\n  formatter: text\nstorage:\n  filesystem:\n    rootdirectory: /srv/r\n  \
             delete:\n    enabled: true\n  cache:\n    blobdescriptor: inmemory\n  maintenance:\n    uploadpurging:\n      \
             enabled: false\n      age: 48h\n      interval: 1h\n      dryrun: true\n    readonly:\n      enabled: true\n\
             http:\n  addr: '[::1]:5001'\n  secret: s\n  tls:\n    certificate: /c.pem\n    key: /k.pem\n\
             auth:\n  htpasswd:\n    realm: basic-realm\n    path: /etc/htpasswd\nnotifications: {}\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(l.log_level.map(|s| s.value), Some(LogLevel::Debug));
        let root = l.storage_root.expect("root");
        assert_eq!(root.value, PathBuf::from("/srv/r"));
        assert_eq!(
            root.source.to_string(),
            "/etc/registry.yml:7 (storage.filesystem.rootdirectory)"
        );
        assert_eq!(l.delete_enabled.map(|s| s.value), Some(true));
        assert_eq!(l.readonly.map(|s| s.value), Some(true));
        assert_eq!(l.purge_enabled.map(|s| s.value), Some(false));
        assert_eq!(
            l.purge_age.map(|s| s.value),
            Some(Duration::from_secs(48 * 3600))
        );
        assert_eq!(
            l.purge_interval.map(|s| s.value),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(l.purge_dry_run.map(|s| s.value), Some(true));
        assert_eq!(l.address.map(|s| s.value.to_string()), Some("::1".into()));
        assert_eq!(l.port.map(|s| s.value), Some(5001));
        assert_eq!(l.tls_key.map(|s| s.value), Some(PathBuf::from("/k.pem")));
        assert_eq!(l.auth.map(|s| s.value), Some(AuthChoice::Htpasswd));
        assert_eq!(l.auth_realm.map(|s| s.value), Some("basic-realm".into()));
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].ends_with("log.formatter, storage.cache, http.secret, notifications"),
            "{warnings:?}"
        );
    }

    #[test]
    fn reads_token_auth_client_cas_and_our_auth_and_proxy_keys() {
        let (l, errors, warnings) = load(
            "version: 0.1\nhttp:\n  trust_forwarded_headers: yes\n  tls:\n    certificate: /c.pem\n    \
             key: /k.pem\n    clientcas:\n      - /ca.pem\n    minimumtls: tls1.2\nauth:\n  token:\n    \
             realm: https://r.example/token\n    service: r.example\n    issuer: issuer\n    \
             rootcertbundle: /b.pem\n    signingKey: /s.key\n    htpasswd: /users\n    access_file: /a.yml\n    \
             jwks: /j.json\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(l.trust_forwarded_headers.map(|s| s.value), Some(true));
        let cas = l.tls_client_cas.expect("clientcas");
        assert_eq!(cas.value, vec![PathBuf::from("/ca.pem")]);
        assert_eq!(
            cas.source.to_string(),
            "/etc/registry.yml:7 (http.tls.clientcas)"
        );
        assert_eq!(l.auth.map(|s| s.value), Some(AuthChoice::Token));
        let t = l.token;
        assert_eq!(
            t.realm.map(|s| s.value),
            Some("https://r.example/token".into())
        );
        assert_eq!(t.service.map(|s| s.value), Some("r.example".into()));
        assert_eq!(t.issuer.map(|s| s.value), Some("issuer".into()));
        assert_eq!(
            t.rootcertbundle.map(|s| s.value),
            Some(PathBuf::from("/b.pem"))
        );
        let key = t.signing_key.expect("signingkey");
        assert_eq!(key.value, PathBuf::from("/s.key"));
        assert_eq!(
            key.source.to_string(),
            "/etc/registry.yml:16 (auth.token.signingKey)"
        );
        assert_eq!(t.htpasswd.map(|s| s.value), Some(PathBuf::from("/users")));
        assert_eq!(
            t.access_file.map(|s| s.value),
            Some(PathBuf::from("/a.yml"))
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].ends_with("does not use: http.tls.minimumtls, auth.token.jwks"),
            "{warnings:?}"
        );
        let (l, errors, _) =
            load("version: 0.1\nauth:\n  htpasswd:\n    path: /users\n    accessfile: /a.yml\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            l.auth_access_file.map(|s| s.value),
            Some(PathBuf::from("/a.yml"))
        );
    }

    #[test]
    fn wrong_types_of_the_auth_and_tls_keys_are_errors_with_lines() {
        let (_, errors, _) = load(
            "version: 0.1\nhttp:\n  trustforwardedheaders: sometimes\n  tls:\n    clientcas: {a: b}\n\
             auth:\n  token:\n    rootcertbundle: [a, b]\n    signingkey: ''\n",
        );
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            shown,
            [
                "/etc/registry.yml:3: http.trustforwardedheaders: expected true or false, found \"sometimes\"",
                "/etc/registry.yml:5: http.tls.clientcas: expected a single value, found a mapping",
                "/etc/registry.yml:8: auth.token.rootcertbundle: expected a single value, found a list",
                "/etc/registry.yml:9: auth.token.signingkey: empty path",
            ]
        );
    }

    #[test]
    fn filesystem_without_rootdirectory_means_registry_2s_default() {
        let (l, errors, _) = load("version: 0.1\nstorage:\n  filesystem: {}\n");
        assert!(errors.is_empty(), "{errors:?}");
        let root = l.storage_root.expect("root");
        assert_eq!(root.value, PathBuf::from("/var/lib/registry"));
        assert_eq!(
            root.source.to_string(),
            "default (registry:2's default for storage.filesystem at /etc/registry.yml:3)"
        );
    }

    #[test]
    fn other_storage_drivers_and_auth_methods_are_chosen_so_they_can_be_refused() {
        let (l, errors, _) =
            load("version: 0.1\nstorage:\n  s3:\n    bucket: b\nauth:\n  silly:\n    realm: x\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            l.storage.map(|s| s.value),
            Some(StorageChoice::Unsupported { name: "s3".into() })
        );
        assert_eq!(
            l.auth.map(|s| s.value),
            Some(AuthChoice::Unsupported {
                name: "silly".into()
            })
        );
    }

    #[test]
    fn reads_our_gc_section_and_retention_list() {
        let (l, errors, warnings) = load(
            "version: 0.1\nstorage:\n  maintenance:\n    uploadpurging:\n      age: 48h\n    gc:\n      \
             interval: 24h\n      grace: 30m\n      deleteuntagged: true\n      socket: /run/r/admin.sock\n\
             retention:\n  - repositories: library/*\n    keeptags: 5\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert!(warnings.is_empty(), "{warnings:?}");
        let interval = l.gc_interval.expect("interval");
        assert_eq!(interval.value, Some(Duration::from_secs(24 * 3600)));
        assert_eq!(
            interval.source.to_string(),
            "/etc/registry.yml:7 (storage.maintenance.gc.interval)"
        );
        let grace = l.gc_grace.expect("grace");
        assert_eq!(grace.value, Duration::from_secs(1800));
        assert_eq!(
            grace.source.to_string(),
            "/etc/registry.yml:8 (storage.maintenance.gc.grace)"
        );
        assert_eq!(l.gc_delete_untagged.map(|s| s.value), Some(true));
        let socket = l.gc_socket.expect("socket");
        assert_eq!(socket.value, PathBuf::from("/run/r/admin.sock"));
        assert_eq!(
            socket.source.to_string(),
            "/etc/registry.yml:10 (storage.maintenance.gc.socket)"
        );
        let rules = l.retention.expect("retention");
        assert_eq!(rules.value.len(), 1);
        assert_eq!(rules.value[0].repositories, "library/*");
        assert_eq!(rules.value[0].keep_tags, Some(5));
        assert_eq!(
            rules.source.to_string(),
            "/etc/registry.yml:12 (retention[0])"
        );
    }

    #[test]
    fn gc_keys_ignore_case_and_separators_and_zero_means_no_schedule() {
        let (l, errors, warnings) = load(
            "version: 0.1\nstorage:\n  maintenance:\n    gc:\n      interval: 0s\n      delete_untagged: true\n      \
             deleteUntagged: false\n      sweep: always\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(l.gc_interval.map(|s| s.value), Some(None));
        // Both spellings name one setting: the later line is the one in effect.
        let d = l.gc_delete_untagged.expect("deleteuntagged");
        assert!(!d.value);
        assert_eq!(
            d.source.to_string(),
            "/etc/registry.yml:7 (storage.maintenance.gc.deleteUntagged)"
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].ends_with("does not use: storage.maintenance.gc.sweep"),
            "{warnings:?}"
        );
    }

    #[test]
    fn bad_gc_and_retention_values_are_all_reported_with_file_line_and_key() {
        let (l, errors, _) = load(
            "version: 0.1\nstorage:\n  maintenance:\n    gc:\n      interval: daily\n      grace: [1h]\n      \
             deleteuntagged: sometimes\n      socket: ''\nretention:\n  - repositories: a\n    keeptags: many\n",
        );
        assert!(l.gc_interval.is_none() && l.retention.is_none());
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            shown,
            [
                "/etc/registry.yml:5: storage.maintenance.gc.interval: not a duration: \"daily\" (e.g. 168h, 30m, 1h30m)",
                "/etc/registry.yml:6: storage.maintenance.gc.grace: expected a single value, found a list",
                "/etc/registry.yml:7: storage.maintenance.gc.deleteuntagged: expected true or false, found \"sometimes\"",
                "/etc/registry.yml:8: storage.maintenance.gc.socket: empty path",
                "/etc/registry.yml:11: retention[0].keeptags: not a number of tags: \"many\" (a whole number, e.g. 10)",
            ]
        );
    }

    #[test]
    fn errors_name_line_and_key() {
        let (_, errors, _) = load(
            "version: 0.1\nhttp:\n  addr: localhost\nstorage:\n  filesystem: {}\n  inmemory: {}\n  delete:\n    enabled: perhaps\n",
        );
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(shown.len(), 3, "{shown:?}");
        assert!(
            shown[0].starts_with("/etc/registry.yml:3: http.addr: not an address"),
            "{shown:?}"
        );
        assert!(shown[1]
            .starts_with("/etc/registry.yml:8: storage.delete.enabled: expected true or false"));
        assert!(shown[2].starts_with("/etc/registry.yml:4: storage: more than one storage driver"));
    }
}
