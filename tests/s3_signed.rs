//! S3 where signatures matter, on s3s-fs (a server that checks SigV4, unlike moto): blob
//! GETs redirect to presigned URLs that a client without credentials can fetch, and a
//! tampered one is refused; a wrong secret stops the start with a message that says what
//! to check; keys from an AWS profile (`AWS_PROFILE`, `~/.aws/credentials`) sign requests.

#[path = "../src/storage/s3/moto.rs"]
mod moto;

mod common;

use common::*;
use moto::S3sFs;
use std::path::{Path, PathBuf};

const BUCKET: &str = "signed";
const ACCESS_KEY: &str = "AKIAS3SFSTESTKEY";
const SECRET_KEY: &str = "s3s-fs-test-secret";

/// A server on a new directory holding the bucket; `None` (skipped) without s3s-fs.
fn s3s_fs(root: &Path) -> Option<S3sFs> {
    std::fs::create_dir_all(root.join(BUCKET)).expect("bucket directory");
    S3sFs::start(root, ACCESS_KEY, SECRET_KEY)
}

/// A registry:2 file for the bucket with `keys` (`accesskey: ..., secretkey: ...`, or
/// nothing for the credential chain).
fn config(dir: &Path, s3: &S3sFs, keys: &str) -> PathBuf {
    let file = dir.join("registry.yml");
    std::fs::write(
        &file,
        format!(
            "version: 0.1\nstorage:\n  s3: {{regionendpoint: '{}', bucket: {BUCKET}, region: us-east-1, {keys}}}\n  \
             maintenance: {{uploadpurging: {{enabled: false}}}}\n",
            s3.endpoint()
        ),
    )
    .expect("write config");
    file
}

fn ours(dir: &Path, s3: &S3sFs, keys: &str) -> ServerBuilder {
    Server::builder()
        .configured_storage(dir)
        .arg("--config")
        .arg(config(dir, s3, keys).display().to_string())
}

fn written_keys(secret: &str) -> String {
    format!("accesskey: {ACCESS_KEY}, secretkey: {secret}")
}

#[test]
fn presigned_redirects_are_accepted_by_a_server_that_checks_signatures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(s3) = s3s_fs(&dir.path().join("s3")) else {
        return;
    };
    let s = ours(dir.path(), &s3, &written_keys(SECRET_KEY)).start();
    let c = client();
    let blob: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let digest = push_blob(&c, &s, "app", &blob);
    let r = c
        .get(s.url(&format!("/v2/app/blobs/{digest}")))
        .expect_status(307);
    let to = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert!(to.starts_with(&s3.endpoint()), "{to}");
    // A client with no credentials of its own, as docker and skopeo follow it.
    let got = reqwest::blocking::get(&to).expect("follow");
    assert_eq!(got.status(), 200, "{to}");
    let got = got.bytes().expect("body");
    assert_eq!(digest_of(&got), digest);
    // Changing what was signed breaks the signature.
    let other = to.replace("X-Amz-Expires=1200", "X-Amz-Expires=86400");
    assert_ne!(other, to);
    let refused = reqwest::blocking::get(&other).expect("tampered");
    assert_eq!(refused.status(), 403, "{other}");
}

#[test]
fn a_wrong_secret_stops_the_start_saying_what_to_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(s3) = s3s_fs(&dir.path().join("s3")) else {
        return;
    };
    let ran = ours(dir.path(), &s3, &written_keys("not-the-secret")).run_to_end();
    assert_ne!(ran.code, Some(0), "{ran}");
    assert!(ran.stderr.contains("storage is not writable"), "{ran}");
    assert!(ran.stderr.contains("SignatureDoesNotMatch"), "{ran}");
    assert!(
        ran.stderr
            .contains("check the access key, secret key and region"),
        "{ran}"
    );
    assert!(!ran.stderr.contains("panicked"), "{ran}");
}

#[test]
fn keys_from_an_aws_profile_sign_the_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(s3) = s3s_fs(&dir.path().join("s3")) else {
        return;
    };
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".aws")).expect("mkdir");
    std::fs::write(
        home.join(".aws/credentials"),
        format!(
            "[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = wrong\n\
             [registry]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
        ),
    )
    .expect("write credentials");
    let with_profile = |profile: &str| {
        ours(dir.path(), &s3, "")
            .env("HOME", home.display().to_string())
            .env("AWS_PROFILE", profile)
    };
    let s = with_profile("registry").start();
    let c = client();
    let digest = push_blob(&c, &s, "app", b"signed with the profile's keys");
    assert!(
        s.log_text().contains("S3 credentials: profile registry in"),
        "{}",
        s.log_text()
    );
    c.head(s.url(&format!("/v2/app/blobs/{digest}")))
        .expect_status(200);
    drop(s);
    let ran = with_profile("default").run_to_end();
    assert!(ran.stderr.contains("SignatureDoesNotMatch"), "{ran}");
}

/// A chunked upload on a store that cannot list multipart uploads (s3s-fs answers
/// ListMultipartUploads with NotImplemented): each PATCH, on a restarted registry, takes up
/// the upload the one before recorded in the bucket with its parts, whether its last part
/// is full (continued), short (folded and copied server side) or the data is still one
/// object; the blob lands whole.
#[test]
fn a_chunked_upload_continues_on_a_store_that_cannot_list_uploads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(s3) = s3s_fs(&dir.path().join("s3")) else {
        return;
    };
    const MIB: usize = 1 << 20;
    let blob: Vec<u8> = (0..24 * MIB + 333)
        .map(|i| (i.wrapping_mul(2654435761) >> 9) as u8)
        .collect();
    let digest = digest_of(&blob);
    let c = client();
    let start = || ours(dir.path(), &s3, &written_keys(SECRET_KEY)).start();
    let mut s = start();
    let r = c
        .post(s.url("/v2/chunked/blobs/uploads/"))
        .expect_status(202);
    let mut location = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    // Parts of 10 MiB (the default chunksize): 16 MiB leave a full part and a 6 MiB one,
    // the next PATCH adds a short part, the one after folds it.
    let cuts = [0, 16 * MIB, 17 * MIB, 23 * MIB, blob.len()];
    for (i, w) in cuts.windows(2).enumerate() {
        if i > 0 {
            drop(s);
            s = start();
        }
        let r = c
            .patch(absolute(&s.url(""), &location))
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{}-{}", w[0], w[1] - 1))
            .body(blob[w[0]..w[1]].to_vec())
            .send()
            .expect("patch");
        assert_eq!(r.status(), 202, "PATCH {i}: {}", s.log_text());
        location = r.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned();
        let status = c.get(absolute(&s.url(""), &location)).expect_status(204);
        assert_eq!(status.headers()["range"], format!("0-{}", w[1] - 1));
    }
    let url = absolute(&s.url(""), &location);
    let sep = if url.contains('?') { '&' } else { '?' };
    c.put(format!("{url}{sep}digest={digest}"))
        .expect_status(201);
    let r = c
        .get(s.url(&format!("/v2/chunked/blobs/{digest}")))
        .expect_status(307);
    let got = reqwest::blocking::get(r.headers()["location"].to_str().expect("location"))
        .and_then(|r| r.bytes())
        .expect("follow");
    assert_eq!(digest_of(&got), digest);
}
