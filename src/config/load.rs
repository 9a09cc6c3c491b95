//! Loading: the levels read in order of precedence onto one [`Config`], every setting through
//! the table, so a higher level's value (and source) replaces a lower one's.
//!
//! The sysconfig file is parsed first, as it can choose the YAML file and the flavor, and its
//! variables feed the YAML file's `_env:` values; but its settings are applied after the YAML
//! file's. Within one level the variables are applied in the table's order (see
//! `table.rs`), so `REGISTRY_PORT` refines `REGISTRY_HTTP_ADDR` and `REGISTRY_WORKERS` wins
//! over `GUNICORN_WORKERS`.

use super::lists::{self, LISTS};
use super::model::{AuthChoice, DEFAULT_CONFIG, DEFAULT_SYSCONFIG};
use super::setting::{is_variable, named, Input, Setting};
use super::source::{ConfigError, ConfigErrors, Source, Sourced};
use super::table::SETTINGS;
use super::{files, sysconfig, Config};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Read before the YAML file, since they choose which file and which flavor to read.
const SELECTORS: &[&str] = &["SETTINGS_FLAVOR", "DOCKER_REGISTRY_CONFIG"];

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The sysconfig file; `None` means `/etc/sysconfig/docker-registry`, read if it exists.
    /// A path given explicitly must exist.
    pub sysconfig: Option<PathBuf>,
    /// The YAML file; `None` means `DOCKER_REGISTRY_CONFIG` or `/etc/docker-registry.yml`,
    /// read if it exists. A path given explicitly must exist.
    pub config: Option<PathBuf>,
    /// The process environment (a snapshot, so tests can pass their own).
    pub env: BTreeMap<String, String>,
    /// The settings' flags given, with their values (`("--port", "5001")`).
    pub cli: Vec<(&'static str, String)>,
}

/// The variables the configuration can read: the process environment over the sysconfig file.
struct Environment<'a> {
    process: &'a BTreeMap<String, String>,
    file: Option<(&'a Path, &'a sysconfig::Parsed)>,
}

impl Environment<'_> {
    /// A variable as written in the sysconfig file.
    fn file_var(&self, name: &str) -> Option<(String, Source)> {
        let (path, parsed) = self.file?;
        let a = parsed.get(name)?;
        let key = name.to_string();
        let source = Source::File {
            path: path.to_path_buf(),
            line: a.line,
            key,
        };
        Some((a.value.clone(), source))
    }

    /// A variable set in the process environment and not merely passed through from the
    /// sysconfig file: systemd's `EnvironmentFile=` exports the file's variables, and a value
    /// equal to the file's keeps the file's (lower) precedence and its `file:line` source.
    fn process_var(&self, name: &str) -> Option<(String, Source)> {
        let v = self.process.get(name)?;
        match self.file_var(name) {
            Some((fv, _)) if fv == *v => None,
            _ => Some((v.clone(), Source::Env(name.to_string()))),
        }
    }

    /// The process environment wins over the file.
    fn lookup(&self, name: &str) -> Option<(String, Source)> {
        self.process_var(name).or_else(|| self.file_var(name))
    }
}

/// Reads a configuration file; a missing file that was not asked for explicitly is no error.
fn read_text(path: &Path, explicit: Option<&str>, errors: &mut Vec<ConfigError>) -> Option<String> {
    let fail = |message: String| ConfigError {
        file: Some(path.to_path_buf()),
        line: None,
        key: String::new(),
        message,
    };
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Some(text),
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                errors.push(fail(format!(
                    "not UTF-8 text (invalid byte at offset {at})"
                )));
                None
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => None,
        Err(e) => {
            let why = explicit
                .map(|w| format!(" (given by {w})"))
                .unwrap_or_default();
            errors.push(fail(format!("cannot read this file{why}: {e}")));
            None
        }
    }
}

impl Config {
    /// Loads and validates the configuration. Every problem is reported, not just the first.
    pub fn load(opts: &LoadOptions) -> Result<Config, ConfigErrors> {
        let mut errors: Vec<ConfigError> = Vec::new();
        let mut warnings: Vec<String> = Vec::new();
        let mut config = Config::defaults(&opts.env);
        let (sys_path, sys) = config.read_sysconfig(opts, &mut errors, &mut warnings);
        let env = Environment {
            process: &opts.env,
            file: sys.as_ref().map(|p| (sys_path.as_path(), p)),
        };
        if let Some((flavor, source)) = env.lookup("SETTINGS_FLAVOR").filter(|(v, _)| !v.is_empty())
        {
            config.flavor = Sourced::new(flavor, source);
        }
        let env_references = config.read_yaml(opts, &env, &mut errors, &mut warnings);

        config.apply_variables(|n| env.file_var(n), &mut errors);
        config.apply_list_variables(|n| env.file_var(n), &mut errors);
        if let Some(parsed) = &sys {
            let mut unused: Vec<String> = Vec::new();
            for a in &parsed.assignments {
                let used = is_known(&a.name) || env_references.contains(&a.name);
                let prefix = format!("{} ", a.name);
                if !used && !unused.iter().any(|u| u.starts_with(&prefix)) {
                    unused.push(format!("{} (line {})", a.name, a.line));
                }
            }
            if !unused.is_empty() {
                let (file, names) = (sys_path.display(), unused.join(", "));
                warnings.push(format!(
                    "{file}: ignoring variables docker-registry does not use: {names}"
                ));
            }
        }

        config.apply_variables(|n| env.process_var(n), &mut errors);
        config.apply_list_variables(|n| env.process_var(n), &mut errors);
        let unused: Vec<&str> = opts
            .env
            .keys()
            .filter(|k| k.starts_with("REGISTRY_") && !is_known(k) && env.process_var(k).is_some())
            .map(|k| k.as_str())
            .collect();
        if !unused.is_empty() {
            warnings.push(format!(
                "ignoring environment variables docker-registry does not use: {}",
                unused.join(", ")
            ));
        }

        config.apply_flags(&opts.cli, &mut errors);
        config.default_s3_region(|n| env.lookup(n));
        config.resolve(&mut errors);
        config.warnings = warnings;
        match errors.is_empty() {
            true => Ok(config),
            false => Err(ConfigErrors(errors)),
        }
    }

    /// The sysconfig file, parsed: its path and its assignments, if it exists.
    fn read_sysconfig(
        &mut self,
        opts: &LoadOptions,
        errors: &mut Vec<ConfigError>,
        warnings: &mut Vec<String>,
    ) -> (PathBuf, Option<sysconfig::Parsed>) {
        let (path, explicit) = match &opts.sysconfig {
            Some(p) => (p.clone(), Some("--sysconfig")),
            None => (PathBuf::from(DEFAULT_SYSCONFIG), None),
        };
        let sys = read_text(&path, explicit, errors).map(|text| sysconfig::parse(&text));
        self.sysconfig_file = match (&sys, explicit) {
            (Some(_), Some(flag)) => Sourced::new(Some(path.clone()), Source::Cli(flag.into())),
            (Some(_), None) => Sourced::default_value(Some(path.clone())),
            (None, _) => Sourced::new(
                None,
                Source::Derived(format!("{DEFAULT_SYSCONFIG} does not exist")),
            ),
        };
        for p in sys.iter().flat_map(|s| &s.errors) {
            errors.push(ConfigError {
                file: Some(path.clone()),
                line: Some(p.line),
                key: p.key.clone(),
                message: p.message.clone(),
            });
        }
        for r in sys.iter().flat_map(|s| &s.remarks) {
            let file = path.display();
            let (line, key, message) = (r.line, &r.key, &r.message);
            warnings.push(format!("{file}:{line}: {key}: {message}"));
        }
        (path, sys)
    }

    /// The YAML file `--config`, `DOCKER_REGISTRY_CONFIG` or the default names, read as the
    /// lowest level. Returns the variables its `_env:` values name.
    fn read_yaml(
        &mut self,
        opts: &LoadOptions,
        env: &Environment<'_>,
        errors: &mut Vec<ConfigError>,
        warnings: &mut Vec<String>,
    ) -> Vec<String> {
        let variable = env
            .lookup("DOCKER_REGISTRY_CONFIG")
            .filter(|(v, _)| !v.is_empty());
        let (path, source, explicit) = match (&opts.config, variable) {
            (Some(p), _) => (
                p.clone(),
                Source::Cli("--config".into()),
                Some("--config".into()),
            ),
            (None, Some((p, source))) => {
                let why = format!("DOCKER_REGISTRY_CONFIG, {source}");
                (PathBuf::from(p), source, Some(why))
            }
            (None, None) => (PathBuf::from(DEFAULT_CONFIG), Source::Default, None),
        };
        let Some(text) = read_text(&path, explicit.as_deref(), errors) else {
            if explicit.is_none() {
                let why = format!("{} does not exist", path.display());
                self.config_file = Sourced::new(None, Source::Derived(why));
            }
            return Vec::new();
        };
        self.config_file = Sourced::new(Some(path.clone()), source);
        files::read(self, &path, &text, &|n| env.lookup(n), errors, warnings)
    }

    /// One level of variables (the sysconfig file's, or the process environment's). An empty
    /// value counts as unset, as in the shell.
    fn apply_variables(
        &mut self,
        lookup: impl Fn(&str) -> Option<(String, Source)>,
        errors: &mut Vec<ConfigError>,
    ) {
        for s in SETTINGS {
            for var in s.variables() {
                if let Some((value, source)) = lookup(&var).filter(|(v, _)| !v.is_empty()) {
                    self.apply(s, &value, source, errors);
                }
            }
        }
    }

    /// The list-valued settings a variable can hold, as distribution reads a list from one:
    /// its value is YAML for the list (`[{name: hook, url: http://...}]`, or a block
    /// sequence), e.g. `REGISTRY_NOTIFICATIONS_ENDPOINTS` or `REGISTRY_PROXY_UPSTREAMS`, in
    /// the process environment or the sysconfig file. The whole list is replaced, as in
    /// distribution.
    fn apply_list_variables(
        &mut self,
        lookup: impl Fn(&str) -> Option<(String, Source)>,
        errors: &mut Vec<ConfigError>,
    ) {
        for l in LISTS {
            let var = l.variable;
            let Some((value, source)) = lookup(var).filter(|(v, _)| !v.trim().is_empty()) else {
                continue;
            };
            let indented: String = value.lines().map(|line| format!("  {line}\n")).collect();
            // Under a key named after the variable, so errors read `VARIABLE[0].key: ...`.
            let text = format!("{var}:\n{indented}");
            let parsed = super::yaml::parse(&text).map_err(|e| e.message);
            let entry = match &parsed {
                Ok((Some(root), _)) => root.get(var),
                Ok((None, _)) | Err(_) => None,
            };
            let Some(entry) = entry else {
                let why = parsed.err().unwrap_or_else(|| "no list".to_owned());
                errors.push(ConfigError::at(
                    &source,
                    format!("{var}: expected YAML for a list ({}): {why}", l.example),
                ));
                continue;
            };
            let mut found = Vec::new();
            (l.read)(self, Path::new(var), entry, Some(source), &mut found);
            for mut e in found {
                e.file = None;
                e.line = None;
                errors.push(e);
            }
        }
    }

    /// The command line, the highest level. A flag sets its setting; a few also say what they
    /// are for, as the person typing them means: `--storage-path` stores on the filesystem,
    /// `--htpasswd` asks for htpasswd authentication (with `--token-realm`, it names the
    /// built-in token endpoint's users instead), `--token-realm` asks for token
    /// authentication, and `--access-file` is the access file of the method in effect.
    fn apply_flags(&mut self, flags: &[(&'static str, String)], errors: &mut Vec<ConfigError>) {
        let token = flags.iter().any(|(f, _)| *f == "--token-realm");
        for (flag, value) in flags {
            let source = Source::Cli(flag.to_string());
            let mut also = |c: &mut Config, key: &str, value: &str| {
                c.apply(named(key), value, source.clone(), errors)
            };
            let key = match *flag {
                "--storage-path" => {
                    also(self, "storage", "filesystem");
                    "storage.filesystem.rootdirectory"
                }
                "--htpasswd" if token => "auth.token.htpasswd",
                "--htpasswd" => {
                    also(self, "auth", "htpasswd");
                    "auth.htpasswd.path"
                }
                "--token-realm" => {
                    also(self, "auth", "token");
                    "auth.token.realm"
                }
                "--access-file" if token || self.auth_in_effect() == Some(AuthChoice::Token) => {
                    "auth.token.accessfile"
                }
                _ => match SETTINGS.iter().find(|s| s.flag == Some(flag)) {
                    Some(s) => s.key,
                    None => continue,
                },
            };
            also(self, key, value);
        }
    }

    /// Sets `s` from text, or records why not against `source`.
    fn apply(&mut self, s: &Setting, value: &str, source: Source, errors: &mut Vec<ConfigError>) {
        if let Err(message) = (s.set)(self, Input::Text(value), source.clone()) {
            errors.push(ConfigError::at(&source, message));
        }
    }
}

/// Whether a variable means something here.
fn is_known(name: &str) -> bool {
    SELECTORS.contains(&name) || lists::is_variable(name) || is_variable(name)
}
