//! OCI image layouts on disk, for skopeo to push: the fixed test images (`images.rs`) or one
//! image built from given layers; and the checks on what skopeo pulls back.

use super::images;
use super::rng::Rng;
use super::{sha256_hex, skopeo_ok};
use std::path::Path;

/// The test images' OCI layouts (a, b, multi, c: see `images.rs`) in a temp dir.
pub fn oci_layouts() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    images::write_layouts(dir.path()).expect("write the OCI layouts");
    dir
}

/// The manifest digest an OCI layout's index.json gives for a reference.
pub fn layout_digest(layout: &Path, reference: &str) -> String {
    let text = std::fs::read_to_string(layout.join("index.json")).expect("index.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    v["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == reference)
        .and_then(|m| m["digest"].as_str())
        .expect("ref in layout")
        .to_owned()
}

/// skopeo copies OCI layout `dir`'s `reference` (see [`oci_layouts`]) to `host/repo`; with
/// `all`, every platform of an index.
pub fn skopeo_push_layout(
    host: &str,
    layouts: &Path,
    dir: &str,
    reference: &str,
    repo: &str,
    all: bool,
) {
    let src = format!("oci:{}:{reference}", layouts.join(dir).display());
    let dst = format!("docker://{host}/{repo}");
    let mut args = vec!["copy", "--dest-tls-verify=false"];
    if all {
        args.push("--all");
    }
    args.extend([src.as_str(), dst.as_str()]);
    skopeo_ok(&args);
}

/// Checks that every blob file of a pulled `dir:` copy (named by its hex digest) hashes to
/// its name; returns how many there are.
pub fn check_pulled_blobs(dir: &Path) -> usize {
    let mut blobs = 0;
    for e in std::fs::read_dir(dir).expect("dir").flatten() {
        let name = e.file_name().into_string().expect("utf8");
        if name.len() == 64 {
            assert_eq!(sha256_hex(&std::fs::read(e.path()).expect("blob")), name);
            blobs += 1;
        }
    }
    blobs
}

/// Writes an OCI image layout at `dir` holding one image tagged `tag` with these layers;
/// returns the manifest's digest (`sha256:...`).
pub fn oci_image(dir: &Path, tag: &str, layers: &[Vec<u8>]) -> String {
    oci_image_described(dir, tag, layers, &[], &[])
}

/// [`oci_image`] with these labels in its config (besides `tag`) and these annotations on
/// its manifest.
pub fn oci_image_described(
    dir: &Path,
    tag: &str,
    layers: &[Vec<u8>],
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir");
    let put = |bytes: &[u8]| -> (String, usize) {
        let hex = sha256_hex(bytes);
        std::fs::write(blobs.join(&hex), bytes).expect("write blob");
        (format!("sha256:{hex}"), bytes.len())
    };
    // Compressed layers: skopeo pushes them as they are, so the registry holds exactly
    // the digests of this layout (an uncompressed layer would be recompressed on push).
    let layer_descs: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| {
            let (d, n) = put(&images::gzip(l));
            serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n})
        })
        .collect();
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256_hex(l)))
        .collect();
    let mut label_map = serde_json::Map::new();
    label_map.insert("tag".into(), tag.into());
    for (k, v) in labels {
        label_map.insert((*k).into(), (*v).into());
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Labels": label_map},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    });
    let (cd, cn) = put(config.to_string().as_bytes());
    let mut manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
        "layers": layer_descs
    });
    if !annotations.is_empty() {
        let map: serde_json::Map<String, serde_json::Value> = annotations
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).into()))
            .collect();
        manifest["annotations"] = map.into();
    }
    let mbytes = manifest.to_string().into_bytes();
    let (md, mn) = put(&mbytes);
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("layout");
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn,
                       "annotations": {"org.opencontainers.image.ref.name": tag}}]
    });
    std::fs::write(dir.join("index.json"), index.to_string()).expect("index");
    md
}

/// Deterministic filler bytes (a layer's content), distinct per seed.
pub fn layer_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng(seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407));
    (0..len).map(|_| (rng.next() >> 24) as u8).collect()
}
