//! The S3 driver's settings, named and defaulted as registry:2's `storage.s3` parameters
//! are, so a registry:2 configuration means the same thing here.

use std::fmt;

/// S3 requires every part of a multipart upload but the last to be at least this large.
pub const MIN_PART: u64 = 5 << 20;
/// The largest part (and the largest single copy) S3 accepts.
pub const MAX_PART: u64 = 5 << 30;

/// `storage.s3` as registry:2 reads it.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Options {
    pub bucket: String,
    /// Required unless `regionendpoint` is set (then `us-east-1` when empty).
    pub region: String,
    /// An S3-compatible endpoint (`http://minio:9000`); empty for AWS.
    pub regionendpoint: String,
    /// Path-style requests (`endpoint/bucket/key`). `None` follows registry:2 2.8: path style
    /// with a `regionendpoint`, virtual-hosted on AWS.
    pub forcepathstyle: Option<bool>,
    /// Empty: the standard AWS credential chain (environment, web identity, ECS, instance
    /// metadata).
    pub accesskey: String,
    pub secretkey: String,
    /// A prefix for every key: `<rootdirectory>/docker/registry/v2/...`.
    pub rootdirectory: String,
    /// HTTPS to the endpoint when it names no scheme.
    pub secure: bool,
    /// Accept any TLS certificate from the endpoint.
    pub skipverify: bool,
    /// SigV4 signing; SigV2 is not supported (see `S3Options::warnings`).
    pub v4auth: bool,
    /// Bytes per multipart upload part.
    pub chunksize: u64,
    pub multipartcopychunksize: u64,
    pub multipartcopymaxconcurrency: usize,
    /// Objects larger than this are copied part by part (UploadPartCopy).
    pub multipartcopythresholdsize: u64,
    /// Server-side encryption: SSE-S3, or SSE-KMS with `keyid`.
    pub encrypt: bool,
    pub keyid: String,
    /// `STANDARD` by default; `NONE` sends no storage class (for stores that reject it).
    pub storageclass: String,
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options {
            bucket: String::new(),
            region: String::new(),
            regionendpoint: String::new(),
            forcepathstyle: None,
            accesskey: String::new(),
            secretkey: String::new(),
            rootdirectory: String::new(),
            secure: true,
            skipverify: false,
            v4auth: true,
            chunksize: 2 * MIN_PART,
            multipartcopychunksize: 32 << 20,
            multipartcopymaxconcurrency: 100,
            multipartcopythresholdsize: 32 << 20,
            encrypt: false,
            keyid: String::new(),
            storageclass: "STANDARD".to_owned(),
        }
    }
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Options")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("regionendpoint", &self.regionendpoint)
            .field("forcepathstyle", &self.forcepathstyle)
            .field("accesskey", &self.accesskey)
            .field(
                "secretkey",
                &if self.secretkey.is_empty() {
                    ""
                } else {
                    "******"
                },
            )
            .field("rootdirectory", &self.rootdirectory)
            .field("secure", &self.secure)
            .field("skipverify", &self.skipverify)
            .field("v4auth", &self.v4auth)
            .field("chunksize", &self.chunksize)
            .field("multipartcopychunksize", &self.multipartcopychunksize)
            .field(
                "multipartcopymaxconcurrency",
                &self.multipartcopymaxconcurrency,
            )
            .field(
                "multipartcopythresholdsize",
                &self.multipartcopythresholdsize,
            )
            .field("encrypt", &self.encrypt)
            .field("keyid", &self.keyid)
            .field("storageclass", &self.storageclass)
            .finish()
    }
}

/// Storage classes that serve reads at once (registry:2's list).
const STORAGE_CLASSES: &[&str] = &[
    "NONE",
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "OUTPOSTS",
    "GLACIER_IR",
    "EXPRESS_ONEZONE",
];

impl S3Options {
    /// Checks the values; each message names the key at fault.
    pub fn validate(&self) -> Result<(), String> {
        self.check()
            .map_err(|(key, message)| format!("storage.s3.{key}: {message}"))
    }

    /// Checks the values: on failure, the key at fault (`bucket`) and what is wrong with it.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let fail = |key, message: String| Err((key, message));
        if self.bucket.is_empty() {
            return fail("bucket", "no bucket given".to_owned());
        }
        if self.region.is_empty() && self.regionendpoint.is_empty() {
            return fail(
                "region",
                "no region given (needed unless regionendpoint is set)".to_owned(),
            );
        }
        if self.accesskey.is_empty() != self.secretkey.is_empty() {
            let key = if self.accesskey.is_empty() {
                "accesskey"
            } else {
                "secretkey"
            };
            return fail(
                key,
                "give both accesskey and secretkey, or neither to use the AWS credential chain"
                    .to_owned(),
            );
        }
        for (key, value) in [
            ("chunksize", self.chunksize),
            ("multipartcopychunksize", self.multipartcopychunksize),
        ] {
            if !(MIN_PART..=MAX_PART).contains(&value) {
                return fail(
                    key,
                    format!("{value} is outside {MIN_PART}..={MAX_PART} bytes"),
                );
            }
        }
        if self.multipartcopymaxconcurrency == 0 {
            return fail(
                "multipartcopymaxconcurrency",
                "must be at least 1".to_owned(),
            );
        }
        if self.multipartcopythresholdsize > MAX_PART {
            return fail(
                "multipartcopythresholdsize",
                format!(
                    "{} is larger than S3's {MAX_PART}-byte copy limit",
                    self.multipartcopythresholdsize
                ),
            );
        }
        let class = self.storageclass.to_ascii_uppercase();
        if !STORAGE_CLASSES.contains(&class.as_str()) {
            return fail(
                "storageclass",
                format!(
                    "{:?} is not one of {}",
                    self.storageclass,
                    STORAGE_CLASSES.join(", ")
                ),
            );
        }
        if !self.keyid.is_empty() && !self.encrypt {
            return fail("keyid", "set encrypt: true to use a KMS key".to_owned());
        }
        if !self.v4auth
            && (self.regionendpoint.is_empty() || self.regionendpoint.contains("amazonaws.com"))
        {
            return fail(
                "v4auth",
                "Amazon S3 only accepts v4 signatures; remove v4auth: false".to_owned(),
            );
        }
        let endpoint = self.endpoint_url();
        match endpoint.split_once("://") {
            Some(("http" | "https", host))
                if !host.trim_end_matches('/').is_empty()
                    && !host.trim_end_matches('/').contains('/') => {}
            _ => {
                return fail(
                    "regionendpoint",
                    format!("{endpoint:?} is not http(s)://host[:port]"),
                )
            }
        }
        Ok(())
    }

    /// What a start-up should log about settings that are accepted but not acted on.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.v4auth {
            out.push(
                "storage.s3.v4auth: false is not supported; requests are signed with SigV4"
                    .to_owned(),
            );
        }
        out
    }

    pub(super) fn effective_region(&self) -> String {
        if self.region.is_empty() {
            "us-east-1".to_owned()
        } else {
            self.region.clone()
        }
    }

    pub(super) fn path_style(&self) -> bool {
        self.forcepathstyle
            .unwrap_or(!self.regionendpoint.is_empty())
    }

    /// `scheme://host[:port]` of the endpoint.
    pub(super) fn endpoint_url(&self) -> String {
        let scheme = if self.secure { "https" } else { "http" };
        if self.regionendpoint.is_empty() {
            return format!("{scheme}://s3.{}.amazonaws.com", self.effective_region());
        }
        let e = self.regionendpoint.trim_end_matches('/');
        if e.contains("://") {
            e.to_owned()
        } else {
            format!("{scheme}://{e}")
        }
    }

    /// The key prefix every path goes under: the root directory without its slashes.
    pub(super) fn key_prefix(&self) -> String {
        self.rootdirectory.trim_matches('/').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> S3Options {
        S3Options {
            bucket: "b".into(),
            region: "eu-west-1".into(),
            ..S3Options::default()
        }
    }

    #[test]
    fn defaults_are_registry2s() {
        let o = S3Options::default();
        assert_eq!(o.chunksize, 10 << 20);
        assert_eq!(o.multipartcopythresholdsize, 32 << 20);
        assert!(o.secure && o.v4auth && !o.encrypt);
        assert_eq!(o.storageclass, "STANDARD");
        valid().validate().expect("valid");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (o, key) in [
            (
                S3Options {
                    bucket: String::new(),
                    ..valid()
                },
                "bucket",
            ),
            (
                S3Options {
                    region: String::new(),
                    ..valid()
                },
                "region",
            ),
            (
                S3Options {
                    chunksize: 1 << 20,
                    ..valid()
                },
                "chunksize",
            ),
            (
                S3Options {
                    storageclass: "GLACIER".into(),
                    ..valid()
                },
                "storageclass",
            ),
            (
                S3Options {
                    accesskey: "k".into(),
                    ..valid()
                },
                "secretkey",
            ),
            (
                S3Options {
                    keyid: "k".into(),
                    ..valid()
                },
                "keyid",
            ),
            (
                S3Options {
                    v4auth: false,
                    ..valid()
                },
                "v4auth",
            ),
        ] {
            let e = o.validate().expect_err(key);
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn endpoints_and_prefixes() {
        let aws = valid();
        assert_eq!(aws.endpoint_url(), "https://s3.eu-west-1.amazonaws.com");
        assert!(!aws.path_style());
        let minio = S3Options {
            regionendpoint: "minio:9000".into(),
            secure: false,
            region: String::new(),
            rootdirectory: "/registry/".into(),
            ..valid()
        };
        minio.validate().expect("an endpoint needs no region");
        assert_eq!(minio.endpoint_url(), "http://minio:9000");
        assert_eq!(minio.effective_region(), "us-east-1");
        assert!(minio.path_style());
        assert_eq!(minio.key_prefix(), "registry");
        let explicit = S3Options {
            regionendpoint: "https://r2.example".into(),
            forcepathstyle: Some(false),
            ..valid()
        };
        assert_eq!(explicit.endpoint_url(), "https://r2.example");
        assert!(!explicit.path_style());
        assert!(!format!(
            "{:?}",
            S3Options {
                secretkey: "hush".into(),
                ..valid()
            }
        )
        .contains("hush"));
    }
}
