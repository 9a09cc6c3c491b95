//! Listings: a repository's tags, the catalog of repositories, and the referrers of a
//! manifest. All lexically sorted, as the spec's pagination requires.

use super::cache::Cached;
use super::manifest;
use super::{layout, Digest, Registry, RegistryError, RegistryResult, RepositoryName};
use crate::storage::StorageError;
use serde_json::{json, Value};
use std::sync::Arc;

impl Registry {
    /// Tags of a repository, sorted; `NAME_UNKNOWN` when the repository does not exist.
    /// Served from the cache (see `cache`): a list a little past its TTL is served while one
    /// background scan replaces it, so a client polling a large repository never waits for
    /// a directory read; writes through this process drop the list at once.
    pub async fn tags(&self, repo: &RepositoryName) -> RegistryResult<Arc<Vec<String>>> {
        match self.cache.tag_list(repo) {
            Some(Cached::Fresh(list)) => return Ok(list),
            Some(Cached::Stale(list)) => {
                if self.cache.claim_tag_list_refresh(repo) {
                    let driver = self.driver.clone();
                    let cache = self.cache.clone();
                    let repo = repo.clone();
                    let generation = cache.tag_generation();
                    tokio::spawn(async move {
                        let fresh = scan_tags(driver.as_ref(), &repo).await;
                        if let Err(e) = &fresh {
                            tracing::debug!(%repo, "tag list refresh: {e}");
                        }
                        cache.set_tag_list(&repo, fresh.ok().map(Arc::new), generation);
                    });
                }
                return Ok(list);
            }
            None => {}
        }
        let generation = self.cache.tag_generation();
        let tags = Arc::new(self.scan_tags(repo).await?);
        self.cache
            .set_tag_list(repo, Some(tags.clone()), generation);
        Ok(tags)
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
