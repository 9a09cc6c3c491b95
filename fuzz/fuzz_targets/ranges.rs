//! The HTTP byte-range parsers: `Range` on a blob `GET` (against blobs of several sizes) and
//! `Content-Range` on an upload `PATCH`.
#![no_main]

use docker_registry::fuzzing::{parse_content_range, parse_range, RangeRequest};
use libfuzzer_sys::fuzz_target;

const SIZES: [u64; 7] = [0, 1, 2, 10, 4096, u64::MAX - 1, u64::MAX];

fuzz_target!(|bytes: &[u8]| {
    let Ok(header) = std::str::from_utf8(bytes) else {
        return;
    };
    for size in SIZES {
        match parse_range(Some(header), size) {
            // What the response's Content-Length and Content-Range are computed from.
            RangeRequest::Part(first, last) => {
                assert!(
                    first <= last && last < size,
                    "{header:?} on {size}: {first}-{last}"
                );
            }
            RangeRequest::Full | RangeRequest::Unsatisfiable => {}
        }
    }
    if let Some((start, end)) = parse_content_range(header) {
        assert!(start <= end, "{header:?}: {start}-{end}");
        assert!(
            (end - start).checked_add(1).is_some(),
            "{header:?}: length overflows"
        );
    }
});
