//! Blob uploads: `POST /v2/<name>/blobs/uploads/` (a session, a monolithic upload with
//! `?digest=`, or a cross-repository mount with `?mount=&from=`), `PATCH` (streamed or
//! chunked with `Content-Range`), `PUT ?digest=` (finish), `GET` (status), `DELETE` (cancel).
//! Bodies are streamed into storage frame by frame and hashed on the way.

use super::body::Incoming;
use super::errors::{ApiError, ErrorCode};
use super::range::parse_content_range;
use super::{
    digest_param, empty_response, header_str, query_param, repo_name, set_header, ApiResult,
    AppState,
};
use crate::registry::uploads::UploadWriter;
use crate::registry::{Digest, RegistryError, RepositoryName};
use http::{Request, Response, StatusCode};

fn upload_location(name: &RepositoryName, id: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

/// `Range: 0-<last byte>`, as distribution sends it (`0-0` for an empty upload).
fn range_header(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

fn accepted(
    name: &RepositoryName,
    id: &str,
    size: u64,
    status: StatusCode,
) -> Response<super::body::Body> {
    let mut r = empty_response(status);
    set_header(&mut r, "location", &upload_location(name, id));
    set_header(&mut r, "range", &range_header(size));
    set_header(&mut r, "docker-upload-uuid", id);
    r
}

/// A blob in place, how it got there and its size (for its notification event).
fn created(
    name: &RepositoryName,
    digest: &Digest,
    placed: super::notify::Placed,
) -> Response<super::body::Body> {
    let mut r = empty_response(StatusCode::CREATED);
    r.extensions_mut().insert(placed);
    set_header(&mut r, "location", &format!("/v2/{name}/blobs/{digest}"));
    set_header(&mut r, "docker-content-digest", &digest.to_string());
    r
}

fn content_length(req: &Request<Incoming>) -> Result<Option<u64>, ApiError> {
    match header_str(req, http::header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v.trim().parse::<u64>().map(Some).map_err(|_| {
            ApiError::new(ErrorCode::SizeInvalid).with_message("Content-Length is not a number")
        }),
    }
}

/// The request's `Content-Range`, if it has one.
fn content_range(req: &Request<Incoming>) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(v) = header_str(req, http::header::CONTENT_RANGE) else {
        return Ok(None);
    };
    parse_content_range(v).map(Some).ok_or_else(|| {
        ApiError::new(ErrorCode::BlobUploadInvalid)
            .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
            .with_message("malformed Content-Range: expected <start>-<end>")
    })
}

/// Checks a chunk's declared position against the upload.
fn check_chunk(req: &Request<Incoming>, upload_size: u64) -> Result<(), ApiError> {
    let length = content_length(req)?;
    if let Some((start, end)) = content_range(req)? {
        if start != upload_size {
            return Err(RegistryError::UploadRangeInvalid { size: upload_size }.into());
        }
        if let Some(len) = length {
            if len != end - start + 1 {
                return Err(ApiError::new(ErrorCode::SizeInvalid).with_message(format!(
                    "Content-Range {start}-{end} announces {} bytes but Content-Length is {len}",
                    end - start + 1
                )));
            }
        }
    }
    Ok(())
}

/// Streams a request body into an upload. A body cut short keeps what arrived (the client
/// may resume from the `Range` it is told) and reports the failure.
async fn stream_body(body: Incoming, upload: &mut UploadWriter<'_>) -> Result<(), ApiError> {
    let mut body = body;
    while let Some(data) = body.data(ErrorCode::BlobUploadInvalid).await? {
        if let Err(e) = upload.write(data).await {
            drain(body).await;
            return Err(e.into());
        }
    }
    Ok(())
}

/// After a failed write (a full disk), reads and discards the rest of a body, up to a bound,
/// so the client gets our error response rather than a connection reset mid-send.
async fn drain(mut body: Incoming) {
    const DRAIN_LIMIT: u64 = 64 << 20;
    let mut seen = 0u64;
    while let Ok(Some(data)) = body.data(ErrorCode::BlobUploadInvalid).await {
        seen += data.len() as u64;
        if seen > DRAIN_LIMIT {
            break;
        }
    }
}

pub async fn start(
    state: &AppState,
    req: Request<Incoming>,
    name: &RepositoryName,
    mount_allowed: bool,
) -> ApiResult {
    let registry = &state.registry;
    if let Some(mount) = query_param(&req, "mount").filter(|_| mount_allowed) {
        let digest = digest_param(&mount)?;
        if let Some(from) = query_param(&req, "from") {
            let from = repo_name(&from)?;
            if let Some(size) = registry.mount_blob(name, &from, &digest).await? {
                return Ok(created(name, &digest, super::notify::Placed::Mounted(size)));
            }
        }
        // Not mountable: fall through to an ordinary session, as the spec says.
    }
    if let Some(d) = query_param(&req, "digest") {
        // Monolithic upload: the whole blob in this request.
        let digest = digest_param(&d)?;
        let id = registry.start_upload(name).await?;
        let mut upload = registry.open_upload_to_finish(name, &id, &digest).await?;
        let expected_len = content_length(&req)?;
        if let Err(e) = stream_body(req.into_body(), &mut upload).await {
            drop(upload);
            let _ = registry.cancel_upload(name, &id).await;
            return Err(e);
        }
        if let Some(len) = expected_len {
            if upload.size() != len {
                drop(upload);
                let _ = registry.cancel_upload(name, &id).await;
                return Err(ApiError::new(ErrorCode::SizeInvalid));
            }
        }
        let size = upload.complete(&digest).await?;
        return Ok(created(name, &digest, super::notify::Placed::Pushed(size)));
    }
    let id = registry.start_upload(name).await?;
    Ok(accepted(name, &id, 0, StatusCode::ACCEPTED))
}

pub async fn patch(
    state: &AppState,
    req: Request<Incoming>,
    name: &RepositoryName,
    id: &str,
) -> ApiResult {
    let mut upload = state.registry.open_upload(name, id, None).await?;
    check_chunk(&req, upload.size())?;
    let result = stream_body(req.into_body(), &mut upload).await;
    let size = upload.pause().await?;
    result?;
    Ok(accepted(name, id, size, StatusCode::ACCEPTED))
}

pub async fn finish(
    state: &AppState,
    req: Request<Incoming>,
    name: &RepositoryName,
    id: &str,
) -> ApiResult {
    let digest = match query_param(&req, "digest") {
        Some(d) => digest_param(&d)?,
        None => {
            return Err(ApiError::new(ErrorCode::DigestInvalid)
                .with_message("the digest query parameter is required to finish an upload"))
        }
    };
    let mut upload = state
        .registry
        .open_upload_to_finish(name, id, &digest)
        .await?;
    check_chunk(&req, upload.size())?;
    if let Err(e) = stream_body(req.into_body(), &mut upload).await {
        let _ = upload.pause().await;
        return Err(e);
    }
    let size = upload.complete(&digest).await?;
    Ok(created(name, &digest, super::notify::Placed::Pushed(size)))
}

pub async fn status(state: &AppState, name: &RepositoryName, id: &str) -> ApiResult {
    let size = state.registry.upload_size(name, id).await?;
    Ok(accepted(name, id, size, StatusCode::NO_CONTENT))
}

pub async fn cancel(state: &AppState, name: &RepositoryName, id: &str) -> ApiResult {
    state.registry.cancel_upload(name, id).await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}
