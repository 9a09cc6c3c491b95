//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`, with single `Range` requests.

use super::body;
use super::body::Incoming;
use super::errors::{ApiError, ErrorCode};
use super::range::{parse_range, RangeRequest};
use super::sendfile::{self, FileSends};
use super::{empty_response, header_str, set_header, ApiResult, AppState};
use crate::registry::blobs::BlobContent;
use crate::registry::proxy::{BlobAnswer, Proxied};
use crate::registry::{Digest, RepositoryName};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use std::sync::Arc;

pub async fn get(
    state: &AppState,
    req: &Request<Incoming>,
    name: &RepositoryName,
    digest: &Digest,
    proxied: Option<&Proxied>,
) -> ApiResult {
    let head = req.method() == Method::HEAD;
    let etag = format!("\"{digest}\"");
    let name = proxied.map_or(name, |p| &p.local);
    // A GET goes through `Registry::blob_size`, which checks the link `blob_content` relies on.
    let size = match (proxied, &state.proxy) {
        (Some(p), Some(proxy)) if head => proxy.blob_size(&state.registry, p, digest).await?,
        (Some(p), Some(proxy)) => match proxy.blob(&state.registry, p, digest).await? {
            BlobAnswer::Stored => state.registry.blob_size(name, digest).await?,
            // Arriving from the upstream: the whole of it, whatever the range asked.
            BlobAnswer::Streaming { size, chunks } => {
                let mut r = Response::new(body::chunks(chunks, size));
                blob_headers(&mut r, size, &etag, digest);
                return Ok(r);
            }
        },
        _ => state.registry.blob_size(name, digest).await?,
    };
    if header_str(req, http::header::IF_NONE_MATCH)
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        let mut r = empty_response(StatusCode::NOT_MODIFIED);
        set_header(&mut r, "etag", &etag);
        set_header(&mut r, "docker-content-digest", &digest.to_string());
        return Ok(r);
    }
    // registry:2 sends GETs to the storage when it can (the bytes then skip us); HEAD is
    // answered here, it costs no transfer. The client's Range goes along to the storage.
    if !head {
        if let Some(url) = state.registry.blob_redirect(name, digest).await? {
            let mut r = empty_response(StatusCode::TEMPORARY_REDIRECT);
            set_header(&mut r, "location", &url);
            set_header(&mut r, "docker-content-digest", &digest.to_string());
            return Ok(r);
        }
    }
    let range = parse_range(header_str(req, http::header::RANGE), size);
    let (status, start, len) = match range {
        RangeRequest::Full => (StatusCode::OK, 0, size),
        RangeRequest::Part(s, e) => (StatusCode::PARTIAL_CONTENT, s, e - s + 1),
        RangeRequest::Unsatisfiable => {
            return Err(ApiError::new(ErrorCode::RangeInvalid)
                .with_message(format!(
                    "requested range not satisfiable: the blob has {size} bytes"
                ))
                .with_header("content-range", format!("bytes */{size}")));
        }
    };
    let body = if head || len == 0 {
        body::empty()
    } else {
        let content = state.registry.blob_content(digest, start, len).await?;
        // The connection offers zero-copy sends where nothing stands between file and socket.
        let sends = req
            .extensions()
            .get::<Arc<FileSends>>()
            .filter(|_| sendfile::supported());
        match (content, sends) {
            (BlobContent::File(file), Some(sends)) => {
                tracing::debug!("{digest}: {len} bytes from {start} go by sendfile");
                sendfile::body(file, start, len, sends.clone())
            }
            (content, _) => body::chunks(content.into_chunks(start, len), len),
        }
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    blob_headers(&mut r, len, &etag, digest);
    if status == StatusCode::PARTIAL_CONTENT {
        set_header(
            &mut r,
            "content-range",
            &format!("bytes {start}-{}/{size}", start + len - 1),
        );
    }
    Ok(r)
}

/// The headers of a blob's answer of `len` bytes.
fn blob_headers(r: &mut Response<body::Body>, len: u64, etag: &str, digest: &Digest) {
    let h = r.headers_mut();
    h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    use http::header::{ACCEPT_RANGES, CACHE_CONTROL, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
    for (name, value) in [
        (CONTENT_TYPE, "application/octet-stream"),
        (ACCEPT_RANGES, "bytes"),
        (CACHE_CONTROL, "max-age=31536000"),
        // Blobs are arbitrary bytes pushed by clients: a browser must not guess a type
        // (HTML, script) from their content and run it in the registry's origin.
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    set_header(r, "etag", etag);
    set_header(r, "docker-content-digest", &digest.to_string());
}

pub async fn delete(state: &AppState, name: &RepositoryName, digest: &Digest) -> ApiResult {
    state.registry.delete_blob(name, digest).await?;
    let mut r = empty_response(StatusCode::ACCEPTED);
    set_header(&mut r, "docker-content-digest", &digest.to_string());
    Ok(r)
}
