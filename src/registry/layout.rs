//! The on-disk layout of `registry:2` (CNCF distribution), so that its data directories are
//! served as they are and ours can be served by it:
//!
//! ```text
//! docker/registry/v2/blobs/sha256/<first two hex>/<hex>/data
//! docker/registry/v2/repositories/<name>/_layers/sha256/<hex>/link
//! docker/registry/v2/repositories/<name>/_manifests/revisions/sha256/<hex>/link
//! docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/current/link
//! docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/index/sha256/<hex>/link
//! docker/registry/v2/repositories/<name>/_uploads/<id>/{data,startedat}
//! ```
//!
//! One addition distribution ignores (it skips `_`-prefixed directories it does not know):
//! `repositories/<name>/_referrers/sha256/<subject hex>/sha256/<hex>/link`, an index of the
//! manifests whose `subject` is that digest, for the referrers API.

use super::digest::Digest;
use super::names::{RepositoryName, Tag};
use crate::storage::{StorageError, StoragePath};

const ROOT: &str = "docker/registry/v2";

fn p(parts: &[&str]) -> Result<StoragePath, StorageError> {
    StoragePath::new(parts.iter().copied())
}

/// A path inside a repository's directory.
fn in_repo(name: &RepositoryName, parts: &[&str]) -> Result<StoragePath, StorageError> {
    StoragePath::new(
        [ROOT, "repositories", name.as_str()]
            .into_iter()
            .chain(parts.iter().copied()),
    )
}

pub fn blobs_root() -> Result<StoragePath, StorageError> {
    p(&[ROOT, "blobs", "sha256"])
}

pub fn repositories_root() -> Result<StoragePath, StorageError> {
    p(&[ROOT, "repositories"])
}

pub fn blob_data(d: &Digest) -> Result<StoragePath, StorageError> {
    p(&[ROOT, "blobs", "sha256", &d.hex()[..2], d.hex(), "data"])
}

pub fn blob_dir(d: &Digest) -> Result<StoragePath, StorageError> {
    p(&[ROOT, "blobs", "sha256", &d.hex()[..2], d.hex()])
}

pub fn repository(name: &RepositoryName) -> Result<StoragePath, StorageError> {
    in_repo(name, &[])
}

pub fn layers_dir(name: &RepositoryName) -> Result<StoragePath, StorageError> {
    in_repo(name, &["_layers", "sha256"])
}

pub fn layer_link(name: &RepositoryName, d: &Digest) -> Result<StoragePath, StorageError> {
    in_repo(name, &["_layers", "sha256", d.hex(), "link"])
}

pub fn manifests_dir(name: &RepositoryName) -> Result<StoragePath, StorageError> {
    in_repo(name, &["_manifests"])
}

pub fn revisions_dir(name: &RepositoryName) -> Result<StoragePath, StorageError> {
    in_repo(name, &["_manifests", "revisions", "sha256"])
}

pub fn revision_link(name: &RepositoryName, d: &Digest) -> Result<StoragePath, StorageError> {
    in_repo(
        name,
        &["_manifests", "revisions", "sha256", d.hex(), "link"],
    )
}

pub fn revision_dir(name: &RepositoryName, d: &Digest) -> Result<StoragePath, StorageError> {
    in_repo(name, &["_manifests", "revisions", "sha256", d.hex()])
}

pub fn tags_dir(name: &RepositoryName) -> Result<StoragePath, StorageError> {
    in_repo(name, &["_manifests", "tags"])
}

pub fn tag_dir(name: &RepositoryName, tag: &Tag) -> Result<StoragePath, StorageError> {
    in_repo(name, &["_manifests", "tags", tag.as_str()])
}

pub fn tag_current_link(name: &RepositoryName, tag: &Tag) -> Result<StoragePath, StorageError> {
    in_repo(
        name,
        &["_manifests", "tags", tag.as_str(), "current", "link"],
    )
}

pub fn tag_index_link(
    name: &RepositoryName,
    tag: &Tag,
    d: &Digest,
) -> Result<StoragePath, StorageError> {
    in_repo(
        name,
        &[
            "_manifests",
            "tags",
            tag.as_str(),
            "index",
            "sha256",
            d.hex(),
            "link",
        ],
    )
}

pub fn referrers_dir(name: &RepositoryName, subject: &Digest) -> Result<StoragePath, StorageError> {
    in_repo(name, &["_referrers", "sha256", subject.hex(), "sha256"])
}

pub fn referrer_link(
    name: &RepositoryName,
    subject: &Digest,
    d: &Digest,
) -> Result<StoragePath, StorageError> {
    in_repo(
        name,
        &[
            "_referrers",
            "sha256",
            subject.hex(),
            "sha256",
            d.hex(),
            "link",
        ],
    )
}

pub fn uploads_dir(name: &RepositoryName) -> Result<StoragePath, StorageError> {
    in_repo(name, &["_uploads"])
}

pub fn upload_data(name: &RepositoryName, id: &str) -> Result<StoragePath, StorageError> {
    in_repo(name, &["_uploads", id, "data"])
}

pub fn upload_started_at(name: &RepositoryName, id: &str) -> Result<StoragePath, StorageError> {
    in_repo(name, &["_uploads", id, "startedat"])
}

pub fn upload_dir(name: &RepositoryName, id: &str) -> Result<StoragePath, StorageError> {
    in_repo(name, &["_uploads", id])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_distribution_layout() {
        let d = Digest::of_bytes(b"");
        let n: RepositoryName = "team/app".parse().expect("name");
        let t: Tag = "v1".parse().expect("tag");
        assert_eq!(
            blob_data(&d).expect("p").as_str(),
            format!("docker/registry/v2/blobs/sha256/e3/{}/data", d.hex())
        );
        assert_eq!(
            tag_current_link(&n, &t).expect("p").as_str(),
            "docker/registry/v2/repositories/team/app/_manifests/tags/v1/current/link"
        );
    }
}
