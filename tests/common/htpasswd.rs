//! htpasswd files in every format Apache's `htpasswd` writes (apache2-utils), made by that
//! tool at test time, so the tests check our parser against the real thing rather than
//! against hashes we computed ourselves.

use std::path::Path;
use std::process::Command;

/// One user of the files: which file, the name, the password, the `htpasswd` flags that
/// hash it, and the scheme our parser names (`PasswordHash::scheme`).
pub struct ApacheUser {
    pub file: &'static str,
    pub user: &'static str,
    pub password: &'static str,
    pub flags: &'static [&'static str],
    pub scheme: &'static str,
}

pub const APACHE_USERS: &[ApacheUser] = &[
    ApacheUser {
        file: "bcrypt.htpasswd",
        user: "alice",
        password: "correct horse",
        flags: &["-B"],
        scheme: "bcrypt",
    },
    ApacheUser {
        file: "bcrypt.htpasswd",
        user: "bob",
        password: "b0b:with:colons",
        flags: &["-B", "-C", "12"],
        scheme: "bcrypt",
    },
    // The default, as in the nginx tutorial.
    ApacheUser {
        file: "apr1.htpasswd",
        user: "testuser",
        password: "testpass",
        flags: &[],
        scheme: "apr1-md5",
    },
    ApacheUser {
        file: "sha1.htpasswd",
        user: "carol",
        password: "sha1 pass",
        flags: &["-s"],
        scheme: "sha1",
    },
    ApacheUser {
        file: "crypt.htpasswd",
        user: "dave",
        password: "crypt01",
        flags: &["-d"],
        scheme: "des-crypt",
    },
    ApacheUser {
        file: "sha256.htpasswd",
        user: "erin",
        password: "sha256pass",
        flags: &["-2"],
        scheme: "sha256-crypt",
    },
    ApacheUser {
        file: "sha512.htpasswd",
        user: "frank",
        password: "sha512pass",
        flags: &["-5"],
        scheme: "sha512-crypt",
    },
];

/// The file holding every user above, with a comment and a blank line among them.
pub const MIXED: &str = "mixed.htpasswd";

/// Writes each file of `APACHE_USERS` and `MIXED` into `dir` with Apache's `htpasswd`.
pub fn write_apache_htpasswd_files(dir: &Path) {
    let mut mixed = String::from("# every format Apache's htpasswd writes\n");
    for u in APACHE_USERS {
        let out = Command::new("htpasswd")
            .arg("-nb")
            .args(u.flags)
            .args([u.user, u.password])
            .output()
            .expect("Apache's htpasswd (apt-get install apache2-utils)");
        assert!(
            out.status.success(),
            "htpasswd -nb {:?} {}: {}",
            u.flags,
            u.user,
            String::from_utf8_lossy(&out.stderr)
        );
        // `-n` prints the line and a blank line after it.
        let line = String::from_utf8(out.stdout).expect("htpasswd prints ASCII");
        let line = line.trim_end();
        let path = dir.join(u.file);
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        text.push_str(line);
        text.push('\n');
        std::fs::write(&path, text).expect("write an htpasswd file");
        mixed.push_str(line);
        mixed.push('\n');
        if u.user == "testuser" {
            mixed.push('\n');
        }
    }
    std::fs::write(dir.join(MIXED), mixed).expect("write mixed.htpasswd");
}
