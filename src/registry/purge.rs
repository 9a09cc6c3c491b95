//! Upload purging: unfinished upload sessions (`_uploads/<id>`) older than an age are
//! removed, as registry:2's `uploadpurging` does. A session's age is read from its
//! `startedat` file (RFC 3339, written by us and by registry:2); when that is missing or
//! unreadable, from the session's files' modification time.

use super::{layout, Registry, RegistryError, RegistryResult, RepositoryName};
use crate::storage::StorageError;
use std::time::{Duration, SystemTime};

/// One stale session found (and removed unless in a dry run).
#[derive(Debug, Clone)]
pub struct StaleUpload {
    pub repository: RepositoryName,
    pub id: String,
    pub started: SystemTime,
    pub size: u64,
}

impl Registry {
    /// Every repository directory holding an `_uploads` directory, sorted. Unlike the
    /// catalog this includes repositories that never got a manifest.
    async fn repositories_with_uploads(&self) -> RegistryResult<Vec<RepositoryName>> {
        let root = layout::repositories_root()?;
        let mut out: Vec<RepositoryName> = self
            .driver
            .find_directories_with(&root, "_uploads")
            .await?
            .into_iter()
            .filter_map(|name| name.parse().ok())
            .collect();
        out.sort();
        Ok(out)
    }

    async fn upload_started(
        &self,
        repo: &RepositoryName,
        id: &str,
    ) -> RegistryResult<Option<SystemTime>> {
        let path = layout::upload_started_at(repo, id)?;
        match self.driver.get_content(&path, 256).await {
            Ok(b) => {
                if let Ok(t) = humantime::parse_rfc3339_weak(String::from_utf8_lossy(&b).trim()) {
                    return Ok(Some(t));
                }
            }
            Err(StorageError::NotFound(_)) | Err(StorageError::TooLarge { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        for p in [
            layout::upload_data(repo, id)?,
            layout::upload_dir(repo, id)?,
        ] {
            match self.driver.stat(&p).await {
                Ok(i) => return Ok(Some(i.modified)),
                Err(StorageError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }

    /// Finds upload sessions started more than `age` ago and, unless `dry_run`, removes
    /// them (waiting for any request on a session to finish first); with several instances
    /// on the store, holding the maintenance lease.
    pub async fn purge_uploads(
        &self,
        age: Duration,
        dry_run: bool,
    ) -> RegistryResult<Vec<StaleUpload>> {
        let lease = match dry_run {
            false => self.take_maintenance_lease("upload purging").await?,
            true => None,
        };
        let cutoff = SystemTime::now()
            .checked_sub(age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut stale = Vec::new();
        for repo in self.repositories_with_uploads().await? {
            let mut ids = match self.driver.list(&layout::uploads_dir(&repo)?).await {
                Ok(i) => i,
                Err(StorageError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            ids.sort();
            for id in ids {
                // Only names that are upload ids: nothing else is ever removed.
                let Ok(id) = super::uploads::parse_upload_id(&id) else {
                    continue;
                };
                let Some(started) = self.upload_started(&repo, &id).await? else {
                    continue;
                };
                if started > cutoff {
                    continue;
                }
                let size = match self.driver.stat(&layout::upload_data(&repo, &id)?).await {
                    Ok(i) => i.size,
                    Err(_) => 0,
                };
                if !dry_run {
                    super::gc_shared::still_held(lease.as_ref(), "upload purging")?;
                    match self.cancel_upload(&repo, &id).await {
                        Ok(()) | Err(RegistryError::BlobUploadUnknown) => {}
                        Err(e) => return Err(e),
                    }
                }
                stale.push(StaleUpload {
                    repository: repo.clone(),
                    id,
                    started,
                    size,
                });
            }
        }
        if let Some(l) = lease {
            l.release().await;
        }
        Ok(stale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::testing::registry;

    #[tokio::test]
    async fn purges_only_sessions_older_than_the_age() {
        let tmp = tempfile::tempdir().expect("tmp");
        let reg = registry(tmp.path());
        let repo: RepositoryName = "never/pushed".parse().expect("name");
        let old = reg.start_upload(&repo).await.expect("start");
        let started =
            humantime::format_rfc3339(SystemTime::now() - Duration::from_secs(7200)).to_string();
        reg.driver()
            .put_content(
                &layout::upload_started_at(&repo, &old).expect("path"),
                started.as_bytes(),
            )
            .await
            .expect("put");
        let fresh = reg.start_upload(&repo).await.expect("start");

        let dry = reg
            .purge_uploads(Duration::from_secs(3600), true)
            .await
            .expect("dry");
        assert_eq!(
            dry.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            vec![old.as_str()]
        );
        assert!(
            reg.upload_size(&repo, &old).await.is_ok(),
            "a dry run removes nothing"
        );

        let done = reg
            .purge_uploads(Duration::from_secs(3600), false)
            .await
            .expect("purge");
        assert_eq!(done.len(), 1);
        assert!(reg.upload_size(&repo, &old).await.is_err());
        assert!(reg.upload_size(&repo, &fresh).await.is_ok());
    }
}
