//! Parser entry points for the fuzz targets in `fuzz/` that the public API does not reach:
//! the HTTP layer's `Range` and `Content-Range` parsers. Built only with the `fuzzing`
//! feature, which only the fuzz crate enables.

pub use crate::api::range::{parse_content_range, parse_range, RangeRequest};
