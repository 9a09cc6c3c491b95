//! Editing an htpasswd file as `docker-registry htpasswd` does: comments and the other users'
//! lines stay as they are and where they are, an updated user keeps its place, and the file is
//! replaced atomically (a temporary file beside it, with its mode and owner, renamed over it),
//! so a registry re-reading it never sees half a file. A new file is created mode 0640.

use super::AuthError;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// An htpasswd file's lines, read for editing.
#[derive(Debug, Clone)]
pub struct UsersFile {
    path: PathBuf,
    lines: Vec<String>,
}

impl UsersFile {
    /// The file as it is on disk.
    pub fn read(path: &Path) -> Result<UsersFile, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            AuthError(format!(
                "cannot read {}: {e}{}",
                path.display(),
                if e.kind() == std::io::ErrorKind::NotFound {
                    " (use -c to create it)"
                } else {
                    ""
                }
            ))
        })?;
        Ok(UsersFile {
            path: path.to_path_buf(),
            lines: text.lines().map(str::to_string).collect(),
        })
    }

    /// A file with no lines yet, to replace whatever is at `path`.
    pub fn empty(path: &Path) -> UsersFile {
        UsersFile {
            path: path.to_path_buf(),
            lines: Vec::new(),
        }
    }

    /// Removes the user's lines; whether it had any.
    pub fn remove(&mut self, user: &str) -> bool {
        let before = self.lines.len();
        self.lines.retain(|l| line_user(l) != Some(user));
        self.lines.len() != before
    }

    /// Sets the user's entry to `hash`, in the place of its first line if it had one; whether
    /// it had one (an update rather than an addition).
    pub fn set(&mut self, user: &str, hash: &str) -> bool {
        let place = self.lines.iter().position(|l| line_user(l) == Some(user));
        let found = self.remove(user);
        let entry = format!("{user}:{hash}");
        match place {
            Some(p) => self.lines.insert(p.min(self.lines.len()), entry),
            None => self.lines.push(entry),
        }
        found
    }

    /// Replaces the file with these lines; `create`: it need not exist yet. Returns the
    /// warnings (an owner that could not be kept).
    pub fn write(&self, create: bool) -> Result<Vec<String>, AuthError> {
        let file = self.path.as_path();
        let old = std::fs::metadata(file).ok();
        if old.is_none() && !create {
            return Err(AuthError(format!(
                "{} does not exist (use -c to create it)",
                file.display()
            )));
        }
        let dir = match file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
        let mut warnings = Vec::new();
        let result = (|| -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            let mode = old.as_ref().map(|m| m.mode() & 0o7777).unwrap_or(0o640);
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
            if let Some(m) = &old {
                // Keep root:docker-registry (the package's choice) when root edits the file.
                if let Err(e) = std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid())) {
                    if m.uid() != nix::unistd::getuid().as_raw()
                        || e.kind() != std::io::ErrorKind::PermissionDenied
                    {
                        return Err(e);
                    }
                    // Our own file with a group we are not in: the group cannot be kept.
                    warnings.push(format!("cannot keep the group of {}: {e}", file.display()));
                }
            }
            for l in &self.lines {
                writeln!(f, "{l}")?;
            }
            f.sync_all()?;
            std::fs::rename(&tmp, file)?;
            if let Ok(d) = std::fs::File::open(&dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok(warnings),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(AuthError(format!("cannot write {}: {e}", file.display())))
            }
        }
    }
}

/// The user a line is for; `None` for a comment or a line without a colon.
fn line_user(line: &str) -> Option<&str> {
    let t = line.trim_start();
    if t.starts_with('#') {
        return None;
    }
    t.split_once(':').map(|(u, _)| u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_keeps_its_place_and_other_lines_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users");
        std::fs::write(&path, "# comment\nalice:old\nbob:b\nalice:dup\n").expect("write");
        let mut f = UsersFile::read(&path).expect("reads");
        assert!(f.set("alice", "new"));
        assert!(!f.set("carol", "c"));
        assert!(!f.remove("dave"));
        assert!(f.remove("bob"));
        assert!(f.write(false).expect("writes").is_empty());
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "# comment\nalice:new\ncarol:c\n"
        );
    }

    #[test]
    fn a_missing_file_says_to_create_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users");
        let e = UsersFile::read(&path).expect_err("missing");
        assert!(e.0.ends_with("(use -c to create it)"), "{e}");
        let e = UsersFile::empty(&path).write(false).expect_err("missing");
        assert!(e.0.ends_with("does not exist (use -c to create it)"), "{e}");
        assert!(UsersFile::empty(&path)
            .write(true)
            .expect("creates")
            .is_empty());
        let mode = std::fs::metadata(&path).expect("exists").mode() & 0o777;
        assert_eq!(mode, 0o640);
    }
}
