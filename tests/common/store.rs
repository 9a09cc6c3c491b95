//! What is on disk in a store of registry:2's layout (`docker/registry/v2/...`): the blobs
//! there, their bytes, and a tag's age as retention reads it.

use std::path::Path;
use std::time::{Duration, SystemTime};

/// Digests of the blobs in a store, sorted.
pub fn stored_blobs(storage: &Path) -> Vec<String> {
    let root = storage.join("docker/registry/v2/blobs/sha256");
    let mut out = Vec::new();
    for prefix in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        for b in std::fs::read_dir(prefix.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if b.path().join("data").is_file() {
                out.push(format!("sha256:{}", b.file_name().to_string_lossy()));
            }
        }
    }
    out.sort();
    out
}

/// Bytes of blob data in a store.
pub fn blob_bytes(storage: &Path) -> u64 {
    stored_blobs(storage)
        .iter()
        .map(|d| {
            let hex = &d[7..];
            std::fs::metadata(storage.join(format!(
                "docker/registry/v2/blobs/sha256/{}/{hex}/data",
                &hex[..2]
            )))
            .map(|m| m.len())
            .unwrap_or(0)
        })
        .sum()
}

/// Makes a tag `days` old: retention reads its age from when its `current` link was written.
pub fn set_tag_age(storage: &Path, repo: &str, tag: &str, days: u32) {
    let link = storage.join(format!(
        "docker/registry/v2/repositories/{repo}/_manifests/tags/{tag}/current/link"
    ));
    let when = SystemTime::now() - Duration::from_secs(u64::from(days) * 86_400);
    std::fs::File::options()
        .write(true)
        .open(&link)
        .and_then(|f| f.set_modified(when))
        .unwrap_or_else(|e| panic!("setting the time of {}: {e}", link.display()));
}

/// The store the retention tests judge: `apps/web` tagged with these tags, each this many
/// days old, and `other/app:old`, 400 days old (no rule names it).
pub const RETENTION_TAGS: [(&str, u32); 5] = [
    ("v1", 40),
    ("v2", 30),
    ("v3", 20),
    ("v4", 1),
    ("release-1", 100),
];

/// Ages the tags of [`RETENTION_TAGS`] (pushed by the test, however it pushes) as it says.
pub fn age_retention_tags(storage: &Path) {
    for (tag, days) in RETENTION_TAGS {
        set_tag_age(storage, "apps/web", tag, days);
    }
    set_tag_age(storage, "other/app", "old", 400);
}
