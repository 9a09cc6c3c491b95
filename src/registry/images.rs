//! What a person browsing the registry wants to know of an image, computed from its
//! manifest and config once: total size (config plus layers), creation time, platforms of
//! an index, the config's entrypoint, command, environment and labels, annotations.
//!
//! A summary describes content named by a digest, so it never goes stale: [`ImageSummaries`]
//! keeps them (bounded) and a page listing a thousand tags reads storage only for the
//! manifests it has not summarised before. Whether a repository holds a digest is checked
//! by the caller ([`Registry::resolve`]) on every request, never cached here.

use super::manifest::{self, OCI_INDEX};
use super::{layout, Digest, Registry, RegistryResult};
use crate::storage::StorageError;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Summaries kept before the map is emptied (a crude bound that keeps memory flat).
const MAX_SUMMARIES: usize = 20_000;
/// Image configs larger than this are not read (they are a few KiB in practice).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// One blob a manifest names.
#[derive(Debug, Clone)]
pub struct Layer {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

/// One entry of an index: a platform's manifest.
#[derive(Debug, Clone)]
pub struct Child {
    pub digest: Digest,
    pub media_type: String,
    /// `os/architecture[/variant]`, or `unknown` (attestation manifests and the like).
    pub platform: String,
    /// The child image's own total size, when it is an image this registry holds.
    pub size: Option<u64>,
}

/// What an image's config says, the fields a person reads.
#[derive(Debug, Clone, Default)]
pub struct ImageConfig {
    pub created: Option<String>,
    pub platform: Option<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// `KEY=value`, in the config's order; see [`hide_secret`] before showing.
    pub env: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub exposed_ports: Vec<String>,
}

/// What a manifest is.
#[derive(Debug, Clone)]
pub enum ImageKind {
    /// An image manifest (or an artifact in its shape): its config and layers.
    Image {
        config: Layer,
        layers: Vec<Layer>,
        /// Parsed when the config is an image config this registry holds.
        details: Option<Box<ImageConfig>>,
    },
    /// An image index or manifest list.
    Index { children: Vec<Child> },
}

/// A manifest summarised.
#[derive(Debug, Clone)]
pub struct ImageSummary {
    pub digest: Digest,
    pub media_type: String,
    pub manifest_size: u64,
    /// Config and layers; for an index, every child's (a blob shared by children counted
    /// once per child, as a pull of each platform would fetch it).
    pub size: u64,
    /// From the config; for an index, the newest child's.
    pub created: Option<String>,
    pub platforms: Vec<String>,
    pub artifact_type: Option<String>,
    pub subject: Option<Digest>,
    pub annotations: Vec<(String, String)>,
    pub kind: ImageKind,
}

/// Summaries by digest (see the module doc).
#[derive(Default)]
pub struct ImageSummaries {
    map: Mutex<HashMap<Digest, Arc<ImageSummary>>>,
}

impl std::fmt::Debug for ImageSummaries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageSummaries").finish_non_exhaustive()
    }
}

impl ImageSummaries {
    fn cached(&self, d: &Digest) -> Option<Arc<ImageSummary>> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(d)
            .cloned()
    }

    fn keep(&self, s: Arc<ImageSummary>) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_SUMMARIES {
            map.clear();
        }
        map.insert(s.digest.clone(), s);
    }

    /// The summary of the manifest `digest`, which the caller has resolved in a repository.
    /// `None` when the manifest's content is missing or is not a manifest we can read.
    pub async fn get(
        &self,
        registry: &Registry,
        digest: &Digest,
    ) -> RegistryResult<Option<Arc<ImageSummary>>> {
        if let Some(s) = self.cached(digest) {
            return Ok(Some(s));
        }
        let Some(bytes) = registry.read_manifest_bytes(digest).await? else {
            return Ok(None);
        };
        let Some(mut s) = summarise(digest, &bytes) else {
            return Ok(None);
        };
        match &mut s.kind {
            ImageKind::Image {
                config, details, ..
            } => {
                *details = read_config(registry.driver.as_ref(), config).await?;
                if let Some(d) = details {
                    s.created = d.created.clone();
                    s.platforms = d.platform.iter().cloned().collect();
                }
            }
            ImageKind::Index { children } => {
                let mut total = 0;
                for c in children.iter_mut() {
                    // One level only: an index inside an index is listed, not summarised.
                    let child = match self.cached(&c.digest) {
                        Some(x) => Some(x),
                        None => Box::pin(self.get_image(registry, &c.digest)).await?,
                    };
                    if let Some(child) = child {
                        c.size = Some(child.size);
                        total += child.size;
                        if child.created > s.created {
                            s.created = child.created.clone();
                        }
                    }
                }
                s.size = total;
            }
        }
        let s = Arc::new(s);
        self.keep(s.clone());
        Ok(Some(s))
    }

    /// Like [`ImageSummaries::get`], but only for an image manifest (an index's child).
    async fn get_image(
        &self,
        registry: &Registry,
        digest: &Digest,
    ) -> RegistryResult<Option<Arc<ImageSummary>>> {
        let Some(bytes) = registry.read_manifest_bytes(digest).await? else {
            return Ok(None);
        };
        match summarise(digest, &bytes) {
            Some(s) if matches!(s.kind, ImageKind::Image { .. }) => {
                self.get(registry, digest).await
            }
            _ => Ok(None),
        }
    }
}

/// What the manifest alone says; config details are read after.
fn summarise(digest: &Digest, bytes: &[u8]) -> Option<ImageSummary> {
    let parsed = manifest::parse(bytes, "").ok()?;
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let annotations = string_pairs(v.get("annotations"));
    let is_index = !parsed.manifests.is_empty()
        || parsed.media_type == OCI_INDEX
        || parsed.media_type == manifest::DOCKER_LIST;
    let layer = |d: &manifest::Descriptor| Layer {
        digest: d.digest.clone(),
        media_type: d.media_type.clone(),
        size: d.size,
    };
    let (kind, size, platforms) = if is_index {
        let entries = v.get("manifests").and_then(Value::as_array);
        let children: Vec<Child> = parsed
            .manifests
            .iter()
            .enumerate()
            .map(|(i, d)| Child {
                digest: d.digest.clone(),
                media_type: d.media_type.clone(),
                platform: entries
                    .and_then(|e| e.get(i))
                    .and_then(|e| e.get("platform"))
                    .and_then(platform_of)
                    .unwrap_or_else(|| "unknown".to_owned()),
                size: None,
            })
            .collect();
        let mut platforms: Vec<String> = children
            .iter()
            .map(|c| c.platform.clone())
            .filter(|p| p != "unknown/unknown" && p != "unknown")
            .collect();
        platforms.dedup();
        (ImageKind::Index { children }, 0, platforms)
    } else {
        let mut blobs = parsed.blobs.iter().map(layer);
        let config = blobs.next()?;
        let layers: Vec<Layer> = blobs.collect();
        let size = config.size + layers.iter().map(|l| l.size).sum::<u64>();
        let kind = ImageKind::Image {
            config,
            layers,
            details: None,
        };
        (kind, size, Vec::new())
    };
    Some(ImageSummary {
        digest: digest.clone(),
        media_type: parsed.media_type,
        manifest_size: bytes.len() as u64,
        size,
        created: None,
        platforms,
        artifact_type: parsed.artifact_type,
        subject: parsed.subject.map(|s| s.digest),
        annotations,
        kind,
    })
}

/// `os/architecture[/variant]` of a platform object (in an index or a config).
fn platform_of(p: &Value) -> Option<String> {
    let os = p.get("os").and_then(Value::as_str)?;
    let arch = p.get("architecture").and_then(Value::as_str)?;
    Some(match p.get("variant").and_then(Value::as_str) {
        Some(v) if !v.is_empty() => format!("{os}/{arch}/{v}"),
        _ => format!("{os}/{arch}"),
    })
}

/// Reads and parses an image config; `None` for other config types (artifacts) or when the
/// blob is missing or unreadable as JSON.
async fn read_config(
    driver: &dyn crate::storage::StorageDriver,
    config: &Layer,
) -> RegistryResult<Option<Box<ImageConfig>>> {
    let image_config = config.media_type == "application/vnd.oci.image.config.v1+json"
        || config.media_type == "application/vnd.docker.container.image.v1+json";
    if !image_config || config.size > MAX_CONFIG_BYTES {
        return Ok(None);
    }
    let bytes = match driver
        .get_content(&layout::blob_data(&config.digest)?, MAX_CONFIG_BYTES)
        .await
    {
        Ok(b) => b,
        Err(StorageError::NotFound(_) | StorageError::TooLarge { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(parse_config(&bytes).map(Box::new))
}

fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    let list = v?.as_array()?;
    Some(
        list.iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect(),
    )
}

/// A JSON object of strings (annotations, labels) as pairs, in its order.
fn string_pairs(v: Option<&Value>) -> Vec<(String, String)> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn parse_config(bytes: &[u8]) -> Option<ImageConfig> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let c = v.get("config");
    let field = |k: &str| c.and_then(|c| c.get(k));
    let text = |k: &str| {
        field(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let mut labels = string_pairs(field("Labels"));
    labels.sort();
    let mut exposed_ports: Vec<String> = field("ExposedPorts")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    exposed_ports.sort();
    Some(ImageConfig {
        created: v.get("created").and_then(Value::as_str).map(str::to_owned),
        platform: platform_of(&v),
        entrypoint: strings(field("Entrypoint")),
        cmd: strings(field("Cmd")),
        working_dir: text("WorkingDir"),
        user: text("User"),
        env: strings(field("Env")).unwrap_or_default(),
        labels,
        exposed_ports,
    })
}

/// An environment entry as it may be shown: the value of a variable whose name suggests a
/// credential (`PASSWORD`, `TOKEN`, `SECRET`, `KEY`, ...) is replaced by `(hidden)`.
pub fn hide_secret(entry: &str) -> String {
    let (name, _) = entry.split_once('=').unwrap_or((entry, ""));
    let upper = name.to_ascii_uppercase();
    let secret = [
        "PASS",
        "SECRET",
        "TOKEN",
        "KEY",
        "CREDENTIAL",
        "AUTH",
        "PRIVATE",
        "PWD",
        "COOKIE",
        "SESSION",
        "SALT",
        "CERT",
    ]
    .iter()
    .any(|w| upper.contains(w));
    if secret && entry.contains('=') {
        format!("{name}=(hidden)")
    } else {
        entry.to_owned()
    }
}

/// `1.5 MiB`-style sizes for people; the exact byte count is printed next to it.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

impl Registry {
    /// Every tag of `repo` that points at `digest` now, read from storage (not the cache):
    /// what deleting the manifest removes with it.
    pub async fn tags_pointing_at(
        &self,
        repo: &super::RepositoryName,
        digest: &Digest,
    ) -> RegistryResult<Vec<super::Tag>> {
        let mut out = Vec::new();
        for tag in self.scan_tags(repo).await? {
            let Ok(t) = tag.parse::<super::Tag>() else {
                continue;
            };
            if self
                .read_link(&layout::tag_current_link(repo, &t)?)
                .await?
                .as_ref()
                == Some(digest)
            {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// Bytes held in the blob store (every algorithm's blobs, linked or not) and how many
    /// blobs: one walk of the store, for the web UI's storage page.
    pub async fn storage_used(&self) -> RegistryResult<(u64, usize)> {
        let (mut bytes, mut count) = (0, 0);
        for algorithm in [super::Algorithm::Sha256, super::Algorithm::Sha512] {
            let root = layout::blobs_dir(algorithm)?;
            let prefixes = match self.driver.list(&root).await {
                Ok(p) => p,
                Err(StorageError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            for p in prefixes {
                let dir = root.join(&p)?;
                let blobs = match self.driver.list(&dir).await {
                    Ok(b) => b,
                    Err(StorageError::NotFound(_)) => continue,
                    Err(e) => return Err(e.into()),
                };
                for b in blobs {
                    match self.driver.stat(&dir.join(&b)?.join("data")?).await {
                        Ok(info) if !info.is_dir => {
                            bytes += info.size;
                            count += 1;
                        }
                        Ok(_) | Err(StorageError::NotFound(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok((bytes, count))
    }
}

/// The values of `keys` that describe the manifest `digest`: its annotations, and for what
/// they lack, an image's config labels, or an index's first platform image's. Empty when
/// the manifest is missing or unreadable.
pub(crate) async fn describe(
    driver: &dyn crate::storage::StorageDriver,
    digest: &Digest,
    keys: &[&'static str],
) -> RegistryResult<Vec<(&'static str, String)>> {
    let mut found: Vec<(&'static str, String)> = Vec::new();
    let mut next = Some(digest.clone());
    // The manifest, then (an index's) one child: two levels at most.
    for _ in 0..2 {
        let Some(d) = next.take() else { break };
        let bytes = match driver
            .get_content(&layout::blob_data(&d)?, manifest::MAX_MANIFEST_BYTES * 4)
            .await
        {
            Ok(b) => b,
            Err(StorageError::NotFound(_) | StorageError::TooLarge { .. }) => break,
            Err(e) => return Err(e.into()),
        };
        let Some(s) = summarise(&d, &bytes) else {
            break;
        };
        add(&mut found, keys, &s.annotations);
        if found.len() == keys.len() {
            break;
        }
        match &s.kind {
            ImageKind::Image { config, .. } => {
                if let Some(c) = read_config(driver, config).await? {
                    add(&mut found, keys, &c.labels);
                }
                break;
            }
            ImageKind::Index { children } => {
                next = children
                    .iter()
                    .find(|c| c.platform != "unknown" && c.platform != "unknown/unknown")
                    .map(|c| c.digest.clone());
            }
        }
    }
    Ok(found)
}

/// Adds to `found` the keys it lacks that `pairs` has with a value.
fn add(found: &mut Vec<(&'static str, String)>, keys: &[&'static str], pairs: &[(String, String)]) {
    for key in keys {
        if found.iter().any(|(k, _)| k == key) {
            continue;
        }
        if let Some((_, v)) = pairs.iter().find(|(k, v)| k == key && !v.is_empty()) {
            found.push((key, v.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_the_environment_are_hidden() {
        assert_eq!(hide_secret("PATH=/usr/bin"), "PATH=/usr/bin");
        assert_eq!(hide_secret("DB_PASSWORD=hunter2"), "DB_PASSWORD=(hidden)");
        assert_eq!(hide_secret("api_token=x"), "api_token=(hidden)");
        assert_eq!(
            hide_secret("AWS_SECRET_ACCESS_KEY=x"),
            "AWS_SECRET_ACCESS_KEY=(hidden)"
        );
        assert_eq!(hide_secret("NOVALUE"), "NOVALUE");
    }

    #[test]
    fn an_index_lists_its_platforms() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
            {{"mediaType":"{}","digest":"{d}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}},
            {{"mediaType":"{}","digest":"{d}","size":1,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}}],
            "annotations":{{"org.opencontainers.image.source":"x"}}}}"#,
            manifest::OCI_MANIFEST,
            manifest::OCI_MANIFEST
        );
        let digest = Digest::of_bytes(m.as_bytes());
        let s = summarise(&digest, m.as_bytes()).expect("an index");
        assert_eq!(s.platforms, ["linux/amd64", "linux/arm64/v8"]);
        assert_eq!(s.annotations.len(), 1);
        assert!(matches!(s.kind, ImageKind::Index { ref children } if children.len() == 2));
    }

    #[test]
    fn a_config_gives_what_a_person_reads() {
        let c =
            br#"{"created":"2024-01-02T03:04:05Z","os":"linux","architecture":"arm","variant":"v7",
            "config":{"Entrypoint":["/bin/app"],"Cmd":["--serve"],"Env":["A=1"],
            "Labels":{"b":"2","a":"1"},"ExposedPorts":{"80/tcp":{}}}}"#;
        let c = parse_config(c).expect("a config");
        assert_eq!(c.platform.as_deref(), Some("linux/arm/v7"));
        assert_eq!(c.entrypoint, Some(vec!["/bin/app".to_owned()]));
        assert_eq!(c.labels[0], ("a".to_owned(), "1".to_owned()));
        assert_eq!(c.exposed_ports, ["80/tcp"]);
    }
}
