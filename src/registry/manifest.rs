//! Manifests: media types, parsing, and what a manifest references. We store the exact bytes
//! a client pushed and serve them unchanged; parsing is only for validation (references must
//! exist) and for the referrers index.

use super::digest::Digest;
use serde_json::Value;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The largest manifest accepted, as in the spec's guidance and distribution.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// A descriptor: what a manifest points at.
#[derive(Debug, Clone, PartialEq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    /// Foreign or non-distributable layers with `urls` need not be in the registry.
    pub external: bool,
}

/// What validation learned from a manifest.
#[derive(Debug, Clone)]
pub struct ParsedManifest {
    pub media_type: String,
    /// Blobs (config and layers) that must exist in the repository.
    pub blobs: Vec<Descriptor>,
    /// Child manifests (index or manifest list entries) that must exist in the repository.
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    /// `artifactType`, or for an image manifest its config's media type.
    pub artifact_type: Option<String>,
    pub annotations: Option<serde_json::Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestError {
    Invalid(String),
    Unsupported(String),
}

fn invalid(msg: impl Into<String>) -> ManifestError {
    ManifestError::Invalid(msg.into())
}

fn descriptor(v: &Value, what: &str) -> Result<Descriptor, ManifestError> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid(format!("{what}: descriptor must be an object")))?;
    let media_type = obj
        .get("mediaType")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{what}: mediaType missing")))?
        .to_owned();
    let digest_str = obj
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{what}: digest missing")))?;
    let digest: Digest = digest_str
        .parse()
        .map_err(|e| invalid(format!("{what}: {e}")))?;
    let size = obj
        .get("size")
        .and_then(Value::as_u64)
        .ok_or_else(|| invalid(format!("{what}: size missing or negative")))?;
    let has_urls = obj
        .get("urls")
        .and_then(Value::as_array)
        .is_some_and(|u| !u.is_empty());
    let external =
        has_urls && (media_type.contains("foreign") || media_type.contains("nondistributable"));
    Ok(Descriptor {
        media_type,
        digest,
        size,
        external,
    })
}

/// Works out the media type of stored bytes: the `mediaType` field, or the shape.
pub fn detect_media_type(bytes: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(bytes) else {
        return OCI_MANIFEST.to_owned();
    };
    if let Some(mt) = v.get("mediaType").and_then(Value::as_str) {
        return mt.to_owned();
    }
    if v.get("schemaVersion").and_then(Value::as_u64) == Some(1) {
        return if v.get("signatures").is_some() {
            DOCKER_SCHEMA1_SIGNED
        } else {
            DOCKER_SCHEMA1
        }
        .to_owned();
    }
    if v.get("manifests").is_some() {
        OCI_INDEX.to_owned()
    } else {
        OCI_MANIFEST.to_owned()
    }
}

/// Parses and validates a manifest pushed with `content_type` (the request's Content-Type,
/// parameters stripped; may be empty).
pub fn parse(bytes: &[u8], content_type: &str) -> Result<ParsedManifest, ManifestError> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("manifest is not valid JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| invalid("manifest must be a JSON object"))?;
    let field_type = obj.get("mediaType").map(|m| {
        m.as_str()
            .map(str::to_owned)
            .ok_or_else(|| invalid("mediaType must be a string"))
    });
    let field_type = field_type.transpose()?;
    let schema = obj.get("schemaVersion").and_then(Value::as_u64);

    let generic = content_type.is_empty()
        || content_type == "application/json"
        || content_type == "application/octet-stream";
    let media_type = match (&field_type, generic) {
        (Some(f), false) if f != content_type => {
            return Err(invalid(format!(
                "Content-Type {content_type} does not match the manifest's mediaType {f}"
            )))
        }
        (_, false) => content_type.to_owned(),
        (Some(f), true) => f.clone(),
        (None, true) => {
            if obj.contains_key("manifests") {
                OCI_INDEX.to_owned()
            } else {
                OCI_MANIFEST.to_owned()
            }
        }
    };

    if media_type == DOCKER_SCHEMA1 || media_type == DOCKER_SCHEMA1_SIGNED || schema == Some(1) {
        return Err(ManifestError::Unsupported(
            "Docker schema 1 manifests are deprecated and not accepted; push schema 2 or OCI"
                .into(),
        ));
    }
    if schema != Some(2) {
        return Err(invalid("schemaVersion must be 2"));
    }

    let mut parsed = ParsedManifest {
        media_type: media_type.clone(),
        blobs: Vec::new(),
        manifests: Vec::new(),
        subject: None,
        artifact_type: obj
            .get("artifactType")
            .and_then(Value::as_str)
            .map(str::to_owned),
        annotations: obj.get("annotations").and_then(Value::as_object).cloned(),
    };
    if let Some(s) = obj.get("subject") {
        parsed.subject = Some(descriptor(s, "subject")?);
    }

    let is_index = media_type == OCI_INDEX || media_type == DOCKER_LIST;
    if is_index {
        let list = obj
            .get("manifests")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("index: manifests must be a list"))?;
        for (i, m) in list.iter().enumerate() {
            parsed
                .manifests
                .push(descriptor(m, &format!("manifests[{i}]"))?);
        }
    } else {
        // Image manifests (OCI, Docker schema 2) and artifacts with any other media type
        // that follow the image manifest shape.
        let config = obj
            .get("config")
            .ok_or_else(|| invalid("config descriptor missing"))?;
        let config = descriptor(config, "config")?;
        if parsed.artifact_type.is_none() && media_type == OCI_MANIFEST {
            parsed.artifact_type = Some(config.media_type.clone());
        }
        parsed.blobs.push(config);
        match obj.get("layers") {
            Some(Value::Array(layers)) => {
                for (i, l) in layers.iter().enumerate() {
                    parsed.blobs.push(descriptor(l, &format!("layers[{i}]"))?);
                }
            }
            None if media_type == OCI_MANIFEST => {}
            _ => return Err(invalid("layers must be a list")),
        }
    }
    Ok(parsed)
}

/// The media type a `Content-Type` value names: parameters dropped, lower case.
pub fn media_type_of(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_an_oci_manifest_with_subject() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/x-sig",
            "config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{D}","size":2}},
            "layers":[{{"mediaType":"application/octet-stream","digest":"{D}","size":0}}],
            "subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":10}}}}"#
        );
        let p = parse(m.as_bytes(), OCI_MANIFEST).expect("valid");
        assert_eq!(p.blobs.len(), 2);
        assert!(p.subject.is_some());
        assert_eq!(p.artifact_type.as_deref(), Some("application/x-sig"));
    }

    #[test]
    fn rejects_bad_manifests() {
        assert!(matches!(
            parse(b"{", OCI_MANIFEST),
            Err(ManifestError::Invalid(_))
        ));
        assert!(matches!(parse(b"[]", ""), Err(ManifestError::Invalid(_))));
        let m = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[]}}"#);
        assert!(matches!(
            parse(m.as_bytes(), OCI_MANIFEST),
            Err(ManifestError::Invalid(_))
        ));
        assert!(parse(m.as_bytes(), OCI_INDEX).is_ok());
        let bad_digest = r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:zz","size":1},"layers":[]}"#;
        assert!(parse(bad_digest.as_bytes(), "").is_err());
        assert!(matches!(
            parse(br#"{"schemaVersion":1,"fsLayers":[]}"#, ""),
            Err(ManifestError::Unsupported(_))
        ));
    }
}
