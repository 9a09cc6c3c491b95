//! The registry's domain: repositories of blobs, manifests and tags, written once against
//! the [`StorageDriver`] trait. Nothing here knows about HTTP; the `api` layer turns
//! [`RegistryError`]s into the spec's error codes.

pub mod blobs;
pub(crate) mod cache;
mod changes;
pub mod digest;
pub mod fsck;
pub mod gc;
mod gc_shared;
pub mod health;
pub mod images;
pub mod layout;
mod lease;
pub mod manifest;
pub mod manifests;
pub mod names;
pub mod proxy;
pub mod purge;
pub mod recovery;
pub mod retention;
pub mod search;
mod sha2_state;
pub mod tags;
#[cfg(test)]
mod testing;
pub mod uploads;

use crate::storage::{StorageDriver, StorageError, StoragePath};
pub use digest::{Algorithm, Digest, DigestHasher};
pub use names::{Reference, RepositoryName, Tag};
use std::fmt;
use std::sync::Arc;

/// Link files hold a digest (`sha512:<hex>` at most); anything much longer is not a link.
const LINK_LIMIT: u64 = 1024;

#[derive(Debug)]
pub enum RegistryError {
    BlobUnknown(Digest),
    BlobUploadUnknown,
    BlobUploadInvalid(String),
    /// A chunk that does not start where the upload ends; answered with 416 and the range
    /// the registry holds.
    UploadRangeInvalid {
        size: u64,
    },
    DigestInvalid(String),
    SizeInvalid(String),
    ManifestUnknown(String),
    ManifestInvalid(String),
    ManifestBlobUnknown(Digest),
    ManifestTooLarge,
    NameUnknown(RepositoryName),
    Unsupported(String),
    /// The storage is full (ENOSPC, EDQUOT); what was being written is not kept.
    StorageFull(StoragePath),
    /// The storage cannot be reached or keeps failing (S3 away or throttling): worth a
    /// retry later.
    StorageUnavailable {
        backend: String,
        reason: String,
    },
    /// Any other storage failure.
    Storage(StorageError),
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::BlobUnknown(d) => write!(f, "blob unknown to registry: {d}"),
            RegistryError::BlobUploadUnknown => f.write_str("blob upload unknown to registry"),
            RegistryError::BlobUploadInvalid(m) => write!(f, "blob upload invalid: {m}"),
            RegistryError::UploadRangeInvalid { size } => {
                write!(f, "chunk out of order: the upload holds {size} bytes")
            }
            RegistryError::DigestInvalid(m) => {
                write!(f, "provided digest did not match uploaded content: {m}")
            }
            RegistryError::SizeInvalid(m) => {
                write!(f, "provided length did not match content length: {m}")
            }
            RegistryError::ManifestUnknown(r) => write!(f, "manifest unknown: {r}"),
            RegistryError::ManifestInvalid(m) => write!(f, "manifest invalid: {m}"),
            RegistryError::ManifestBlobUnknown(d) => write!(
                f,
                "manifest references a blob unknown to this repository: {d}"
            ),
            RegistryError::ManifestTooLarge => f.write_str("manifest is larger than 4 MiB"),
            RegistryError::NameUnknown(n) => {
                write!(f, "repository name not known to registry: {n}")
            }
            RegistryError::Unsupported(m) => f.write_str(m),
            RegistryError::StorageFull(p) => {
                write!(f, "storage: {p}: no space left on the storage device")
            }
            RegistryError::StorageUnavailable { backend, reason } => {
                write!(f, "storage: {backend}: unavailable: {reason}")
            }
            RegistryError::Storage(e) => write!(f, "storage: {e}"),
        }
    }
}

impl std::error::Error for RegistryError {}

/// A full or unavailable storage is a case of its own for the API (507, 503 with
/// `Retry-After`); every other storage failure is one.
impl From<StorageError> for RegistryError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Full(path) => RegistryError::StorageFull(path),
            StorageError::Unavailable { backend, reason } => {
                RegistryError::StorageUnavailable { backend, reason }
            }
            e => RegistryError::Storage(e),
        }
    }
}

pub type RegistryResult<T> = Result<T, RegistryError>;

/// See [`Registry::clear_caches_when_done`].
pub(crate) struct ClearCaches<'a>(&'a Registry);

impl Drop for ClearCaches<'_> {
    fn drop(&mut self) {
        self.0.cache.clear();
        self.0.rebuild_search_in_background();
        self.0.announce_everything_in_background();
    }
}

/// Registry-wide switches from the configuration.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    pub delete_enabled: bool,
    pub readonly: bool,
    /// Answer blob GETs with a redirect where the driver can give a URL (S3).
    pub redirect: bool,
    /// With several instances on one store: how long a write's mark keeps the blobs it
    /// relies on from another instance's sweep (see `gc_shared`).
    pub mark_lifetime: std::time::Duration,
    /// With several instances on one store: how long the maintenance lease lasts unless
    /// its holder renews it (see `gc_shared`).
    pub lease_lifetime: std::time::Duration,
    /// The repositories a pull-through cache serves (`proxy`): their content arrives on
    /// demand, so a manifest whose blobs are not here yet is not damage to `fsck`.
    pub proxied: Vec<retention::GlobPattern>,
}

impl RegistryOptions {
    /// The defaults, with what every user of the store (the daemon, the offline commands)
    /// takes from `config`: the mark and lease lifetimes several instances on one store
    /// agree on, and the repositories the pull-through cache serves.
    pub fn shared_by_instances(config: &crate::config::Config) -> RegistryOptions {
        RegistryOptions {
            mark_lifetime: config.gc.value.mark_lifetime,
            lease_lifetime: config.gc.value.lease_lifetime,
            proxied: (config.proxy_upstreams().iter())
                .filter_map(|u| retention::GlobPattern::parse(&u.prefix).ok())
                .collect(),
            ..RegistryOptions::default()
        }
    }

    /// Whether `repo` is served by a pull-through cache.
    pub fn is_proxied(&self, repo: &RepositoryName) -> bool {
        self.proxied.iter().any(|p| p.matches(repo.as_str()))
    }
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            delete_enabled: false,
            readonly: false,
            redirect: false,
            mark_lifetime: gc_shared::MARK_LIFETIME,
            lease_lifetime: gc_shared::LEASE,
            proxied: Vec::new(),
        }
    }
}

/// The message of a DELETE refused because deletion is off, naming every way to enable it.
pub const DELETE_DISABLED: &str = "deletion is disabled; enable it with --delete-enabled, \
    storage.delete.enabled: true (registry:2 file), storage_delete_enabled: true (flavored \
    file) or REGISTRY_STORAGE_DELETE_ENABLED=true";

/// The registry: a storage driver plus the state shared by all requests.
pub struct Registry {
    driver: Arc<dyn StorageDriver>,
    options: RegistryOptions,
    uploads: uploads::UploadStates,
    cache: Arc<cache::Caches>,
    /// This instance's entries in the journal other instances follow (see `changes`).
    changes: changes::ChangeFeed,
    /// Shared by the manifest write path and garbage collection (see `gc`).
    gc: gc::ReferenceGuard,
    health: health::StorageHealth,
    /// The repositories' search index (see `search`).
    search: Arc<search::SearchIndex>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("driver", &self.driver)
            .field("options", &self.options)
            .finish()
    }
}

impl Registry {
    pub fn new(driver: Arc<dyn StorageDriver>, options: RegistryOptions) -> Registry {
        Registry {
            driver,
            options,
            uploads: uploads::UploadStates::default(),
            cache: Arc::new(cache::Caches::default()),
            changes: changes::ChangeFeed::default(),
            gc: gc::ReferenceGuard::default(),
            health: health::StorageHealth::default(),
            search: Arc::default(),
        }
    }

    pub fn driver(&self) -> &Arc<dyn StorageDriver> {
        &self.driver
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.options
    }

    /// Forgets everything cached about mutable state (after collection or retention).
    pub fn clear_caches(&self) {
        self.cache.clear();
    }

    /// Clears the caches when the returned guard drops: maintenance that removes things
    /// holds one, so however it ends, no reader is served a removed tag or revision from
    /// memory afterwards.
    pub(crate) fn clear_caches_when_done(&self) -> ClearCaches<'_> {
        ClearCaches(self)
    }

    /// What a DELETE is answered (405 UNSUPPORTED) while deletion is off: how to turn it on.
    fn require_delete(&self) -> RegistryResult<()> {
        if self.options.delete_enabled {
            Ok(())
        } else {
            Err(RegistryError::Unsupported(DELETE_DISABLED.into()))
        }
    }

    /// Reads a link file; `None` when it does not exist.
    async fn read_link(&self, path: &StoragePath) -> RegistryResult<Option<Digest>> {
        match self.driver.get_content(path, LINK_LIMIT).await {
            // A new link the journal's committer is writing in place, caught between its
            // creation and its content: not there yet.
            Ok(bytes) if bytes.is_empty() => Ok(None),
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                match text.trim().parse::<Digest>() {
                    Ok(d) => Ok(Some(d)),
                    Err(e) => {
                        tracing::warn!(path = %path, "corrupt link file ignored: {e}");
                        Ok(None)
                    }
                }
            }
            Err(StorageError::NotFound(_)) => Ok(None),
            Err(StorageError::TooLarge { .. }) => {
                tracing::warn!(path = %path, "corrupt link file ignored: too large");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Writes a link durably. Through `put_staged`, so that links written by concurrent
    /// requests share their waits for the disk (see the filesystem driver's group commit).
    async fn write_link(&self, path: &StoragePath, d: &Digest) -> RegistryResult<()> {
        self.driver
            .put_staged(&[&[(path.clone(), link_to(d))]])
            .await?;
        Ok(())
    }

    async fn exists(&self, path: &StoragePath) -> RegistryResult<bool> {
        match self.driver.stat(path).await {
            Ok(_) => Ok(true),
            Err(StorageError::NotFound(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes, treating "already gone" as success.
    async fn remove(&self, path: &StoragePath) -> RegistryResult<bool> {
        match self.driver.delete(path).await {
            Ok(()) => Ok(true),
            Err(StorageError::NotFound(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// A link file's content, for a staged write: the digest it names.
fn link_to(d: &Digest) -> crate::storage::Staged {
    crate::storage::Staged::Content(bytes::Bytes::from(d.to_string()))
}
