//! HTTP byte ranges: the `Range` of a blob `GET` and the `Content-Range` of a chunked upload
//! `PATCH`. Both headers come straight from clients, so the parsers never trust a number:
//! every position is checked against the blob or upload it names before it is used.

/// A satisfiable byte range `[start, end]` (inclusive) of a blob of `size` bytes.
#[derive(Debug, PartialEq)]
pub enum RangeRequest {
    Full,
    Part(u64, u64),
    Unsatisfiable,
}

pub fn parse_range(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(h) = header else {
        return RangeRequest::Full;
    };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        // Multiple ranges: serving the whole blob is allowed and simpler for clients.
        return RangeRequest::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix: the last N bytes.
        return match b.parse::<u64>() {
            Ok(0) | Err(_) => RangeRequest::Unsatisfiable,
            Ok(n) if size == 0 => {
                let _ = n;
                RangeRequest::Unsatisfiable
            }
            Ok(n) => RangeRequest::Part(size.saturating_sub(n), size - 1),
        };
    }
    let Ok(start) = a.parse::<u64>() else {
        return RangeRequest::Full;
    };
    if start >= size {
        return RangeRequest::Unsatisfiable;
    }
    let end = if b.is_empty() {
        size - 1
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e.min(size - 1),
            _ => return RangeRequest::Unsatisfiable,
        }
    };
    RangeRequest::Part(start, end)
}

/// `Content-Range: <start>-<end>` (also `bytes <start>-<end>/<total>`), inclusive; `None`
/// when it is malformed, `end < start`, or the length `end - start + 1` does not fit a u64
/// (`0-18446744073709551615`), so callers may compute the length without overflow.
pub fn parse_content_range(v: &str) -> Option<(u64, u64)> {
    let v = v.trim();
    let v = v.strip_prefix("bytes").map(str::trim_start).unwrap_or(v);
    let v = v.strip_prefix('=').unwrap_or(v);
    let v = v.split('/').next().unwrap_or(v);
    let (a, b) = v.split_once('-')?;
    let start = a.trim().parse::<u64>().ok()?;
    let end = b.trim().parse::<u64>().ok()?;
    (end >= start && (end - start).checked_add(1).is_some()).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), RangeRequest::Full);
        assert_eq!(parse_range(Some("bytes=0-4"), 10), RangeRequest::Part(0, 4));
        assert_eq!(parse_range(Some("bytes=5-"), 10), RangeRequest::Part(5, 9));
        assert_eq!(parse_range(Some("bytes=-3"), 10), RangeRequest::Part(7, 9));
        assert_eq!(
            parse_range(Some("bytes=8-100"), 10),
            RangeRequest::Part(8, 9)
        );
        assert_eq!(
            parse_range(Some("bytes=10-"), 10),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(
            parse_range(Some("bytes=5-2"), 10),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), RangeRequest::Full);
        assert_eq!(parse_range(Some("items=0-1"), 10), RangeRequest::Full);
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-9"), Some((0, 9)));
        assert_eq!(parse_content_range("bytes 10-19/100"), Some((10, 19)));
        assert_eq!(parse_content_range("bytes=5-5"), Some((5, 5)));
        assert_eq!(parse_content_range("9-0"), None);
        assert_eq!(parse_content_range("1-x"), None);
        assert_eq!(parse_content_range("-"), None);
    }

    #[test]
    fn content_range_whose_length_overflows_a_u64_is_malformed() {
        assert_eq!(parse_content_range("0-18446744073709551615"), None);
        assert_eq!(
            parse_content_range("1-18446744073709551615"),
            Some((1, u64::MAX))
        );
    }
}
