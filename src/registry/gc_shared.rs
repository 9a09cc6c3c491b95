//! Garbage collection with several instances on one store (S3 behind a load balancer).
//!
//! `gc`'s guard makes a collection safe against the pushes of its own process; the pushes
//! of the other instances it cannot see. Two things in the store extend it to them:
//!
//! * *A lease* elects the collector: `_gc/lease/<generation>`, created with the driver's
//!   create-if-absent and naming its holder and the time it ends ([`LEASE`] after it was
//!   taken). A collection starts only by taking it; while it is held, a collection asked
//!   of any other instance is refused, saying who holds it. An expired lease (its holder
//!   died) is taken over by creating the next generation, so that of two instances taking
//!   it over at once one wins. The holder stops sweeping before its lease ends.
//! * *Marks and condemnations*, one object each per digest, agreed on the way two threads
//!   agree with two flags. A write that relies on a blob (a manifest PUT for everything it
//!   references, a finishing upload, a mount) first writes the mark
//!   `_gc/marks/<alg>/<hex>`, then checks that `_gc/condemned/<alg>/<hex>` is absent
//!   (waiting while a sweep holds it), and only then checks that the blob exists. The
//!   sweeper, before deleting an unreferenced blob, writes its condemnation, then deletes
//!   only if no mark younger than [`MARK_LIFETIME`] exists, then removes the condemnation.
//!   S3 reads its own writes in order, so either the writer saw the condemnation (and
//!   waited, then found the blob gone and failed, or kept) or the sweeper saw the mark
//!   (and kept the blob): a blob an acknowledged write relies on is never deleted.
//!
//! Marks are compared with the condemnation's time, both stamped by the store's clock, so
//! the instances' clocks do not matter there. The cost, on shared stores only: two small
//! requests per referenced digest on each manifest PUT, finished upload and mount.

use super::{layout, Digest, Registry, RegistryError, RegistryResult};
use crate::storage::StorageError;
use futures_util::stream::{self, TryStreamExt};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a lease lasts; a collection that would run longer stops sweeping in time and
/// is taken up by the next.
pub(crate) const LEASE: Duration = Duration::from_secs(3600);
/// How long before its lease ends the holder stops deleting.
const LEASE_MARGIN: Duration = Duration::from_secs(60);
/// How long a mark protects its blob: longer than a write takes from its mark to its link
/// (a manifest PUT's few small requests; a finishing upload marks again after moving its
/// data in). Also the shortest time a blob just written stays on a shared store, whatever
/// the grace period.
pub(crate) const MARK_LIFETIME: Duration = Duration::from_secs(60);
/// How long a write waits for a sweep to finish with a digest it relies on.
const CONDEMNED_WAIT: Duration = Duration::from_secs(10);
/// Marks written at once by one request.
const MARK_CONCURRENCY: usize = 8;

/// The collector's lease, held until dropped (released in the background) or
/// [`GcLease::release`]d.
pub(crate) struct GcLease<'a> {
    registry: &'a Registry,
    generation: Option<u64>,
    /// When to stop deleting, by this process's clock.
    stop_at: Instant,
}

impl GcLease<'_> {
    /// Whether deletions may go on.
    pub fn valid(&self) -> bool {
        Instant::now() < self.stop_at
    }

    pub async fn release(mut self) {
        if let Some(g) = self.generation.take() {
            if let Ok(p) = layout::gc_lease(g) {
                if let Err(e) = self.registry.driver.delete(&p).await {
                    tracing::warn!("releasing the collection lease {p} failed: {e}");
                }
            }
        }
    }
}

impl Drop for GcLease<'_> {
    fn drop(&mut self) {
        let Some(g) = self.generation.take() else {
            return;
        };
        let (Ok(rt), Ok(p)) = (tokio::runtime::Handle::try_current(), layout::gc_lease(g)) else {
            return;
        };
        let driver = self.registry.driver.clone();
        rt.spawn(async move {
            let _ = driver.delete(&p).await;
        });
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

impl Registry {
    /// Takes the collector's lease on a store shared by instances; `Ok(None)` on other
    /// stores (nothing to agree on). Refused while another instance holds it.
    pub(crate) async fn take_gc_lease(&self) -> RegistryResult<Option<GcLease<'_>>> {
        if !self.driver.shared_by_instances() {
            return Ok(None);
        }
        let dir = layout::gc_lease_dir()?;
        let mut generations: Vec<u64> = match self.driver.list(&dir).await {
            Ok(names) => names.iter().filter_map(|n| n.parse().ok()).collect(),
            Err(StorageError::NotFound(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        generations.sort_unstable();
        let next = match generations.last() {
            None => 0,
            Some(&g) => {
                let held = self.driver.get_content(&layout::gc_lease(g)?, 1024).await;
                match held {
                    Ok(text) => {
                        let text = String::from_utf8_lossy(&text).into_owned();
                        let until = text
                            .split_whitespace()
                            .last()
                            .and_then(|u| u.parse::<u64>().ok())
                            .unwrap_or(0);
                        if unix_ms(SystemTime::now()) < until {
                            return Err(RegistryError::Unsupported(format!(
                                "another instance is collecting garbage on this store ({}); \
                                 try again when it is done",
                                text.trim()
                            )));
                        }
                        tracing::warn!("taking over an expired collection lease ({})", text.trim());
                        g + 1
                    }
                    // Released meanwhile.
                    Err(StorageError::NotFound(_)) => g + 1,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let now = SystemTime::now();
        let holder = format!(
            "held by pid {} on {} since {}, until {}",
            std::process::id(),
            hostname(),
            humantime::format_rfc3339_seconds(now),
            unix_ms(now + LEASE)
        );
        if !self
            .driver
            .create_new(&layout::gc_lease(next)?, holder.as_bytes())
            .await?
        {
            return Err(RegistryError::Unsupported(
                "another instance took the collection lease just now; try again when it is done"
                    .into(),
            ));
        }
        for g in generations {
            let _ = self.driver.delete(&layout::gc_lease(g)?).await;
        }
        Ok(Some(GcLease {
            registry: self,
            generation: Some(next),
            stop_at: Instant::now() + LEASE - LEASE_MARGIN,
        }))
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
        lease: Option<&GcLease<'_>>,
        delete: F,
    ) -> RegistryResult<bool>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = RegistryResult<bool>>,
    {
        let Some(lease) = lease else {
            return delete().await;
        };
        if !lease.valid() {
            return Err(RegistryError::Unsupported(
                "the collection lease is about to end; the rest is left to the next collection"
                    .into(),
            ));
        }
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
            Ok(m) if m.modified + MARK_LIFETIME > since => return Ok(false),
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

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "an unknown host".into())
}

#[cfg(test)]
mod tests {
    //! Two registries over one store that says it is shared: two instances on one bucket.

    use super::*;
    use crate::registry::testing::put_blob;
    use crate::storage::MemoryDriver;
    use std::sync::Arc;

    fn instances() -> (Registry, Registry) {
        let store = MemoryDriver::new().as_shared();
        let one = || Registry::new(Arc::new(store.clone()), Default::default());
        (one(), one())
    }

    async fn sweep(reg: &Registry, lease: &GcLease<'_>, d: &Digest) -> bool {
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
        let lease = a.take_gc_lease().await.expect("take").expect("shared");
        let refused = b.take_gc_lease().await.err().expect("refused");
        assert!(
            refused.to_string().contains("another instance"),
            "{refused}"
        );
        lease.release().await;
        let again = b.take_gc_lease().await.expect("after release");
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
        let lease = a.take_gc_lease().await.expect("take").expect("shared");
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
