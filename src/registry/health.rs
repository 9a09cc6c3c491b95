//! Whether the storage can serve: the one check behind `/readyz`, the debug listener's
//! `/debug/health` and the systemd watchdog's pings. Writable, unless the registry is
//! read-only for maintenance, where reachable is enough.
//!
//! The check writes and removes a small file, so its result is kept for a moment: probes
//! from a load balancer, Kubernetes and systemd together cost one write a second at most,
//! and callers that arrive while a check runs wait for it instead of starting their own.

use super::{layout, Registry};
use crate::storage::StorageError;
use std::time::{Duration, Instant};

/// How long one check's result answers for.
const FRESH: Duration = Duration::from_secs(1);
/// A storage that takes longer than this to answer is not healthy.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// The last check's time and its result (the problem, as the operator reads it).
#[derive(Default)]
pub(crate) struct StorageHealth {
    last: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl Registry {
    /// `Ok` when the storage is reachable and writable (reachable, when read-only is
    /// configured); else what is wrong with it.
    pub async fn storage_health(&self) -> Result<(), String> {
        // Held across the check: concurrent callers share its result.
        let mut last = self.health.last.lock().await;
        if let Some((at, result)) = &*last {
            if at.elapsed() < FRESH {
                return result.clone();
            }
        }
        let result = match tokio::time::timeout(CHECK_TIMEOUT, self.check_storage()).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!(
                "{}: no answer within {}s",
                self.driver.location(),
                CHECK_TIMEOUT.as_secs()
            )),
        };
        if let Err(e) = &result {
            tracing::warn!("storage health check failed: {e}");
        }
        *last = Some((Instant::now(), result.clone()));
        result
    }

    async fn check_storage(&self) -> Result<(), StorageError> {
        if !self.options.readonly {
            return self.driver.check_writable().await;
        }
        match self.driver.stat(&layout::store_root()?).await {
            Ok(_) => Ok(()),
            // An empty store is a healthy one.
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::registry::{Registry, RegistryOptions};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_store_that_cannot_be_written_is_unhealthy_until_it_can() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A file where the store's directory should be: nothing can be written under it.
        let root = dir.path().join("store");
        std::fs::write(&root, b"not a directory").expect("write");
        let driver = Arc::new(crate::storage::FilesystemDriver::new(&root));
        let registry = Registry::new(driver, RegistryOptions::default());
        let problem = registry.storage_health().await.expect_err("unhealthy");
        assert!(problem.contains("store"), "{problem}");
        std::fs::remove_file(&root).expect("remove");
        // The failure is remembered for a moment, then checked again.
        assert!(registry.storage_health().await.is_err());
        tokio::time::sleep(super::FRESH).await;
        assert_eq!(registry.storage_health().await, Ok(()));
    }
}
