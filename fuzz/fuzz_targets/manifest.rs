//! The manifest and index parser (`registry::manifest`), given any bytes under each
//! Content-Type a client may send with a manifest `PUT`.
#![no_main]

use docker_registry::registry::manifest::{
    self, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST,
};
use docker_registry::registry::Digest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let detected = manifest::detect_media_type(bytes);
    let generic = manifest::parse(bytes, "");
    for content_type in [
        detected.as_str(),
        "application/json",
        OCI_MANIFEST,
        OCI_INDEX,
        DOCKER_MANIFEST,
        DOCKER_LIST,
    ] {
        if let Ok(parsed) = manifest::parse(bytes, content_type) {
            if content_type != "application/json" {
                assert_eq!(parsed.media_type, content_type);
            }
            // Descriptors are stored and served by their digest's text: it must read back.
            let descriptors = parsed.blobs.iter().chain(&parsed.manifests);
            for d in descriptors.chain(&parsed.subject) {
                assert_eq!(
                    d.digest.to_string().parse::<Digest>().as_ref(),
                    Ok(&d.digest)
                );
            }
        }
    }
    // A manifest pushed without a Content-Type is stored under the media type it was read
    // as, and must validate the same way when that type is named.
    if let Ok(parsed) = generic {
        let again = manifest::parse(bytes, &parsed.media_type)
            .unwrap_or_else(|e| panic!("valid without a Content-Type, not with its own: {e:?}"));
        assert_eq!(again.blobs, parsed.blobs);
        assert_eq!(again.manifests, parsed.manifests);
    }
});
