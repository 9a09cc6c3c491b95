//! Retention policies: which tags to remove so that old images stop taking disk. For each
//! repository the first rule whose pattern matches applies: keep the newest `keep_tags`
//! tags and/or the tags pushed less than `keep_younger_than` ago (when both are given, a
//! tag either one keeps is kept); tags matching `protect_tags` are never touched and do not
//! count towards the newest N. A tag's age is the time its `current` link was last written
//! (its last push). Removing a tag leaves the manifest revision: `garbage-collect
//! --delete-untagged` then frees the disk.

use super::{layout, Digest, Registry, RegistryResult, RepositoryName, Tag};
use crate::storage::StorageError;
use std::fmt;
use std::time::{Duration, SystemTime};

/// A glob over names: `*` matches any run of characters (including `/`), `?` one
/// character, everything else itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobPattern(String);

impl GlobPattern {
    pub fn parse(s: &str) -> Result<GlobPattern, String> {
        if s.is_empty() {
            return Err("an empty pattern matches nothing; write * for everything".into());
        }
        if s.chars().any(char::is_control) {
            return Err(format!("pattern {s:?} contains control characters"));
        }
        Ok(GlobPattern(s.to_owned()))
    }

    pub fn matches(&self, name: &str) -> bool {
        // Iterative matching with one backtrack point: linear in practice, no recursion.
        let p: Vec<char> = self.0.chars().collect();
        let n: Vec<char> = name.chars().collect();
        let (mut pi, mut ni) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ni < n.len() {
            if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
                pi += 1;
                ni += 1;
            } else if pi < p.len() && p[pi] == '*' {
                star = Some((pi, ni));
                pi += 1;
            } else if let Some((sp, sn)) = star {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|c| *c == '*')
    }
}

impl fmt::Display for GlobPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated retention rule.
#[derive(Debug, Clone)]
pub struct RetentionPolicy {
    pub repositories: GlobPattern,
    pub keep_tags: Option<usize>,
    pub keep_younger_than: Option<Duration>,
    pub protect_tags: Option<GlobPattern>,
}

impl RetentionPolicy {
    pub fn new(
        repositories: &str,
        keep_tags: Option<usize>,
        keep_younger_than: Option<Duration>,
        protect_tags: Option<&str>,
    ) -> Result<RetentionPolicy, String> {
        if keep_tags.is_none() && keep_younger_than.is_none() {
            return Err(format!(
                "retention rule for {repositories:?}: give keep_tags and/or keep_younger_than, or it keeps everything"
            ));
        }
        Ok(RetentionPolicy {
            repositories: GlobPattern::parse(repositories)?,
            keep_tags,
            keep_younger_than,
            protect_tags: protect_tags.map(GlobPattern::parse).transpose()?,
        })
    }
}

/// What retention decided for one tag.
#[derive(Debug, Clone)]
pub struct TagDecision {
    pub repository: RepositoryName,
    pub tag: String,
    pub digest: Digest,
    pub pushed: SystemTime,
    pub keep: bool,
    /// Why: `protected`, `newest N`, `younger than D`, or `expired`.
    pub reason: &'static str,
}

impl Registry {
    /// Decides, for every tag of every repository a policy matches, whether it stays; with
    /// `apply`, removes the others (a tag pushed again since the decision is left alone).
    pub async fn apply_retention(
        &self,
        policies: &[RetentionPolicy],
        apply: bool,
    ) -> RegistryResult<Vec<TagDecision>> {
        // With several instances on the store, one runs maintenance at a time.
        let lease = match apply {
            true => self.take_maintenance_lease("retention").await?,
            false => None,
        };
        let now = SystemTime::now();
        let _caches = self.clear_caches_when_done();
        let mut out = Vec::new();
        for name in self.scan_catalog().await? {
            let Some(policy) = policies.iter().find(|p| p.repositories.matches(&name)) else {
                continue;
            };
            let Ok(repo) = name.parse::<RepositoryName>() else {
                continue;
            };
            let mut tags: Vec<(String, Digest, SystemTime)> = Vec::new();
            for t in self.scan_tags(&repo).await.unwrap_or_default() {
                let Ok(tag) = t.parse::<Tag>() else { continue };
                let link = layout::tag_current_link(&repo, &tag)?;
                let Some(digest) = self.read_link(&link).await? else {
                    continue;
                };
                let pushed = match self.driver.stat(&link).await {
                    Ok(i) => i.modified,
                    Err(StorageError::NotFound(_)) => continue,
                    Err(e) => return Err(e.into()),
                };
                tags.push((t, digest, pushed));
            }
            // Newest first; the name breaks ties so the outcome does not depend on listing order.
            tags.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
            let mut counted = 0;
            for (tag, digest, pushed) in tags {
                let age = now.duration_since(pushed).unwrap_or(Duration::ZERO);
                let (keep, reason) = if policy
                    .protect_tags
                    .as_ref()
                    .is_some_and(|p| p.matches(&tag))
                {
                    (true, "protected")
                } else {
                    counted += 1;
                    if policy.keep_tags.is_some_and(|n| counted <= n) {
                        (true, "newest N")
                    } else if policy.keep_younger_than.is_some_and(|d| age < d) {
                        (true, "younger than D")
                    } else {
                        (false, "expired")
                    }
                };
                if !keep && apply {
                    let Ok(t) = tag.parse::<Tag>() else { continue };
                    // Re-check: a push may have moved the tag since it was read.
                    let link = layout::tag_current_link(&repo, &t)?;
                    let still = self.read_link(&link).await? == Some(digest.clone())
                        && self
                            .driver
                            .stat(&link)
                            .await
                            .map(|i| i.modified == pushed)
                            .unwrap_or(false);
                    if !still {
                        continue;
                    }
                    super::gc_shared::still_held(lease.as_ref(), "retention")?;
                    self.remove(&layout::tag_dir(&repo, &t)?).await?;
                }
                out.push(TagDecision {
                    repository: repo.clone(),
                    tag,
                    digest,
                    pushed,
                    keep,
                    reason,
                });
            }
        }
        if let Some(l) = lease {
            l.release().await;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_names_and_tags() {
        let p = |s: &str| GlobPattern::parse(s).expect("pattern");
        assert!(p("*").matches("team/app/web"));
        assert!(p("team/*").matches("team/app/web"));
        assert!(!p("team/*").matches("library/team"));
        assert!(p("v?.*").matches("v1.2.3"));
        assert!(!p("v?.*").matches("v10.2"));
        assert!(p("*-release").matches("2024-release"));
        assert!(!p("*-release").matches("2024-release-candidate"));
        assert!(p("a*b*c").matches("aXXbYYc"));
        assert!(GlobPattern::parse("").is_err());
    }
}
