//! Recovery from interrupted writes. A process killed mid-write (SIGKILL, a power cut)
//! leaves only what was never acknowledged: temporaries that were not renamed into place,
//! the directories made for them, and blob directories whose data never arrived (every
//! write puts its content in place before anything names it, see the storage driver). These
//! *leftovers* are clutter, not damage: nothing a client was told is stored is missing.
//!
//! The daemon clears them when it starts, in the background while it serves; the offline
//! commands when they start (`garbage-collect`, and `fsck`, which lists them apart from damage and removes them
//! with `--repair`); online collection clears those older than [`LEFTOVER_AGE`]. A process
//! that is alone on the store (see `StorageDriver::use_alone`) takes every leftover, since
//! no write can be in flight; otherwise only those older than [`LEFTOVER_AGE`], which no
//! write still in flight can be using.

use super::{layout, Digest, Registry, RegistryResult};
use crate::storage::{self, StorageError};
use std::fmt;
use std::time::{Duration, SystemTime};

/// A leftover this old belongs to no write in flight, whichever process made it: a write
/// renames its temporaries within a commit cycle (milliseconds; seconds on a stalled disk).
pub const LEFTOVER_AGE: Duration = Duration::from_secs(3600);

/// Something an interrupted write left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leftover {
    /// A temporary, or a directory that held nothing but leftovers.
    Storage(storage::Leftover),
    /// A blob directory without its data: content being put in place when the writer died.
    BlobWithoutData(Digest),
}

impl fmt::Display for Leftover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Leftover::Storage(storage::Leftover::Temporary(p)) => write!(f, "temporary {p}"),
            Leftover::Storage(storage::Leftover::Directory(p)) => {
                write!(f, "directory {p}/ holding only leftovers")
            }
            Leftover::Storage(storage::Leftover::Upload(p)) => {
                write!(
                    f,
                    "unfinished multipart upload at {p} holding no file's content"
                )
            }
            Leftover::BlobWithoutData(d) => write!(f, "blob {d}: directory without data"),
        }
    }
}

/// Which leftovers a process may take, decided when it starts (see
/// [`Registry::start_recovery`]).
#[derive(Debug, Clone, Copy)]
pub struct RecoveryScope {
    /// Leftovers last modified before this; `None`: all of them (the process is alone).
    before: Option<SystemTime>,
}

impl Registry {
    /// Lists, and with `remove` removes, the leftovers of interrupted writes: all of them
    /// when this process is alone on the store, else those older than [`LEFTOVER_AGE`].
    /// For a process starting (an offline command): once, before it writes.
    pub async fn recover(&self, remove: bool) -> RegistryResult<Vec<Leftover>> {
        let scope = self.start_recovery().await?;
        self.finish_recovery(scope, remove).await
    }

    /// The first half of [`Registry::recover`], before the process writes: uses the store
    /// alone if no other process does (others wait until [`Registry::finish_recovery`]),
    /// else shares it at once, so that no write of this process is ever unprotected.
    pub async fn start_recovery(&self) -> RegistryResult<RecoveryScope> {
        let replayed = self.driver.replay_journals().await?;
        if replayed > 0 {
            tracing::info!(
                "recovery: {replayed} acknowledged manifest writes of a stopped process finished from its journal"
            );
        }
        if self.driver.use_alone().await? {
            return Ok(RecoveryScope { before: None });
        }
        self.driver.use_shared().await?;
        let before = SystemTime::now()
            .checked_sub(LEFTOVER_AGE)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        Ok(RecoveryScope {
            before: Some(before),
        })
    }

    /// The second half: lists (and with `remove` removes) the leftovers in `scope`, then
    /// shares the store. The daemon runs it in the background while it serves: its own
    /// writes in flight are never taken (their temporaries bear its mark, their blobs are
    /// guarded), and other processes wait.
    pub async fn finish_recovery(
        &self,
        scope: RecoveryScope,
        remove: bool,
    ) -> RegistryResult<Vec<Leftover>> {
        let found = self.leftovers(scope.before, remove).await;
        self.driver.use_shared().await?;
        found
    }

    /// The leftovers last modified before `before` (all with `None`), removed with
    /// `remove`.
    pub(crate) async fn leftovers(
        &self,
        before: Option<SystemTime>,
        remove: bool,
    ) -> RegistryResult<Vec<Leftover>> {
        let mut out: Vec<Leftover> = self
            .driver
            .leftovers(&layout::store_root()?, before, remove)
            .await?
            .into_iter()
            .map(Leftover::Storage)
            .collect();
        // Directories already named (or removed) with what is in them.
        let dirs: Vec<String> = out
            .iter()
            .filter_map(|l| match l {
                Leftover::Storage(storage::Leftover::Directory(p)) => Some(format!("{p}/")),
                _ => None,
            })
            .collect();
        for prefix in self.blob_prefixes().await? {
            for d in self.blobs_in_prefix(&prefix).await? {
                let dir = layout::blob_dir(&d)?;
                let named = format!("{dir}/");
                if dirs.iter().any(|p| named.starts_with(p.as_str()))
                    || self.exists(&layout::blob_data(&d)?).await?
                {
                    continue;
                }
                let modified = match self.driver.stat(&dir).await {
                    Ok(info) => info.modified,
                    // Removed with the leftovers inside it just now.
                    Err(StorageError::NotFound(_)) => continue,
                    Err(e) => return Err(e.into()),
                };
                if before.is_some_and(|t| modified >= t) {
                    continue;
                }
                if remove {
                    // Under the collector's guard: a blob being put in place by this
                    // process is in use, and keeps its directory.
                    let removed = self
                        .gc
                        .delete_unless_referenced(&d, Duration::ZERO, || async {
                            if !self.exists(&layout::blob_data(&d)?).await? {
                                self.remove(&dir).await?;
                            }
                            Ok(())
                        })
                        .await?;
                    if !removed {
                        continue;
                    }
                }
                out.push(Leftover::BlobWithoutData(d));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::testing::registry;
    use crate::registry::RepositoryName;
    use crate::storage::StoragePath;

    /// What a process killed mid-write leaves: a temporary beside a link that is in place,
    /// a tag directory holding only a temporary, a blob directory with only a temporary and
    /// one with nothing at all.
    fn plant(root: &std::path::Path) -> (Digest, Digest) {
        let v2 = root.join("docker/registry/v2");
        let write = |rel: &str, content: &[u8]| {
            let p = v2.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, content).expect("write");
        };
        let tmp = |n: u8| format!("tmp-{}", format!("{n:x}").repeat(32));
        let kept = Digest::of_bytes(b"kept");
        write(
            &format!("blobs/sha256/{}/{}/data", &kept.hex()[..2], kept.hex()),
            b"kept",
        );
        write(
            &format!("repositories/app/_layers/sha256/{}/link", kept.hex()),
            kept.to_string().as_bytes(),
        );
        write(
            &format!(
                "repositories/app/_layers/sha256/{}/.link.{}",
                kept.hex(),
                tmp(1)
            ),
            b"",
        );
        write(
            &format!(
                "repositories/app/_manifests/tags/v1/current/.link.{}",
                tmp(2)
            ),
            b"sha256:",
        );
        let half = Digest::of_bytes(b"half");
        write(
            &format!(
                "blobs/sha256/{}/{}/.data.{}",
                &half.hex()[..2],
                half.hex(),
                tmp(3)
            ),
            b"ha",
        );
        let empty = Digest::of_bytes(b"empty");
        std::fs::create_dir_all(v2.join(format!(
            "blobs/sha256/{}/{}",
            &empty.hex()[..2],
            empty.hex()
        )))
        .expect("mkdir");
        // Not ours: a dotfile that is not a temporary stays, and keeps its directory.
        write("repositories/app/_manifests/tags/v2/current/.keep", b"");
        (kept, empty)
    }

    #[tokio::test]
    async fn every_leftover_is_found_and_removed_and_nothing_else() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (kept, empty) = plant(tmp.path());
        let reg = registry(tmp.path());
        let path = |s: &str| StoragePath::new([s]).expect("path");
        let expected = vec![
            Leftover::Storage(storage::Leftover::Temporary(path(&format!(
                "docker/registry/v2/repositories/app/_layers/sha256/{}/.link.tmp-{}",
                kept.hex(),
                "1".repeat(32)
            )))),
            Leftover::Storage(storage::Leftover::Directory(path(
                "docker/registry/v2/repositories/app/_manifests/tags/v1",
            ))),
            Leftover::BlobWithoutData(empty.clone()),
        ];
        let listed = reg.leftovers(None, false).await.expect("list");
        // The blob's prefix directory was made for it alone: the topmost leftover.
        let half_dir = Leftover::Storage(storage::Leftover::Directory(
            layout::blob_dir(&Digest::of_bytes(b"half"))
                .expect("path")
                .parent()
                .expect("prefix"),
        ));
        assert!(listed.contains(&half_dir), "{listed:#?}");
        for e in &expected {
            assert!(listed.contains(e), "{e} not in {listed:#?}");
        }
        assert_eq!(listed.len(), 4, "{listed:#?}");

        // Younger than the cut-off: kept.
        let an_hour_ago = SystemTime::now() - LEFTOVER_AGE;
        assert!(reg
            .leftovers(Some(an_hour_ago), true)
            .await
            .expect("young")
            .is_empty());

        let removed = reg.recover(true).await.expect("recover");
        assert_eq!(removed.len(), 4, "{removed:#?}");
        assert!(reg.leftovers(None, false).await.expect("again").is_empty());
        let repo: RepositoryName = "app".parse().expect("name");
        assert_eq!(
            reg.blob_size(&repo, &kept).await.expect("kept blob"),
            4,
            "what was in place stays"
        );
        assert!(tmp
            .path()
            .join("docker/registry/v2/repositories/app/_manifests/tags/v2/current/.keep")
            .exists());
        assert!(!tmp
            .path()
            .join("docker/registry/v2/repositories/app/_manifests/tags/v1")
            .exists());
    }

    /// A second process on the same store is not alone, so it only takes old leftovers.
    #[tokio::test]
    async fn a_process_sharing_the_store_leaves_young_leftovers_alone() {
        let tmp = tempfile::tempdir().expect("tmp");
        plant(tmp.path());
        let first = registry(tmp.path());
        assert!(first.driver().use_alone().await.expect("lock"));
        first.driver().use_shared().await.expect("share");
        let second = registry(tmp.path());
        assert!(second.recover(true).await.expect("recover").is_empty());
        assert_eq!(first.leftovers(None, false).await.expect("list").len(), 4);
    }
}
