//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use super::body;
use super::body::Incoming;
use super::errors::ErrorCode;
use super::{empty_response, header_str, set_header, ApiResult, AppState};
use crate::registry::manifest::{self, MAX_MANIFEST_BYTES};
use crate::registry::manifests::StoredManifest;
use crate::registry::proxy::Proxied;
use crate::registry::{Reference, RegistryError, RepositoryName};
use http::{HeaderValue, Method, Request, Response, StatusCode};

/// Media types the client says it accepts, parameters stripped; empty means anything.
fn accepted_types(req: &Request<Incoming>) -> Vec<String> {
    req.headers()
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(manifest::media_type_of)
        .filter(|t| !t.is_empty())
        .collect()
}

fn accepts(accept: &[String], media_type: &str) -> bool {
    accept.is_empty()
        || accept
            .iter()
            .any(|a| a == "*/*" || a == "application/*" || a == media_type)
}

/// A manifest from storage, or through the pull-through cache for a proxied repository.
async fn manifest(
    state: &AppState,
    name: &RepositoryName,
    reference: &Reference,
    proxied: Option<&Proxied>,
) -> Result<StoredManifest, RegistryError> {
    match (proxied, &state.proxy) {
        (Some(p), Some(proxy)) => proxy.manifest(&state.registry, p, reference).await,
        _ => state.registry.get_manifest(name, reference).await,
    }
}

pub async fn get(
    state: &AppState,
    req: &Request<Incoming>,
    name: &RepositoryName,
    reference: &Reference,
    proxied: Option<&Proxied>,
) -> ApiResult {
    let head = req.method() == Method::HEAD;
    let mut m = manifest(state, name, reference, proxied).await?;
    let accept = accepted_types(req);
    let is_index = m.media_type == manifest::OCI_INDEX || m.media_type == manifest::DOCKER_LIST;
    if is_index && !accepts(&accept, &m.media_type) {
        // A client that cannot read an index gets the linux/amd64 image, as distribution does.
        if let Some(child) = default_platform(&m.bytes) {
            if let Ok(c) = manifest(state, name, &Reference::Digest(child), proxied).await {
                if accepts(&accept, &c.media_type) {
                    m = c;
                }
            }
        }
    }
    let etag = format!("\"{}\"", m.digest);
    if header_str(req, http::header::IF_NONE_MATCH)
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        let mut r = empty_response(StatusCode::NOT_MODIFIED);
        set_header(&mut r, "etag", &etag);
        set_header(&mut r, "docker-content-digest", &m.digest.to_string());
        return Ok(r);
    }
    let len = m.bytes.len();
    let mut r = Response::new(if head {
        body::empty()
    } else {
        body::full(m.bytes)
    });
    r.headers_mut()
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    set_header(&mut r, "content-type", &m.media_type);
    set_header(&mut r, "docker-content-digest", &m.digest.to_string());
    set_header(&mut r, "etag", &etag);
    Ok(r)
}

/// The linux/amd64 entry of an index, if any.
fn default_platform(bytes: &[u8]) -> Option<crate::registry::Digest> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    v.get("manifests")?.as_array()?.iter().find_map(|m| {
        let p = m.get("platform")?;
        if p.get("os")?.as_str()? == "linux" && p.get("architecture")?.as_str()? == "amd64" {
            m.get("digest")?.as_str()?.parse().ok()
        } else {
            None
        }
    })
}

/// Bodies up to this size are read and discarded when too large, so the client gets the
/// 413; beyond it the connection is cut.
const DRAIN_LIMIT: u64 = 4 * MAX_MANIFEST_BYTES;

pub async fn put(
    state: &AppState,
    req: Request<Incoming>,
    name: &RepositoryName,
    reference: &Reference,
) -> ApiResult {
    let content_type = header_str(&req, http::header::CONTENT_TYPE)
        .map(manifest::media_type_of)
        .unwrap_or_default();
    let announced =
        header_str(&req, http::header::CONTENT_LENGTH).and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|len| len > DRAIN_LIMIT) {
        return Err(RegistryError::ManifestTooLarge.into());
    }
    let mut body = req.into_body();
    let mut bytes = bytes::BytesMut::new();
    let mut seen: u64 = 0;
    while let Some(data) = body.data(ErrorCode::ManifestInvalid).await? {
        seen += data.len() as u64;
        // Past the limit keep reading (up to DRAIN_LIMIT) so the client sees our 413
        // rather than a broken pipe, but keep nothing.
        if seen > DRAIN_LIMIT {
            return Err(RegistryError::ManifestTooLarge.into());
        }
        if seen <= MAX_MANIFEST_BYTES {
            bytes.extend_from_slice(&data);
        }
    }
    if seen > MAX_MANIFEST_BYTES {
        return Err(RegistryError::ManifestTooLarge.into());
    }
    let bytes = bytes.freeze();
    let put = state
        .registry
        .put_manifest(name, reference, &content_type, bytes)
        .await?;
    let mut r = empty_response(StatusCode::CREATED);
    set_header(
        &mut r,
        "location",
        &format!("/v2/{name}/manifests/{}", put.digest),
    );
    set_header(&mut r, "docker-content-digest", &put.digest.to_string());
    if let Some(s) = put.subject {
        set_header(&mut r, "oci-subject", &s.to_string());
    }
    Ok(r)
}

pub async fn delete(state: &AppState, name: &RepositoryName, reference: &Reference) -> ApiResult {
    state.registry.delete_manifest(name, reference).await?;
    Ok(empty_response(StatusCode::ACCEPTED))
}
