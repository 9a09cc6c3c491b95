//! The `retention:` list, read the same way from a registry:2 file (top level, our extension)
//! and from a legacy flavored file (in `common` or a flavor): a list of rules
//! `{repositories: GLOB, keeptags: N, keepyoungerthan: DURATION, protecttags: GLOB}`.
//!
//! Rule keys ignore case, `_` and `-` ([`key_name`]), so `keep_tags` and `keepTags` are
//! `keeptags`. Unlike elsewhere in the configuration, an unknown key in a rule is an error,
//! not a warning: retention deletes tags, and a misspelt `protecttags` silently ignored would
//! delete the very tags it was written to protect. Every rule is checked as the retention
//! code will check it (a repository pattern, and something to keep by), so a bad rule stops
//! the daemon and `config --check` with `file:line: key: message` instead of failing later
//! in `docker-registry retention`.

use super::kinds::{glob_text, node_with, tag_count_text, Dur};
use super::model::RetentionRule;
use super::setting::{key_name, Kind};
use super::source::{entry_source, list_items, node_source, ConfigError, Source, Sourced};
use super::yaml::{Entry, Node};
use std::path::Path;

/// Reads a `retention` entry. `None` when it had errors (all of them are in `errors`); null
/// is an empty list.
pub fn read(
    file: &Path,
    entry: &Entry,
    errors: &mut Vec<ConfigError>,
) -> Option<Sourced<Vec<RetentionRule>>> {
    let items = list_items(
        file,
        entry,
        "rules (- repositories: ..., keeptags: ...)",
        errors,
    )?;
    let before = errors.len();
    let mut rules = Vec::new();
    let mut parts: Vec<(String, Source)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_src = node_source(file, item);
        if let Some(rule) = read_rule(file, item, &item_src, errors) {
            rules.push(rule);
            parts.push((format!("retention[{i}]"), item_src));
        }
    }
    if errors.len() > before {
        return None;
    }
    // One source per rule, so `config` can point at each; one rule is simply its source.
    let source = match parts.len() {
        0 => entry_source(file, entry),
        1 => parts.remove(0).1,
        _ => Source::Parts(parts),
    };
    Some(Sourced::new(rules, source))
}

fn read_rule(
    file: &Path,
    item: &Node,
    item_src: &Source,
    errors: &mut Vec<ConfigError>,
) -> Option<RetentionRule> {
    let Some(entries) = item.entries() else {
        errors.push(ConfigError::at(
            item_src,
            format!(
                "a retention rule is a mapping (repositories: ..., keeptags: ...), found {}",
                item.describe()
            ),
        ));
        return None;
    };
    let before = errors.len();
    let mut repositories = None;
    let mut keep_tags = None;
    let mut keep_younger_than = None;
    let mut protect_tags = None;
    let mut seen: Vec<(String, &Entry)> = Vec::new();
    // Keys whose value was refused: their error says enough, no "needs ..." on top.
    let mut refused: Vec<String> = Vec::new();
    for e in entries {
        let src = entry_source(file, e);
        let key = key_name(&e.key);
        if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
            errors.push(ConfigError::at(
                &src,
                format!(
                    "given twice in one rule (also as {} at line {})",
                    first.key, first.key_line
                ),
            ));
            continue;
        }
        seen.push((key.clone(), e));
        let result = match key.as_str() {
            "repositories" => node_with(&e.value, glob_text).map(|v| repositories = v),
            "keeptags" => node_with(&e.value, tag_count_text).map(|v| keep_tags = v),
            "keepyoungerthan" => node_with(&e.value, Dur::text).map(|v| keep_younger_than = v),
            "protecttags" => node_with(&e.value, glob_text).map(|v| protect_tags = v),
            _ => Err(format!(
                "unknown retention rule key {:?} (a rule has repositories, keeptags, \
                 keepyoungerthan and protecttags; an unknown key is refused so that a \
                 misspelt protecttags cannot delete the tags it should protect)",
                e.key
            )),
        };
        if let Err(m) = result {
            errors.push(ConfigError::at(&src, m));
            refused.push(key);
        }
    }
    let was_refused = |k: &str| refused.iter().any(|r| r == k);
    if repositories.is_none() && !was_refused("repositories") {
        errors.push(ConfigError::at(
            item_src,
            "a retention rule needs repositories: the repository names it applies to \
             (a pattern: library/*, team/app, or * for every repository)",
        ));
    }
    if keep_tags.is_none()
        && keep_younger_than.is_none()
        && !was_refused("keeptags")
        && !was_refused("keepyoungerthan")
    {
        errors.push(ConfigError::at(
            item_src,
            "a retention rule needs keeptags (keep the newest N tags) and/or keepyoungerthan \
             (keep tags pushed less than this long ago, e.g. 720h); without either it would \
             keep nothing but protected tags",
        ));
    }
    if errors.len() > before {
        return None;
    }
    Some(RetentionRule {
        repositories: repositories?,
        keep_tags,
        keep_younger_than,
        protect_tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml;
    use std::time::Duration;

    fn load(text: &str) -> (Option<Sourced<Vec<RetentionRule>>>, Vec<String>) {
        let root = yaml::parse(text)
            .expect("valid yaml")
            .0
            .expect("a document");
        let entry = root.get("retention").expect("retention key");
        let mut errors = Vec::new();
        let rules = read(Path::new("/etc/r.yml"), entry, &mut errors);
        (rules, errors.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn every_spelling_of_the_rule_keys_is_read() {
        let (rules, errors) = load(
            "retention:\n  - repositories: library/*\n    keeptags: 10\n    keepyoungerthan: 720h\n    protecttags: v*\n\
             \x20 - repositories: '*'\n    keep_tags: 3\n    protect_tags: release-*\n\
             \x20 - repositories: team/app\n    keepYoungerThan: 24h\n    Keep-Tags: 0\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        let rules = rules.expect("rules");
        assert_eq!(
            rules.value,
            vec![
                RetentionRule {
                    repositories: "library/*".into(),
                    keep_tags: Some(10),
                    keep_younger_than: Some(Duration::from_secs(720 * 3600)),
                    protect_tags: Some("v*".into()),
                },
                RetentionRule {
                    repositories: "*".into(),
                    keep_tags: Some(3),
                    keep_younger_than: None,
                    protect_tags: Some("release-*".into()),
                },
                RetentionRule {
                    repositories: "team/app".into(),
                    keep_tags: Some(0),
                    keep_younger_than: Some(Duration::from_secs(24 * 3600)),
                    protect_tags: None,
                },
            ]
        );
        assert_eq!(
            rules.source.part("retention[1]").to_string(),
            "/etc/r.yml:6 (retention[1])"
        );
        assert_eq!(
            rules.source.part("retention[2]").to_string(),
            "/etc/r.yml:9 (retention[2])"
        );
    }

    #[test]
    fn one_rule_is_its_own_source_and_null_is_no_rules() {
        let (rules, errors) = load("retention:\n- repositories: a\n  keeptags: 1\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            rules.expect("rules").source.to_string(),
            "/etc/r.yml:2 (retention[0])"
        );
        let (rules, errors) = load("retention:\n");
        assert!(errors.is_empty(), "{errors:?}");
        let rules = rules.expect("rules");
        assert!(rules.value.is_empty());
        assert_eq!(rules.source.to_string(), "/etc/r.yml:1 (retention)");
    }

    #[test]
    fn every_bad_rule_is_reported_with_its_line_and_key() {
        let (rules, errors) = load(
            "retention:\n  - repositories: a\n    keeptags: ten\n\
             \x20 - keeptags: 2\n\
             \x20 - repositories: b\n    protecttag: v*\n\
             \x20 - repositories: ''\n    keepyoungerthan: a month\n\
             \x20 - repositories: c\n    keeptags: 1\n    keep_tags: 2\n\
             \x20 - just a string\n",
        );
        assert!(rules.is_none());
        assert_eq!(
            errors,
            [
                "/etc/r.yml:3: retention[0].keeptags: not a number of tags: \"ten\" (a whole number, e.g. 10)",
                "/etc/r.yml:4: retention[1]: a retention rule needs repositories: the repository names it applies to (a pattern: library/*, team/app, or * for every repository)",
                "/etc/r.yml:6: retention[2].protecttag: unknown retention rule key \"protecttag\" (a rule has repositories, keeptags, keepyoungerthan and protecttags; an unknown key is refused so that a misspelt protecttags cannot delete the tags it should protect)",
                "/etc/r.yml:5: retention[2]: a retention rule needs keeptags (keep the newest N tags) and/or keepyoungerthan (keep tags pushed less than this long ago, e.g. 720h); without either it would keep nothing but protected tags",
                "/etc/r.yml:7: retention[3].repositories: an empty pattern matches nothing; write * for everything",
                "/etc/r.yml:8: retention[3].keepyoungerthan: not a duration: \"a month\" (e.g. 168h, 30m, 1h30m)",
                "/etc/r.yml:11: retention[4].keep_tags: given twice in one rule (also as keeptags at line 10)",
                "/etc/r.yml:12: retention[5]: a retention rule is a mapping (repositories: ..., keeptags: ...), found \"just a string\"",
            ]
        );
        let (_, errors) = load("retention:\n  repositories: a\n");
        assert_eq!(
            errors,
            ["/etc/r.yml:1: retention: expected a list of rules (- repositories: ..., keeptags: ...), found a mapping"]
        );
    }
}
