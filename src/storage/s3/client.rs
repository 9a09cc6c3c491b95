//! The S3 requests the driver makes, one method per operation, signed with SigV4 by
//! `object_store`'s [`AwsAuthorizer`] with credentials from its provider chain, sent through
//! its HTTP client.
//!
//! Every request is retried a bounded number of times with exponential backoff and full
//! jitter on what a retry can cure (connection failures, timeouts, 5xx, `SlowDown`,
//! `RequestTimeout`); what is left is classified once here into [`S3Error`], so the driver
//! maps "not there", "S3 is away" and "S3 said no" without reading messages.

use super::credentials::CredentialSource;
use super::S3Options;
use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Method, StatusCode};
use object_store::aws::{AmazonS3, AmazonS3Builder, AwsAuthorizer, AwsCredentialProvider};
use object_store::client::{HttpClient, HttpConnector, HttpRequestBody, HttpResponse};
use object_store::{ClientOptions, PutPayload};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;
use std::fmt;
use std::time::{Duration, Instant, SystemTime};

/// What S3's signature calls "URI-encode": everything but unreserved characters.
const QUERY_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// The same for a key in a path, where `/` stays.
const KEY_SET: &AsciiSet = &QUERY_SET.remove(b'/');

/// Error bodies are small; a body past this is not read into memory.
const ERROR_BODY_LIMIT: usize = 64 << 10;
/// XML answers (listings, results) larger than this are refused rather than buffered.
const XML_BODY_LIMIT: usize = 16 << 20;

/// How a request that did not succeed ended, after retries.
#[derive(Debug)]
pub(super) enum S3Error {
    /// 404: no such key (or upload).
    NotFound,
    /// S3 could not be reached or kept failing (connection, timeout, 5xx, throttling):
    /// worth retrying later.
    Unavailable(String),
    /// S3 answered with an error that retrying will not change.
    Rejected {
        status: StatusCode,
        code: String,
        message: String,
    },
    /// An answer we could not understand.
    Invalid(String),
}

impl fmt::Display for S3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            S3Error::NotFound => f.write_str("not found"),
            S3Error::Unavailable(m) => write!(f, "S3 unavailable: {m}"),
            S3Error::Rejected {
                status,
                code,
                message,
            } => {
                write!(f, "S3 refused ({status}")?;
                if !code.is_empty() {
                    write!(f, " {code}")?;
                }
                f.write_str(")")?;
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                if let Some(hint) = hint(code) {
                    write!(f, "; {hint}")?;
                }
                Ok(())
            }
            S3Error::Invalid(m) => write!(f, "unexpected answer from S3: {m}"),
        }
    }
}

/// What an admin can do about an S3 error code.
fn hint(code: &str) -> Option<&'static str> {
    Some(match code {
        "NoSuchBucket" => "create the bucket or fix storage.s3.bucket",
        "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" => {
            "check the access key, secret key and region (storage.s3.accesskey, secretkey, region)"
        }
        "PermanentRedirect"
        | "AuthorizationHeaderMalformed"
        | "IllegalLocationConstraintException" => {
            "the bucket is in another region: fix storage.s3.region"
        }
        _ => return None,
    })
}

pub(super) type S3Result<T> = Result<T, S3Error>;

/// A body to send: one buffer, or the chunks an upload received, sent without copying.
pub(super) enum Body {
    Empty,
    Bytes(Bytes),
    Chunks(PutPayload),
}

impl Body {
    fn len(&self) -> usize {
        match self {
            Body::Empty => 0,
            Body::Bytes(b) => b.len(),
            Body::Chunks(p) => p.content_length(),
        }
    }

    fn http(&self) -> HttpRequestBody {
        match self {
            Body::Empty => HttpRequestBody::empty(),
            Body::Bytes(b) => b.clone().into(),
            Body::Chunks(p) => p.clone().into(),
        }
    }
}

/// One S3 request, rebuilt and re-signed for each attempt.
pub(super) struct Request {
    method: Method,
    /// The object key; `None` for a request on the bucket itself.
    key: Option<String>,
    query: Vec<(&'static str, String)>,
    headers: HeaderMap,
    body: Body,
    /// How long to wait for the answer's head, per attempt.
    timeout: Duration,
}

impl Request {
    pub(super) fn new(method: Method, key: Option<&str>) -> Request {
        Request {
            method,
            key: key.map(str::to_owned),
            query: Vec::new(),
            headers: HeaderMap::new(),
            body: Body::Empty,
            timeout: Duration::from_secs(60),
        }
    }

    pub(super) fn query(mut self, name: &'static str, value: impl Into<String>) -> Request {
        self.query.push((name, value.into()));
        self
    }

    pub(super) fn header(mut self, name: HeaderName, value: &str) -> Request {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    pub(super) fn body(mut self, body: Body) -> Request {
        // Sending takes longer the more there is to send: allow 256 KiB/s on top.
        self.timeout = Duration::from_secs(60 + (body.len() as u64 >> 18));
        self.body = body;
        self
    }

    pub(super) fn timeout(mut self, t: Duration) -> Request {
        self.timeout = t;
        self
    }
}

/// Bounds on retrying one request.
#[derive(Debug, Clone)]
pub(super) struct RetryPolicy {
    pub(super) attempts: u32,
    pub(super) first_backoff: Duration,
    pub(super) max_backoff: Duration,
    /// No retry starts after this much time has passed since the first attempt.
    pub(super) budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            budget: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Full jitter: a random wait up to the exponential bound, so that many requests failing
    /// together do not come back together.
    fn backoff(&self, retry: u32) -> Duration {
        let cap = self
            .first_backoff
            .saturating_mul(1u32 << retry.min(16))
            .min(self.max_backoff);
        let mut r = [0u8; 8];
        let fraction =
            match ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut r) {
                Ok(()) => (u64::from_le_bytes(r) >> 11) as f64 / (1u64 << 53) as f64,
                Err(_) => 0.5,
            };
        cap.mul_f64(fraction)
    }
}

/// A connection to one bucket.
#[derive(Debug)]
pub(super) struct S3Client {
    http: HttpClient,
    credentials: AwsCredentialProvider,
    /// Where the credentials come from, for logs and `config`.
    pub(super) source: CredentialSource,
    /// Used only to presign URLs: its bucket endpoint is `base`.
    signer: AmazonS3,
    region: String,
    /// `scheme://host[:port]` plus `/bucket` in path style: keys are appended to it.
    base: String,
    /// Headers every object creation carries: encryption, storage class.
    create_headers: HeaderMap,
    pub(super) retry: RetryPolicy,
}

impl S3Client {
    pub(super) fn new(o: &S3Options) -> Result<S3Client, String> {
        let region = o.effective_region();
        let endpoint = o.endpoint_url();
        // `S3Options::check` has made sure it is http(s)://host[:port].
        let (scheme, host) = endpoint.split_once("://").unwrap_or(("https", &endpoint));
        let host = host.trim_end_matches('/');
        let base = if o.path_style() {
            format!("{scheme}://{host}/{}", o.bucket)
        } else {
            format!("{scheme}://{}.{host}", o.bucket)
        };

        let mut client_options = ClientOptions::new()
            .with_allow_http(scheme == "http")
            .with_allow_invalid_certificates(o.skipverify)
            .with_connect_timeout(Duration::from_secs(5))
            // Per-request bounds are ours (see `Request::timeout`): a large part may take
            // longer than any single fixed timeout would allow.
            .with_timeout_disabled()
            .with_pool_idle_timeout(Duration::from_secs(50));
        if let Some(bundle) = std::env::var_os("AWS_CA_BUNDLE").filter(|v| !v.is_empty()) {
            let pem = std::fs::read(&bundle).map_err(|e| {
                format!(
                    "AWS_CA_BUNDLE={}: {e}; point it at a PEM file or unset it",
                    bundle.to_string_lossy()
                )
            })?;
            let certs = object_store::Certificate::from_pem_bundle(&pem).map_err(|e| {
                format!(
                    "AWS_CA_BUNDLE={}: not a PEM bundle: {e}",
                    bundle.to_string_lossy()
                )
            })?;
            for c in certs {
                client_options = client_options.with_root_certificate(c);
            }
        }
        let http = object_store::client::ReqwestConnector::default()
            .connect(&client_options)
            .map_err(|e| format!("cannot set up the HTTP client for S3: {e}"))?;

        // Only the credential chain of this builder is used: written keys (ours or a
        // profile's), otherwise the environment (AWS_ACCESS_KEY_ID, web identity, ECS,
        // instance metadata) as every AWS client reads it.
        let source = super::credentials::resolve(o, &|k| std::env::var(k).ok())
            .map_err(|e| format!("S3 credentials: {e}"))?;
        let builder = match &source {
            CredentialSource::Configured { .. } => AmazonS3Builder::new()
                .with_access_key_id(&o.accesskey)
                .with_secret_access_key(&o.secretkey),
            CredentialSource::Profile { keys, .. } => {
                let b = AmazonS3Builder::new()
                    .with_access_key_id(&keys.access_key)
                    .with_secret_access_key(&keys.secret_key);
                match &keys.session_token {
                    Some(t) => b.with_token(t),
                    None => b,
                }
            }
            _ => AmazonS3Builder::from_env(),
        };
        let store = builder
            .with_bucket_name(&o.bucket)
            .with_region(&region)
            // `base` is the bucket's own endpoint in either style; as a virtual-hosted
            // endpoint object_store takes it as it is, so presigned URLs name the same host
            // and path style as our requests.
            .with_endpoint(&base)
            .with_virtual_hosted_style_request(true)
            .with_allow_http(true)
            .with_client_options(client_options)
            .build()
            .map_err(|e| format!("S3 credentials: {e}"))?;

        let mut create_headers = HeaderMap::new();
        let mut put = |name: &'static str, value: &str| -> Result<(), String> {
            let v = HeaderValue::from_str(value)
                .map_err(|_| format!("{value:?} is not a valid {name} header value"))?;
            create_headers.insert(HeaderName::from_static(name), v);
            Ok(())
        };
        if o.encrypt {
            if o.keyid.is_empty() {
                put("x-amz-server-side-encryption", "AES256")?;
            } else {
                put("x-amz-server-side-encryption", "aws:kms")?;
                put("x-amz-server-side-encryption-aws-kms-key-id", &o.keyid)?;
            }
        }
        if !o.storageclass.eq_ignore_ascii_case("NONE") {
            put("x-amz-storage-class", &o.storageclass.to_ascii_uppercase())?;
        }

        Ok(S3Client {
            http,
            credentials: store.credentials().clone(),
            source,
            signer: store,
            region,
            base,
            create_headers,
            retry: RetryPolicy::default(),
        })
    }

    fn url(&self, req: &Request) -> String {
        let mut url = self.base.clone();
        url.push('/');
        if let Some(key) = &req.key {
            url.extend(utf8_percent_encode(key, KEY_SET));
        }
        for (i, (k, v)) in req.query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(k);
            url.push('=');
            url.extend(utf8_percent_encode(v, QUERY_SET));
        }
        url
    }

    /// A SigV4 query-signed URL allowing `method` on `key` for `expires_in`, to hand to a
    /// client.
    pub(super) async fn presign(
        &self,
        key: &str,
        method: Method,
        expires_in: Duration,
    ) -> S3Result<String> {
        use object_store::signer::Signer;
        let path = object_store::path::Path::parse(key)
            .map_err(|e| S3Error::Invalid(format!("cannot presign key {key:?}: {e}")))?;
        let url = self
            .signer
            .signed_url(method, &path, expires_in)
            .await
            .map_err(|e| S3Error::Unavailable(format!("presigning {key}: {e}")))?;
        Ok(url.into())
    }

    /// Sends a request, retrying what can be retried; returns a 2xx answer.
    pub(super) async fn send(&self, req: &Request) -> S3Result<HttpResponse> {
        let url = self.url(req);
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            let failure = match self.attempt(req, &url).await {
                Ok(resp) => return Ok(resp),
                Err(Attempt::Final(e)) => return Err(e),
                Err(Attempt::Retry(reason)) => reason,
            };
            attempt += 1;
            if attempt >= self.retry.attempts || started.elapsed() >= self.retry.budget {
                return Err(S3Error::Unavailable(format!(
                    "{} {}: {failure} (after {attempt} attempts in {:.1?})",
                    req.method,
                    redact(&url),
                    started.elapsed()
                )));
            }
            let wait = self.retry.backoff(attempt - 1);
            tracing::debug!(
                method = %req.method,
                url = %redact(&url),
                attempt,
                "S3 request failed ({failure}); retrying in {wait:?}"
            );
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(&self, req: &Request, url: &str) -> Result<HttpResponse, Attempt> {
        let credential = self.credentials.get_credential().await.map_err(|e| {
            Attempt::Final(S3Error::Unavailable(format!(
                "no AWS credentials: {e}; set storage.s3.accesskey and secretkey, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
            )))
        })?;
        let mut builder = http::Request::builder().method(req.method.clone()).uri(url);
        if let Some(h) = builder.headers_mut() {
            h.extend(req.headers.clone());
            h.insert(CONTENT_LENGTH, HeaderValue::from(req.body.len()));
        }
        let mut request = builder
            .body(req.body.http())
            .map_err(|e| Attempt::Final(S3Error::Invalid(format!("bad request {url}: {e}"))))?;
        // Bodies of several chunks are sent unsigned (TLS protects them where it matters);
        // small ones, XML documents among them, are signed.
        let signed = !matches!(req.body, Body::Chunks(_));
        AwsAuthorizer::new(&credential, "s3", &self.region)
            .with_sign_payload(signed)
            .authorize(&mut request, None);

        let resp = match tokio::time::timeout(req.timeout, self.http.execute(request)).await {
            Err(_) => {
                return Err(Attempt::Retry(format!(
                    "no answer within {:?}",
                    req.timeout
                )))
            }
            Ok(Err(e)) => return Err(Attempt::Retry(error_chain(&e))),
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = if req.method == Method::HEAD {
            String::new()
        } else {
            read_limited(resp, ERROR_BODY_LIMIT)
                .await
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        let err = ErrorBody::parse(&body);
        Err(classify(status, err))
    }

    /// Sends a request and parses its XML answer.
    pub(super) async fn send_xml<T: for<'de> Deserialize<'de>>(
        &self,
        req: &Request,
    ) -> S3Result<T> {
        let mut attempt = 0u32;
        loop {
            let resp = self.send(req).await?;
            let body = read_limited(resp, XML_BODY_LIMIT)
                .await
                .map_err(|e| S3Error::Unavailable(format!("reading the answer: {e}")))?;
            let text = String::from_utf8_lossy(&body);
            // Copies and completions can fail after S3 has answered 200: the error is the
            // body, and it may be one to retry.
            if !text.contains("<Error>") {
                return quick_xml::de::from_str(&text)
                    .map_err(|e| S3Error::Invalid(format!("{e} in {text:.200}")));
            }
            match classify(StatusCode::OK, ErrorBody::parse(&text)) {
                Attempt::Retry(what) if attempt + 1 < self.retry.attempts => {
                    attempt += 1;
                    tracing::debug!("S3 answered 200 with {what}; retrying");
                    tokio::time::sleep(self.retry.backoff(attempt - 1)).await;
                }
                other => return Err(other.into()),
            }
        }
    }

    // --- objects ---

    pub(super) async fn head(&self, key: &str) -> S3Result<Option<ObjectInfo>> {
        match self.send(&Request::new(Method::HEAD, Some(key))).await {
            Ok(resp) => Ok(Some(ObjectInfo::from_headers(resp.headers()))),
            Err(S3Error::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// GETs `key` from `offset` (`len` bytes, or to the end); the answer's body streams.
    pub(super) async fn get(
        &self,
        key: &str,
        offset: u64,
        len: Option<u64>,
        if_match: Option<&str>,
    ) -> S3Result<HttpResponse> {
        let mut req = Request::new(Method::GET, Some(key));
        match len {
            Some(n) => {
                req = req.header(
                    http::header::RANGE,
                    &format!("bytes={offset}-{}", offset + n - 1),
                )
            }
            None if offset > 0 => {
                req = req.header(http::header::RANGE, &format!("bytes={offset}-"))
            }
            None => {}
        }
        if let Some(etag) = if_match {
            req = req.header(http::header::IF_MATCH, etag);
        }
        self.send(&req).await
    }

    pub(super) async fn put(&self, key: &str, body: Body) -> S3Result<()> {
        let mut req = Request::new(Method::PUT, Some(key)).body(body);
        req.headers.extend(self.create_headers.clone());
        req = req.header(CONTENT_TYPE, "application/octet-stream");
        self.send(&req).await.map(drop)
    }

    /// A PUT that only creates (`If-None-Match: *`): false when the key already exists
    /// (412), or another conditional write to it is under way (409). A retried attempt
    /// whose first try went through also answers false: the caller reads the object when
    /// it must know whose it is.
    pub(super) async fn put_if_absent(&self, key: &str, body: Body) -> S3Result<bool> {
        let mut req = Request::new(Method::PUT, Some(key)).body(body);
        req.headers.extend(self.create_headers.clone());
        req = req
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(http::header::IF_NONE_MATCH, "*");
        match self.send(&req).await {
            Ok(_) => Ok(true),
            Err(S3Error::Rejected { status, .. })
                if status == StatusCode::PRECONDITION_FAILED || status == StatusCode::CONFLICT =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    pub(super) async fn delete(&self, key: &str) -> S3Result<()> {
        match self.send(&Request::new(Method::DELETE, Some(key))).await {
            Ok(_) | Err(S3Error::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes up to 1000 keys in one request.
    pub(super) async fn delete_many(&self, keys: &[String]) -> S3Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut xml = String::from("<Delete><Quiet>true</Quiet>");
        for k in keys {
            xml.push_str("<Object><Key>");
            xml.push_str(&quick_xml::escape::escape(k.as_str()));
            xml.push_str("</Key></Object>");
        }
        xml.push_str("</Delete>");
        let md5 = {
            use base64::Engine;
            use md5::Digest;
            base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(xml.as_bytes()))
        };
        let req = Request::new(Method::POST, None)
            .query("delete", "")
            .header(HeaderName::from_static("content-md5"), &md5)
            .body(Body::Bytes(Bytes::from(xml)));
        let result: DeleteResult = self.send_xml(&req).await?;
        match result.errors.first() {
            None => Ok(()),
            Some(e) => Err(S3Error::Rejected {
                status: StatusCode::OK,
                code: e.code.clone(),
                message: format!("deleting {}: {}", e.key, e.message),
            }),
        }
    }

    /// Server-side copy of a whole object (up to 5 GiB).
    pub(super) async fn copy(&self, from: &str, to: &str) -> S3Result<()> {
        let mut req = Request::new(Method::PUT, Some(to))
            .header(
                HeaderName::from_static("x-amz-copy-source"),
                &self.copy_source(from),
            )
            .timeout(Duration::from_secs(600));
        req.headers.extend(self.create_headers.clone());
        self.send_xml::<CopyResult>(&req).await.map(drop)
    }

    fn copy_source(&self, key: &str) -> String {
        // Path style or not, the source names the bucket in its path.
        let bucket = self.bucket();
        format!("/{bucket}/{}", utf8_percent_encode(key, KEY_SET))
    }

    fn bucket(&self) -> &str {
        // `base` ends with `/bucket` in path style, or starts `scheme://bucket.` otherwise.
        let after_scheme = self.base.split_once("://").map_or("", |(_, r)| r);
        match after_scheme.split_once('/') {
            Some((_, bucket)) => bucket,
            None => after_scheme.split('.').next().unwrap_or_default(),
        }
    }

    /// One page of keys under `prefix`; with a delimiter, the sub-"directories" too.
    pub(super) async fn list_page(
        &self,
        prefix: &str,
        delimiter: bool,
        continuation: Option<&str>,
        max_keys: Option<u32>,
    ) -> S3Result<ListPage> {
        let mut req = Request::new(Method::GET, None)
            .query("list-type", "2")
            .query("prefix", prefix);
        if delimiter {
            req = req.query("delimiter", "/");
        }
        if let Some(n) = max_keys {
            req = req.query("max-keys", n.to_string());
        }
        if let Some(c) = continuation {
            req = req.query("continuation-token", c);
        }
        self.send_xml(&req).await
    }

    // --- multipart uploads ---

    pub(super) async fn create_multipart(&self, key: &str) -> S3Result<String> {
        let mut req = Request::new(Method::POST, Some(key)).query("uploads", "");
        req.headers.extend(self.create_headers.clone());
        req = req.header(CONTENT_TYPE, "application/octet-stream");
        let r: InitiateResult = self.send_xml(&req).await?;
        Ok(r.upload_id)
    }

    pub(super) async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        body: Body,
    ) -> S3Result<String> {
        let req = Request::new(Method::PUT, Some(key))
            .query("partNumber", number.to_string())
            .query("uploadId", upload_id)
            .body(body);
        let resp = self.send(&req).await?;
        etag(resp.headers())
            .ok_or_else(|| S3Error::Invalid(format!("no ETag for part {number} of {key}")))
    }

    /// Copies `range` (inclusive) of object `from` into part `number` of an upload.
    pub(super) async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        from: &str,
        range: (u64, u64),
    ) -> S3Result<String> {
        let req = Request::new(Method::PUT, Some(key))
            .query("partNumber", number.to_string())
            .query("uploadId", upload_id)
            .header(
                HeaderName::from_static("x-amz-copy-source"),
                &self.copy_source(from),
            )
            .header(
                HeaderName::from_static("x-amz-copy-source-range"),
                &format!("bytes={}-{}", range.0, range.1),
            )
            .timeout(Duration::from_secs(600));
        let r: CopyPartResult = self.send_xml(&req).await?;
        Ok(r.etag)
    }

    pub(super) async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> S3Result<()> {
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (n, etag) in parts {
            xml.push_str(&format!(
                "<Part><PartNumber>{n}</PartNumber><ETag>{}</ETag></Part>",
                quick_xml::escape::escape(etag.as_str())
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let req = Request::new(Method::POST, Some(key))
            .query("uploadId", upload_id)
            .body(Body::Bytes(Bytes::from(xml)))
            .timeout(Duration::from_secs(600));
        match self.send_xml::<CompleteResult>(&req).await {
            Ok(_) => Ok(()),
            // A retry of a completion that went through (its answer lost) finds no upload:
            // the object it made is the proof.
            Err(S3Error::NotFound) if self.head(key).await?.is_some() => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn abort_multipart(&self, key: &str, upload_id: &str) -> S3Result<()> {
        let req = Request::new(Method::DELETE, Some(key)).query("uploadId", upload_id);
        match self.send(&req).await {
            Ok(_) | Err(S3Error::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every unfinished multipart upload whose key starts with `prefix` (all pages).
    pub(super) async fn list_multipart(&self, prefix: &str) -> S3Result<Vec<MultipartInfo>> {
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut req = Request::new(Method::GET, None)
                .query("uploads", "")
                .query("prefix", prefix);
            if let Some((key, id)) = &markers {
                req = req.query("key-marker", key.clone());
                req = req.query("upload-id-marker", id.clone());
            }
            let page: ListUploadsPage = match self.send_xml(&req).await {
                Ok(page) => page,
                // A store that cannot list uploads shows none (a writer's upload then only
                // lives as long as the writer).
                Err(S3Error::Rejected { status, code, .. })
                    if status == StatusCode::NOT_IMPLEMENTED || code == "NotImplemented" =>
                {
                    return Ok(out)
                }
                Err(e) => return Err(e),
            };
            out.extend(page.uploads);
            match (
                page.is_truncated,
                page.next_key_marker,
                page.next_upload_id_marker,
            ) {
                (true, Some(k), Some(i)) if !k.is_empty() => markers = Some((k, i)),
                _ => return Ok(out),
            }
        }
    }
}

enum Attempt {
    Retry(String),
    Final(S3Error),
}

fn classify(status: StatusCode, err: ErrorBody) -> Attempt {
    let retry_code = matches!(
        err.code.as_str(),
        "SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable" | "Throttling"
    );
    // A server without the operation (s3s-fs has no ListMultipartUploads) will not grow it.
    let missing = status == StatusCode::NOT_IMPLEMENTED || err.code == "NotImplemented";
    if !missing
        && (status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || retry_code)
    {
        let what = if err.code.is_empty() {
            status.to_string()
        } else {
            format!("{status} {}", err.code)
        };
        return Attempt::Retry(what);
    }
    if status == StatusCode::NOT_FOUND && err.code != "NoSuchBucket" {
        return Attempt::Final(S3Error::NotFound);
    }
    Attempt::Final(S3Error::Rejected {
        status,
        code: err.code,
        message: err.message,
    })
}

impl From<Attempt> for S3Error {
    fn from(a: Attempt) -> S3Error {
        match a {
            Attempt::Retry(m) => S3Error::Unavailable(m),
            Attempt::Final(e) => e,
        }
    }
}

/// The error with its causes, for a log line (reqwest hides the useful part in a source).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        cur = s.source();
    }
    out
}

/// A URL for a log line: the query (upload ids, markers) is dropped.
fn redact(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// Reads a body into memory, refusing more than `limit` bytes.
pub(super) async fn read_limited(resp: HttpResponse, limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut stream = resp.into_body().bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| error_chain(&e))?;
        if out.len() + chunk.len() > limit {
            return Err(format!("answer larger than {limit} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn etag(headers: &HeaderMap) -> Option<String> {
    headers
        .get(http::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// What HEAD tells about an object.
#[derive(Debug, Clone)]
pub(super) struct ObjectInfo {
    pub(super) size: u64,
    pub(super) modified: SystemTime,
    pub(super) etag: Option<String>,
}

impl ObjectInfo {
    pub(super) fn from_headers(h: &HeaderMap) -> ObjectInfo {
        let text = |n: http::header::HeaderName| h.get(n).and_then(|v| v.to_str().ok());
        ObjectInfo {
            size: text(CONTENT_LENGTH)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            modified: text(http::header::LAST_MODIFIED)
                .and_then(|v| httpdate::parse_http_date(v).ok())
                .unwrap_or(SystemTime::UNIX_EPOCH),
            etag: etag(h),
        }
    }
}

/// `<Error><Code>…</Code><Message>…</Message></Error>`, as far as it parses.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ErrorBody {
    code: String,
    message: String,
}

impl ErrorBody {
    fn parse(body: &str) -> ErrorBody {
        // A 200 answer can wrap its error in another element; look for the element itself.
        let start = body.find("<Error>").unwrap_or(0);
        quick_xml::de::from_str(&body[start..]).unwrap_or_default()
    }
}

/// An S3 timestamp (`2024-01-02T03:04:05.000Z`).
pub(super) fn parse_time(s: &str) -> SystemTime {
    humantime::parse_rfc3339_weak(s.trim_end_matches('Z')).unwrap_or(SystemTime::UNIX_EPOCH)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct ListPage {
    pub(super) is_truncated: bool,
    pub(super) next_continuation_token: Option<String>,
    #[serde(rename = "Contents")]
    pub(super) contents: Vec<ListedObject>,
    #[serde(rename = "CommonPrefixes")]
    pub(super) common_prefixes: Vec<CommonPrefix>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct ListedObject {
    pub(super) key: String,
    pub(super) size: u64,
    pub(super) last_modified: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct CommonPrefix {
    pub(super) prefix: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ListUploadsPage {
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_upload_id_marker: Option<String>,
    #[serde(rename = "Upload")]
    uploads: Vec<MultipartInfo>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct MultipartInfo {
    pub(super) key: String,
    pub(super) upload_id: String,
    pub(super) initiated: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct InitiateResult {
    upload_id: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CopyResult {}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CopyPartResult {
    #[serde(rename = "ETag")]
    etag: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CompleteResult {}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DeleteResult {
    #[serde(rename = "Error")]
    errors: Vec<DeleteError>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DeleteError {
    key: String,
    code: String,
    message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_parse() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>a/</Prefix>
<KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><Delimiter>/</Delimiter><IsTruncated>true</IsTruncated>
<NextContinuationToken>tok</NextContinuationToken>
<Contents><Key>a/x</Key><LastModified>2024-01-02T03:04:05.000Z</LastModified><ETag>"e"</ETag><Size>3</Size></Contents>
<CommonPrefixes><Prefix>a/b/</Prefix></CommonPrefixes><CommonPrefixes><Prefix>a/c/</Prefix></CommonPrefixes>
</ListBucketResult>"#;
        let p: ListPage = quick_xml::de::from_str(xml).expect("parse");
        assert!(p.is_truncated);
        assert_eq!(p.next_continuation_token.as_deref(), Some("tok"));
        assert_eq!(p.contents.len(), 1);
        assert_eq!(p.contents[0].key, "a/x");
        assert_eq!(p.contents[0].size, 3);
        assert_eq!(
            parse_time(&p.contents[0].last_modified),
            humantime::parse_rfc3339("2024-01-02T03:04:05Z").expect("time")
        );
        assert_eq!(p.common_prefixes.len(), 2);
        let empty: ListPage = quick_xml::de::from_str(
            "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>",
        )
        .expect("parse");
        assert!(empty.contents.is_empty() && empty.common_prefixes.is_empty());
    }

    #[test]
    fn errors_classify() {
        let e = ErrorBody::parse(
            "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>Reduce</Message></Error>",
        );
        assert_eq!(e.code, "SlowDown");
        assert!(matches!(
            classify(StatusCode::SERVICE_UNAVAILABLE, e),
            Attempt::Retry(_)
        ));
        let e = ErrorBody::parse("<Error><Code>NoSuchKey</Code></Error>");
        assert!(matches!(
            classify(StatusCode::NOT_FOUND, e),
            Attempt::Final(S3Error::NotFound)
        ));
        let e = ErrorBody::parse("<Error><Code>NoSuchBucket</Code></Error>");
        let Attempt::Final(e) = classify(StatusCode::NOT_FOUND, e) else {
            panic!("a missing bucket is final");
        };
        assert!(e.to_string().contains("create the bucket"), "{e}");
        assert!(matches!(
            classify(StatusCode::FORBIDDEN, ErrorBody::default()),
            Attempt::Final(S3Error::Rejected { .. })
        ));
        // An operation the server lacks is not worth retrying.
        assert!(matches!(
            classify(StatusCode::NOT_IMPLEMENTED, ErrorBody::default()),
            Attempt::Final(S3Error::Rejected { .. })
        ));
    }

    #[test]
    fn backoff_stays_under_its_bound() {
        let p = RetryPolicy::default();
        for retry in 0..20 {
            let cap = p
                .first_backoff
                .saturating_mul(1 << retry.min(16))
                .min(p.max_backoff);
            assert!(p.backoff(retry) <= cap);
        }
    }

    #[test]
    fn keys_are_encoded_once() {
        assert_eq!(
            utf8_percent_encode("a b/c+d~e", KEY_SET).to_string(),
            "a%20b/c%2Bd~e"
        );
    }
}
