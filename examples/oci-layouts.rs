//! Writes the test images as OCI image layouts: small images to push to a registry with
//! skopeo, the same bytes (and digests) on every run.
//!
//! `cargo run --example oci-layouts -- DIR` writes `DIR/a`, `DIR/b`, `DIR/multi` and `DIR/c`
//! (see `tests/common/images.rs` for what each holds) and prints, one per line, the
//! `oci:DIR/NAME:REFERENCE` to give skopeo and the digest it names, e.g.
//!
//! ```text
//! skopeo copy --dest-tls-verify=false oci:DIR/a:latest docker://localhost:5000/tiny:latest
//! ```
//!
//! The package tests (`packaging/test.sh`) push these images into the installed daemon.

#[path = "../tests/common/images.rs"]
mod images;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: cargo run --example oci-layouts -- DIR");
        return ExitCode::from(2);
    };
    let dir = PathBuf::from(dir);
    match images::write_layouts(&dir) {
        Ok(layouts) => {
            for l in layouts {
                let at = dir.join(l.name);
                println!("oci:{}:{} {}", at.display(), l.reference, l.digest());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "oci-layouts: cannot write the layouts under {}: {e}",
                dir.display()
            );
            ExitCode::FAILURE
        }
    }
}
