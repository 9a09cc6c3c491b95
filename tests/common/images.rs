//! The test images: four small OCI image layouts (`a`, `b`, `multi`, `c`) built from tar
//! layers written here, byte for byte the same on every run and every machine (fixed
//! names, modes, owners and mtimes in the tar; gzip with no name and a zero time stamp;
//! JSON with a fixed key order), so their digests are stable and a registry written from
//! them can be compared with one written earlier.
//!
//! | layout | reference | content |
//! |---|---|---|
//! | a | latest | one gzip layer (`etc/os-release`), linux/amd64 |
//! | b | 1.0 | a's layer plus one more (`app/run.sh`) |
//! | multi | multi | an OCI image index: linux/amd64 and linux/arm64, sharing a's layer |
//! | c | old | one layer no other image shares |
//!
//! Shared by the integration tests and benchmarks (`tests/common`) and by
//! `examples/oci-layouts.rs`, which writes them for the package tests and for README's
//! first push.

use serde_json::json;
use sha2::{Digest as _, Sha256};
use std::io::Write as _;
use std::path::Path;

/// Every tar entry's modification time: 2023-11-14 22:13:20 UTC.
const MTIME: u64 = 1_700_000_000;

pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A blob of a layout: its digest (`sha256:...`), size and bytes.
#[derive(Debug, Clone)]
pub struct Blob {
    pub digest: String,
    pub bytes: Vec<u8>,
}

impl Blob {
    fn new(bytes: Vec<u8>) -> Blob {
        let hex: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Blob {
            digest: format!("sha256:{hex}"),
            bytes,
        }
    }

    fn descriptor(&self, media_type: &str) -> serde_json::Value {
        json!({"mediaType": media_type, "digest": self.digest, "size": self.bytes.len()})
    }
}

/// One platform's image: manifest, config and compressed layers.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest: Blob,
    pub config: Blob,
    pub layers: Vec<Blob>,
}

/// One OCI image layout: the blobs it holds and what its `index.json` names.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The directory name (`a`, `b`, `multi`, `c`).
    pub name: &'static str,
    /// The `org.opencontainers.image.ref.name` of its one entry (`oci:DIR:REF`).
    pub reference: &'static str,
    /// The platforms' images (two for `multi`, else one).
    pub images: Vec<Image>,
    /// The image index of `multi`; `None` for a single image.
    pub index: Option<Blob>,
}

impl Layout {
    /// The digest of what `reference` names: the index of `multi`, else the manifest.
    pub fn digest(&self) -> &str {
        match &self.index {
            Some(index) => &index.digest,
            None => &self.images[0].manifest.digest,
        }
    }

    /// Writes `oci-layout`, `index.json` and `blobs/sha256/*` under `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let blobs_dir = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs_dir)?;
        let images = self.images.iter();
        let blobs = images
            .flat_map(|i| [&i.manifest, &i.config].into_iter().chain(&i.layers))
            .chain(&self.index);
        for blob in blobs {
            let hex = blob.digest.trim_start_matches("sha256:");
            std::fs::write(blobs_dir.join(hex), &blob.bytes)?;
        }
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let mut entry = match &self.index {
            Some(index) => index.descriptor(INDEX_MEDIA_TYPE),
            None => {
                let image = &self.images[0];
                let mut d = image.manifest.descriptor(MANIFEST_MEDIA_TYPE);
                d["platform"] = platform_of(&image.config);
                d
            }
        };
        entry["annotations"] = json!({ REF_NAME: self.reference });
        let index = json!({"schemaVersion": 2, "manifests": [entry]});
        std::fs::write(dir.join("index.json"), index.to_string())
    }
}

/// The four layouts, in the order of the table above.
pub fn layouts() -> Vec<Layout> {
    let os_release = ("etc/os-release", &b"NAME=fixture\n"[..]);
    let single = |name, reference, files: &[(&str, &[u8])]| Layout {
        name,
        reference,
        images: vec![image("amd64", files)],
        index: None,
    };
    let a = single("a", "latest", &[os_release]);
    let b = single(
        "b",
        "1.0",
        &[os_release, ("app/run.sh", b"#!/bin/sh\necho fixture b\n")],
    );
    let c = single(
        "c",
        "old",
        &[(
            "orphan/only-here",
            b"this layer is referenced only by a deleted manifest\n",
        )],
    );
    let platforms = vec![
        image("amd64", &[os_release, ("bin/x", b"amd64\n")]),
        image("arm64", &[os_release, ("bin/x", b"arm64\n")]),
    ];
    let children: Vec<serde_json::Value> = platforms
        .iter()
        .map(|i| {
            let mut d = i.manifest.descriptor(MANIFEST_MEDIA_TYPE);
            d["platform"] = platform_of(&i.config);
            d
        })
        .collect();
    let index = json!({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": children});
    let multi = Layout {
        name: "multi",
        reference: "multi",
        images: platforms,
        index: Some(Blob::new(index.to_string().into_bytes())),
    };
    vec![a, b, multi, c]
}

/// Writes every layout into `dir/<name>`; returns them.
pub fn write_layouts(dir: &Path) -> std::io::Result<Vec<Layout>> {
    let all = layouts();
    for layout in &all {
        layout.write(&dir.join(layout.name))?;
    }
    Ok(all)
}

/// A linux image for `arch` with one layer per file, each layer a tar of that file alone
/// (so images that start with the same files share their first layers).
fn image(arch: &str, files: &[(&str, &[u8])]) -> Image {
    let tars: Vec<Vec<u8>> = files.iter().map(|&(path, data)| tar(path, data)).collect();
    let diff_ids: Vec<String> = tars.iter().map(|t| Blob::new(t.clone()).digest).collect();
    let layers: Vec<Blob> = tars.iter().map(|t| Blob::new(gzip(t))).collect();
    let config = json!({
        "architecture": arch,
        "config": {"Cmd": ["/bin/sh"]},
        "os": "linux",
        "rootfs": {"diff_ids": diff_ids, "type": "layers"}
    });
    let config = Blob::new(config.to_string().into_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config.descriptor(CONFIG_MEDIA_TYPE),
        "layers": layers.iter().map(|l| l.descriptor(LAYER_MEDIA_TYPE)).collect::<Vec<_>>()
    });
    Image {
        manifest: Blob::new(manifest.to_string().into_bytes()),
        config,
        layers,
    }
}

fn platform_of(config: &Blob) -> serde_json::Value {
    let c: serde_json::Value = serde_json::from_slice(&config.bytes).unwrap_or_default();
    json!({"architecture": c["architecture"], "os": c["os"]})
}

/// A POSIX (ustar) archive of one regular file, root-owned, mode 0644, at `MTIME`.
fn tar(path: &str, data: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    let mut put = |at: usize, field: &[u8]| header[at..at + field.len()].copy_from_slice(field);
    put(0, path.as_bytes());
    put(100, b"0000644\0");
    put(108, b"0000000\0");
    put(116, b"0000000\0");
    put(124, format!("{:011o}\0", data.len()).as_bytes());
    put(136, format!("{MTIME:011o}\0").as_bytes());
    put(148, b"        ");
    put(156, b"0");
    put(257, b"ustar\0");
    put(263, b"00");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = header.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    // The end-of-archive marker, and the padding GNU tar writes up to a 10240-byte record.
    out.resize((out.len() + 1024).div_ceil(10240) * 10240, 0);
    out
}

/// gzip at the best level, with no file name and a zero time stamp in the header.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(data);
    encoder.finish().unwrap_or_default()
}
