//! The access file: who may pull, push and delete which repositories.
//!
//! ```yaml
//! groups:
//!   developers: [alice, bob]
//! rules:
//!   - repositories: ["team/**"]        # any depth under team/
//!     groups: [developers]
//!     users: [carol]
//!     actions: [pull, push, delete]
//!   - repositories: ["library/*"]      # one level under library/
//!     users: ["*"]                     # every authenticated user
//!     actions: [pull]
//!   - repositories: ["public/**"]
//!     anonymous: true                  # callers without credentials too (pull only)
//!     actions: [pull]
//! ```
//!
//! Rules add up: a caller may do an action on a repository when any rule that names them
//! (or everyone) matches the repository and lists the action. Anonymous rules also apply to
//! authenticated users. Pushing needs `pull` and `push`, as Docker's token scopes do (a push
//! starts by checking which blobs the registry already has). Without an access file every
//! authenticated user may do everything, as registry:2 does.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::Path;
use yaml_rust2::{Yaml, YamlLoader};

/// What a caller wants to do to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    fn parse(s: &str) -> Option<Vec<Action>> {
        Some(match s {
            "pull" => vec![Action::Pull],
            "push" => vec![Action::Push],
            "delete" => vec![Action::Delete],
            "*" => vec![Action::Pull, Action::Push, Action::Delete],
            _ => return None,
        })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A repository name pattern: components separated by `/`; `*` inside a component matches
/// any characters but `/`; a `**` component matches one or more whole components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryPattern {
    text: String,
    parts: Vec<String>,
}

impl RepositoryPattern {
    pub fn parse(s: &str) -> Result<RepositoryPattern, String> {
        let parts: Vec<String> = s.split('/').map(str::to_string).collect();
        if s.is_empty() || parts.iter().any(|p| p.is_empty()) {
            return Err(format!("repository pattern {s:?} has an empty component"));
        }
        if parts.iter().any(|p| p.contains("**") && p != "**") {
            return Err(format!(
                "repository pattern {s:?}: ** must be a whole component (team/**)"
            ));
        }
        Ok(RepositoryPattern {
            text: s.into(),
            parts,
        })
    }

    pub fn matches(&self, repository: &str) -> bool {
        let names: Vec<&str> = repository.split('/').collect();
        match_parts(&self.parts, &names)
    }
}

impl fmt::Display for RepositoryPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn match_parts(pattern: &[String], names: &[&str]) -> bool {
    match pattern.split_first() {
        None => names.is_empty(),
        Some((p, rest)) if p == "**" => (1..=names.len()).any(|n| match_parts(rest, &names[n..])),
        Some((p, rest)) => match names.split_first() {
            Some((n, names)) => {
                glob_component(p.as_bytes(), n.as_bytes()) && match_parts(rest, names)
            }
            None => false,
        },
    }
}

/// `*` matches any run of characters within one component.
fn glob_component(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob_component(rest, &s[i..])),
        Some((c, rest)) => s.first() == Some(c) && glob_component(rest, &s[1..]),
    }
}

/// Who a rule is for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Subject {
    User(String),
    Group(String),
    AnyUser,
    Anonymous,
}

#[derive(Debug, Clone)]
struct Rule {
    repositories: Vec<RepositoryPattern>,
    subjects: Vec<Subject>,
    actions: BTreeSet<Action>,
}

/// The parsed access file.
#[derive(Debug, Clone, Default)]
pub struct AccessRules {
    groups: HashMap<String, BTreeSet<String>>,
    rules: Vec<Rule>,
}

impl AccessRules {
    pub fn load(path: &Path) -> Result<AccessRules, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read the access file: {e}", path.display()))?;
        AccessRules::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<AccessRules, String> {
        let docs = YamlLoader::load_from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
        let doc = docs.into_iter().next().unwrap_or(Yaml::Null);
        let Yaml::Hash(top) = doc else {
            return Err("expected a mapping with `groups` and `rules`".into());
        };
        let mut access = AccessRules::default();
        for (k, v) in &top {
            match k.as_str() {
                Some("groups") => access.groups = parse_groups(v)?,
                Some("rules") => {}
                _ => return Err(format!("unknown key {k:?}: expected `groups` or `rules`")),
            }
        }
        let rules = top
            .get(&Yaml::String("rules".into()))
            .cloned()
            .unwrap_or(Yaml::Null);
        let rules = match rules {
            Yaml::Array(a) => a,
            Yaml::Null => Vec::new(),
            _ => return Err("`rules` must be a list".into()),
        };
        for (i, r) in rules.iter().enumerate() {
            let rule = parse_rule(r, &access.groups).map_err(|e| format!("rules[{i}]: {e}"))?;
            access.rules.push(rule);
        }
        Ok(access)
    }

    /// May this caller (`None`: anonymous) do `action` on `repository`?
    pub fn allows(&self, user: Option<&str>, repository: &str, action: Action) -> bool {
        self.rules.iter().any(|r| {
            r.actions.contains(&action)
                && r.subjects.iter().any(|s| self.names(s, user))
                && r.repositories.iter().any(|p| p.matches(repository))
        })
    }

    /// Whether any rule lets anonymous callers in, so listings make sense without credentials.
    pub fn has_anonymous_rules(&self) -> bool {
        self.rules
            .iter()
            .any(|r| r.subjects.contains(&Subject::Anonymous))
    }

    fn names(&self, subject: &Subject, user: Option<&str>) -> bool {
        match (subject, user) {
            (Subject::Anonymous, _) => true,
            (_, None) => false,
            (Subject::AnyUser, Some(_)) => true,
            (Subject::User(u), Some(user)) => u == user,
            (Subject::Group(g), Some(user)) => self.groups.get(g).is_some_and(|m| m.contains(user)),
        }
    }
}

fn string_list(v: &Yaml, what: &str) -> Result<Vec<String>, String> {
    match v {
        Yaml::String(s) => Ok(vec![s.clone()]),
        Yaml::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{what}: expected strings"))
            })
            .collect(),
        _ => Err(format!("{what}: expected a list of strings")),
    }
}

fn parse_groups(v: &Yaml) -> Result<HashMap<String, BTreeSet<String>>, String> {
    let Yaml::Hash(h) = v else {
        return Err("`groups` must map group names to lists of users".into());
    };
    let mut out = HashMap::new();
    for (k, members) in h {
        let name = k.as_str().ok_or("group names must be strings")?;
        out.insert(
            name.to_string(),
            string_list(members, &format!("groups.{name}"))?
                .into_iter()
                .collect(),
        );
    }
    Ok(out)
}

fn parse_rule(v: &Yaml, groups: &HashMap<String, BTreeSet<String>>) -> Result<Rule, String> {
    let Yaml::Hash(h) = v else {
        return Err(
            "a rule is a mapping with repositories, users/groups/anonymous, actions".into(),
        );
    };
    let mut rule = Rule {
        repositories: Vec::new(),
        subjects: Vec::new(),
        actions: BTreeSet::new(),
    };
    for (k, v) in h {
        match k.as_str() {
            Some("repositories") | Some("repository") => {
                for p in string_list(v, "repositories")? {
                    rule.repositories.push(RepositoryPattern::parse(&p)?);
                }
            }
            Some("users") => {
                for u in string_list(v, "users")? {
                    rule.subjects.push(if u == "*" {
                        Subject::AnyUser
                    } else {
                        Subject::User(u)
                    });
                }
            }
            Some("groups") => {
                for g in string_list(v, "groups")? {
                    if !groups.contains_key(&g) {
                        return Err(format!("group {g:?} is not defined under `groups`"));
                    }
                    rule.subjects.push(Subject::Group(g));
                }
            }
            Some("anonymous") => match v.as_bool() {
                Some(true) => rule.subjects.push(Subject::Anonymous),
                Some(false) => {}
                None => return Err("anonymous: expected true or false".into()),
            },
            Some("actions") => {
                for a in string_list(v, "actions")? {
                    let parsed = Action::parse(&a).ok_or_else(|| {
                        format!("unknown action {a:?}: use pull, push, delete or *")
                    })?;
                    rule.actions.extend(parsed);
                }
            }
            _ => return Err(format!("unknown key {k:?}")),
        }
    }
    if rule.repositories.is_empty() {
        return Err("no repositories".into());
    }
    if rule.subjects.is_empty() {
        return Err("names nobody: give users, groups or anonymous: true".into());
    }
    if rule.actions.is_empty() {
        return Err("no actions".into());
    }
    // Anonymous writes would make credentials pointless; refuse rather than guess.
    if rule.subjects.contains(&Subject::Anonymous)
        && rule.actions.iter().any(|a| *a != Action::Pull)
    {
        return Err("anonymous callers may only pull".into());
    }
    Ok(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_one_level_or_any_depth() {
        let one = RepositoryPattern::parse("library/*").expect("valid");
        assert!(one.matches("library/ubuntu"));
        assert!(!one.matches("library/a/b"));
        assert!(!one.matches("library"));
        assert!(!one.matches("other/ubuntu"));
        let deep = RepositoryPattern::parse("team/**").expect("valid");
        assert!(deep.matches("team/a"));
        assert!(deep.matches("team/a/b/c"));
        assert!(!deep.matches("team"));
        assert!(!deep.matches("teams/a"));
        let mid = RepositoryPattern::parse("team/**/cache").expect("valid");
        assert!(mid.matches("team/x/y/cache"));
        assert!(!mid.matches("team/cache"));
        let glob = RepositoryPattern::parse("app-*").expect("valid");
        assert!(glob.matches("app-web"));
        assert!(!glob.matches("app-web/x"));
        assert!(RepositoryPattern::parse("a//b").is_err());
        assert!(RepositoryPattern::parse("a/**x").is_err());
    }

    const FILE: &str = r#"
groups:
  developers: [alice, bob]
rules:
  - repositories: ["team/**"]
    groups: [developers]
    users: carol
    actions: [pull, push, delete]
  - repositories: ["library/*"]
    users: ["*"]
    actions: [pull]
  - repositories: ["public/**"]
    anonymous: true
    actions: [pull]
"#;

    #[test]
    fn rules_add_up_per_user_group_and_anonymous() {
        let a = AccessRules::parse(FILE).expect("parses");
        assert!(a.allows(Some("alice"), "team/app", Action::Push));
        assert!(a.allows(Some("carol"), "team/x/y", Action::Delete));
        assert!(!a.allows(Some("dave"), "team/app", Action::Pull));
        assert!(a.allows(Some("dave"), "library/ubuntu", Action::Pull));
        assert!(!a.allows(Some("dave"), "library/ubuntu", Action::Push));
        assert!(!a.allows(None, "library/ubuntu", Action::Pull));
        assert!(a.allows(None, "public/x", Action::Pull));
        assert!(a.allows(Some("dave"), "public/x", Action::Pull));
        assert!(!a.allows(None, "public/x", Action::Push));
        assert!(a.has_anonymous_rules());
    }

    #[test]
    fn the_shipped_example_means_what_its_comments_say() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/etc/docker-registry-access.yml"
        );
        let a = AccessRules::load(Path::new(path)).expect("the example parses");
        assert!(a.allows(Some("anyone"), "library/debian", Action::Pull));
        assert!(!a.allows(Some("anyone"), "library/debian", Action::Push));
        assert!(a.allows(Some("alice"), "library/debian", Action::Delete));
        assert!(a.allows(Some("ci-robot"), "team/a/b", Action::Push));
        assert!(!a.allows(Some("ci-robot"), "team/a/b", Action::Delete));
        assert!(a.allows(Some("bob"), "team/a", Action::Delete));
        assert!(a.allows(None, "public/tool", Action::Pull));
        assert!(!a.allows(None, "team/a", Action::Pull));
    }

    #[test]
    fn mistakes_are_refused_with_where() {
        for (text, needle) in [
            (
                "rules:\n  - repositories: [a]\n    users: [x]\n    actions: [pul]\n",
                "rules[0]: unknown action",
            ),
            (
                "rules:\n  - repositories: [a]\n    groups: [g]\n    actions: [pull]\n",
                "not defined",
            ),
            (
                "rules:\n  - repositories: [a]\n    anonymous: true\n    actions: [push]\n",
                "only pull",
            ),
            (
                "rules:\n  - repositories: [a]\n    actions: [pull]\n",
                "names nobody",
            ),
            ("rule: []\n", "unknown key"),
            (
                "rules:\n  - repositories: [a]\n    user: [x]\n    actions: [pull]\n",
                "unknown key",
            ),
        ] {
            let e = AccessRules::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
