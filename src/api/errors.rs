//! The spec's error codes, rendered one way everywhere:
//! `{"errors":[{"code":...,"message":...,"detail":...}]}` with the matching HTTP status.

use super::body::{self, Body};
use crate::registry::RegistryError;
use http::{HeaderValue, Response, StatusCode};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    PaginationNumberInvalid,
    RangeInvalid,
    /// The storage is full (507). Not in the spec's list, which has no code for it: a
    /// client told `UNKNOWN` cannot tell a full disk from a bug.
    InsufficientStorage,
    /// The storage cannot be reached (503 with Retry-After): distribution's code for it.
    Unavailable,
    Unknown,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            ErrorCode::RangeInvalid => "RANGE_INVALID",
            ErrorCode::InsufficientStorage => "INSUFFICIENT_STORAGE",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Unknown => "UNKNOWN",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BlobUnknown
            | ErrorCode::BlobUploadUnknown
            | ErrorCode::ManifestUnknown
            | ErrorCode::NameUnknown => StatusCode::NOT_FOUND,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Denied => StatusCode::FORBIDDEN,
            ErrorCode::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RangeInvalid => StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The spec's wording for each code.
    pub fn default_message(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "blob unknown to registry",
            ErrorCode::BlobUploadInvalid => "blob upload invalid",
            ErrorCode::BlobUploadUnknown => "blob upload unknown to registry",
            ErrorCode::DigestInvalid => "provided digest did not match uploaded content",
            ErrorCode::ManifestBlobUnknown => {
                "manifest references a manifest or blob unknown to registry"
            }
            ErrorCode::ManifestInvalid => "manifest invalid",
            ErrorCode::ManifestUnknown => "manifest unknown",
            ErrorCode::NameInvalid => "invalid repository name",
            ErrorCode::NameUnknown => "repository name not known to registry",
            ErrorCode::SizeInvalid => "provided length did not match content length",
            ErrorCode::Unauthorized => "authentication required",
            ErrorCode::Denied => "requested access to the resource is denied",
            ErrorCode::Unsupported => "The operation is unsupported.",
            ErrorCode::TooManyRequests => "too many requests",
            ErrorCode::PaginationNumberInvalid => "invalid number of results requested",
            ErrorCode::RangeInvalid => "invalid content range",
            ErrorCode::InsufficientStorage => {
                "no space left on the registry's storage: nothing from this request was \
                 stored; retry once an administrator has freed space (garbage-collect) or \
                 grown the volume"
            }
            ErrorCode::Unavailable => "service unavailable",
            ErrorCode::Unknown => "unknown error",
        }
    }
}

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub status: StatusCode,
    pub message: String,
    pub detail: Value,
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(code: ErrorCode) -> ApiError {
        ApiError {
            code,
            status: code.status(),
            message: code.default_message().to_owned(),
            detail: Value::Null,
            headers: Vec::new(),
        }
    }

    pub fn with_message(mut self, message: impl Into<String>) -> ApiError {
        self.message = message.into();
        self
    }

    pub fn with_detail(mut self, detail: Value) -> ApiError {
        self.detail = detail;
        self
    }

    pub fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> ApiError {
        self.headers.push((name, value.into()));
        self
    }

    pub fn into_response(self, head_only: bool) -> Response<Body> {
        let mut entry = json!({"code": self.code.as_str(), "message": self.message});
        if !self.detail.is_null() {
            entry["detail"] = self.detail;
        }
        let text = json!({ "errors": [entry] }).to_string();
        let len = text.len();
        let mut resp = Response::new(if head_only {
            body::empty()
        } else {
            body::full(text)
        });
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        }
        resp
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> ApiError {
        let msg = e.to_string();
        match e {
            RegistryError::BlobUnknown(d) => {
                ApiError::new(ErrorCode::BlobUnknown).with_detail(json!({"digest": d.to_string()}))
            }
            RegistryError::BlobUploadUnknown => ApiError::new(ErrorCode::BlobUploadUnknown),
            RegistryError::BlobUploadInvalid(_) => {
                ApiError::new(ErrorCode::BlobUploadInvalid).with_message(msg)
            }
            RegistryError::UploadRangeInvalid { size } => {
                ApiError::new(ErrorCode::BlobUploadInvalid)
                    .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .with_message(msg)
                    .with_header("range", format!("0-{}", size.saturating_sub(1)))
            }
            RegistryError::DigestInvalid(_) => {
                ApiError::new(ErrorCode::DigestInvalid).with_message(msg)
            }
            RegistryError::SizeInvalid(_) => {
                ApiError::new(ErrorCode::SizeInvalid).with_message(msg)
            }
            RegistryError::ManifestUnknown(r) => {
                ApiError::new(ErrorCode::ManifestUnknown).with_detail(json!({"reference": r}))
            }
            RegistryError::ManifestInvalid(_) => {
                ApiError::new(ErrorCode::ManifestInvalid).with_message(msg)
            }
            RegistryError::ManifestBlobUnknown(d) => ApiError::new(ErrorCode::ManifestBlobUnknown)
                .with_message(msg)
                .with_detail(json!({"digest": d.to_string()})),
            RegistryError::ManifestTooLarge => ApiError::new(ErrorCode::SizeInvalid)
                .with_status(StatusCode::PAYLOAD_TOO_LARGE)
                .with_message(msg),
            RegistryError::NameUnknown(n) => {
                ApiError::new(ErrorCode::NameUnknown).with_detail(json!({"name": n.to_string()}))
            }
            RegistryError::Unsupported(m) => ApiError::new(ErrorCode::Unsupported).with_message(m),
            RegistryError::StorageFull(p) => {
                tracing::error!("storage full: {p}: no space left on the device");
                ApiError::new(ErrorCode::InsufficientStorage)
            }
            RegistryError::StorageUnavailable { .. } => {
                tracing::error!("{msg}");
                // The client's retry is the cure: S3 is away or throttling.
                ApiError::new(ErrorCode::Unavailable)
                    .with_message("the registry's storage is unavailable; retry later")
                    .with_header("retry-after", "10")
            }
            RegistryError::Storage(e) => {
                tracing::error!("storage error: {e}");
                ApiError::new(ErrorCode::Unknown)
                    .with_message("internal storage error (see the registry's log)")
            }
        }
    }
}
