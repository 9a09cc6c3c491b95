//! The storage driver conformance suite: what every [`StorageDriver`] must do, proven the
//! same way for each backend (filesystem, in-memory, S3 on a real moto server), so the
//! layers above can rely on the trait and not on one backend's habits.
//!
//! Each case is a function taking a driver; [`conformance_suite!`] turns the list into one
//! test per case for a driver's fixture. Where backends legitimately differ (an emptied
//! directory lingers on a disk, vanishes on S3) the cases accept both.

use super::{Staged, StorageDriver, StorageError, StoragePath};
use bytes::Bytes;
use futures_util::StreamExt;
use std::sync::Arc;
use tokio::io::AsyncReadExt;

/// A driver and whatever must live as long as it (a temporary directory, a server).
pub(crate) struct Fixture {
    pub(crate) driver: Arc<dyn StorageDriver>,
    pub(crate) _guard: Box<dyn std::any::Any + Send>,
}

/// Bytes per part the S3 fixture uses, so that "large" here means several parts.
pub(crate) const PART: usize = 5 << 20;

/// The driver under test, shared with the tasks a case spawns.
pub(crate) type D = Arc<dyn StorageDriver>;

fn p(s: &str) -> StoragePath {
    StoragePath::new(s.split('/')).expect("test path")
}

/// A byte pattern that differs at every offset within a large file, to catch reordering.
fn pattern(offset: u64, len: usize) -> Vec<u8> {
    (offset..offset + len as u64)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

async fn read_all(d: &D, path: &StoragePath, offset: u64) -> (Vec<u8>, u64) {
    let (mut r, size) = d.reader(path, offset).await.expect("reader");
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.expect("read");
    (out, size)
}

/// Reads `len` bytes at `offset` through `read_chunks` and checks them against the pattern
/// as they stream, without holding the file.
async fn check_pattern(d: &D, path: &StoragePath, offset: u64, len: u64) {
    let mut s = d.read_chunks(path, offset, len).await.expect("read_chunks");
    let mut at = offset;
    while let Some(chunk) = s.next().await {
        let chunk = chunk.expect("chunk");
        assert_eq!(&chunk[..], &pattern(at, chunk.len())[..], "at {at}");
        at += chunk.len() as u64;
    }
    assert_eq!(at, offset + len, "read {} of {len} bytes", at - offset);
}

async fn sorted_list(d: &D, path: &str) -> Vec<String> {
    let mut names = d.list(&p(path)).await.expect("list");
    names.sort();
    names
}

pub(crate) async fn empty_files(d: &D) {
    let a = p("e/put");
    d.put_content(&a, b"").await.expect("put empty");
    assert!(d.get_content(&a, 10).await.expect("get").is_empty());
    let info = d.stat(&a).await.expect("stat");
    assert_eq!((info.size, info.is_dir), (0, false));

    let w = p("e/written");
    d.writer(&w, false)
        .await
        .expect("writer")
        .close()
        .await
        .expect("close");
    assert_eq!(d.stat(&w).await.expect("stat").size, 0);
    let (bytes, size) = read_all(d, &w, 0).await;
    assert!(bytes.is_empty());
    assert_eq!(size, 0);
    let mut chunks = d.read_chunks(&w, 0, 0).await.expect("chunks");
    assert!(chunks.next().await.is_none());
    // Appending to an empty file, and appending nothing.
    let wr = d.writer(&w, true).await.expect("append");
    assert_eq!(wr.size(), 0);
    wr.close().await.expect("close");
    assert_eq!(sorted_list(d, "e").await, ["put", "written"]);
}

pub(crate) async fn missing_paths(d: &D) {
    let m = p("nothing/here");
    assert!(d.get_content(&m, 10).await.expect_err("get").is_not_found());
    assert!(d.stat(&m).await.expect_err("stat").is_not_found());
    assert!(d.reader(&m, 0).await.err().expect("reader").is_not_found());
    assert!(d
        .read_chunks(&m, 0, 5)
        .await
        .err()
        .expect("chunks")
        .is_not_found());
    assert!(d.list(&m).await.expect_err("list").is_not_found());
    assert!(d.delete(&m).await.expect_err("delete").is_not_found());
    let to = p("nothing/there");
    assert!(d.rename(&m, &to).await.expect_err("rename").is_not_found());
    assert!(
        d.stat(&to).await.is_err(),
        "a failed rename creates nothing"
    );
    let found = d
        .find_directories_with(&m, "_manifests")
        .await
        .expect("find");
    assert!(found.is_empty());
    // A file is not a directory: nothing is listed below it.
    d.put_content(&p("nothing/file"), b"x").await.expect("put");
    assert!(d.list(&p("nothing/file")).await.is_err());
    assert!(d.stat(&p("nothing/file/below")).await.is_err());
}

/// A file written and closed but not moved into place (an upload between two requests) is
/// content, not a leftover of an interrupted write, even to a process alone on the store.
pub(crate) async fn open_files_are_not_leftovers(d: &D) {
    let f = p("lo/_uploads/u/data");
    let len = PART + 10;
    let mut w = d.writer(&f, false).await.expect("writer");
    w.write_chunks(vec![Bytes::from(pattern(0, len))])
        .await
        .expect("write");
    w.close().await.expect("close");
    d.put_content(&p("lo/_uploads/u/startedat"), b"now")
        .await
        .expect("put");
    let found = d.leftovers(&p("lo"), None, true).await.expect("leftovers");
    assert!(found.is_empty(), "{found:?}");
    check_pattern(d, &f, 0, len as u64).await;
}

pub(crate) async fn nested_listing(d: &D) {
    for f in ["n/a/b/c", "n/a/b/d/e", "n/a/f", "n/a/b-x/g", "n/a/bb"] {
        d.put_content(&p(f), f.as_bytes()).await.expect("put");
    }
    assert_eq!(sorted_list(d, "n").await, ["a"]);
    assert_eq!(sorted_list(d, "n/a").await, ["b", "b-x", "bb", "f"]);
    assert_eq!(sorted_list(d, "n/a/b").await, ["c", "d"]);
    assert_eq!(sorted_list(d, "n/a/b/d").await, ["e"]);
    let dir = d.stat(&p("n/a/b")).await.expect("stat dir");
    assert!(dir.is_dir);
    let file = d.stat(&p("n/a/f")).await.expect("stat file");
    assert_eq!((file.is_dir, file.size), (false, 5));
    assert!(
        d.stat(&p("n/a/b-")).await.is_err(),
        "a key prefix is not a directory"
    );
}

pub(crate) async fn overwrite_and_rename_over_existing(d: &D) {
    let (x, y) = (p("r/x"), p("r/sub/y"));
    d.put_content(&x, b"first").await.expect("put");
    d.put_content(&x, b"second, longer")
        .await
        .expect("overwrite");
    assert_eq!(
        &d.get_content(&x, 100).await.expect("get")[..],
        b"second, longer"
    );
    d.put_content(&y, b"old target").await.expect("put target");
    d.rename(&x, &y).await.expect("rename");
    assert_eq!(
        &d.get_content(&y, 100).await.expect("get")[..],
        b"second, longer"
    );
    assert!(d.stat(&x).await.expect_err("moved").is_not_found());
    // A moved upload: written through a writer, then renamed into place.
    let up = p("r/up/data");
    let mut w = d.writer(&up, false).await.expect("writer");
    w.write(b"uploaded").await.expect("write");
    w.close().await.expect("close");
    d.rename(&up, &y).await.expect("rename upload");
    assert_eq!(&d.get_content(&y, 100).await.expect("get")[..], b"uploaded");
    assert!(d.stat(&up).await.is_err());
}

/// An upload continued by later requests: each one reopens the file for append.
pub(crate) async fn append_across_reopen(d: &D) {
    let f = p("ap/data");
    let mut w = d.writer(&f, false).await.expect("writer");
    w.write(b"abc").await.expect("write");
    assert_eq!(w.close().await.expect("close"), 3);
    let mut w = d.writer(&f, true).await.expect("append");
    assert_eq!(w.size(), 3);
    w.write_chunks(vec![
        Bytes::from_static(b"de"),
        Bytes::new(),
        Bytes::from_static(b"f"),
    ])
    .await
    .expect("chunks");
    assert_eq!(w.size(), 6);
    w.close().await.expect("close");
    assert_eq!(&d.get_content(&f, 100).await.expect("get")[..], b"abcdef");
    // Opening for append creates a missing file; opening without truncates.
    let g = p("ap/new");
    let mut w = d.writer(&g, true).await.expect("append to missing");
    assert_eq!(w.size(), 0);
    w.write(b"x").await.expect("write");
    w.close().await.expect("close");
    assert_eq!(&d.get_content(&g, 10).await.expect("get")[..], b"x");
    d.writer(&f, false)
        .await
        .expect("truncate")
        .close()
        .await
        .expect("close");
    assert_eq!(d.stat(&f).await.expect("stat").size, 0);
    // Cancelling removes the file.
    let mut w = d.writer(&g, true).await.expect("append");
    w.write(b"more").await.expect("write");
    w.cancel().await.expect("cancel");
    assert!(d.stat(&g).await.is_err());
}

/// Appends across reopen with sessions of several parts, a short one between them, and the
/// file read and renamed at the end: the paths an S3 multipart upload takes when resumed.
pub(crate) async fn large_appends_across_reopen(d: &D) {
    let f = p("big/_uploads/u/data");
    // Each session's end leaves the file in another state on S3: one object of a part and a
    // bit, an upload of full parts, an upload ending in a short part, ...
    let sessions = [
        PART + 100,
        2 * PART + PART / 2,
        PART / 3,
        PART + 17,
        1,
        3 * PART,
    ];
    let mut total = 0u64;
    for (i, len) in sessions.into_iter().enumerate() {
        let mut w = d.writer(&f, i > 0).await.expect("writer");
        assert_eq!(w.size(), total, "session {i} resumes at the size written");
        let mut left = len;
        while left > 0 {
            let n = left.min(1 << 20);
            w.write_chunks(vec![Bytes::from(pattern(total, n))])
                .await
                .expect("write");
            total += n as u64;
            left -= n;
        }
        assert_eq!(w.close().await.expect("close"), total);
        let info = d.stat(&f).await.expect("stat after close");
        assert_eq!((info.size, info.is_dir), (total, false), "session {i}");
        assert_eq!(sorted_list(d, "big/_uploads/u").await, ["data"]);
    }
    check_pattern(d, &f, 0, total).await;
    check_pattern(d, &f, total - 1000, 1000).await;
    let blob = p("big/blobs/data");
    d.rename(&f, &blob).await.expect("rename");
    check_pattern(d, &blob, PART as u64 - 3, 2 * PART as u64).await;
    assert_eq!(d.stat(&blob).await.expect("stat").size, total);
    assert!(d.stat(&f).await.is_err());
}

pub(crate) async fn large_streamed_write(d: &D) {
    let f = p("ls/data");
    let len = 7 * PART + 12345;
    let mut w = d.writer(&f, false).await.expect("writer");
    let mut at = 0u64;
    // Odd-sized writes, some through `write` (copied), most as chunks.
    while (at as usize) < len {
        let n = (len - at as usize).min(777_777);
        if at % 3 == 0 {
            w.write(&pattern(at, n)).await.expect("write");
        } else {
            w.write_chunks(vec![Bytes::from(pattern(at, n))])
                .await
                .expect("chunks");
        }
        at += n as u64;
    }
    assert_eq!(w.close().await.expect("close"), len as u64);
    check_pattern(d, &f, 0, len as u64).await;
}

pub(crate) async fn reader_at_offsets(d: &D) {
    let f = p("ro/data");
    let len = 300_000u64;
    d.put_content(&f, &pattern(0, len as usize))
        .await
        .expect("put");
    for offset in [0, 1, 65_536, len / 2, len - 1, len] {
        let (bytes, size) = read_all(d, &f, offset).await;
        assert_eq!(size, len, "size reported at offset {offset}");
        assert_eq!(
            bytes,
            pattern(offset, (len - offset) as usize),
            "offset {offset}"
        );
    }
    for (offset, n) in [(0, 1), (10, 100_000), (len - 5, 5), (len, 0)] {
        check_pattern(d, &f, offset, n).await;
    }
}

pub(crate) async fn staged_writes_in_order(d: &D) {
    let up = p("st/_uploads/1/data");
    let mut w = d.writer(&up, false).await.expect("writer");
    w.write(b"layer").await.expect("write");
    w.close().await.expect("close");
    let blob = p("st/blobs/ab/data");
    let (link, tag) = (p("st/repo/_layers/ab/link"), p("st/repo/tags/t/link"));
    d.put_content(&tag, b"old").await.expect("old tag");
    let content = [(blob.clone(), Staged::MovedFrom(up.clone()))];
    let links = [
        (
            link.clone(),
            Staged::Content(Bytes::from_static(b"sha256:ab")),
        ),
        (
            p("st/repo/other/link"),
            Staged::Content(Bytes::from_static(b"x")),
        ),
    ];
    let tags = [(tag.clone(), Staged::Content(Bytes::from_static(b"new")))];
    d.put_staged(&[&content, &links, &[], &tags])
        .await
        .expect("staged");
    assert_eq!(&d.get_content(&blob, 10).await.expect("blob")[..], b"layer");
    assert_eq!(
        &d.get_content(&link, 10).await.expect("link")[..],
        b"sha256:ab"
    );
    assert_eq!(&d.get_content(&tag, 10).await.expect("tag")[..], b"new");
    assert!(d.stat(&up).await.is_err(), "the upload moved");
    // A failing stage stops the stages after it.
    let later = p("st/later/link");
    let err = d
        .put_staged(&[
            &[(
                p("st/x/data"),
                Staged::MovedFrom(p("st/_uploads/gone/data")),
            )],
            &[(later.clone(), Staged::Content(Bytes::from_static(b"x")))],
        ])
        .await
        .expect_err("missing source");
    assert!(err.is_not_found(), "{err}");
    assert!(d.stat(&later).await.is_err(), "a later stage was written");
}

pub(crate) async fn delete_trees(d: &D) {
    for f in ["dt/a/b/c", "dt/a/b/d/e", "dt/a/bb", "dt/a/b-x", "dt/keep"] {
        d.put_content(&p(f), b"x").await.expect("put");
    }
    let mut w = d.writer(&p("dt/a/b/up/data"), false).await.expect("writer");
    w.write(&pattern(0, 2 * PART + 1)).await.expect("write");
    w.close().await.expect("close");
    d.delete(&p("dt/a/b")).await.expect("delete tree");
    assert!(d.stat(&p("dt/a/b")).await.is_err());
    assert!(d.stat(&p("dt/a/b/up/data")).await.is_err());
    assert_eq!(sorted_list(d, "dt/a").await, ["b-x", "bb"]);
    d.delete(&p("dt/a/bb")).await.expect("delete file");
    assert!(d
        .delete(&p("dt/a/bb"))
        .await
        .expect_err("again")
        .is_not_found());
    d.delete(&p("dt/a/b-x")).await.expect("delete file");
    // An emptied directory lingers on a disk and vanishes on S3: both read as empty.
    match d.list(&p("dt/a")).await {
        Ok(names) => assert!(names.is_empty(), "{names:?}"),
        Err(e) => assert!(e.is_not_found(), "{e}"),
    }
    assert_eq!(
        sorted_list(d, "dt").await.last().map(String::as_str),
        Some("keep")
    );
}

pub(crate) async fn finds_directories_with_a_marker(d: &D) {
    for f in [
        "fd/r/a/_manifests/tags/x",
        "fd/r/b/c/_manifests/revisions/y",
        "fd/r/b/_uploads/z/_manifests/w",
        "fd/r/b/c/d/_layers/l",
        "fd/r/e/file",
        "fd/r/f/g/_manifests",
    ] {
        d.put_content(&p(f), b"x").await.expect("put");
    }
    let mut found = d
        .find_directories_with(&p("fd/r"), "_manifests")
        .await
        .expect("find");
    found.sort();
    assert_eq!(found, ["a", "b/c", "f/g"]);
    let mut uploads = d
        .find_directories_with(&p("fd/r"), "_uploads")
        .await
        .expect("find");
    uploads.sort();
    assert_eq!(uploads, ["b"]);
}

pub(crate) async fn concurrent_writers(d: &D) {
    let mut tasks = Vec::new();
    for i in 0..6u64 {
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            let f = p(&format!("cw/{i}/data"));
            let mut w = d.writer(&f, false).await.expect("writer");
            for k in 0..4u64 {
                let at = k * 100_000;
                w.write_chunks(vec![Bytes::from(pattern(i * 1_000_000 + at, 100_000))])
                    .await
                    .expect("write");
                tokio::task::yield_now().await;
            }
            w.close().await.expect("close");
            // Everyone also overwrites one shared file.
            let shared = p("cw/shared");
            d.put_content(&shared, format!("writer {i}").repeat(1000).as_bytes())
                .await
                .expect("put shared");
        }));
    }
    for t in tasks {
        t.await.expect("join");
    }
    for i in 0..6u64 {
        let f = p(&format!("cw/{i}/data"));
        let got = d.get_content(&f, 1 << 20).await.expect("get");
        assert_eq!(&got[..], &pattern(i * 1_000_000, 400_000)[..], "writer {i}");
    }
    let shared = d
        .get_content(&p("cw/shared"), 1 << 20)
        .await
        .expect("shared");
    let text = String::from_utf8(shared.to_vec()).expect("utf8");
    let first = &text[..8];
    assert_eq!(text, first.repeat(1000), "one writer's content, whole");
}

/// Racing creators of one file: exactly one wins and its content stays; a file already
/// there is never replaced.
pub(crate) async fn create_new_has_one_winner(d: &D) {
    let f = p("cn/claim");
    let mut tasks = Vec::new();
    for i in 0..8u32 {
        let d = d.clone();
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let won = d
                .create_new(&f, format!("writer {i}").as_bytes())
                .await
                .expect("create_new");
            won.then_some(i)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        winners.extend(t.await.expect("join"));
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let got = d.get_content(&f, 100).await.expect("get");
    assert_eq!(&got[..], format!("writer {}", winners[0]).as_bytes());
    d.put_content(&p("cn/put"), b"old").await.expect("put");
    assert!(!d.create_new(&p("cn/put"), b"new").await.expect("again"));
    assert_eq!(
        &d.get_content(&p("cn/put"), 10).await.expect("get")[..],
        b"old"
    );
    d.delete(&f).await.expect("delete");
    assert!(d.create_new(&f, b"after").await.expect("after delete"));
}

pub(crate) async fn content_limits(d: &D) {
    let f = p("cl/link");
    d.put_content(&f, b"sha256:0123").await.expect("put");
    assert!(matches!(
        d.get_content(&f, 5).await,
        Err(StorageError::TooLarge { limit: 5, .. })
    ));
    assert_eq!(d.get_content(&f, 11).await.expect("exact").len(), 11);
    d.check_writable().await.expect("writable");
}

/// One `#[tokio::test]` per case, each with a fresh fixture from `$make` (an async
/// expression yielding `Option<Fixture>`; `None` skips, having said why).
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::storage::conformance::conformance_suite!(@cases $make;
            empty_files,
            open_files_are_not_leftovers,
            missing_paths,
            nested_listing,
            overwrite_and_rename_over_existing,
            append_across_reopen,
            large_appends_across_reopen,
            large_streamed_write,
            reader_at_offsets,
            staged_writes_in_order,
            delete_trees,
            finds_directories_with_a_marker,
            concurrent_writers,
            create_new_has_one_winner,
            content_limits
        );
    };
    (@cases $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture: Option<$crate::storage::conformance::Fixture> = $make.await;
                if let Some(fx) = fixture {
                    $crate::storage::conformance::$case(&fx.driver).await;
                }
            }
        )*
    };
}
pub(crate) use conformance_suite;

mod filesystem {
    use super::Fixture;
    use std::sync::Arc;

    async fn make() -> Option<Fixture> {
        let dir = tempfile::tempdir().expect("tempdir");
        Some(Fixture {
            driver: Arc::new(crate::storage::FilesystemDriver::new(dir.path())),
            _guard: Box::new(dir),
        })
    }

    super::conformance_suite!(make());
}

mod memory {
    use super::Fixture;
    use std::sync::Arc;

    async fn make() -> Option<Fixture> {
        Some(Fixture {
            driver: Arc::new(crate::storage::MemoryDriver::new()),
            _guard: Box::new(()),
        })
    }

    super::conformance_suite!(make());
}
