//! A data directory written by the real registry:2 (CNCF distribution 2.8.2, Debian's
//! `docker-registry`, `/usr/bin/docker-registry`), made at test time: distribution is
//! started on a free port, skopeo pushes the test images (`images.rs`) into it, two
//! manifests are deleted by digest and one upload is left unfinished; then distribution's
//! own `garbage-collect --dry-run` says what is garbage. What it serves (catalog, tags and
//! their digests) and what it found eligible are the expected results (`Expected`).
//!
//! nextest runs every test in its own process, so the directory is made once and kept under
//! the build's `CARGO_TARGET_TMPDIR`, keyed by the sources of this file and `images.rs`:
//! made under a file lock, moved into place by one rename, copied into each test's own
//! temporary directory by `registry2_store`.
//!
//! Also here: `Distribution`, distribution serving a directory, for the tests that check
//! that it reads what we wrote.

use super::netns::Netns;
use super::tools::DISTRIBUTION;
use super::{free_port, images, skopeo_ok};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What distribution serves from the directory and what its collector found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Expected {
    /// `/v2/_catalog`.
    pub catalog: Vec<String>,
    /// Repository -> tag -> manifest digest (`/v2/<repo>/tags/list`, then HEAD of each tag);
    /// a repository whose manifests were all deleted has no tags.
    pub tags: BTreeMap<String, BTreeMap<String, String>>,
    /// `garbage-collect --dry-run`: "N blobs marked".
    pub gc_blobs_marked: usize,
    /// `garbage-collect --dry-run`: "blob eligible for deletion: DIGEST".
    pub gc_eligible: BTreeSet<String>,
    /// The upload left unfinished.
    pub unfinished_upload: UnfinishedUpload,
    /// Digests of the layouts pushed, by layout name (`a`, `b`, `multi`, `c`).
    pub layouts: BTreeMap<String, LayoutDigests>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnfinishedUpload {
    pub repository: String,
    pub id: String,
    /// How many bytes were sent (one PATCH) before it was abandoned.
    pub bytes: usize,
}

/// The blobs of one pushed layout: the index (for `multi`), and per platform image its
/// manifest, config and layers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayoutDigests {
    pub index: Option<String>,
    pub manifests: Vec<String>,
    pub configs: Vec<String>,
    pub layers: Vec<Vec<String>>,
}

impl Expected {
    /// The path of the unfinished upload's directory under a store's root.
    pub fn upload_dir(&self, root: &Path) -> PathBuf {
        let u = &self.unfinished_upload;
        root.join(format!(
            "docker/registry/v2/repositories/{}/_uploads/{}",
            u.repository, u.id
        ))
    }
}

/// The pushes, as (layout, source reference, destination, skopeo flags).
const PUSHES: &[(&str, &str, &str, &[&str])] = &[
    ("a", "latest", "library/alpine:latest", &[]),
    ("a", "latest", "library/alpine:3.19", &[]),
    ("b", "1.0", "team/app/web:1.0", &[]),
    // The same image as a Docker schema 2 manifest: a second manifest over the same blobs.
    ("b", "1.0", "team/app/web:v2s2", &["--format", "v2s2"]),
    ("multi", "multi", "library/multi:latest", &["--all"]),
    // Both manifests of this repository are deleted by digest: c's blobs are garbage, a's
    // are still used by library/alpine.
    ("a", "latest", "scratch/deleted:a", &[]),
    ("c", "old", "scratch/deleted:c", &[]),
];
const DELETED: (&str, &[&str]) = ("scratch/deleted", &["a", "c"]);
const UPLOAD_REPOSITORY: &str = "library/alpine";
const UPLOAD_BYTES: &[u8] = b"twenty bytes, no end";

/// The generated directory (read-only: copy it with `registry2_store`) and its results.
pub fn registry2_fixture() -> &'static (PathBuf, Expected) {
    static FIXTURE: std::sync::OnceLock<(PathBuf, Expected)> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = cached_fixture_dir();
        let text = std::fs::read_to_string(dir.join("expected.json"))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join("expected.json").display()));
        let expected = serde_json::from_str(&text).expect("expected.json is ours");
        (dir.join("storage"), expected)
    })
}

/// The expected results of the generated directory.
pub fn registry2_expected() -> Expected {
    registry2_fixture().1.clone()
}

/// A copy of the generated registry:2 directory (`docker/registry/v2/...`) in a temporary
/// directory of the test's own.
pub fn registry2_store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_tree(&registry2_fixture().0, dir.path()).unwrap_or_else(|e| {
        panic!(
            "copying the registry:2 fixture to {}: {e}",
            dir.path().display()
        )
    });
    dir
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The cache directory for these sources, made if it is not there yet.
fn cached_fixture_dir() -> PathBuf {
    use sha2::{Digest as _, Sha256};
    let sources = [include_str!("registry2.rs"), include_str!("images.rs")];
    let key: String = Sha256::digest(sources.concat())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = base.join(format!("registry2-fixture-{key}"));
    if dir.join("expected.json").is_file() {
        return dir;
    }
    std::fs::create_dir_all(base).expect("CARGO_TARGET_TMPDIR");
    let lock_file = std::fs::File::create(base.join("registry2-fixture.lock")).expect("lock file");
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock the registry:2 fixture cache");
    // Another test process may have made it while this one waited for the lock.
    if dir.join("expected.json").is_file() {
        return dir;
    }
    let work = tempfile::Builder::new()
        .prefix("registry2-fixture-new")
        .tempdir_in(base)
        .expect("temporary directory in CARGO_TARGET_TMPDIR");
    let expected = generate(&work.path().join("storage"));
    let json = serde_json::to_string_pretty(&expected).expect("serialize");
    std::fs::write(work.path().join("expected.json"), json).expect("write expected.json");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(work.keep(), &dir).expect("move the fixture into place");
    dir
}

/// Writes the history into `root` with distribution; returns what it then serves and finds.
fn generate(root: &Path) -> Expected {
    assert!(
        DISTRIBUTION.installed(),
        "the registry:2 fixture is made by distribution 2.8.2: apt-get install docker-registry"
    );
    let layouts_dir = tempfile::tempdir().expect("tempdir");
    let layouts = images::write_layouts(layouts_dir.path()).expect("write the OCI layouts");
    let mut d = Distribution::start(root);
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let base = format!("http://{}/v2", d.host());

    let mut pushed = BTreeMap::new();
    for (layout, reference, dest, flags) in PUSHES {
        let digest_file = layouts_dir.path().join("digest");
        let src = format!(
            "oci:{}:{reference}",
            layouts_dir.path().join(layout).display()
        );
        let dst = format!("docker://{}/{dest}", d.host());
        let mut args = vec!["copy", "--dest-tls-verify=false", "--digestfile"];
        let digest_path = digest_file.to_string_lossy().into_owned();
        args.push(&digest_path);
        args.extend(flags.iter());
        args.extend([src.as_str(), dst.as_str()]);
        skopeo_ok(&args);
        let digest = std::fs::read_to_string(&digest_file).expect("skopeo --digestfile");
        pushed.insert(dest.to_string(), digest.trim().to_owned());
    }
    let (repo, tags) = DELETED;
    for tag in tags {
        let digest = &pushed[&format!("{repo}:{tag}")];
        let r = http
            .delete(format!("{base}/{repo}/manifests/{digest}"))
            .send()
            .expect("DELETE manifest");
        assert_eq!(r.status(), 202, "distribution deleting {repo}@{digest}");
    }
    let r = http
        .post(format!("{base}/{UPLOAD_REPOSITORY}/blobs/uploads/"))
        .send()
        .expect("POST upload");
    assert_eq!(r.status(), 202, "distribution starting an upload");
    let location = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let id = r.headers()["docker-upload-uuid"]
        .to_str()
        .expect("upload id")
        .to_owned();
    let r = http
        .patch(&location)
        .header("content-type", "application/octet-stream")
        .body(UPLOAD_BYTES)
        .send()
        .expect("PATCH upload");
    assert_eq!(r.status(), 202, "distribution taking a chunk");
    let abandoned = Instant::now();

    let catalog: serde_json::Value = http
        .get(format!("{base}/_catalog"))
        .send()
        .and_then(|r| r.json())
        .expect("catalog");
    let catalog: Vec<String> =
        serde_json::from_value(catalog["repositories"].clone()).expect("repositories");
    let mut tags = BTreeMap::new();
    for repo in &catalog {
        let listed: serde_json::Value = http
            .get(format!("{base}/{repo}/tags/list"))
            .send()
            .and_then(|r| r.json())
            .expect("tags/list");
        let names: Vec<String> = serde_json::from_value(listed["tags"].clone()).unwrap_or_default();
        let mut by_tag = BTreeMap::new();
        for tag in names {
            let r = http
                .head(format!("{base}/{repo}/manifests/{tag}"))
                .header("accept", ACCEPT_ALL)
                .send()
                .expect("HEAD manifest");
            let digest = r.headers()["docker-content-digest"]
                .to_str()
                .expect("digest")
                .to_owned();
            assert_eq!(digest, pushed[&format!("{repo}:{tag}")], "{repo}:{tag}");
            by_tag.insert(tag, digest);
        }
        tags.insert(repo.clone(), by_tag);
    }
    // Collection runs with the registry stopped, as distribution requires.
    d.stop();
    let out = Command::new(DISTRIBUTION.program)
        .args(["garbage-collect", "--dry-run"])
        .arg(d.config_file())
        .output()
        .expect("distribution's garbage-collect");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "garbage-collect --dry-run: {text}");
    let marked = text
        .lines()
        .find_map(|l| {
            l.split(" blobs marked")
                .next()
                .filter(|_| l.contains(" blobs marked"))
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no 'N blobs marked' in:\n{text}"));
    let eligible = text
        .lines()
        .filter_map(|l| l.strip_prefix("blob eligible for deletion: "))
        .map(str::to_owned)
        .collect();

    // The upload-purging tests need it older than a second, whatever ran after it.
    std::thread::sleep(Duration::from_secs(2).saturating_sub(abandoned.elapsed()));
    Expected {
        catalog,
        tags,
        gc_blobs_marked: marked,
        gc_eligible: eligible,
        unfinished_upload: UnfinishedUpload {
            repository: UPLOAD_REPOSITORY.into(),
            id,
            bytes: UPLOAD_BYTES.len(),
        },
        layouts: layouts
            .iter()
            .map(|l| (l.name.to_string(), digests_of(l)))
            .collect(),
    }
}

/// Every manifest type distribution 2.8.2 serves, so a HEAD answers with the stored digest.
pub const ACCEPT_ALL: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

fn digests_of(l: &images::Layout) -> LayoutDigests {
    LayoutDigests {
        index: l.index.as_ref().map(|i| i.digest.clone()),
        manifests: l.images.iter().map(|i| i.manifest.digest.clone()).collect(),
        configs: l.images.iter().map(|i| i.config.digest.clone()).collect(),
        layers: l
            .images
            .iter()
            .map(|i| i.layers.iter().map(|b| b.digest.clone()).collect())
            .collect(),
    }
}

/// Distribution 2.8.2 serving `root` on a free loopback port (deletion enabled, upload
/// purging off), or in a network namespace, stopped by PID when dropped.
pub struct Distribution {
    child: Child,
    /// The address it listens on: loopback, or a [`Netns`]'s.
    ip: String,
    pub port: u16,
    conf: tempfile::TempDir,
}

impl Distribution {
    pub fn start(root: &Path) -> Distribution {
        Distribution::start_in(root, None)
    }

    /// Distribution on other storage: `storage` is the YAML of its `storage:` section
    /// (`{s3: {...}}`).
    pub fn start_with(storage: &str) -> Distribution {
        Distribution::start_configured(storage, "")
    }

    /// Distribution with more of its configuration: `extra` is top-level sections of its
    /// YAML file (`auth: {htpasswd: {...}}`), after `storage` as in [`start_with`].
    pub fn start_configured(storage: &str, extra: &str) -> Distribution {
        Distribution::launch(storage, extra, None)
    }

    /// Distribution serving `root` as [`start`] does, inside `netns` (reached at its
    /// address) when one is given.
    pub fn start_in(root: &Path, netns: Option<&Netns>) -> Distribution {
        Distribution::launch(
            &format!(
                "{{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}, maintenance: {{uploadpurging: {{enabled: false}}}}}}",
                root.display()
            ),
            "",
            netns,
        )
    }

    fn launch(storage: &str, extra: &str, netns: Option<&Netns>) -> Distribution {
        assert!(
            DISTRIBUTION.installed(),
            "distribution 2.8.2 is needed: apt-get install docker-registry"
        );
        let conf = tempfile::tempdir().expect("tempdir");
        // registry:2 cannot listen on port 0 and say which port it got.
        let port = free_port();
        let ip = netns.map_or("127.0.0.1", |n| n.ns_ip).to_owned();
        std::fs::write(
            conf.path().join("config.yml"),
            format!(
                "version: 0.1\nlog: {{level: warn, accesslog: {{disabled: true}}}}\nstorage: {storage}\n\
                 http: {{addr: {ip}:{port}}}\n{extra}"
            ),
        )
        .expect("write config");
        let log = std::fs::File::create(conf.path().join("log")).expect("log file");
        let mut cmd = match netns {
            Some(n) => n.command(DISTRIBUTION.program),
            None => Command::new(DISTRIBUTION.program),
        };
        cmd.arg("serve")
            .arg(conf.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, _) in std::env::vars() {
            if k.starts_with("REGISTRY_") {
                cmd.env_remove(k);
            }
        }
        // Its AWS SDK panics on AWS_CA_BUNDLE with a custom transport (this machine sets it).
        cmd.env_remove("AWS_CA_BUNDLE");
        let child = cmd.spawn().expect("start distribution");
        let mut d = Distribution {
            child,
            ip,
            port,
            conf,
        };
        let probe = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if probe.get(format!("http://{}/v2/", d.host())).send().is_ok() {
                return d;
            }
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!("distribution exited ({status}): {}", d.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("distribution did not answer on port {port}: {}", d.log());
    }

    pub fn host(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its configuration file (kept until it is dropped).
    pub fn config_file(&self) -> PathBuf {
        self.conf.path().join("config.yml")
    }

    /// Stops it (SIGKILL to its PID: every request it answered is on disk already).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.conf.path().join("log")).unwrap_or_default()
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        self.stop();
    }
}
