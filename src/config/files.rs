//! The YAML file, in either format, read into the settings through the table.
//!
//! A `registry:2` (CNCF distribution) file is recognised by `version: 0.1`: each key path is a
//! setting of the table (`storage.delete.enabled`), a section holding some (`storage`,
//! `http.tls`), or a setting we do not implement (`storage.cache`, `http.secret`,
//! `notifications`, ...), named in one warning. `storage.<driver>` and `auth.<method>` choose
//! a driver and a method; one we do not have is refused when it is the one in effect. Our
//! extensions, which registry:2 ignores: `storage.maintenance.gc`, `http.timeouts`,
//! `http.connections`, a top-level `retention:` list (see `retention.rs`),
//! `http.trustforwardedheaders`, `auth.htpasswd.accessfile` and the built-in token
//! endpoint's `auth.token.signingkey`, `.htpasswd`, `.accessfile`.
//!
//! The legacy (Python docker-registry) format: a `common` section plus flavor sections
//! (`local`, `s3`, `dev`, `prod`, any name), usually sharing keys through anchors and merge
//! keys. The flavor named by `SETTINGS_FLAVOR` is laid over `common` (one level deep, as the
//! old registry did), its `_env:NAME[:default]` values are resolved, and its keys are read by
//! their legacy names (`storage_path`, `loglevel`, `gc_interval`); `auth:` is the registry:2
//! block. Every other key is named in one warning, never silently dropped.
//!
//! Keys ignore case, `_` and `-` in both formats.

use super::model::{FileFormat, StorageChoice};
use super::setting::{at_legacy, at_path, is_section, key_name, named, Choice, Input, Setting};
use super::source::{entry_source, ConfigError, Source, Sourced};
use super::yaml::{self, Entry, Node};
use super::Config;
use std::collections::HashMap;
use std::path::Path;

/// Reading one file's entries into `config`.
struct Reader<'a> {
    file: &'a Path,
    config: &'a mut Config,
    errors: &'a mut Vec<ConfigError>,
    /// Keys no setting reads, as written.
    ignored: Vec<String>,
}

/// Parses the YAML file, recognises its format and reads it into `config` (the lowest level
/// after the defaults). `lookup` gives the variables `_env:` values read.
pub fn read(
    config: &mut Config,
    path: &Path,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<(String, Source)>,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) -> Vec<String> {
    let mut env_references = Vec::new();
    let (root, remarks) = match yaml::parse(text) {
        Ok(parsed) => parsed,
        Err(e) => {
            errors.push(ConfigError {
                file: Some(path.to_path_buf()),
                line: Some(e.line),
                key: String::new(),
                message: format!("not valid YAML: {}", e.message),
            });
            return env_references;
        }
    };
    for r in remarks {
        let (file, line) = (path.display(), r.line);
        warnings.push(format!("{file}:{line}: {}: {}", r.path, r.message));
    }
    let Some(root) = root else {
        let file = path.display();
        warnings.push(format!(
            "{file}: the file is empty; using the built-in defaults"
        ));
        return env_references;
    };
    root.env_references(&mut env_references);
    let mut reader = Reader {
        file: path,
        config,
        errors,
        ignored: Vec::new(),
    };
    let ignored = match root.get("version") {
        Some(v) if v.value.entries().is_none() => {
            let version = super::kinds::node_text(&v.value)
                .ok()
                .flatten()
                .unwrap_or_default();
            if version != "0.1" {
                reader.errors.push(ConfigError {
                    file: Some(path.to_path_buf()),
                    line: Some(v.key_line),
                    key: "version".into(),
                    message: format!(
                        "unsupported registry:2 configuration version {version:?} (expected 0.1)"
                    ),
                });
                return env_references;
            }
            reader.registry_2(&root, warnings);
            "ignoring registry:2 settings this registry does not use".to_string()
        }
        _ => {
            reader.legacy(&root, lookup);
            let flavor = &reader.config.flavor.value;
            format!("flavor {flavor}: ignoring keys this registry does not use")
        }
    };
    if !reader.ignored.is_empty() {
        let (file, keys) = (path.display(), reader.ignored.join(", "));
        warnings.push(format!("{file}: {ignored}: {keys}"));
    }
    env_references
}

impl Reader<'_> {
    fn error(&mut self, source: &Source, message: impl Into<String>) {
        self.errors.push(ConfigError::at(source, message));
    }

    fn registry_2(&mut self, root: &Node, warnings: &mut Vec<String>) {
        self.config.file_format = FileFormat::Distribution;
        let flavor = &self.config.flavor;
        if flavor.source != Source::Default {
            warnings.push(format!(
                "SETTINGS_FLAVOR={} ({}) is not used: {} is a registry:2 file, which has no flavors",
                flavor.value,
                flavor.source,
                self.file.display()
            ));
        }
        for entry in root.entries().unwrap_or_default() {
            match entry.key.as_str() {
                "version" => {}
                "retention" => self.retention(entry),
                _ => self.entry(entry, "", ""),
            }
        }
    }

    /// One entry of a mapping at `path` (compared by [`key_name`]), `written` as in the file.
    fn entry(&mut self, e: &Entry, path: &str, written: &str) {
        let path = join(path, &key_name(&e.key));
        let written = join(written, &e.key);
        if let Some(l) = super::lists::at_path(&path) {
            (l.read)(self.config, self.file, e, None, self.errors);
        } else if let Some(s) = at_path(&path) {
            self.apply(s, e, &written);
        } else if is_section(&path) {
            self.section(e, &path, &written);
        } else {
            self.ignored.push(written);
        }
    }

    /// A mapping holding settings; null is an empty one.
    fn section(&mut self, e: &Entry, path: &str, written: &str) {
        match e.value.entries() {
            Some(children) => children.iter().for_each(|c| self.entry(c, path, written)),
            None if e.value.is_null() => {}
            None => {
                let message = format!("expected a mapping, found {}", e.value.describe());
                self.error(&entry_source(self.file, e), message)
            }
        }
    }

    /// Sets `s` from an entry's value, or from the key under it when `s` is a choice.
    fn apply(&mut self, s: &Setting, e: &Entry, written: &str) {
        match (s.choice, e.value.entries()) {
            (Some(choice), Some(children)) => self.choose(s, choice, e, children, written),
            _ => self.set(s, Input::Node(&e.value), entry_source(self.file, e)),
        }
    }

    fn set(&mut self, s: &Setting, input: Input<'_>, source: Source) {
        if let Err(message) = (s.set)(self.config, input, source.clone()) {
            self.error(&source, message);
        }
    }

    /// `storage: {filesystem: ...}`: each key the choice accepts chooses, and what is under it
    /// is read; the other keys are entries of their own (`storage.delete`).
    fn choose(&mut self, s: &Setting, choice: &Choice, e: &Entry, children: &[Entry], at: &str) {
        let path = s.key;
        let mut chosen: Vec<&str> = Vec::new();
        for c in children.iter() {
            if !choice.accepts(&c.key) {
                self.entry(c, path, at);
                continue;
            }
            chosen.push(&c.key);
            let source = entry_source(self.file, c);
            self.set(s, Input::Text(&c.key), source);
            for (_, key, value) in choice.defaults.iter().filter(|d| d.0 == c.key) {
                let (file, line) = (self.file.display(), c.key_line);
                let why = format!("registry:2's default for {path}.{} at {file}:{line}", c.key);
                self.set(named(key), Input::Text(value), Source::Derived(why));
            }
            let under = join(path, &key_name(&c.key));
            if is_section(&under) {
                self.section(c, &under, &join(at, &c.key));
            }
        }
        if chosen.len() > 1 {
            let message = format!(
                "more than one {} configured ({}); keep one{}",
                choice.what,
                chosen.join(", "),
                choice.hint
            );
            self.error(&entry_source(self.file, e), message);
        }
    }

    fn retention(&mut self, entry: &Entry) {
        if let Some(rules) = super::retention::read(self.file, entry, self.errors) {
            self.config.retention = rules;
        }
    }

    /// A mapping of the flavored file whose keys are legacy names `section.key`.
    fn legacy_section(&mut self, e: &Entry) {
        let Some(children) = e.value.entries() else {
            if !e.value.is_null() {
                let message = format!("expected a mapping, found {}", e.value.describe());
                self.error(&entry_source(self.file, e), message);
            }
            return;
        };
        for c in children {
            let name = format!("{}.{}", e.key, c.key);
            match at_legacy(&name) {
                Some(s) => self.apply(s, c, s.key),
                None => self.ignored.push(name),
            }
        }
    }

    /// The flavor named by `SETTINGS_FLAVOR`, over `common`.
    fn legacy(&mut self, root: &Node, lookup: &dyn Fn(&str) -> Option<(String, Source)>) {
        self.config.file_format = FileFormat::Legacy;
        let Some(merged) = self.flavor(root) else {
            return;
        };
        let storage_root = self.config.storage_root.clone();
        for raw in &merged {
            let entry = Entry {
                key: raw.key.clone(),
                key_line: raw.key_line,
                value: raw.value.substitute_env(lookup),
            };
            match at_legacy(&entry.key) {
                _ if key_name(&entry.key) == "retention" => self.retention(&entry),
                // registry:2's block as it is (endpoints, queue).
                _ if key_name(&entry.key) == "notifications" => {
                    self.section(&entry, "notifications", "notifications")
                }
                // registry:2's block as it is (remoteurl, upstreams, ...).
                _ if key_name(&entry.key) == "proxy" => self.section(&entry, "proxy", "proxy"),
                // The old registry's pull-through mirror: its keys are legacy names of
                // `proxy` settings (`mirroring.source` is `proxy.remoteurl`).
                _ if key_name(&entry.key) == "mirroring" => self.legacy_section(&entry),
                Some(s) => self.apply(s, &entry, s.key),
                None => self.ignored.push(entry.key.clone()),
            }
        }
        // `storage_path` is a directory only for local storage; for s3 it is the key prefix.
        match self.config.storage_driver.value {
            StorageChoice::Filesystem => {}
            StorageChoice::S3 => {
                let given = std::mem::replace(&mut self.config.storage_root, storage_root);
                if given != self.config.storage_root {
                    let prefix = given.value.to_string_lossy().into_owned();
                    self.set(
                        named("storage.s3.rootdirectory"),
                        Input::Text(&prefix),
                        given.source,
                    );
                }
            }
            StorageChoice::Unsupported { .. } => self.config.storage_root = storage_root,
        }
    }

    /// The flavor's entries over `common`'s, as the old registry did `config =
    /// common; config.update(flavor)`: one level deep. `None` (with the error) when the flavor
    /// is not there.
    fn flavor(&mut self, root: &Node) -> Option<Vec<Entry>> {
        let file = Some(self.file.to_path_buf());
        let flavor: &Sourced<String> = &self.config.flavor;
        let Some(sections) = root.entries() else {
            self.errors.push(ConfigError {
                file,
                line: Some(root.line),
                key: String::new(),
                message: "expected flavor sections (common:, local:, ...) or a registry:2 file (version: 0.1)".into(),
            });
            return None;
        };
        let Some(section) = root.get(&flavor.value) else {
            let available: Vec<&str> = sections
                .iter()
                .filter(|e| e.value.entries().is_some())
                .map(|e| e.key.as_str())
                .collect();
            let hint = if root.get("storage").is_some() || root.get("http").is_some() {
                "; this looks like a registry:2 file: add `version: 0.1` at the top".to_string()
            } else if available.is_empty() {
                "; the file has no flavor sections".to_string()
            } else {
                format!("; flavors available: {}", available.join(", "))
            };
            let message = format!(
                "flavor {:?} ({}) is not a section of this file{hint}",
                flavor.value, flavor.source
            );
            let key = "SETTINGS_FLAVOR".into();
            self.errors.push(ConfigError {
                file,
                line: None,
                key,
                message,
            });
            return None;
        };
        let Some(flavor_entries) = section.value.entries() else {
            let message = format!(
                "flavor {:?} must be a mapping of settings, found {}",
                flavor.value,
                section.value.describe()
            );
            self.error(&entry_source(self.file, section), message);
            return None;
        };
        let mut merged: Vec<Entry> = Vec::new();
        match root.get("common").filter(|_| flavor.value != "common") {
            Some(c) if c.value.entries().is_some() || c.value.is_null() => {
                merged.extend(c.value.entries().unwrap_or_default().iter().cloned())
            }
            Some(c) => {
                let message = format!(
                    "must be a mapping of settings, found {}",
                    c.value.describe()
                );
                self.error(&entry_source(self.file, c), message);
            }
            None => {}
        }
        // Indexed by key: a flavor of thousands of keys over a common of thousands stays linear.
        let mut index: HashMap<String, usize> = (merged.iter().enumerate())
            .map(|(i, e)| (e.key.clone(), i))
            .collect();
        for e in flavor_entries {
            match index.get(&e.key) {
                Some(&i) => merged[i] = e.clone(),
                None => {
                    index.insert(e.key.clone(), merged.len());
                    merged.push(e.clone());
                }
            }
        }
        Some(merged)
    }
}

fn join(path: &str, key: &str) -> String {
    match path {
        "" => key.to_string(),
        _ => format!("{path}.{key}"),
    }
}
