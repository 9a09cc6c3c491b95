//! Garbage collection with several instances on one store (S3 behind a load balancer).
//!
//! `gc`'s guard makes a collection safe against the pushes of its own process; the pushes
//! of the other instances it cannot see. Two things in the store extend it to them:
//!
//! * *A lease* elects the one instance that runs maintenance at a time (a collection,
//!   upload purging, retention): `_gc/lease/<generation>`, a [`Lease`] in the store (see
//!   `lease`). Maintenance starts only by taking it; while it is held, maintenance asked of
//!   any other instance is refused, saying who holds it and for what. The holder renews it
//!   while it works (every third of `storage.maintenance.gc.leaselifetime`); a lease whose
//!   holder died ends with its lifetime and is taken over. A holder that loses its lease
//!   (stalled past its end while another took it over) stops deleting at once.
//! * *Marks and condemnations*, one object each per digest, agreed on the way two threads
//!   agree with two flags. A write that relies on a blob (a manifest PUT for everything it
//!   references, a finishing upload, a mount) first writes the mark
//!   `_gc/marks/<alg>/<hex>`, then checks that `_gc/condemned/<alg>/<hex>` is absent
//!   (waiting while a sweep holds it), and only then checks that the blob exists. The
//!   sweeper, before deleting an unreferenced blob, writes its condemnation, then deletes
//!   only if no mark younger than the mark lifetime (`storage.maintenance.gc.marklifetime`,
//!   [`MARK_LIFETIME`] by default) exists, then removes the condemnation. S3 reads its own
//!   writes in order, so either the writer saw the condemnation (and waited, then found the
//!   blob gone and failed, or kept) or the sweeper saw the mark (and kept the blob): a blob
//!   an acknowledged write relies on is never deleted.
//!
//! Marks are compared with the condemnation's time, both stamped by the store's clock, so
//! the instances' clocks do not matter there. The cost, on shared stores only: two small
//! requests per referenced digest on each manifest PUT, finished upload and mount.

use super::lease::Lease;
use super::{layout, Digest, Registry, RegistryError, RegistryResult};
use crate::storage::StorageError;
use futures_util::stream::{self, TryStreamExt};
use std::time::{Duration, Instant};

/// How long the maintenance lease lasts unless renewed, by default: how long maintenance
/// whose instance died blocks the others.
pub(crate) const LEASE: Duration = Duration::from_secs(300);
/// How long a mark protects its blob by default: longer than a write takes from its mark
/// to its link (a manifest PUT's few small requests; a finishing upload marks again after
/// moving its data in). Also the shortest time a blob just written stays on a shared
/// store, whatever the grace period.
pub(crate) const MARK_LIFETIME: Duration = Duration::from_secs(60);
/// How long a write waits for a sweep to finish with a digest it relies on.
const CONDEMNED_WAIT: Duration = Duration::from_secs(10);
/// Marks written at once by one request.
const MARK_CONCURRENCY: usize = 8;

/// The maintenance lease, held until dropped (released in the background) or
/// [`GcLease::release`]d.
pub(crate) struct GcLease(Lease);

impl GcLease {
    /// Whether deletions may go on: false once the lease is about to end unrenewed, or
    /// another instance took it over.
    pub fn valid(&self) -> bool {
        self.0.valid()
    }

    pub async fn release(self) {
        self.0.release().await
    }
}

/// Fails once `lease` (if any) may no longer be acted on: the rest of `what` is left to its
/// next run.
pub(crate) fn still_held(lease: Option<&GcLease>, what: &str) -> RegistryResult<()> {
    match lease {
        Some(l) if !l.valid() => Err(RegistryError::Unsupported(format!(
            "the maintenance lease is ending or was taken over by another instance; the rest \
             is left to the next {what}"
        ))),
        _ => Ok(()),
    }
}

impl Registry {
    /// Takes the maintenance lease on a store shared by instances, for `what` (`garbage
    /// collection`, `upload purging`, `retention`); `Ok(None)` on other stores (nothing to
    /// agree on). Refused while another instance holds it.
    pub(crate) async fn take_maintenance_lease(
        &self,
        what: &str,
    ) -> RegistryResult<Option<GcLease>> {
        if !self.driver.shared_by_instances() {
            return Ok(None);
        }
        let taken = Lease::take(
            &self.driver,
            layout::gc_lease_dir()?,
            self.options.lease_lifetime,
            what,
        )
        .await?;
        match taken {
            Ok(lease) => Ok(Some(GcLease(lease))),
            Err(held) => Err(RegistryError::Unsupported(format!(
                "another instance is running maintenance on this store ({held}); try {what} \
                 again when it is done"
            ))),
        }
    }

    /// Marks `digests` in the store before a write relies on them, and waits while a sweep
    /// on another instance is deciding about one of them (see the module doc).
    pub(crate) async fn mark_in_store(&self, digests: &[Digest]) -> RegistryResult<()> {
        if !self.driver.shared_by_instances() {
            return Ok(());
        }
        stream::iter(digests.iter().map(Ok))
            .try_for_each_concurrent(MARK_CONCURRENCY, |d| async move {
                self.driver.put_small(&layout::gc_mark(d)?, b"").await?;
                let condemned = layout::gc_condemned(d)?;
                let started = Instant::now();
                while self.exists(&condemned).await? {
                    if started.elapsed() > CONDEMNED_WAIT {
                        return Err(RegistryError::StorageUnavailable {
                            backend: self.driver.location(),
                            reason: format!(
                                "{d} is being collected by another instance; retry the push"
                            ),
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(())
            })
            .await
    }

    /// Runs `delete` for an unreferenced blob unless a write on any instance marked it
    /// (see the module doc); returns whether it deleted.
    pub(crate) async fn delete_unless_marked_in_store<F, Fut>(
        &self,
        d: &Digest,
        lease: Option<&GcLease>,
        delete: F,
    ) -> RegistryResult<bool>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = RegistryResult<bool>>,
    {
        let Some(lease) = lease else {
            return delete().await;
        };
        still_held(Some(lease), "collection")?;
        let condemned = layout::gc_condemned(d)?;
        self.driver.put_small(&condemned, b"").await?;
        let result = self.sweep_condemned(d, &condemned, delete).await;
        if let Err(e) = self.driver.delete(&condemned).await {
            tracing::warn!("removing {condemned} failed: {e}; writes of {d} wait for it");
        }
        result
    }

    async fn sweep_condemned<F, Fut>(
        &self,
        d: &Digest,
        condemned: &crate::storage::StoragePath,
        delete: F,
    ) -> RegistryResult<bool>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = RegistryResult<bool>>,
    {
        let since = self.driver.stat(condemned).await?.modified;
        let mark = layout::gc_mark(d)?;
        match self.driver.stat(&mark).await {
            Ok(m) if m.modified + self.options.mark_lifetime > since => return Ok(false),
            Ok(_) | Err(StorageError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let removed = delete().await?;
        if removed {
            let _ = self.driver.delete(&mark).await;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    //! Two registries over one store that says it is shared: two instances on one bucket.

    use super::*;
    use crate::registry::testing::put_blob;
    use crate::storage::MemoryDriver;
    use std::sync::Arc;

    fn instances() -> (Registry, Registry) {
        instances_with(Default::default())
    }

    fn instances_with(options: crate::registry::RegistryOptions) -> (Registry, Registry) {
        let store = MemoryDriver::new().as_shared();
        let one = || Registry::new(Arc::new(store.clone()), options.clone());
        (one(), one())
    }

    /// Another instance creates the lease's next generation, as one taking it over does.
    async fn take_over(reg: &Registry) {
        let dir = layout::gc_lease_dir().expect("path");
        let newest = reg
            .driver
            .list(&dir)
            .await
            .expect("list")
            .iter()
            .filter_map(|n| n.parse::<u64>().ok())
            .max()
            .expect("a generation");
        let next = dir.join(&format!("{:010}", newest + 1)).expect("path");
        let text = "garbage collection, held by pid 1 on elsewhere since 2026-01-01T00:00:00Z, \
                    lease x, until 99999999999999";
        assert!(reg
            .driver
            .create_new(&next, text.as_bytes())
            .await
            .expect("create"));
    }

    /// With a short lease configured, a collection that runs past it keeps sweeping (its
    /// lease is renewed meanwhile, and no other instance may take it), and one whose lease
    /// is taken over stops sweeping at once.
    #[tokio::test]
    async fn a_collection_renews_its_lease_and_stops_sweeping_when_it_loses_it() {
        let life = Duration::from_secs(1);
        let (a, b) = instances_with(crate::registry::RegistryOptions {
            lease_lifetime: life,
            ..Default::default()
        });
        let first = put_blob(&a, b"swept after the lease's lifetime").await;
        let second = put_blob(&a, b"left to the next collection").await;
        let lease = a
            .take_maintenance_lease("garbage collection")
            .await
            .expect("take")
            .expect("shared");
        tokio::time::sleep(2 * life).await;
        assert!(b
            .take_maintenance_lease("garbage collection")
            .await
            .is_err());
        assert!(sweep(&a, &lease, &first).await, "swept while renewed");
        take_over(&b).await;
        let started = Instant::now();
        while lease.valid() {
            assert!(
                started.elapsed() < life,
                "still sweeping after losing the lease"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let blob = layout::blob_dir(&second).expect("path");
        let refused = a
            .delete_unless_marked_in_store(&second, Some(&lease), || async {
                a.remove(&blob).await?;
                Ok(true)
            })
            .await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.to_string().contains("taken over")),
            "{:?}",
            refused.map_err(|e| e.to_string())
        );
        assert!(a
            .exists(&layout::blob_data(&second).expect("path"))
            .await
            .expect("stat"));
    }

    /// Upload purging and retention take the maintenance lease too: refused while another
    /// instance collects (their dry runs are not), and they run once it is released,
    /// leaving the lease free.
    #[tokio::test]
    async fn purging_and_retention_take_the_maintenance_lease() {
        use crate::registry::retention::RetentionPolicy;
        let (a, b) = instances();
        let repo: crate::registry::RepositoryName = "lease/app".parse().expect("name");
        let id = b.start_upload(&repo).await.expect("start");
        let old =
            humantime::format_rfc3339(std::time::SystemTime::now() - 2 * Duration::from_secs(3600));
        b.driver
            .put_content(
                &layout::upload_started_at(&repo, &id).expect("path"),
                old.to_string().as_bytes(),
            )
            .await
            .expect("age the upload");
        let policies = [RetentionPolicy::new("lease/*", Some(0), None, None).expect("policy")];
        let hour = Duration::from_secs(3600);

        let lease = a
            .take_maintenance_lease("garbage collection")
            .await
            .expect("take")
            .expect("shared");
        for refused in [
            b.purge_uploads(hour, false).await.err(),
            b.apply_retention(&policies, true).await.err(),
        ] {
            let text = refused.expect("refused").to_string();
            assert!(
                text.contains("another instance is running maintenance"),
                "{text}"
            );
            assert!(text.contains("garbage collection, held by"), "{text}");
        }
        assert_eq!(b.purge_uploads(hour, true).await.expect("dry run").len(), 1);
        b.apply_retention(&policies, false).await.expect("dry run");
        lease.release().await;

        assert_eq!(b.purge_uploads(hour, false).await.expect("purge").len(), 1);
        b.apply_retention(&policies, true).await.expect("retention");
        let again = a.take_maintenance_lease("garbage collection").await;
        assert!(again.is_ok_and(|l| l.is_some()), "the lease was left held");
    }

    async fn sweep(reg: &Registry, lease: &GcLease, d: &Digest) -> bool {
        let blob = layout::blob_dir(d).expect("path");
        reg.delete_unless_marked_in_store(d, Some(lease), || async {
            reg.remove(&blob).await?;
            Ok(true)
        })
        .await
        .expect("sweep")
    }

    #[tokio::test]
    async fn one_instance_holds_the_lease_at_a_time() {
        let (a, b) = instances();
        let lease = a
            .take_maintenance_lease("garbage collection")
            .await
            .expect("take")
            .expect("shared");
        let refused = b
            .take_maintenance_lease("garbage collection")
            .await
            .err()
            .expect("refused");
        assert!(
            refused.to_string().contains("another instance"),
            "{refused}"
        );
        lease.release().await;
        let again = b
            .take_maintenance_lease("garbage collection")
            .await
            .expect("after release");
        assert!(again.is_some());
    }

    #[tokio::test]
    async fn a_blob_another_instance_marked_is_kept_and_an_unmarked_one_is_swept() {
        let (a, b) = instances();
        let kept = put_blob(&a, b"relied on by a push on b").await;
        let gone = put_blob(&a, b"nobody's").await;
        b.mark_in_store(std::slice::from_ref(&kept))
            .await
            .expect("mark");
        let lease = a
            .take_maintenance_lease("garbage collection")
            .await
            .expect("take")
            .expect("shared");
        assert!(!sweep(&a, &lease, &kept).await);
        assert!(sweep(&a, &lease, &gone).await);
        assert!(a
            .exists(&layout::blob_data(&kept).expect("path"))
            .await
            .expect("stat"));
        assert!(!a
            .exists(&layout::blob_data(&gone).expect("path"))
            .await
            .expect("stat"));
        // No condemnation is left behind to hold up later writes.
        assert!(!a
            .exists(&layout::gc_condemned(&gone).expect("path"))
            .await
            .expect("stat"));
    }

    #[tokio::test]
    async fn a_write_waits_while_another_instance_decides_about_its_blob() {
        let (a, b) = instances();
        let d = put_blob(&a, b"being swept").await;
        let condemned = layout::gc_condemned(&d).expect("path");
        a.driver.put_small(&condemned, b"").await.expect("condemn");
        let driver = a.driver.clone();
        let released = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            driver.delete(&condemned).await.expect("release");
        });
        let started = Instant::now();
        b.mark_in_store(std::slice::from_ref(&d))
            .await
            .expect("mark");
        assert!(started.elapsed() >= Duration::from_millis(300));
        released.await.expect("join");
    }
}
