//! `fsck`: checks a store end to end. Every blob's content is hashed and compared with its
//! name; every link (layer, revision, tag, tag history, referrer) must name the digest of
//! its directory and point at content that exists; every manifest's references must be
//! present. Problems are reported by repository and tag, so an operator sees which images
//! are broken. Repair removes dangling links only — never content, which may still be
//! recoverable by pushing the image again.
//!
//! Leftovers of interrupted writes (temporaries, blob directories without data; see
//! `recovery`) are not problems: they are listed apart, and repair removes them as
//! collection and the daemon's start do.

use super::manifest::{self, MAX_MANIFEST_BYTES};
use super::recovery::Leftover;
use super::{layout, Digest, Registry, RegistryResult, RepositoryName, Tag};
use crate::storage::{StorageError, StoragePath};
use std::collections::{HashMap, HashSet};
use std::fmt;

/// One thing wrong in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The blob's content does not hash to its name.
    CorruptBlob { digest: Digest, actual: Digest },
    /// A link file that does not hold the digest its directory names.
    BadLink { path: StoragePath },
    /// A link whose target is gone (repairable: the link is removed).
    DanglingLink {
        path: StoragePath,
        digest: Digest,
        what: &'static str,
    },
    /// A manifest revision whose referenced blob or child manifest is missing or corrupt.
    BrokenManifest {
        repository: RepositoryName,
        digest: Digest,
        reference: Digest,
        why: &'static str,
    },
    /// A manifest revision whose content is not a manifest we can read: garbage
    /// collection refuses to run until it is removed.
    UnreadableManifest {
        repository: RepositoryName,
        digest: Digest,
    },
    /// A tag whose image is broken (the tag itself is fine).
    BrokenTag {
        repository: RepositoryName,
        tag: String,
        digest: Digest,
    },
}

impl Problem {
    pub fn repairable(&self) -> bool {
        matches!(self, Problem::DanglingLink { .. })
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::CorruptBlob { digest, actual } => {
                write!(f, "corrupt blob {digest}: its content hashes to {actual}")
            }
            Problem::BadLink { path } => {
                write!(f, "bad link {path}: does not hold its directory's digest")
            }
            Problem::DanglingLink { path, digest, what } => {
                write!(f, "dangling link {path} -> {digest}: {what}")
            }
            Problem::BrokenManifest {
                repository,
                digest,
                reference,
                why,
            } => {
                write!(f, "{repository}@{digest}: {reference} {why}")
            }
            Problem::UnreadableManifest { repository, digest } => write!(
                f,
                "{repository}@{digest}: content is not a readable manifest (garbage collection stops on it; delete this revision)"
            ),
            Problem::BrokenTag {
                repository,
                tag,
                digest,
            } => {
                write!(
                    f,
                    "{repository}:{tag} ({digest}) is broken: it cannot be pulled whole"
                )
            }
        }
    }
}

/// The outcome of a check.
#[derive(Debug, Clone, Default)]
pub struct FsckReport {
    pub blobs: usize,
    pub bytes: u64,
    pub repositories: usize,
    pub links: usize,
    pub problems: Vec<Problem>,
    /// Dangling links removed (with `repair`).
    pub repaired: usize,
    /// Leftovers of interrupted writes (removed with `repair`).
    pub leftovers: Vec<Leftover>,
}

#[derive(Clone, Copy, PartialEq)]
enum BlobState {
    Good,
    Corrupt,
}

impl Registry {
    /// Reads the link at `<dir>/<hex>/link` and checks it names `hex`.
    async fn check_link(
        &self,
        path: &StoragePath,
        expected: &Digest,
        problems: &mut Vec<Problem>,
    ) -> RegistryResult<bool> {
        match self.read_link(path).await? {
            Some(d) if &d == expected => Ok(true),
            Some(_) => {
                problems.push(Problem::BadLink { path: path.clone() });
                Ok(false)
            }
            None => {
                if self.exists(path).await? {
                    problems.push(Problem::BadLink { path: path.clone() });
                }
                Ok(false)
            }
        }
    }

    /// Checks the whole store; with `repair`, removes the dangling links and the leftovers
    /// it finds. `progress` gets a line now and then on large stores.
    pub async fn fsck(
        &self,
        repair: bool,
        progress: &mut (dyn FnMut(String) + Send),
    ) -> RegistryResult<FsckReport> {
        let _caches = self.clear_caches_when_done();
        let mut check = Check {
            report: FsckReport {
                leftovers: self.recover(repair).await?,
                ..FsckReport::default()
            },
            blobs: HashMap::new(),
            dangling: Vec::new(),
        };
        self.verify_blobs(&mut check, progress).await?;
        for name in self.scan_catalog().await? {
            let Ok(repo) = name.parse::<RepositoryName>() else {
                continue;
            };
            check.report.repositories += 1;
            self.check_repository(&mut check, repo).await?;
        }
        if repair {
            check.report.repaired = self.remove_dangling(&check.dangling).await?;
        }
        Ok(check.report)
    }

    /// Hashes every blob's content and records whether it matches its name.
    async fn verify_blobs(
        &self,
        check: &mut Check,
        progress: &mut (dyn FnMut(String) + Send),
    ) -> RegistryResult<()> {
        let report = &mut check.report;
        for prefix in self.blob_prefixes().await? {
            for d in self.blobs_in_prefix(&prefix).await? {
                let data = layout::blob_data(&d)?;
                let (actual, size) = match self.hash_file(&data, u64::MAX, d.algorithm()).await {
                    Ok((hasher, size)) => (hasher.finish(), size),
                    // A leftover (listed above), or content another process is putting
                    // in place right now.
                    Err(super::RegistryError::Storage(StorageError::NotFound(_))) => continue,
                    Err(e) => return Err(e),
                };
                report.blobs += 1;
                report.bytes += size;
                if actual == d {
                    check.blobs.insert(d, BlobState::Good);
                } else {
                    report.problems.push(Problem::CorruptBlob {
                        digest: d.clone(),
                        actual,
                    });
                    check.blobs.insert(d, BlobState::Corrupt);
                }
                if report.blobs % 1000 == 0 {
                    progress(format!(
                        "{} blobs verified ({} bytes)",
                        report.blobs, report.bytes
                    ));
                }
            }
        }
        Ok(())
    }

    /// One repository's links, manifests, tags and referrers, against the blobs verified.
    async fn check_repository(
        &self,
        check: &mut Check,
        repo: RepositoryName,
    ) -> RegistryResult<()> {
        let mut r = RepoCheck {
            linked: self.check_layer_links(check, &repo).await?,
            on_demand: self.options.is_proxied(&repo),
            repo,
            revisions: HashSet::new(),
            broken: HashSet::new(),
            children_of: HashMap::new(),
        };
        self.check_revisions(check, &mut r).await?;
        r.check_children(check);
        self.check_tags(check, &r).await?;
        self.check_referrers(check, &r).await
    }

    /// The layer links; the digests linked to a blob that is there.
    async fn check_layer_links(
        &self,
        check: &mut Check,
        repo: &RepositoryName,
    ) -> RegistryResult<HashSet<Digest>> {
        let mut linked: HashSet<Digest> = HashSet::new();
        for d in self.list_digests(&layout::layers(repo)?).await? {
            let link = layout::layer_link(repo, &d)?;
            check.report.links += 1;
            if !self
                .check_link(&link, &d, &mut check.report.problems)
                .await?
            {
                continue;
            }
            if check.state(&d).is_none() {
                check.dangle(link, d, "blob missing");
            } else {
                linked.insert(d);
            }
        }
        Ok(linked)
    }

    /// The revision links and what each manifest references.
    async fn check_revisions(&self, check: &mut Check, r: &mut RepoCheck) -> RegistryResult<()> {
        for d in self.list_digests(&layout::revisions(&r.repo)?).await? {
            let link = layout::revision_link(&r.repo, &d)?;
            if !self.exists(&link).await? {
                continue; // registry:2 deletes a revision by removing only its link
            }
            check.report.links += 1;
            if !self
                .check_link(&link, &d, &mut check.report.problems)
                .await?
            {
                continue;
            }
            match check.state(&d) {
                None => {
                    check.dangle(link, d, "manifest missing");
                    continue;
                }
                Some(BlobState::Corrupt) => {
                    r.broken.insert(d.clone());
                    r.revisions.insert(d);
                    continue;
                }
                Some(BlobState::Good) => {}
            }
            r.revisions.insert(d.clone());
            let bytes = self
                .driver
                .get_content(&layout::blob_data(&d)?, MAX_MANIFEST_BYTES * 4)
                .await?;
            let Some((blobs, children)) = references(&bytes) else {
                check.report.problems.push(Problem::UnreadableManifest {
                    repository: r.repo.clone(),
                    digest: d.clone(),
                });
                r.broken.insert(d.clone());
                continue;
            };
            for b in &blobs {
                let why = match check.state(b) {
                    // A pull-through cache fetches it when a client asks.
                    None | Some(BlobState::Good) if r.on_demand && !r.linked.contains(b) => None,
                    None => Some("is missing from the blob store"),
                    Some(BlobState::Corrupt) => Some("is corrupt"),
                    Some(BlobState::Good) if !r.linked.contains(b) => {
                        Some("is not linked into the repository")
                    }
                    Some(BlobState::Good) => None,
                };
                if let Some(why) = why {
                    r.broken_by(check, &d, b, why);
                }
            }
            r.children_of.insert(d.clone(), children);
        }
        Ok(())
    }

    /// Tags: the current link and the history.
    async fn check_tags(&self, check: &mut Check, r: &RepoCheck) -> RegistryResult<()> {
        let repo = &r.repo;
        for t in self.scan_tags(repo).await.unwrap_or_default() {
            let Ok(tag) = t.parse::<Tag>() else { continue };
            let current = layout::tag_current_link(repo, &tag)?;
            if let Some(d) = self.read_link(&current).await? {
                check.report.links += 1;
                if !r.revisions.contains(&d) {
                    let what = "tag points at a manifest not in the repository";
                    check.dangle(current, d, what);
                } else if r.broken.contains(&d) {
                    check.report.problems.push(Problem::BrokenTag {
                        repository: repo.clone(),
                        tag: t.clone(),
                        digest: d,
                    });
                }
            }
            let history = layout::tag_index(repo, &tag)?;
            for d in self.list_digests(&history).await? {
                let link = layout::tag_index_link(repo, &tag, &d)?;
                if !self.exists(&link).await? {
                    continue;
                }
                check.report.links += 1;
                if self
                    .check_link(&link, &d, &mut check.report.problems)
                    .await?
                    && check.state(&d).is_none()
                {
                    check.dangle(link, d, "tag history entry for a manifest that is gone");
                }
            }
        }
        Ok(())
    }

    /// The referrers index: each link names a revision of the repository.
    async fn check_referrers(&self, check: &mut Check, r: &RepoCheck) -> RegistryResult<()> {
        let repo = &r.repo;
        for subject in self.list_digests(&layout::referrer_subjects(repo)?).await? {
            for d in self
                .list_digests(&layout::referrers(repo, &subject)?)
                .await?
            {
                let link = layout::referrer_link(repo, &subject, &d)?;
                check.report.links += 1;
                if self
                    .check_link(&link, &d, &mut check.report.problems)
                    .await?
                    && !r.revisions.contains(&d)
                {
                    check.dangle(link, d, "referrer not in the repository");
                }
            }
        }
        Ok(())
    }

    /// Removes each dangling link's directory (`.../<hex>/link` → `.../<hex>`), or for a
    /// tag's current link the tag itself, which has nothing left to point at. How many.
    async fn remove_dangling(&self, dangling: &[StoragePath]) -> RegistryResult<usize> {
        let mut removed = 0;
        for link in dangling {
            let target = if link.as_str().ends_with("/current/link") {
                link.parent().and_then(|p| p.parent())
            } else {
                link.parent()
            };
            if let Some(t) = target {
                if self.remove(&t).await? {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

/// What a check has found so far across the store.
struct Check {
    report: FsckReport,
    /// Every blob hashed, and whether its content matched its name.
    blobs: HashMap<Digest, BlobState>,
    /// Links to remove on repair.
    dangling: Vec<StoragePath>,
}

impl Check {
    fn state(&self, d: &Digest) -> Option<BlobState> {
        self.blobs.get(d).copied()
    }

    /// A link whose target is gone: a problem, and removed on repair.
    fn dangle(&mut self, path: StoragePath, digest: Digest, what: &'static str) {
        self.report.problems.push(Problem::DanglingLink {
            path: path.clone(),
            digest,
            what,
        });
        self.dangling.push(path);
    }
}

/// What a check has found in one repository.
struct RepoCheck {
    repo: RepositoryName,
    /// Layers linked to a blob that is there.
    linked: HashSet<Digest>,
    /// Revisions whose link is sound.
    revisions: HashSet<Digest>,
    /// Revisions that cannot be pulled whole.
    broken: HashSet<Digest>,
    /// The child manifests of each index.
    children_of: HashMap<Digest, Vec<Digest>>,
    /// A pull-through cache's repository: blobs and child manifests not here yet are
    /// fetched when asked for, not missing.
    on_demand: bool,
}

impl RepoCheck {
    /// Revision `d` references `reference`, which `why`.
    fn broken_by(&mut self, check: &mut Check, d: &Digest, reference: &Digest, why: &'static str) {
        check.report.problems.push(Problem::BrokenManifest {
            repository: self.repo.clone(),
            digest: d.clone(),
            reference: reference.clone(),
            why,
        });
        self.broken.insert(d.clone());
    }

    /// Every child manifest must be a revision of the repository; an index is broken when a
    /// child is.
    fn check_children(&mut self, check: &mut Check) {
        let children_of = std::mem::take(&mut self.children_of);
        for (d, children) in &children_of {
            for c in children {
                if !self.revisions.contains(c) && !self.on_demand {
                    self.broken_by(check, d, c, "(child manifest) is not in the repository");
                }
            }
        }
        loop {
            let mut grew = false;
            for (d, children) in &children_of {
                if !self.broken.contains(d) && children.iter().any(|c| self.broken.contains(c)) {
                    self.broken.insert(d.clone());
                    grew = true;
                }
            }
            if !grew {
                break;
            }
        }
    }
}

/// The blobs (those stored here) and the child manifests a manifest references; `None` when
/// it is not a manifest we can read.
fn references(bytes: &[u8]) -> Option<(Vec<Digest>, Vec<Digest>)> {
    match manifest::parse(bytes, "") {
        Ok(p) => Some((
            p.blobs
                .into_iter()
                .filter(|b| !b.external)
                .map(|b| b.digest)
                .collect(),
            p.manifests.into_iter().map(|m| m.digest).collect(),
        )),
        Err(_) => super::gc::schema1_layers(bytes).map(|layers| (layers, Vec::new())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::testing::{put_blob, put_blob_as, registry};

    #[tokio::test]
    async fn finds_corrupt_content_and_repairs_only_dangling_links() {
        let tmp = tempfile::tempdir().expect("tmp");
        let reg = registry(tmp.path());
        let repo: RepositoryName = "app".parse().expect("name");
        let good = put_blob(&reg, b"good").await;
        let bad = Digest::of_bytes(b"bad");
        put_blob_as(&reg, &bad, b"tampered").await;
        let gone = Digest::of_bytes(b"gone");
        for d in [&good, &bad, &gone] {
            reg.write_link(&layout::layer_link(&repo, d).expect("p"), d)
                .await
                .expect("link");
        }
        reg.write_link(&layout::revision_link(&repo, &gone).expect("p"), &gone)
            .await
            .expect("link");

        let report = reg.fsck(false, &mut |_| {}).await.expect("fsck");
        assert_eq!(report.blobs, 2);
        assert!(report.problems.contains(&Problem::CorruptBlob {
            digest: bad.clone(),
            actual: Digest::of_bytes(b"tampered")
        }));
        let dangling = report.problems.iter().filter(|p| p.repairable()).count();
        assert_eq!(dangling, 2, "{:?}", report.problems);

        let repaired = reg.fsck(true, &mut |_| {}).await.expect("fsck");
        assert_eq!(repaired.repaired, 2);
        let after = reg.fsck(false, &mut |_| {}).await.expect("fsck");
        assert_eq!(
            after.problems,
            vec![Problem::CorruptBlob {
                digest: bad.clone(),
                actual: Digest::of_bytes(b"tampered")
            }]
        );
        assert!(
            reg.blob_exists_globally(&bad).await.expect("stat"),
            "content is never removed"
        );
    }
}
