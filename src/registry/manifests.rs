//! Manifests as stored: the exact bytes in the blob store, a revision link per repository,
//! tags pointing at revisions, and the referrers index for manifests with a `subject`.

use super::manifest::{self, ManifestError, ParsedManifest, MAX_MANIFEST_BYTES};
use super::{layout, Digest, Reference, Registry, RegistryError, RegistryResult, RepositoryName};
use crate::storage::{Staged, StorageError, StoragePath};
use bytes::Bytes;

/// A manifest read back: exactly the bytes pushed.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

/// What [`Registry::store_manifest`] reports.
pub(crate) struct StoredPut {
    pub digest: Digest,
    pub subject: Option<Digest>,
    pub size: u64,
}

/// What a successful PUT reports.
#[derive(Debug, Clone)]
pub struct PutManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
}

impl Registry {
    /// Resolves a reference to the digest of a manifest revision in the repository.
    pub async fn resolve(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> RegistryResult<Digest> {
        // On a store several instances share, what another instance deleted a moment ago
        // must not be served from memory: tags and revisions are read from the store each
        // time (manifest bytes, named by their digest, stay cached; tag lists and the
        // catalog follow the others' changes within a second, see `changes`).
        let shared = self.driver.shared_by_instances();
        let digest = match reference {
            Reference::Tag(tag) => match self.cache.tag(repo, tag.as_str()).filter(|_| !shared) {
                Some(d) => d,
                None => {
                    let d = self
                        .read_link(&layout::tag_current_link(repo, tag)?)
                        .await?
                        .ok_or_else(|| RegistryError::ManifestUnknown(reference.to_string()))?;
                    self.cache.set_tag(repo, tag.as_str(), &d);
                    d
                }
            },
            Reference::Digest(d) => d.clone(),
        };
        if shared || !self.cache.revision(repo, &digest) {
            if !self.exists(&layout::revision_link(repo, &digest)?).await? {
                return Err(RegistryError::ManifestUnknown(reference.to_string()));
            }
            self.cache.set_revision(repo, &digest);
        }
        Ok(digest)
    }

    pub async fn get_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> RegistryResult<StoredManifest> {
        let digest = self.resolve(repo, reference).await?;
        if let Some(m) = self.cache.manifest(&digest) {
            return Ok(StoredManifest {
                digest,
                media_type: m.media_type.to_string(),
                bytes: m.bytes,
            });
        }
        let bytes = self.read_manifest_bytes(&digest).await?.ok_or_else(|| {
            tracing::warn!(%repo, %digest, "manifest revision links content that is missing");
            RegistryError::ManifestUnknown(reference.to_string())
        })?;
        // Content read back must still be what its name says (a damaged file is not served).
        if !digest.matches(&bytes) {
            tracing::error!(%repo, %digest, "stored manifest does not match its digest");
            return Err(RegistryError::ManifestUnknown(reference.to_string()));
        }
        let media_type = manifest::detect_media_type(&bytes);
        self.cache.set_manifest(&digest, bytes.clone(), &media_type);
        Ok(StoredManifest {
            digest,
            media_type,
            bytes,
        })
    }

    pub(crate) async fn read_manifest_bytes(
        &self,
        digest: &Digest,
    ) -> RegistryResult<Option<Bytes>> {
        match self
            .driver
            .get_content(&layout::blob_data(digest)?, MAX_MANIFEST_BYTES * 4)
            .await
        {
            Ok(b) => Ok(Some(b)),
            Err(StorageError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Validates and stores a manifest. Everything it references must already be in the
    /// repository; the tag (if any) is written last, so a reader that sees the tag finds
    /// the whole image.
    pub async fn put_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
        content_type: &str,
        bytes: Bytes,
    ) -> RegistryResult<PutManifest> {
        let put = self
            .store_manifest(repo, reference, content_type, bytes, true)
            .await?;
        if let Some(m) = crate::metrics::get() {
            m.bytes_pushed.inc_by(put.size);
        }
        Ok(PutManifest {
            digest: put.digest,
            subject: put.subject,
        })
    }

    /// Stores a manifest as [`Registry::put_manifest`] does; `check_references: false` for
    /// the pull-through cache, which stores a manifest before the blobs it fetches on demand.
    pub(crate) async fn store_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
        content_type: &str,
        bytes: Bytes,
        check_references: bool,
    ) -> RegistryResult<StoredPut> {
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(RegistryError::ManifestTooLarge);
        }
        // Named with the algorithm of the digest it is pushed by, and sha256 when pushed by
        // tag, as distribution does.
        let digest = match reference {
            Reference::Digest(d) => d.algorithm().digest(&bytes),
            Reference::Tag(_) => Digest::of_bytes(&bytes),
        };
        if let Reference::Digest(d) = reference {
            if d != &digest {
                return Err(RegistryError::DigestInvalid(format!(
                    "the manifest's digest is {digest}, not {d}"
                )));
            }
        }
        let parsed = manifest::parse(&bytes, content_type).map_err(|e| match e {
            ManifestError::Invalid(m) | ManifestError::Unsupported(m) => {
                RegistryError::ManifestInvalid(m)
            }
        })?;
        // Garbage collection hook: register everything this manifest relies on before
        // checking it exists, held until the links are written (see `gc`'s module doc).
        let pinned = pinned_digests(&digest, &parsed);
        let _pin = self.gc.pin(pinned.clone()).await;
        self.mark_in_store(&pinned).await?;
        if check_references {
            self.check_references(repo, &parsed).await?;
        }

        // One durable, ordered write of everything: the content, then the links that name
        // it, then the tag, so that after a crash a tag never points at a revision that is
        // not there, nor a revision at missing content.
        let data = layout::blob_data(&digest)?;
        let content: Vec<(StoragePath, Staged)> = if self.exists(&data).await? {
            Vec::new()
        } else {
            vec![(data, Staged::Content(bytes.clone()))]
        };
        let link = super::link_to(&digest);
        let mut links = vec![(layout::revision_link(repo, &digest)?, link.clone())];
        let subject = parsed.subject.as_ref().map(|s| s.digest.clone());
        if let Some(s) = &subject {
            links.push((layout::referrer_link(repo, s, &digest)?, link.clone()));
        }
        let mut tag_link = Vec::new();
        if let Reference::Tag(tag) = reference {
            links.push((layout::tag_index_link(repo, tag, &digest)?, link.clone()));
            tag_link.push((layout::tag_current_link(repo, tag)?, link));
        }
        self.driver
            .put_staged(&[&content, &links, &tag_link])
            .await?;
        self.cache.set_revision(repo, &digest);
        self.cache.repository_written(repo);
        if let Reference::Tag(tag) = reference {
            self.cache.forget_tag(repo, tag.as_str());
            self.cache.set_tag(repo, tag.as_str(), &digest);
        }
        let tag = match reference {
            Reference::Tag(t) => Some(t.as_str()),
            Reference::Digest(_) => None,
        };
        self.search_pushed(repo, tag);
        self.announce(repo).await;
        Ok(StoredPut {
            digest,
            subject,
            size: bytes.len() as u64,
        })
    }

    async fn check_references(
        &self,
        repo: &RepositoryName,
        parsed: &ParsedManifest,
    ) -> RegistryResult<()> {
        for b in parsed.blobs.iter().filter(|b| !b.external) {
            match self.blob_size(repo, &b.digest).await {
                Ok(_) => {}
                Err(RegistryError::BlobUnknown(d)) => {
                    return Err(RegistryError::ManifestBlobUnknown(d))
                }
                Err(e) => return Err(e),
            }
        }
        for m in &parsed.manifests {
            if !self
                .exists(&layout::revision_link(repo, &m.digest)?)
                .await?
            {
                return Err(RegistryError::ManifestBlobUnknown(m.digest.clone()));
            }
        }
        Ok(())
    }

    /// Deletes a tag (by tag) or a manifest revision and every tag pointing at it (by
    /// digest). Content stays in the blob store until garbage collection.
    pub async fn delete_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> RegistryResult<()> {
        self.require_delete()?;
        match reference {
            Reference::Tag(tag) => {
                self.cache.forget_tag(repo, tag.as_str());
                if !self.remove(&layout::tag_dir(repo, tag)?).await? {
                    return Err(RegistryError::ManifestUnknown(reference.to_string()));
                }
                self.search_deleted(repo, Some(tag.as_str()));
                self.announce(repo).await;
                Ok(())
            }
            Reference::Digest(digest) => {
                self.cache.forget_revision(repo, digest);
                if !self.exists(&layout::revision_link(repo, digest)?).await? {
                    return Err(RegistryError::ManifestUnknown(reference.to_string()));
                }
                if let Some(bytes) = self.read_manifest_bytes(digest).await? {
                    if let Ok(parsed) = manifest::parse(&bytes, "") {
                        if let Some(s) = parsed.subject {
                            let link = layout::referrer_link(repo, &s.digest, digest)?;
                            if let Some(dir) = link.parent() {
                                self.remove(&dir).await?;
                            }
                        }
                    }
                }
                let tags = match self.tags_pointing_at(repo, digest).await {
                    Ok(t) => t,
                    Err(RegistryError::NameUnknown(_)) => Vec::new(),
                    Err(e) => return Err(e),
                };
                for tag in &tags {
                    self.remove(&layout::tag_dir(repo, tag)?).await?;
                }
                self.remove(&layout::revision_dir(repo, digest)?).await?;
                // Readers that raced the deletion may have re-cached what was removed.
                self.cache.forget_revision(repo, digest);
                self.search_deleted(repo, None);
                self.announce(repo).await;
                Ok(())
            }
        }
    }
}

/// What a manifest PUT must keep from being collected while it is written: its own content,
/// its blobs and its child manifests.
fn pinned_digests(own: &Digest, parsed: &ParsedManifest) -> Vec<Digest> {
    let mut v = vec![own.clone()];
    v.extend(parsed.blobs.iter().map(|b| b.digest.clone()));
    v.extend(parsed.manifests.iter().map(|m| m.digest.clone()));
    v
}
