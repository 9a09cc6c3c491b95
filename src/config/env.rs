//! Variables: the sysconfig keys (`REGISTRY_ADDRESS`, `REGISTRY_PORT`, `GUNICORN_WORKERS` /
//! `REGISTRY_WORKERS`) and `registry:2`'s `REGISTRY_<SECTION>_<KEY>` overrides, read the same
//! way whether they are written in the sysconfig file or set in the process environment (the
//! two levels differ only in precedence).
//!
//! Within one level the variables are applied in [`ORDER`]: `REGISTRY_HTTP_ADDR` first, so
//! the finer `REGISTRY_ADDRESS` / `REGISTRY_PORT` refine it, and `REGISTRY_WORKERS` (the new
//! name) after `GUNICORN_WORKERS` (the old one).
//!
//! Garbage collection follows registry:2's naming for our `storage.maintenance.gc` section
//! (`REGISTRY_STORAGE_MAINTENANCE_GC_INTERVAL`, `_GRACE`, `_DELETEUNTAGGED`, `_SOCKET`);
//! retention rules are a list and come only from files.
//!
//! Authentication and TLS: registry:2's `REGISTRY_AUTH` (`htpasswd` or `token`),
//! `REGISTRY_AUTH_HTPASSWD_*`, `REGISTRY_AUTH_TOKEN_{REALM,SERVICE,ISSUER,ROOTCERTBUNDLE}`,
//! `REGISTRY_HTTP_TLS_{CERTIFICATE,KEY,CLIENTCAS}` (one path or `[a, b]`), and the same
//! mapping for our keys: `REGISTRY_AUTH_HTPASSWD_ACCESSFILE`,
//! `REGISTRY_AUTH_TOKEN_{SIGNINGKEY,HTPASSWD,ACCESSFILE}`, `REGISTRY_HTTP_TRUSTFORWARDEDHEADERS`.

use super::layer::{set, AuthChoice, Layer, StorageChoice};
use super::values::*;
use super::{ConfigError, Source, Sourced};

/// Read before the YAML file, since they choose which file and which flavor to read.
pub const SELECTORS: &[&str] = &["SETTINGS_FLAVOR", "DOCKER_REGISTRY_CONFIG"];

/// Every variable that sets a value, in the order they are applied within one level.
pub const ORDER: &[&str] = &[
    "REGISTRY_HTTP_ADDR",
    "REGISTRY_ADDRESS",
    "REGISTRY_PORT",
    "GUNICORN_WORKERS",
    "REGISTRY_WORKERS",
    "REGISTRY_LOGLEVEL",
    "REGISTRY_LOG_LEVEL",
    "REGISTRY_LOG_TARGET",
    "REGISTRY_STORAGE",
    "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
    "REGISTRY_STORAGE_DELETE_ENABLED",
    "REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED",
    "REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_ENABLED",
    "REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE",
    "REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_INTERVAL",
    "REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_DRYRUN",
    "REGISTRY_STORAGE_MAINTENANCE_GC_INTERVAL",
    "REGISTRY_STORAGE_MAINTENANCE_GC_GRACE",
    "REGISTRY_STORAGE_MAINTENANCE_GC_DELETEUNTAGGED",
    "REGISTRY_STORAGE_MAINTENANCE_GC_SOCKET",
    "REGISTRY_AUTH",
    "REGISTRY_AUTH_HTPASSWD_REALM",
    "REGISTRY_AUTH_HTPASSWD_PATH",
    "REGISTRY_AUTH_HTPASSWD_ACCESSFILE",
    "REGISTRY_AUTH_TOKEN_REALM",
    "REGISTRY_AUTH_TOKEN_SERVICE",
    "REGISTRY_AUTH_TOKEN_ISSUER",
    "REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE",
    "REGISTRY_AUTH_TOKEN_SIGNINGKEY",
    "REGISTRY_AUTH_TOKEN_HTPASSWD",
    "REGISTRY_AUTH_TOKEN_ACCESSFILE",
    "REGISTRY_HTTP_TLS_CERTIFICATE",
    "REGISTRY_HTTP_TLS_KEY",
    "REGISTRY_HTTP_TLS_CLIENTCAS",
    "REGISTRY_HTTP_TRUSTFORWARDEDHEADERS",
];

pub fn is_known(name: &str) -> bool {
    ORDER.contains(&name) || SELECTORS.contains(&name)
}

/// Applies one variable to `layer`. An empty value counts as unset (as in the shell).
pub fn apply(
    layer: &mut Layer,
    name: &str,
    value: &str,
    source: Source,
    errors: &mut Vec<ConfigError>,
) {
    if value.is_empty() {
        return;
    }
    let e = errors;
    let s = source;
    match name {
        "REGISTRY_HTTP_ADDR" => match http_addr_text(value) {
            Ok(addr) => {
                layer.address = Some(Sourced::new(addr.ip(), s.clone()));
                layer.port = Some(Sourced::new(addr.port(), s));
            }
            Err(m) => e.push(ConfigError::at(&s, m)),
        },
        "REGISTRY_ADDRESS" => set(&mut layer.address, address_text(value).map(Some), s, e),
        "REGISTRY_PORT" => set(&mut layer.port, port_text(value).map(Some), s, e),
        "GUNICORN_WORKERS" | "REGISTRY_WORKERS" => {
            set(&mut layer.workers, workers_text(value).map(Some), s, e)
        }
        "REGISTRY_LOGLEVEL" | "REGISTRY_LOG_LEVEL" => {
            set(&mut layer.log_level, log_level_text(value).map(Some), s, e)
        }
        "REGISTRY_LOG_TARGET" => set(
            &mut layer.log_target,
            log_target_text(value).map(Some),
            s,
            e,
        ),
        "REGISTRY_STORAGE" => {
            let choice = match value.trim() {
                "filesystem" => StorageChoice::Filesystem,
                other => StorageChoice::Unsupported {
                    name: other.to_string(),
                },
            };
            layer.storage = Some(Sourced::new(choice, s));
        }
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY" => {
            set(&mut layer.storage_root, path_text(value).map(Some), s, e)
        }
        "REGISTRY_STORAGE_DELETE_ENABLED" => {
            set(&mut layer.delete_enabled, bool_text(value).map(Some), s, e)
        }
        "REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED" => {
            set(&mut layer.readonly, bool_text(value).map(Some), s, e)
        }
        "REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_ENABLED" => {
            set(&mut layer.purge_enabled, bool_text(value).map(Some), s, e)
        }
        "REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE" => {
            set(&mut layer.purge_age, duration_text(value).map(Some), s, e)
        }
        "REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_INTERVAL" => set(
            &mut layer.purge_interval,
            duration_text(value).map(Some),
            s,
            e,
        ),
        "REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_DRYRUN" => {
            set(&mut layer.purge_dry_run, bool_text(value).map(Some), s, e)
        }
        "REGISTRY_STORAGE_MAINTENANCE_GC_INTERVAL" => set(
            &mut layer.gc_interval,
            gc_interval_text(value).map(Some),
            s,
            e,
        ),
        "REGISTRY_STORAGE_MAINTENANCE_GC_GRACE" => {
            set(&mut layer.gc_grace, duration_text(value).map(Some), s, e)
        }
        "REGISTRY_STORAGE_MAINTENANCE_GC_DELETEUNTAGGED" => set(
            &mut layer.gc_delete_untagged,
            bool_text(value).map(Some),
            s,
            e,
        ),
        "REGISTRY_STORAGE_MAINTENANCE_GC_SOCKET" => {
            set(&mut layer.gc_socket, path_text(value).map(Some), s, e)
        }
        "REGISTRY_AUTH" => {
            let choice = match value.trim() {
                "htpasswd" => AuthChoice::Htpasswd,
                "token" => AuthChoice::Token,
                other => AuthChoice::Unsupported {
                    name: other.to_string(),
                },
            };
            layer.auth = Some(Sourced::new(choice, s));
        }
        "REGISTRY_AUTH_HTPASSWD_REALM" => {
            layer.auth_realm = Some(Sourced::new(value.to_string(), s))
        }
        "REGISTRY_AUTH_HTPASSWD_PATH" => {
            set(&mut layer.auth_path, path_text(value).map(Some), s, e)
        }
        "REGISTRY_HTTP_TLS_CERTIFICATE" => {
            set(&mut layer.tls_certificate, path_text(value).map(Some), s, e)
        }
        "REGISTRY_AUTH_HTPASSWD_ACCESSFILE" => set(
            &mut layer.auth_access_file,
            path_text(value).map(Some),
            s,
            e,
        ),
        "REGISTRY_AUTH_TOKEN_REALM" => layer.token.realm = Some(Sourced::new(value.to_string(), s)),
        "REGISTRY_AUTH_TOKEN_SERVICE" => {
            layer.token.service = Some(Sourced::new(value.to_string(), s))
        }
        "REGISTRY_AUTH_TOKEN_ISSUER" => {
            layer.token.issuer = Some(Sourced::new(value.to_string(), s))
        }
        "REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE" => set(
            &mut layer.token.rootcertbundle,
            path_text(value).map(Some),
            s,
            e,
        ),
        "REGISTRY_AUTH_TOKEN_SIGNINGKEY" => set(
            &mut layer.token.signing_key,
            path_text(value).map(Some),
            s,
            e,
        ),
        "REGISTRY_AUTH_TOKEN_HTPASSWD" => {
            set(&mut layer.token.htpasswd, path_text(value).map(Some), s, e)
        }
        "REGISTRY_AUTH_TOKEN_ACCESSFILE" => set(
            &mut layer.token.access_file,
            path_text(value).map(Some),
            s,
            e,
        ),
        "REGISTRY_HTTP_TLS_KEY" => set(&mut layer.tls_key, path_text(value).map(Some), s, e),
        "REGISTRY_HTTP_TLS_CLIENTCAS" => set(
            &mut layer.tls_client_cas,
            path_list_text(value).map(Some),
            s,
            e,
        ),
        "REGISTRY_HTTP_TRUSTFORWARDEDHEADERS" => set(
            &mut layer.trust_forwarded_headers,
            bool_text(value).map(Some),
            s,
            e,
        ),
        _ => {}
    }
}

/// Builds one level from a lookup of variable values (with their sources).
pub fn layer_from(
    lookup: impl Fn(&str) -> Option<(String, Source)>,
    errors: &mut Vec<ConfigError>,
) -> Layer {
    let mut layer = Layer::default();
    for name in ORDER {
        if let Some((value, source)) = lookup(name) {
            apply(&mut layer, name, &value, source, errors);
        }
    }
    layer
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn level(vars: &[(&str, &str)]) -> (Layer, Vec<ConfigError>) {
        let map: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut errors = Vec::new();
        let layer = layer_from(
            |n| map.get(n).map(|v| (v.clone(), Source::Env(n.to_string()))),
            &mut errors,
        );
        (layer, errors)
    }

    #[test]
    fn registry_port_refines_http_addr_in_the_same_level() {
        let (l, errors) = level(&[
            ("REGISTRY_HTTP_ADDR", "127.0.0.1:6000"),
            ("REGISTRY_PORT", "7000"),
        ]);
        assert!(errors.is_empty());
        assert_eq!(
            l.address.map(|a| a.value.to_string()),
            Some("127.0.0.1".into())
        );
        assert_eq!(
            l.port.map(|p| (p.value, p.source)),
            Some((7000, Source::Env("REGISTRY_PORT".into())))
        );
    }

    #[test]
    fn new_workers_name_wins_over_the_old_one() {
        let (l, _) = level(&[("GUNICORN_WORKERS", "8"), ("REGISTRY_WORKERS", "3")]);
        assert_eq!(l.workers.map(|w| w.value), Some(3));
    }

    #[test]
    fn every_bad_value_is_an_error_naming_the_variable() {
        let (_, errors) = level(&[
            ("REGISTRY_PORT", "http"),
            ("REGISTRY_STORAGE_DELETE_ENABLED", "maybe"),
            ("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE", "a week"),
        ]);
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "REGISTRY_PORT",
                "REGISTRY_STORAGE_DELETE_ENABLED",
                "REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE"
            ]
        );
    }

    #[test]
    fn gc_variables_set_the_gc_settings() {
        let (l, errors) = level(&[
            ("REGISTRY_STORAGE_MAINTENANCE_GC_INTERVAL", "12h"),
            ("REGISTRY_STORAGE_MAINTENANCE_GC_GRACE", "0s"),
            ("REGISTRY_STORAGE_MAINTENANCE_GC_DELETEUNTAGGED", "yes"),
            ("REGISTRY_STORAGE_MAINTENANCE_GC_SOCKET", "/run/r.sock"),
        ]);
        assert!(errors.is_empty(), "{errors:?}");
        let interval = l.gc_interval.expect("interval");
        assert_eq!(
            (interval.value, interval.source),
            (
                Some(std::time::Duration::from_secs(12 * 3600)),
                Source::Env("REGISTRY_STORAGE_MAINTENANCE_GC_INTERVAL".into())
            )
        );
        assert_eq!(l.gc_grace.map(|g| g.value), Some(std::time::Duration::ZERO));
        assert_eq!(l.gc_delete_untagged.map(|d| d.value), Some(true));
        assert_eq!(
            l.gc_socket.map(|s| s.value),
            Some(std::path::PathBuf::from("/run/r.sock"))
        );
        let (_, errors) = level(&[
            ("REGISTRY_STORAGE_MAINTENANCE_GC_INTERVAL", "weekly"),
            ("REGISTRY_STORAGE_MAINTENANCE_GC_GRACE", "-1h"),
            ("REGISTRY_STORAGE_MAINTENANCE_GC_DELETEUNTAGGED", "2"),
        ]);
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            shown,
            [
                "REGISTRY_STORAGE_MAINTENANCE_GC_INTERVAL: not a duration: \"weekly\" (e.g. 168h, 30m, 1h30m) (set in the environment)",
                "REGISTRY_STORAGE_MAINTENANCE_GC_GRACE: not a duration: \"-1h\" (e.g. 168h, 30m, 1h30m) (set in the environment)",
                "REGISTRY_STORAGE_MAINTENANCE_GC_DELETEUNTAGGED: expected true or false, found \"2\" (set in the environment)",
            ]
        );
    }

    #[test]
    fn auth_tls_and_proxy_variables() {
        let (l, errors) = level(&[
            ("REGISTRY_AUTH", "token"),
            ("REGISTRY_AUTH_TOKEN_REALM", "https://r.example/token"),
            ("REGISTRY_AUTH_TOKEN_SERVICE", "r.example"),
            ("REGISTRY_AUTH_TOKEN_ISSUER", "issuer"),
            ("REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE", "/b.pem"),
            ("REGISTRY_AUTH_TOKEN_SIGNINGKEY", "/s.key"),
            ("REGISTRY_AUTH_TOKEN_HTPASSWD", "/users"),
            ("REGISTRY_AUTH_TOKEN_ACCESSFILE", "/a.yml"),
            ("REGISTRY_AUTH_HTPASSWD_ACCESSFILE", "/h.yml"),
            ("REGISTRY_HTTP_TLS_CLIENTCAS", "[/ca1.pem, /ca2.pem]"),
            ("REGISTRY_HTTP_TRUSTFORWARDEDHEADERS", "true"),
        ]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(l.auth.map(|a| a.value), Some(AuthChoice::Token));
        let realm = l.token.realm.expect("realm");
        assert_eq!(
            (realm.value.as_str(), realm.source),
            (
                "https://r.example/token",
                Source::Env("REGISTRY_AUTH_TOKEN_REALM".into())
            )
        );
        assert_eq!(l.token.service.map(|s| s.value), Some("r.example".into()));
        assert_eq!(l.token.issuer.map(|s| s.value), Some("issuer".into()));
        let path =
            |p: Option<Sourced<std::path::PathBuf>>| p.map(|p| p.value.display().to_string());
        assert_eq!(path(l.token.rootcertbundle), Some("/b.pem".into()));
        assert_eq!(path(l.token.signing_key), Some("/s.key".into()));
        assert_eq!(path(l.token.htpasswd), Some("/users".into()));
        assert_eq!(path(l.token.access_file), Some("/a.yml".into()));
        assert_eq!(path(l.auth_access_file), Some("/h.yml".into()));
        assert_eq!(
            l.tls_client_cas.map(|c| c.value),
            Some(vec!["/ca1.pem".into(), "/ca2.pem".into()])
        );
        assert_eq!(l.trust_forwarded_headers.map(|t| t.value), Some(true));
        let (_, errors) = level(&[
            ("REGISTRY_HTTP_TRUSTFORWARDEDHEADERS", "proxy"),
            ("REGISTRY_HTTP_TLS_CLIENTCAS", "[]"),
        ]);
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "REGISTRY_HTTP_TLS_CLIENTCAS",
                "REGISTRY_HTTP_TRUSTFORWARDEDHEADERS"
            ]
        );
    }

    #[test]
    fn empty_values_count_as_unset() {
        let (l, errors) = level(&[("REGISTRY_PORT", ""), ("REGISTRY_LOG_LEVEL", "")]);
        assert!(errors.is_empty());
        assert!(l.port.is_none() && l.log_level.is_none());
    }
}
