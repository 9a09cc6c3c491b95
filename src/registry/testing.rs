//! What the registry's unit tests share: a registry on a filesystem store in a directory,
//! and content put in the blob store as a push leaves it.

use super::{layout, Digest, Registry};
use crate::storage::FilesystemDriver;
use std::path::Path;
use std::sync::Arc;

/// A registry with the default settings on a filesystem store in `dir`.
pub(crate) fn registry(dir: &Path) -> Registry {
    Registry::new(Arc::new(FilesystemDriver::new(dir)), Default::default())
}

/// Stores `bytes` in the blob store under their digest, which is returned.
pub(crate) async fn put_blob(reg: &Registry, bytes: &[u8]) -> Digest {
    let d = Digest::of_bytes(bytes);
    put_blob_as(reg, &d, bytes).await;
    d
}

/// Stores `bytes` in the blob store under `d`, whether or not they hash to it.
pub(crate) async fn put_blob_as(reg: &Registry, d: &Digest, bytes: &[u8]) {
    reg.driver
        .put_content(&layout::blob_data(d).expect("blob path"), bytes)
        .await
        .expect("put blob");
}
