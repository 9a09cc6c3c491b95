//! Where each value came from ([`Source`]), values with their source ([`Sourced`]), and the
//! errors that name the file, line and key of a bad value ([`ConfigError`]).

use super::yaml;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    /// A built-in default chosen at run time, with why (e.g. "not root: a user directory").
    Derived(String),
    /// A file (YAML or sysconfig), 1-based line, and the key as written there.
    File {
        path: PathBuf,
        line: usize,
        key: String,
    },
    /// A process environment variable.
    Env(String),
    /// A command-line flag.
    Cli(String),
    /// A YAML value written as `_env:NAME[:default]`: where it is written, the variable, and
    /// where the variable's value came from (`None`: unset, so the default written there).
    FileEnv {
        path: PathBuf,
        line: usize,
        key: String,
        var: String,
        origin: Option<Box<Source>>,
    },
    /// A value assembled from several places (the address from one, the port from another).
    Parts(Vec<(String, Source)>),
}

impl Source {
    /// The source of one named part of a [`Source::Parts`] value; any other source is the
    /// source of all its parts.
    pub fn part(&self, name: &str) -> &Source {
        match self {
            Source::Parts(parts) => parts
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, s)| s)
                .unwrap_or(self),
            _ => self,
        }
    }

    /// One source when every part came from the same place, else [`Source::Parts`].
    pub fn combine(parts: Vec<(&str, Source)>) -> Source {
        match parts.first() {
            Some((_, first)) if parts.iter().all(|(_, s)| s == first) => first.clone(),
            _ => Source::Parts(parts.into_iter().map(|(n, s)| (n.to_string(), s)).collect()),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::Derived(why) => write!(f, "default ({why})"),
            Source::File { path, line, key } => write!(f, "{}:{line} ({key})", path.display()),
            Source::Env(name) => write!(f, "environment ({name})"),
            Source::Cli(flag) => write!(f, "command line ({flag})"),
            Source::FileEnv {
                path,
                line,
                key,
                var,
                origin,
            } => {
                write!(f, "{}:{line} ({key}: _env:{var} ", path.display())?;
                match origin.as_deref() {
                    None => f.write_str("unset, the default written there)"),
                    Some(Source::Env(_)) => f.write_str("from the environment)"),
                    Some(Source::File { path, line, .. }) => {
                        write!(f, "from {}:{line})", path.display())
                    }
                    Some(other) => write!(f, "from {other})"),
                }
            }
            Source::Parts(parts) => {
                for (i, (name, source)) in parts.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{name}: {source}")?;
                }
                Ok(())
            }
        }
    }
}

/// A value with its provenance.
#[derive(Debug, Clone, PartialEq)]
pub struct Sourced<T> {
    pub value: T,
    pub source: Source,
}

impl<T> Sourced<T> {
    pub fn new(value: T, source: Source) -> Self {
        Sourced { value, source }
    }

    pub fn default_value(value: T) -> Self {
        Sourced {
            value,
            source: Source::Default,
        }
    }
}

/// One problem found in the configuration: `file:line: key: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(p), Some(l)) => write!(f, "{}:{l}: ", p.display())?,
            (Some(p), None) => write!(f, "{}: ", p.display())?,
            _ => {}
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// All the problems found; loading reports every one, not just the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigError {
    /// An error about the value that `source` set: the file, line and key come from there.
    pub fn at(source: &Source, message: impl Into<String>) -> ConfigError {
        let message = message.into();
        let (file, line, key, message) = match source {
            Source::File { path, line, key } => (Some(path), Some(*line), key.clone(), message),
            Source::FileEnv {
                path,
                line,
                key,
                var,
                origin,
            } => {
                let how = match origin.as_deref() {
                    None => format!("_env:{var} is unset, so the default written there"),
                    Some(Source::Env(_)) => format!("_env:{var}, set in the environment"),
                    Some(Source::File { path, line, .. }) => {
                        format!("_env:{var}, set in {}:{line}", path.display())
                    }
                    Some(other) => format!("_env:{var}, from {other}"),
                };
                let message = format!("{message} (value from {how})");
                (Some(path), Some(*line), key.clone(), message)
            }
            Source::Env(name) => {
                let message = format!("{message} (set in the environment)");
                (None, None, name.clone(), message)
            }
            Source::Cli(flag) => (None, None, flag.clone(), message),
            Source::Parts(parts) if !parts.is_empty() => {
                return ConfigError::at(&parts[0].1, message)
            }
            Source::Parts(_) | Source::Default | Source::Derived(_) => {
                (None, None, String::new(), message)
            }
        };
        let file = file.cloned();
        ConfigError {
            file,
            line,
            key,
            message,
        }
    }
}

/// The source of a YAML mapping entry: its line and the path where it was written, and the
/// variable when it was an `_env:` reference.
pub fn entry_source(file: &Path, entry: &yaml::Entry) -> Source {
    let key = if entry.value.path.is_empty() {
        entry.key.clone()
    } else {
        entry.value.path.clone()
    };
    match &entry.value.env {
        Some(r) => Source::FileEnv {
            path: file.to_path_buf(),
            line: entry.key_line,
            key,
            var: r.var.clone(),
            origin: r.origin.clone().map(Box::new),
        },
        None => Source::File {
            path: file.to_path_buf(),
            line: entry.key_line,
            key,
        },
    }
}

/// `source` with the part `name` replaced by `new`, `names` being all the parts of the value.
pub fn with_part(source: &Source, names: &[&str], name: &str, new: Source) -> Source {
    Source::combine(
        names
            .iter()
            .map(|n| {
                (
                    *n,
                    if *n == name {
                        new.clone()
                    } else {
                        source.part(n).clone()
                    },
                )
            })
            .collect(),
    )
}

/// The source of a list item: where it starts, and its path (`retention[1]`).
pub fn node_source(file: &Path, node: &yaml::Node) -> Source {
    Source::File {
        path: file.to_path_buf(),
        line: node.line,
        key: node.path.clone(),
    }
}

/// The items of an entry holding a list of `what` (`retention`, `notifications.endpoints`);
/// null is none. `None`, with the error, when it is not a list.
pub fn list_items<'e>(
    file: &Path,
    entry: &'e yaml::Entry,
    what: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<&'e [yaml::Node]> {
    match &entry.value.kind {
        yaml::NodeKind::Seq(items) => Some(items),
        _ if entry.value.is_null() => Some(&[]),
        _ => {
            let found = entry.value.describe();
            let message = format!("expected a list of {what}, found {found}");
            errors.push(ConfigError::at(&entry_source(file, entry), message));
            None
        }
    }
}
