//! The pull-through cache: repositories served from an upstream registry and kept in our
//! storage. registry:2's `proxy` (one upstream for everything) plus ours: several upstreams
//! chosen by repository prefix or by containerd's `ns` query parameter, every other
//! repository local and pushable (see the configuration's `proxy.upstreams`).
//!
//! * **Manifests by digest** and **blobs** are content: once stored they are served from
//!   storage and never asked for again.
//! * **Manifests by tag** are asked of the upstream with a HEAD once the tag is older than
//!   the upstream's `ttl` (every pull without one, as registry:2 does); a moved tag is
//!   fetched (by the digest the HEAD named), an unmoved one is served from storage, and an
//!   upstream that cannot be reached leaves the stored tag served.
//! * **A blob missing** is fetched by one task per digest, however many clients ask for it
//!   at once: the task streams the upstream's answer into an upload of the repository, and
//!   commits it only once its digest is verified (a mismatch or a broken stream commits
//!   nothing). Clients stream from the file as it grows (filesystem storage) or, where the
//!   storage cannot read an upload back before it is committed (S3), wait for the commit
//!   and are then served from storage. The task goes on when the client that started it
//!   goes away, so the next pull finds the blob stored.
//! * A blob the store already holds for another repository is linked into this one once
//!   the upstream confirms (a HEAD) that this repository has it, so that no repository
//!   reveals another's content by digest.

pub mod upstream;

use super::manifests::StoredManifest;
use super::retention::GlobPattern;
use super::{layout, Digest, Reference, Registry, RegistryError, RegistryResult, RepositoryName};
use crate::config::ProxyUpstream;
use crate::storage::{ChunkStream, StoragePath};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use upstream::{Upstream, UpstreamError};

/// The manifest types asked of an upstream: all we store, so that what a client may ask
/// for later (an index, or one platform's image) is here.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// A blob download that receives nothing for this long is abandoned.
const STALL: Duration = Duration::from_secs(60);

/// A tag checked upstream this recently is not asked for again (the clients of one pull
/// wave share one HEAD).
const JUST_CHECKED: Duration = Duration::from_secs(1);

/// How much of a growing file a client reads at once.
const FOLLOW_CHUNK: usize = 256 << 10;

/// One configured upstream and the repositories it serves.
struct Route {
    pattern: GlobPattern,
    /// The pattern's fixed part, left out of the upstream's name with `stripprefix`.
    fixed: String,
    strip: bool,
    namespaces: Vec<String>,
    ttl: Option<Duration>,
    upstream: Arc<Upstream>,
}

/// A repository the proxy serves: from which upstream, under which name here and there.
#[derive(Debug, Clone)]
pub struct Proxied {
    route: usize,
    /// The repository in our storage.
    pub local: RepositoryName,
    /// Its name at the upstream.
    pub remote: String,
}

/// How a blob GET is to be answered.
pub enum BlobAnswer {
    /// From storage, as any blob (it is linked in the repository now).
    Stored,
    /// Streamed as it arrives from the upstream: `size` bytes.
    Streaming { size: u64, chunks: ChunkStream },
}

/// Why a fetch failed, as its followers see it.
#[derive(Debug, Clone)]
enum Failure {
    NotFound,
    Failed(String),
}

/// What a fetch has done so far, watched by the clients waiting for it.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// The upload being written and the size the upstream announced.
    file: Option<(StoragePath, Option<u64>)>,
    done: Option<Result<(), Failure>>,
}

/// A blob being fetched.
struct Fetch {
    repo: RepositoryName,
    progress: watch::Receiver<Progress>,
}

/// The pull-through cache.
pub struct Proxy {
    routes: Vec<Route>,
    /// Whether any upstream is chosen by `ns`: then an `ns` none lists is refused.
    by_namespace: bool,
    /// When each tag (`repo:tag`) was last fetched or checked upstream.
    checked: Mutex<HashMap<String, Instant>>,
    /// One lock per tag or manifest being looked up upstream.
    lookups: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The blobs being fetched, by digest.
    fetches: Mutex<HashMap<Digest, Arc<Fetch>>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<&str> = self.routes.iter().map(|r| r.upstream.url()).collect();
        f.debug_struct("Proxy").field("upstreams", &urls).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Proxy {
    /// The proxy of these upstreams, first match wins; `None` when there are none.
    pub fn new(upstreams: &[ProxyUpstream]) -> Result<Option<Arc<Proxy>>, String> {
        if upstreams.is_empty() {
            return Ok(None);
        }
        let mut routes = Vec::new();
        for u in upstreams {
            u.check()?;
            routes.push(Route {
                pattern: GlobPattern::parse(&u.prefix)?,
                fixed: crate::config::fixed_part(&u.prefix).to_string(),
                strip: u.strip_prefix,
                namespaces: u.namespaces.clone(),
                ttl: u.ttl,
                upstream: Arc::new(Upstream::new(
                    &u.remoteurl,
                    u.username.as_deref(),
                    u.password.as_deref(),
                )?),
            });
        }
        Ok(Some(Arc::new(Proxy {
            by_namespace: routes.iter().any(|r| !r.namespaces.is_empty()),
            routes,
            checked: Mutex::default(),
            lookups: Mutex::default(),
            fetches: Mutex::default(),
        })))
    }

    /// Which upstream serves `name` (as the request named it, with its `ns` parameter);
    /// `None` for a local repository. With `ns`, the name is the upstream's and the
    /// repository here is the route's prefix plus it (`stripprefix`), or the name itself.
    pub fn route(
        &self,
        name: &RepositoryName,
        ns: Option<&str>,
    ) -> RegistryResult<Option<Proxied>> {
        if let Some(ns) = ns.filter(|_| self.by_namespace) {
            let Some((i, r)) = (self.routes.iter().enumerate())
                .find(|(_, r)| r.namespaces.iter().any(|n| n.eq_ignore_ascii_case(ns)))
            else {
                return Err(RegistryError::NameUnknown(name.clone()));
            };
            let local = match r.strip {
                true => format!("{}{name}", r.fixed)
                    .parse()
                    .map_err(|_| RegistryError::NameUnknown(name.clone()))?,
                false => name.clone(),
            };
            return Ok(Some(Proxied {
                route: i,
                local,
                remote: name.to_string(),
            }));
        }
        let found =
            (self.routes.iter().enumerate()).find(|(_, r)| r.pattern.matches(name.as_str()));
        Ok(found.map(|(i, r)| {
            let remote = match r.strip {
                true => name
                    .as_str()
                    .strip_prefix(r.fixed.as_str())
                    .unwrap_or(name.as_str()),
                false => name.as_str(),
            };
            Proxied {
                route: i,
                local: name.clone(),
                remote: remote.to_string(),
            }
        }))
    }

    /// The upstream's URL, for messages.
    pub fn upstream_url(&self, p: &Proxied) -> &str {
        self.routes[p.route].upstream.url()
    }

    fn upstream(&self, p: &Proxied) -> &Upstream {
        &self.routes[p.route].upstream
    }

    /// Notes that a tag (`repo:tag`) is as the upstream has it now. Entries past every
    /// upstream's ttl are dropped as the map grows, so it holds about the tags pulled
    /// within a ttl.
    fn note_checked(&self, key: String) {
        let mut checked = lock(&self.checked);
        if checked.len() >= 4096 {
            let longest = self.routes.iter().filter_map(|r| r.ttl).max();
            checked.retain(|_, at| longest.is_some_and(|ttl| at.elapsed() < ttl));
        }
        checked.insert(key, Instant::now());
    }

    fn lookup_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = lock(&self.lookups);
        // Locks nobody holds or waits for are dropped as we go: the map stays small.
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(key.to_string()).or_default().clone()
    }

    fn unavailable(&self, p: &Proxied, e: UpstreamError) -> RegistryError {
        RegistryError::StorageUnavailable {
            backend: format!("upstream {}", self.upstream_url(p)),
            reason: e.to_string(),
        }
    }

    /// A manifest of a proxied repository: stored, or fetched (see the module doc).
    pub async fn manifest(
        &self,
        registry: &Registry,
        p: &Proxied,
        reference: &Reference,
    ) -> RegistryResult<StoredManifest> {
        metrics_request("manifest");
        let _guard = self
            .lookup_lock(&format!("{}@{reference}", p.local))
            .lock_owned()
            .await;
        let m = match reference {
            Reference::Digest(_) => match registry.get_manifest(&p.local, reference).await {
                Err(RegistryError::ManifestUnknown(_)) => {
                    self.fetch_manifest(registry, p, reference, None).await?
                }
                found => {
                    let m = found?;
                    metrics_hit("manifest");
                    m
                }
            },
            Reference::Tag(tag) => self.tagged_manifest(registry, p, reference, tag).await?,
        };
        metrics_pushed("manifest", m.bytes.len() as u64);
        Ok(m)
    }

    async fn tagged_manifest(
        &self,
        registry: &Registry,
        p: &Proxied,
        reference: &Reference,
        tag: &super::Tag,
    ) -> RegistryResult<StoredManifest> {
        let key = format!("{}:{tag}", p.local);
        let stored = match registry.resolve(&p.local, reference).await {
            Ok(d) => Some(d),
            Err(RegistryError::ManifestUnknown(_)) => None,
            Err(e) => return Err(e),
        };
        let ttl = self.routes[p.route].ttl;
        // Clients pulling a tag together wait on its lookup lock: the first asks, the
        // others take its answer, even without a ttl.
        let fresh_for = ttl.unwrap_or(JUST_CHECKED).max(JUST_CHECKED);
        let fresh = lock(&self.checked)
            .get(&key)
            .is_some_and(|at| at.elapsed() < fresh_for);
        if stored.is_some() && fresh {
            metrics_hit("manifest");
            return registry.get_manifest(&p.local, reference).await;
        }
        let mut accept = HeaderMap::new();
        accept.insert(
            http::header::ACCEPT,
            HeaderValue::from_static(MANIFEST_ACCEPT),
        );
        let head = self
            .upstream(p)
            .send(Method::HEAD, &p.remote, &format!("manifests/{tag}"), accept)
            .await;
        let upstream_digest = match head {
            Ok(resp) => resp
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<Digest>().ok()),
            Err(e) if stored.is_some() => {
                tracing::warn!(repository = %p.local, %tag, upstream = self.upstream_url(p), "checking the tag upstream failed, serving the stored one: {e}");
                metrics_hit("manifest");
                return registry.get_manifest(&p.local, reference).await;
            }
            Err(UpstreamError::NotFound) => {
                return Err(RegistryError::ManifestUnknown(reference.to_string()))
            }
            Err(e) => return Err(self.unavailable(p, e)),
        };
        if upstream_digest.is_some() && upstream_digest == stored {
            self.note_checked(key);
            metrics_hit("manifest");
            return registry.get_manifest(&p.local, reference).await;
        }
        // Moved, or new here: by the digest the upstream named (the tag may move again
        // meanwhile), else by the tag.
        let known = match &upstream_digest {
            Some(d) => registry
                .get_manifest(&p.local, &Reference::Digest(d.clone()))
                .await
                .ok(),
            None => None,
        };
        let m = match known {
            Some(m) => {
                registry
                    .store_manifest(&p.local, reference, &m.media_type, m.bytes, false)
                    .await?;
                metrics_hit("manifest");
                registry.get_manifest(&p.local, reference).await?
            }
            None => {
                let by = upstream_digest.map_or_else(|| reference.clone(), Reference::Digest);
                self.fetch_manifest(registry, p, &by, Some(reference))
                    .await?
            }
        };
        self.note_checked(key);
        Ok(m)
    }

    /// Fetches a manifest by `by` and stores it (tagged `tag` when given), checking that it
    /// is the digest asked for.
    async fn fetch_manifest(
        &self,
        registry: &Registry,
        p: &Proxied,
        by: &Reference,
        tag: Option<&Reference>,
    ) -> RegistryResult<StoredManifest> {
        let mut accept = HeaderMap::new();
        accept.insert(
            http::header::ACCEPT,
            HeaderValue::from_static(MANIFEST_ACCEPT),
        );
        let mut resp = self
            .upstream(p)
            .send(Method::GET, &p.remote, &format!("manifests/{by}"), accept)
            .await
            .map_err(|e| match e {
                UpstreamError::NotFound => RegistryError::ManifestUnknown(by.to_string()),
                e => self.unavailable(p, e),
            })?;
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(super::manifest::media_type_of)
            .unwrap_or_default();
        let mut bytes = BytesMut::new();
        loop {
            let chunk = tokio::time::timeout(STALL, resp.chunk())
                .await
                .map_err(|_| {
                    self.unavailable(p, UpstreamError::Failed("the manifest stalled".into()))
                })?
                .map_err(|e| self.unavailable(p, UpstreamError::Failed(e.to_string())))?;
            let Some(chunk) = chunk else { break };
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > super::manifest::MAX_MANIFEST_BYTES {
                return Err(RegistryError::ManifestTooLarge);
            }
        }
        let bytes = bytes.freeze();
        metrics_miss("manifest", bytes.len() as u64);
        if let Reference::Digest(d) = by {
            if !d.matches(&bytes) {
                tracing::error!(repository = %p.local, upstream = self.upstream_url(p), "the upstream's manifest {d} does not match its digest; not stored");
                return Err(self.unavailable(
                    p,
                    UpstreamError::Failed(format!("the manifest sent for {d} does not match it")),
                ));
            }
        }
        let stored_by = tag.unwrap_or(by);
        let put = registry
            .store_manifest(&p.local, stored_by, &content_type, bytes, false)
            .await?;
        tracing::info!(repository = %p.local, reference = %stored_by, digest = %put.digest, upstream = self.upstream_url(p), "manifest fetched from the upstream");
        registry
            .get_manifest(&p.local, &Reference::Digest(put.digest))
            .await
    }

    /// A blob's size for a HEAD: stored, or as the upstream answers (nothing is fetched).
    pub async fn blob_size(
        &self,
        registry: &Registry,
        p: &Proxied,
        digest: &Digest,
    ) -> RegistryResult<u64> {
        match registry.blob_size(&p.local, digest).await {
            Err(RegistryError::BlobUnknown(_)) => {}
            found => return found,
        }
        let resp = self
            .upstream(p)
            .send(
                Method::HEAD,
                &p.remote,
                &format!("blobs/{digest}"),
                HeaderMap::new(),
            )
            .await
            .map_err(|e| match e {
                UpstreamError::NotFound => RegistryError::BlobUnknown(digest.clone()),
                e => self.unavailable(p, e),
            })?;
        if registry.blob_exists_globally(digest).await? {
            registry.link_stored_blob(&p.local, digest).await?;
            return registry.blob_size(&p.local, digest).await;
        }
        resp.headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                self.unavailable(
                    p,
                    UpstreamError::Failed("no Content-Length for a blob".into()),
                )
            })
    }

    /// Makes a blob GET answerable: stored already, linked from the store once the upstream
    /// confirms it, or fetched (see the module doc).
    pub async fn blob(
        self: &Arc<Self>,
        registry: &Arc<Registry>,
        p: &Proxied,
        digest: &Digest,
    ) -> RegistryResult<BlobAnswer> {
        metrics_request("blob");
        match registry.blob_size(&p.local, digest).await {
            Ok(size) => {
                metrics_hit("blob");
                metrics_pushed("blob", size);
                return Ok(BlobAnswer::Stored);
            }
            Err(RegistryError::BlobUnknown(_)) => {}
            Err(e) => return Err(e),
        }
        let fetch = self.fetch(registry, p, digest);
        let mut progress = fetch.progress.clone();
        let same_repo = fetch.repo == p.local;
        loop {
            let now = progress.borrow_and_update().clone();
            match now.done {
                Some(Ok(())) => break,
                Some(Err(Failure::NotFound)) => {
                    return Err(RegistryError::BlobUnknown(digest.clone()))
                }
                Some(Err(Failure::Failed(m))) => {
                    return Err(self.unavailable(p, UpstreamError::Failed(m)))
                }
                None => {}
            }
            if let (true, Some((path, Some(size)))) = (same_repo, &now.file) {
                if let Ok(Some(file)) = registry.driver.open_file(path).await {
                    metrics_pushed("blob", *size);
                    return Ok(BlobAnswer::Streaming {
                        size: *size,
                        chunks: follow(file, *size, progress),
                    });
                }
            }
            if progress.changed().await.is_err() && progress.borrow().done.is_none() {
                return Err(self.unavailable(p, UpstreamError::Failed("the fetch ended".into())));
            }
        }
        // Fetched into another repository: this one gets it linked once its upstream says
        // it has it.
        if !same_repo {
            self.blob_size(registry, p, digest).await?;
        }
        let size = registry.blob_size(&p.local, digest).await?;
        metrics_pushed("blob", size);
        Ok(BlobAnswer::Stored)
    }

    /// The fetch of `digest` in flight, or a new one started for `p`.
    fn fetch(
        self: &Arc<Self>,
        registry: &Arc<Registry>,
        p: &Proxied,
        digest: &Digest,
    ) -> Arc<Fetch> {
        let mut fetches = lock(&self.fetches);
        if let Some(f) = fetches.get(digest) {
            return f.clone();
        }
        let (tx, rx) = watch::channel(Progress::default());
        let fetch = Arc::new(Fetch {
            repo: p.local.clone(),
            progress: rx,
        });
        fetches.insert(digest.clone(), fetch.clone());
        let (proxy, registry, p, digest) =
            (self.clone(), registry.clone(), p.clone(), digest.clone());
        tokio::spawn(async move {
            let result = proxy.fetch_blob(&registry, &p, &digest, &tx).await;
            if let Err(f) = &result {
                tracing::warn!(repository = %p.local, %digest, upstream = proxy.upstream_url(&p), "fetching the blob failed: {f:?}");
            }
            // Forgotten first: a client that sees the failure and asks again starts anew.
            lock(&proxy.fetches).remove(&digest);
            tx.send_modify(|s| s.done = Some(result));
        });
        fetch
    }

    /// Streams the blob from the upstream into an upload of the repository and commits it
    /// once its digest is verified; on any failure the upload is removed.
    async fn fetch_blob(
        &self,
        registry: &Registry,
        p: &Proxied,
        digest: &Digest,
        tx: &watch::Sender<Progress>,
    ) -> Result<(), Failure> {
        let failed = |e: RegistryError| Failure::Failed(e.to_string());
        let resp = self
            .upstream(p)
            .send(
                Method::GET,
                &p.remote,
                &format!("blobs/{digest}"),
                HeaderMap::new(),
            )
            .await
            .map_err(|e| match e {
                UpstreamError::NotFound => Failure::NotFound,
                UpstreamError::Failed(m) => Failure::Failed(m),
            })?;
        let size = resp.content_length();
        let id = registry.start_upload(&p.local).await.map_err(failed)?;
        let result = self.receive(registry, p, digest, &id, resp, size, tx).await;
        if result.is_err() {
            if let Err(e) = registry.cancel_upload(&p.local, &id).await {
                tracing::warn!(upload = id, "removing a failed fetch's upload: {e}");
            }
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn receive(
        &self,
        registry: &Registry,
        p: &Proxied,
        digest: &Digest,
        id: &str,
        mut resp: reqwest::Response,
        size: Option<u64>,
        tx: &watch::Sender<Progress>,
    ) -> Result<(), Failure> {
        let failed = |e: RegistryError| Failure::Failed(e.to_string());
        let mut w = registry
            .open_upload(&p.local, id, Some(digest.algorithm()))
            .await
            .map_err(failed)?;
        let path = layout::upload_data(&p.local, id).map_err(|e| failed(e.into()))?;
        tx.send_modify(|s| s.file = Some((path, size)));
        let mut received = 0u64;
        loop {
            let chunk = match tokio::time::timeout(STALL, resp.chunk()).await {
                Err(_) => {
                    return Err(Failure::Failed(format!(
                        "the upstream sent nothing for {STALL:?}"
                    )))
                }
                Ok(Err(e)) => {
                    return Err(Failure::Failed(format!(
                        "the upstream's answer broke off: {e}"
                    )))
                }
                Ok(Ok(None)) => break,
                Ok(Ok(Some(c))) => c,
            };
            received += chunk.len() as u64;
            if size.is_some_and(|s| received > s) {
                return Err(Failure::Failed(format!(
                    "the upstream sent more than the {} bytes it announced",
                    size.unwrap_or(0)
                )));
            }
            w.write(chunk).await.map_err(failed)?;
            // Followers read what reached the file; they wake to look again.
            tx.send_modify(|_| {});
        }
        if let Some(s) = size.filter(|s| *s != received) {
            return Err(Failure::Failed(format!(
                "the upstream sent {received} of {s} bytes"
            )));
        }
        match w.complete(digest).await {
            Ok(_) => {}
            Err(RegistryError::DigestInvalid(m)) => {
                tracing::error!(repository = %p.local, %digest, upstream = self.upstream_url(p), "the upstream's blob does not match its digest; not stored: {m}");
                return Err(Failure::Failed(format!(
                    "the upstream's content is not {digest}"
                )));
            }
            Err(e) => return Err(failed(e)),
        }
        metrics_miss("blob", received);
        tracing::info!(repository = %p.local, %digest, bytes = received, upstream = self.upstream_url(p), "blob fetched from the upstream");
        Ok(())
    }

    /// The upstream's tags of a proxied repository (its `tags/list` answer as it is, with
    /// the client's query); `None` when it cannot answer, and the stored tags are listed.
    pub async fn tags(
        &self,
        p: &Proxied,
        asked: &RepositoryName,
        query: Option<&str>,
    ) -> Option<Bytes> {
        let path = match query {
            Some(q) => format!("tags/list?{q}"),
            None => "tags/list".to_string(),
        };
        let resp = self
            .upstream(p)
            .send(Method::GET, &p.remote, &path, HeaderMap::new())
            .await
            .ok()?;
        let body = resp.bytes().await.ok()?;
        let mut v: serde_json::Value = serde_json::from_slice(&body).ok()?;
        // Named as the client asked.
        v["name"] = serde_json::Value::String(asked.to_string());
        serde_json::to_vec(&v).ok().map(Bytes::from)
    }
}

/// A growing upload read as it is written: `size` bytes in all, waiting for the fetch when
/// the reader catches up. The last bytes are handed out only once the fetch has verified
/// the digest; a fetch that fails ends the stream with an error, so the client never takes
/// a wrong blob for a whole one.
fn follow(file: std::fs::File, size: u64, progress: watch::Receiver<Progress>) -> ChunkStream {
    let state = (tokio::fs::File::from_std(file), 0u64, progress);
    Box::pin(futures_util::stream::unfold(
        Some(state),
        move |state| async move {
            let (mut file, mut sent, mut progress) = state?;
            if sent >= size {
                return None;
            }
            match next_chunk(&mut file, &mut sent, size, &mut progress).await {
                Ok(chunk) => Some((Ok(chunk), Some((file, sent, progress)))),
                Err(e) => Some((Err(e), None)),
            }
        },
    ))
}

async fn next_chunk(
    file: &mut tokio::fs::File,
    sent: &mut u64,
    size: u64,
    progress: &mut watch::Receiver<Progress>,
) -> std::io::Result<Bytes> {
    use tokio::io::AsyncReadExt;
    loop {
        let committed = fetch_result(progress)?;
        let want = (size - *sent).min(FOLLOW_CHUNK as u64) as usize;
        let mut buf = BytesMut::with_capacity(want);
        let n = file.read_buf(&mut buf).await?;
        if n > 0 {
            *sent += n as u64;
            if *sent >= size {
                while !fetch_result(progress)? {
                    if progress.changed().await.is_err() && !fetch_result(progress)? {
                        return Err(std::io::Error::other("the upstream fetch ended"));
                    }
                }
            }
            return Ok(buf.freeze());
        }
        if committed {
            return Err(std::io::Error::other(
                "the fetched blob is shorter than announced",
            ));
        }
        // Woken by the next write; a write may reach the file after its notice, so look
        // again every little while too.
        let _ = tokio::time::timeout(Duration::from_millis(50), progress.changed()).await;
    }
}

/// Whether the fetch has committed the blob (false: still running); an error if it failed.
fn fetch_result(progress: &watch::Receiver<Progress>) -> std::io::Result<bool> {
    match &progress.borrow().done {
        None => Ok(false),
        Some(Ok(())) => Ok(true),
        Some(Err(f)) => Err(std::io::Error::other(format!(
            "the upstream fetch failed: {f:?}"
        ))),
    }
}

fn metrics_request(kind: &'static str) {
    if let Some(m) = crate::metrics::get() {
        m.proxy_request(kind);
    }
}

fn metrics_hit(kind: &'static str) {
    if let Some(m) = crate::metrics::get() {
        m.proxy_hit(kind);
    }
}

fn metrics_miss(kind: &'static str, pulled: u64) {
    if let Some(m) = crate::metrics::get() {
        m.proxy_miss(kind, pulled);
    }
}

fn metrics_pushed(kind: &'static str, bytes: u64) {
    if let Some(m) = crate::metrics::get() {
        m.proxy_pushed(kind, bytes);
    }
}

impl Registry {
    /// Links a blob the store holds into `repo` (the proxy has checked the upstream has it
    /// there).
    async fn link_stored_blob(&self, repo: &RepositoryName, digest: &Digest) -> RegistryResult<()> {
        let _pin = self.gc.pin(vec![digest.clone()]).await;
        self.mark_in_store(std::slice::from_ref(digest)).await?;
        if !self.blob_exists_globally(digest).await? {
            return Err(RegistryError::BlobUnknown(digest.clone()));
        }
        self.write_link(&layout::layer_link(repo, digest)?, digest)
            .await
    }
}
