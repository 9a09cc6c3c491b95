//! Listings: a repository's tags, the catalog of repositories, and the referrers of a
//! manifest. All lexically sorted, as the spec's pagination requires.

use super::cache::Cached;
use super::manifest;
use super::{layout, Digest, Registry, RegistryError, RegistryResult, RepositoryName};
use crate::storage::StorageError;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::SystemTime;

impl Registry {
    /// Tags of a repository, sorted; `NAME_UNKNOWN` when the repository does not exist.
    /// Served from the cache (see `cache`): a list a little past its TTL is served while one
    /// background scan replaces it, so a client polling a large repository never waits for
    /// a directory read; writes through this process drop the list at once. On a local
    /// filesystem a list of any age whose tags directory has not been modified since it
    /// was read is current, whoever writes the store: one `stat` instead of a read of the
    /// directory.
    pub async fn tags(&self, repo: &RepositoryName) -> RegistryResult<Arc<Vec<String>>> {
        let cached = self.cache.tag_list(repo);
        if let Some(Cached::Fresh(list)) = cached {
            return Ok(list);
        }
        // Checked by its directory's time: current, or known to be out of date (then read
        // now rather than served stale).
        let mut changed = false;
        if let Some((list, validator)) = self.cache.unchanged_tag_list(repo) {
            let generation = self.cache.tag_generation();
            match self.driver.stat(&layout::tags_dir(repo)?).await {
                Ok(info) if info.is_dir && info.modified == validator => {
                    self.cache.confirm_tag_list(repo, generation);
                    return Ok(list);
                }
                _ => changed = true,
            }
        }
        if let (Some(Cached::Stale(list)), false) = (cached, changed) {
            if self.cache.claim_tag_list_refresh(repo) {
                let driver = self.driver.clone();
                let cache = self.cache.clone();
                let repo = repo.clone();
                tokio::spawn(async move {
                    if let Err(e) = read_into_cache(driver.as_ref(), &cache, &repo).await {
                        tracing::debug!(%repo, "tag list refresh: {e}");
                        cache.set_tag_list(&repo, None, None, cache.tag_generation());
                    }
                });
            }
            return Ok(list);
        }
        read_into_cache(self.driver.as_ref(), &self.cache, repo).await
    }

    /// Tags as storage holds them now, bypassing the cache: for maintenance (collection,
    /// retention, fsck) and deletion, which must never act on a stale listing.
    pub async fn scan_tags(&self, repo: &RepositoryName) -> RegistryResult<Vec<String>> {
        scan_tags(self.driver.as_ref(), repo).await
    }

    /// Every repository (a directory holding `_manifests`), sorted; from the cache when fresh.
    pub async fn catalog(&self) -> RegistryResult<Arc<Vec<String>>> {
        match self.cache.catalog() {
            Some((list, true)) => return Ok(list),
            Some((list, false)) => {
                // Stale: serve it, and let one background walk replace it.
                if self.cache.claim_catalog_refresh() {
                    let driver = self.driver.clone();
                    let cache = self.cache.clone();
                    tokio::spawn(async move {
                        match scan_catalog(driver.as_ref()).await {
                            Ok(fresh) => cache.set_catalog(Arc::new(fresh)),
                            Err(e) => {
                                tracing::warn!("catalog refresh failed: {e}");
                                cache.catalog_refresh_failed();
                            }
                        }
                    });
                }
                return Ok(list);
            }
            None => {}
        }
        let out = Arc::new(self.scan_catalog().await?);
        self.cache.set_catalog(out.clone());
        Ok(out)
    }

    /// The catalog as storage holds it now, bypassing the cache (for maintenance).
    pub async fn scan_catalog(&self) -> RegistryResult<Vec<String>> {
        scan_catalog(self.driver.as_ref()).await
    }

    /// Descriptors of the manifests in `repo` whose subject is `subject`, optionally only
    /// those of one artifact type.
    pub async fn referrers(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> RegistryResult<Vec<Value>> {
        let mut out = Vec::new();
        for d in self
            .list_digests(&layout::referrers(repo, subject)?)
            .await?
        {
            // A referrer whose revision was deleted is no longer served.
            if !self.exists(&layout::revision_link(repo, &d)?).await? {
                continue;
            }
            let Ok(bytes) = self
                .driver
                .get_content(&layout::blob_data(&d)?, manifest::MAX_MANIFEST_BYTES * 4)
                .await
            else {
                continue;
            };
            let Ok(parsed) = manifest::parse(&bytes, "") else {
                continue;
            };
            if artifact_type.is_some() && parsed.artifact_type.as_deref() != artifact_type {
                continue;
            }
            let mut desc = json!({
                "mediaType": parsed.media_type,
                "digest": d.to_string(),
                "size": bytes.len(),
            });
            if let Some(at) = parsed.artifact_type {
                desc["artifactType"] = Value::String(at);
            }
            if let Some(ann) = parsed.annotations {
                desc["annotations"] = Value::Object(ann);
            }
            out.push(desc);
        }
        Ok(out)
    }
}

pub(super) async fn scan_tags(
    driver: &dyn crate::storage::StorageDriver,
    repo: &RepositoryName,
) -> RegistryResult<Vec<String>> {
    match driver.list(&layout::tags_dir(repo)?).await {
        Ok(mut tags) => {
            tags.retain(|t| t.parse::<super::Tag>().is_ok());
            tags.sort_unstable();
            Ok(tags)
        }
        Err(StorageError::NotFound(_)) => match driver.stat(&layout::manifests_dir(repo)?).await {
            Ok(_) => Ok(Vec::new()),
            Err(StorageError::NotFound(_)) => Err(RegistryError::NameUnknown(repo.clone())),
            Err(e) => Err(e.into()),
        },
        Err(e) => Err(e.into()),
    }
}

/// A directory's modification time counts as unchanged only if it was this much older than
/// the reading of its listing: timestamps are coarse (a kernel tick), so a tag made in the
/// same tick as the last change before the reading could leave the time as it was.
const SETTLED: std::time::Duration = std::time::Duration::from_secs(1);

/// The tags directory's modification time, taken after a reading of its listing that began
/// at `started`, where it can tell later that no tag was made or removed since (see
/// [`Registry::tags`]): on drivers whose directory times track their entries, and when the
/// time is at least [`SETTLED`] older than `started`. A tag made or removed during the
/// reading or after it would have given the directory a later time.
pub(super) async fn tags_validator(
    driver: &dyn crate::storage::StorageDriver,
    repo: &RepositoryName,
    started: SystemTime,
) -> Option<SystemTime> {
    if !driver.directory_times_track_entries() {
        return None;
    }
    let info = driver.stat(&layout::tags_dir(repo).ok()?).await.ok()?;
    let settled = started
        .duration_since(info.modified)
        .is_ok_and(|age| age >= SETTLED);
    (info.is_dir && settled).then_some(info.modified)
}

/// Reads a repository's tags and keeps them in the cache with their directory's time (see
/// [`tags_validator`]), unless a tag changed through this process meanwhile.
async fn read_into_cache(
    driver: &dyn crate::storage::StorageDriver,
    cache: &super::cache::Caches,
    repo: &RepositoryName,
) -> RegistryResult<Arc<Vec<String>>> {
    let generation = cache.tag_generation();
    let started = SystemTime::now();
    let tags = Arc::new(scan_tags(driver, repo).await?);
    let validator = tags_validator(driver, repo, started).await;
    cache.set_tag_list(repo, Some(tags.clone()), validator, generation);
    Ok(tags)
}

/// Every repository under the storage root, sorted.
pub(super) async fn scan_catalog(
    driver: &dyn crate::storage::StorageDriver,
) -> RegistryResult<Vec<String>> {
    let root = layout::repositories_root()?;
    let mut out = driver.find_directories_with(&root, "_manifests").await?;
    // Directories that are not valid names were not made by a registry: not listed.
    out.retain(|name| name.parse::<RepositoryName>().is_ok());
    out.sort_unstable();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::testing::registry;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    /// Past the cache's TTL, so that a listing is checked or read again.
    const PAST_TTL: Duration = Duration::from_millis(1100);

    /// A registry on a store in a new directory, `repo`, its tags directory there, and a
    /// time long enough ago to be trusted.
    fn store(
        repo: &str,
    ) -> (
        tempfile::TempDir,
        Registry,
        RepositoryName,
        PathBuf,
        SystemTime,
    ) {
        let root = tempfile::tempdir().expect("tempdir");
        let reg = registry(root.path());
        let repo: RepositoryName = repo.parse().expect("name");
        let dir = root
            .path()
            .join(layout::tags_dir(&repo).expect("path").as_str());
        let old = SystemTime::now() - Duration::from_secs(60);
        (root, reg, repo, dir, old)
    }

    /// A tag as another program on the store (registry:2) makes it.
    fn make_tag(dir: &Path, tag: &str) {
        let current = dir.join(tag).join("current");
        std::fs::create_dir_all(&current).expect("mkdir");
        std::fs::write(current.join("link"), format!("sha256:{}", "a".repeat(64))).expect("link");
    }

    fn set_time(dir: &Path, t: SystemTime) {
        std::fs::File::open(dir)
            .and_then(|d| d.set_modified(t))
            .expect("set the directory's time");
    }

    fn names(list: &[String]) -> Vec<&str> {
        list.iter().map(String::as_str).collect()
    }

    #[tokio::test]
    async fn a_tag_list_is_current_while_its_directory_time_is_unchanged() {
        let (_root, reg, repo, dir, old) = store("team/app");
        make_tag(&dir, "a");
        make_tag(&dir, "b");
        set_time(&dir, old);
        assert_eq!(names(&reg.tags(&repo).await.expect("tags")), ["a", "b"]);

        // A tag made behind the registry's back, the directory's time put back: the list
        // is not read again, which shows that the check is the directory's time.
        make_tag(&dir, "c");
        set_time(&dir, old);
        tokio::time::sleep(PAST_TTL).await;
        assert_eq!(names(&reg.tags(&repo).await.expect("tags")), ["a", "b"]);
        // Not served stale while a reading replaces it: checked, and fresh again.
        tokio::time::sleep(PAST_TTL / 4).await;
        assert_eq!(names(&reg.tags(&repo).await.expect("tags")), ["a", "b"]);

        // With the time the making gave it, the list is read again at once, not served stale.
        set_time(&dir, SystemTime::now());
        tokio::time::sleep(PAST_TTL).await;
        assert_eq!(
            names(&reg.tags(&repo).await.expect("tags")),
            ["a", "b", "c"]
        );

        // A directory changed in the last second when it was read is not trusted: a tag
        // made in the same tick of the clock would leave its time as it was.
        tokio::time::sleep(PAST_TTL).await;
        let tick = SystemTime::now();
        make_tag(&dir, "d");
        set_time(&dir, tick);
        assert_eq!(
            names(&reg.tags(&repo).await.expect("tags")),
            ["a", "b", "c", "d"]
        );
        make_tag(&dir, "e");
        set_time(&dir, tick);
        let mut listed = Vec::new();
        for _ in 0..20 {
            tokio::time::sleep(PAST_TTL / 4).await;
            listed = reg.tags(&repo).await.expect("tags").to_vec();
            if listed.len() == 5 {
                break;
            }
        }
        assert_eq!(names(&listed), ["a", "b", "c", "d", "e"]);
    }

    #[tokio::test]
    async fn the_index_rebuild_at_start_leaves_large_tag_lists_checked_by_time() {
        let (_root, reg, repo, dir, old) = store("team/many");
        for i in 0..crate::registry::search::SEED_TAGS {
            make_tag(&dir, &format!("t{i:05}"));
        }
        set_time(&dir, old);
        reg.build_search_index().await;
        // Made behind the registry's back with the time put back: not listed, so the list
        // came from the rebuild's reading.
        make_tag(&dir, "zz");
        set_time(&dir, old);
        let tags = reg.tags(&repo).await.expect("tags");
        assert_eq!(tags.len(), crate::registry::search::SEED_TAGS);
        assert!(!tags.iter().any(|t| t == "zz"));
    }
}
