//! `docker-registry config`: the effective configuration, one setting a line with where its
//! value came from, in aligned columns however long a value is. The settings are the table's;
//! those under a choice (`storage.filesystem.*`, `auth.htpasswd.*`) are shown for the choice
//! in effect, TLS's only when it is on; secrets are masked.

use super::model::FileFormat;
use super::setting::Setting;
use super::source::Source;
use super::table::SETTINGS;
use super::Config;
use std::path::PathBuf;

impl Config {
    /// The effective configuration, one setting per line with where it came from.
    pub fn describe(&self) -> String {
        let mut rows: Vec<[String; 3]> = Vec::new();
        let mut row = |key: &str, value: String, source: &Source| {
            rows.push([key.to_string(), value, source.to_string()])
        };
        let file = |p: &Option<PathBuf>| {
            p.as_ref()
                .map_or_else(|| "(none)".into(), |p| p.display().to_string())
        };
        let (sysconfig, config) = (&self.sysconfig_file, &self.config_file);
        row("sysconfig", file(&sysconfig.value), &sysconfig.source);
        row("config", file(&config.value), &config.source);
        row(
            "config.format",
            self.file_format.as_str().into(),
            &config.source,
        );
        let flavor = match self.file_format {
            FileFormat::Legacy => self.flavor.value.clone(),
            _ => format!("{} (unused: no flavored file)", self.flavor.value),
        };
        row("flavor", flavor, &self.flavor.source);
        row(
            "http.addr",
            self.listen.value.to_string(),
            &self.listen.source,
        );
        for s in SETTINGS.iter().filter(|s| self.shows(s)) {
            let (value, source) = s.get(self);
            row(s.key, shown(s, value, source), source);
        }
        if let super::model::StorageConfig::S3(options) = &self.storage.value {
            let (value, source) = self.s3_credentials(options);
            row("storage.s3.credentials", value, &source);
        }
        if self.auth.value.is_none() {
            row("auth", "(none)".into(), &self.auth.source);
        }
        if self.tls.value.is_none() {
            row("http.tls", "(none)".into(), &self.tls.source);
        }
        for (i, u) in self.proxy_upstreams.value.iter().enumerate() {
            let name = format!("proxy.upstreams[{i}]");
            row(&name, u.to_string(), &self.proxy_upstreams.source);
        }
        if self.retention.value.is_empty() {
            row("retention", "(none)".into(), &self.retention.source);
        }
        for (i, rule) in self.retention.value.iter().enumerate() {
            let name = format!("retention[{i}]");
            row(&name, rule.to_string(), self.retention.source.part(&name));
        }
        let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max();
        let (kw, vw) = (width(0).unwrap_or(0), width(1).unwrap_or(0));
        rows.iter()
            .map(|[k, v, s]| format!("{k:<kw$} {v:<vw$} # {s}\n"))
            .collect()
    }

    /// Where the S3 driver will take its credentials from (see
    /// `storage::s3::credentials`), without the secrets.
    fn s3_credentials(&self, options: &crate::storage::S3Options) -> (String, Source) {
        use crate::storage::s3::credentials::{resolve, CredentialSource};
        let found = match resolve(options, &|k| std::env::var(k).ok()) {
            Ok(found) => found,
            Err(e) => return (format!("(error: {e})"), Source::Default),
        };
        let source = match (&found, found.variable()) {
            (CredentialSource::Configured { .. }, _) => self.s3.source.part("accesskey").clone(),
            (_, Some(variable)) => Source::Env(variable.to_owned()),
            (CredentialSource::Profile { .. }, None) => {
                Source::Derived("the AWS credential chain, AWS_PROFILE unset".into())
            }
            _ => Source::Derived("the AWS credential chain".into()),
        };
        (found.describe(), source)
    }

    /// Whether `config` shows `s` on a line of its own: not when it is part of what another
    /// line shows, nor when it belongs to a choice not in effect (`auth.token.*` under
    /// htpasswd) or to TLS while TLS is off.
    fn shows(&self, s: &Setting) -> bool {
        if s.hidden || (s.key.starts_with("http.tls.") && self.tls.value.is_none()) {
            return false;
        }
        SETTINGS.iter().all(|chooser| {
            let Some(choice) = chooser.choice else {
                return true;
            };
            let under = s
                .key
                .strip_prefix(chooser.key)
                .and_then(|r| r.strip_prefix('.'));
            match under.and_then(|r| r.split('.').next()) {
                Some(name) if choice.accepts(name) => chooser.get(self).0 == name,
                _ => true,
            }
        })
    }
}

/// A value as `config` shows it: a secret that a level set is masked.
pub(super) fn shown(s: &Setting, value: String, source: &Source) -> String {
    match s.secret && *source != Source::Default {
        true => "********".into(),
        false => value,
    }
}
