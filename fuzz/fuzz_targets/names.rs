//! Repository names, tags, references and digests (`registry::names`, `registry::digest`):
//! every value that reaches a storage path goes through these parsers.
#![no_main]

use docker_registry::registry::names::{truncate, MAX_NAME_LEN};
use docker_registry::registry::{Digest, Reference, RepositoryName, Tag};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(s) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Ok(name) = s.parse::<RepositoryName>() {
        assert_eq!(name.as_str(), s);
        assert!(s.len() <= MAX_NAME_LEN);
        // Nothing that could climb out of, or alias, a repository directory.
        for c in name.components() {
            assert!(!c.is_empty() && c != "." && c != "..", "component {c:?}");
            assert!(c
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-')));
        }
    }
    if let Ok(tag) = s.parse::<Tag>() {
        assert_eq!(tag.as_str(), s);
        assert!(s.len() <= 128 && !s.starts_with(['.', '-']));
        assert!(!s.contains(['/', '\0', ':']));
    }
    if let Ok(digest) = s.parse::<Digest>() {
        assert_eq!(digest.to_string(), s);
        assert!(digest
            .hex()
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(format!("{}:{}", digest.algorithm(), digest.hex()), s);
    }
    match s.parse::<Reference>() {
        Ok(Reference::Tag(t)) => assert_eq!(t.as_str(), s),
        Ok(Reference::Digest(d)) => assert_eq!(d.to_string(), s),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    // Untrusted text echoed in messages is cut at a character boundary.
    let max = bytes.first().map_or(0, |&b| usize::from(b));
    let cut = truncate(s, max);
    if s.len() <= max {
        assert_eq!(cut, s);
    } else {
        let kept = cut
            .strip_suffix('…')
            .unwrap_or_else(|| panic!("{cut:?} not marked as cut"));
        assert!(kept.len() <= max && s.starts_with(kept));
    }
});
