//! htpasswd files (`auth::htpasswd`): every line format Apache's `htpasswd` writes, and
//! whatever else an admin's editor leaves in the file.
#![no_main]

use docker_registry::auth::htpasswd::{Htpasswd, PasswordHash};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let Ok(file) = Htpasswd::parse(text, Path::new("fuzz.htpasswd")) else {
        return;
    };
    for line in text.lines().map(str::trim) {
        let Some((user, hash)) = line.split_once(':').filter(|_| !line.starts_with('#')) else {
            continue;
        };
        assert!(
            file.contains(user),
            "{user:?} was accepted but is not a user"
        );
        let parsed = PasswordHash::parse(hash.trim()).expect("a hash the file accepted");
        // Verify the cheap schemes only: bcrypt and SHA-crypt cost what their line asks for,
        // which is the point of them. A hash verifies with a wrong password only by chance.
        let cheap = match &parsed {
            PasswordHash::Bcrypt(h) => h.get(4..7) == Some("04$"),
            PasswordHash::Sha256Crypt(_) | PasswordHash::Sha512Crypt(_) => false,
            PasswordHash::Apr1 { .. } | PasswordHash::Sha1(_) | PasswordHash::DesCrypt(_) => true,
        };
        if cheap {
            let _ = parsed.verify(hash.as_bytes());
        }
    }
});
