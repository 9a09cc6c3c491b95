//! The YAML configuration (`config::yaml` and the loaders above it): anchors, aliases and
//! merge keys, `_env:NAME[:default]` values, the legacy flavor file (`common:` + flavors) and
//! the registry:2 file, read end to end by `Config::load`.
//!
//! An input is the YAML file, then optionally a line `#env` followed by `NAME=value` lines:
//! the environment (`SETTINGS_FLAVOR`, the variables `_env:` names, `REGISTRY_*`).
#![no_main]

use docker_registry::config::yaml::{self, Node, NodeKind};
use docker_registry::config::{Config, LoadOptions, Source};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where the YAML file is written for `Config::load`: in memory where there is a tmpfs,
/// since rewriting one file on ext4 waits for the disk each time (auto_da_alloc).
fn config_file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("docker-registry-fuzz-{}.yml", std::process::id()))
    })
}

/// Reads every scalar below `node` with YAML's types.
fn walk(node: &Node) {
    let _ = (node.scalar(), node.describe());
    match &node.kind {
        NodeKind::Scalar { .. } => {}
        NodeKind::Seq(items) => items.iter().for_each(walk),
        NodeKind::Map(entries) => entries.iter().for_each(|e| walk(&e.value)),
    }
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(input) = std::str::from_utf8(bytes) else {
        return;
    };
    let (text, env_lines) = input.split_once("\n#env\n").unwrap_or((input, ""));
    let env: BTreeMap<String, String> = env_lines
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();

    if let Ok((Some(root), _remarks)) = yaml::parse(text) {
        walk(&root);
        let mut referenced = Vec::new();
        root.env_references(&mut referenced);
        let lookup = |name: &str| env.get(name).map(|v| (v.clone(), Source::Env(name.into())));
        walk(&root.substitute_env(&lookup));
    }

    let config_file = config_file();
    std::fs::write(config_file, text).expect("the configuration file written");
    let options = LoadOptions {
        // Never the machine's own /etc/sysconfig/docker-registry.
        sysconfig: Some("/dev/null".into()),
        config: Some(config_file.clone()),
        env,
        ..LoadOptions::default()
    };
    let loaded = Config::load(&options);
    let _ = std::fs::remove_file(config_file);
    // YAML counts a lone CR as a line break too (and CR LF as one).
    let lines = text.replace("\r\n", "\n").split(['\n', '\r']).count();
    match loaded {
        Ok(config) => {
            let _ = config.describe();
        }
        Err(errors) => {
            for e in &errors.0 {
                if let (Some(file), Some(line)) = (&e.file, e.line) {
                    if file == config_file {
                        assert!(
                            (1..=lines).contains(&line),
                            "{e} (the file has {lines} lines)"
                        );
                    }
                }
            }
            let _ = errors.to_string();
        }
    }
});
