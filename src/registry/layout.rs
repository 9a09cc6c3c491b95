//! The on-disk layout of `registry:2` (CNCF distribution), so that its data directories are
//! served as they are and ours can be served by it:
//!
//! ```text
//! docker/registry/v2/blobs/<alg>/<first two hex>/<hex>/data
//! docker/registry/v2/repositories/<name>/_layers/<alg>/<hex>/link
//! docker/registry/v2/repositories/<name>/_manifests/revisions/<alg>/<hex>/link
//! docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/current/link
//! docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/index/<alg>/<hex>/link
//! docker/registry/v2/repositories/<name>/_uploads/<id>/{data,startedat}
//! ```
//!
//! `<alg>` is the digest's algorithm (`sha256`, or `sha512` as distribution 3 writes it), and
//! a link file holds the whole digest (`sha512:<hex>`). Directories whose children are
//! `<alg>/<hex>` are *digest trees* here ([`layers`], [`revisions`], ...): listing one means
//! listing each algorithm's directory (see `Registry::list_digests`).
//!
//! One addition distribution ignores (it skips `_`-prefixed directories it does not know):
//! `repositories/<name>/_referrers/<alg>/<subject hex>/<alg>/<hex>/link`, an index of the
//! manifests whose `subject` is that digest, for the referrers API.

use super::digest::{Algorithm, Digest};
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

/// `<algorithm>/<hex>` below a digest tree, plus `rest`.
fn in_tree(tree: StoragePath, d: &Digest, rest: &[&str]) -> Result<StoragePath, StorageError> {
    StoragePath::new(
        [tree.as_str(), d.algorithm().name(), d.hex()]
            .into_iter()
            .chain(rest.iter().copied()),
    )
}

/// The blob store of one algorithm: its children are the two-hex-digit prefix directories.
pub fn blobs_dir(algorithm: Algorithm) -> Result<StoragePath, StorageError> {
    p(&[ROOT, "blobs", algorithm.name()])
}

/// Everything the registry stores is below this.
pub fn store_root() -> Result<StoragePath, StorageError> {
    p(&[ROOT])
}

pub fn repositories_root() -> Result<StoragePath, StorageError> {
    p(&[ROOT, "repositories"])
}

pub fn blob_dir(d: &Digest) -> Result<StoragePath, StorageError> {
    let store = blobs_dir(d.algorithm())?;
    StoragePath::new([store.as_str(), &d.hex()[..2], d.hex()])
}

pub fn blob_data(d: &Digest) -> Result<StoragePath, StorageError> {
    blob_dir(d)?.join("data")
}

pub fn repository(name: &RepositoryName) -> Result<StoragePath, StorageError> {
    in_repo(name, &[])
}

/// The digest tree of the blobs a repository links.
pub fn layers(name: &RepositoryName) -> Result<StoragePath, StorageError> {
    in_repo(name, &["_layers"])
}

pub fn layer_link(name: &RepositoryName, d: &Digest) -> Result<StoragePath, StorageError> {
    in_tree(layers(name)?, d, &["link"])
}

pub fn manifests_dir(name: &RepositoryName) -> Result<StoragePath, StorageError> {
    in_repo(name, &["_manifests"])
}

/// The digest tree of a repository's manifest revisions.
pub fn revisions(name: &RepositoryName) -> Result<StoragePath, StorageError> {
    in_repo(name, &["_manifests", "revisions"])
}

pub fn revision_dir(name: &RepositoryName, d: &Digest) -> Result<StoragePath, StorageError> {
    in_tree(revisions(name)?, d, &[])
}

pub fn revision_link(name: &RepositoryName, d: &Digest) -> Result<StoragePath, StorageError> {
    in_tree(revisions(name)?, d, &["link"])
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

/// The digest tree of every revision a tag has pointed at.
pub fn tag_index(name: &RepositoryName, tag: &Tag) -> Result<StoragePath, StorageError> {
    in_repo(name, &["_manifests", "tags", tag.as_str(), "index"])
}

pub fn tag_index_link(
    name: &RepositoryName,
    tag: &Tag,
    d: &Digest,
) -> Result<StoragePath, StorageError> {
    in_tree(tag_index(name, tag)?, d, &["link"])
}

/// The digest tree of the subjects that have referrers in a repository.
pub fn referrer_subjects(name: &RepositoryName) -> Result<StoragePath, StorageError> {
    in_repo(name, &["_referrers"])
}

/// The digest tree of the manifests whose subject is `subject`.
pub fn referrers(name: &RepositoryName, subject: &Digest) -> Result<StoragePath, StorageError> {
    in_tree(referrer_subjects(name)?, subject, &[])
}

pub fn referrer_link(
    name: &RepositoryName,
    subject: &Digest,
    d: &Digest,
) -> Result<StoragePath, StorageError> {
    in_tree(referrers(name, subject)?, d, &["link"])
}

/// Maintenance with several instances (see `gc_shared`): the lease's generations.
pub fn gc_lease_dir() -> Result<StoragePath, StorageError> {
    p(&[ROOT, "_gc", "lease"])
}

/// Written by a write that relies on `d`, before it checks that `d` exists.
pub fn gc_mark(d: &Digest) -> Result<StoragePath, StorageError> {
    p(&[ROOT, "_gc", "marks", d.algorithm().name(), d.hex()])
}

/// Written by a sweep before it decides whether to delete `d`.
pub fn gc_condemned(d: &Digest) -> Result<StoragePath, StorageError> {
    p(&[ROOT, "_gc", "condemned", d.algorithm().name(), d.hex()])
}

/// The journal of changes instances sharing the store follow (see `changes`).
pub fn changes_dir() -> Result<StoragePath, StorageError> {
    p(&[ROOT, "_changes"])
}

pub fn change_entry(name: &str) -> Result<StoragePath, StorageError> {
    p(&[ROOT, "_changes", name])
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

/// An upload's digest state after `offset` bytes, where registry:2 keeps it too.
pub fn upload_hash_state(
    name: &RepositoryName,
    id: &str,
    algorithm: Algorithm,
    offset: u64,
) -> Result<StoragePath, StorageError> {
    in_repo(
        name,
        &[
            "_uploads",
            id,
            "hashstates",
            algorithm.name(),
            &offset.to_string(),
        ],
    )
}

/// The lease (a directory of generations, see `lease`) held by the one request appending
/// to an upload at `offset`, on any instance.
pub fn upload_append_claim(
    name: &RepositoryName,
    id: &str,
    offset: u64,
) -> Result<StoragePath, StorageError> {
    in_repo(name, &["_uploads", id, "appending", &offset.to_string()])
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

    #[test]
    fn sha512_content_lives_where_distribution_3_puts_it() {
        let d = Algorithm::Sha512.digest(b"");
        let h = d.hex();
        let n: RepositoryName = "team/app".parse().expect("name");
        let t: Tag = "v1".parse().expect("tag");
        let r = "docker/registry/v2/repositories/team/app";
        let s256 = Digest::of_bytes(b"");
        for (path, want) in [
            (
                blob_data(&d),
                format!("docker/registry/v2/blobs/sha512/cf/{h}/data"),
            ),
            (layer_link(&n, &d), format!("{r}/_layers/sha512/{h}/link")),
            (
                revision_link(&n, &d),
                format!("{r}/_manifests/revisions/sha512/{h}/link"),
            ),
            (
                tag_index_link(&n, &t, &d),
                format!("{r}/_manifests/tags/v1/index/sha512/{h}/link"),
            ),
            (
                referrer_link(&n, &s256, &d),
                format!("{r}/_referrers/sha256/{}/sha512/{h}/link", s256.hex()),
            ),
        ] {
            assert_eq!(path.expect("p").as_str(), want);
        }
    }
}
