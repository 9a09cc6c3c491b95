//! `docker-registry htpasswd` (also installed as `docker-registry-htpasswd`): manages an
//! htpasswd file with Apache's flags, so the commands in every tutorial keep working. The
//! hashes are `auth::htpasswd`'s, the file editing `auth::users_file`'s; this is the flags,
//! the password prompt and the messages.
//!
//! Differences from Apache's tool, on purpose: bcrypt is the default (Apache defaults to
//! APR1-MD5) with cost 10 (Apache's bcrypt default is 5, too cheap today; our registry caches
//! verified credentials, so the cost is paid once per login, not per request); the file is
//! replaced atomically, keeping its mode and owner; new files are created mode 0640.
//! Exit codes follow Apache's: 1 file problem, 2 usage, 3 password mismatch or verification
//! failed, 5 input too long, 6 invalid user name, 7 not a valid htpasswd file.

use crate::auth::htpasswd::{hash_password, HashScheme, Htpasswd, PasswordHash};
use crate::auth::users_file::UsersFile;
use clap::{Args, Parser};
use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// bcrypt hashes at most this many bytes of a password and ignores the rest.
const BCRYPT_MAX_PASSWORD: usize = 72;
/// The default bcrypt cost (see the module documentation for why not Apache's 5).
pub const DEFAULT_BCRYPT_COST: u32 = 10;
const MAX_INPUT: usize = 255;

#[derive(Parser, Debug, Clone, Default)]
#[command(
    name = "docker-registry htpasswd",
    version,
    about = "Manage the users of an htpasswd file (Apache htpasswd's flags; bcrypt by default)",
    override_usage = "docker-registry htpasswd [-cimBsd25D] [-C cost] FILE USER\n       \
        docker-registry htpasswd -b[cmBs25D] [-C cost] FILE USER PASSWORD\n       \
        docker-registry htpasswd -n[imBs25] [-C cost] USER\n       \
        docker-registry htpasswd -nb[mBs25] [-C cost] USER PASSWORD\n       \
        docker-registry htpasswd -v[ib] FILE USER [PASSWORD]"
)]
pub struct HtpasswdArgs {
    /// Create the file (replacing an existing one)
    #[arg(short = 'c')]
    pub create: bool,
    /// Print the result on standard output instead of updating a file
    #[arg(short = 'n')]
    pub print: bool,
    /// Take the password from the command line (visible to other users: prefer -i)
    #[arg(short = 'b')]
    pub batch: bool,
    /// Read the password from standard input, without asking twice
    #[arg(short = 'i')]
    pub stdin: bool,
    /// Delete the user
    #[arg(short = 'D')]
    pub delete: bool,
    /// Verify the user's password
    #[arg(short = 'v')]
    pub verify: bool,
    /// bcrypt (the default)
    #[arg(short = 'B')]
    pub bcrypt: bool,
    /// APR1-MD5 (Apache's default; weak)
    #[arg(short = 'm')]
    pub md5: bool,
    /// SHA-1 (insecure, for old clients only)
    #[arg(short = 's')]
    pub sha1: bool,
    /// SHA-256 crypt
    #[arg(short = '2')]
    pub sha256: bool,
    /// SHA-512 crypt
    #[arg(short = '5')]
    pub sha512: bool,
    /// bcrypt cost, 4 to 31
    #[arg(short = 'C', value_name = "COST", default_value_t = DEFAULT_BCRYPT_COST)]
    pub cost: u32,
    /// FILE USER [PASSWORD], or USER [PASSWORD] with -n
    #[arg(value_name = "ARGS", num_args = 1..=3)]
    pub args: Vec<String>,
}

// What the main parser shows of `htpasswd` (for `--help`, the man page and completions);
// the arguments are parsed by `HtpasswdArgs`, apart, because Apache's `-c` (create) would
// clash with the global `-c` (config file).
/// Manage an htpasswd file with Apache htpasswd's flags (bcrypt by default); also
/// installed as docker-registry-htpasswd. See `docker-registry htpasswd --help`
#[derive(Args, Debug, Clone, Default)]
#[command(disable_help_flag = true)]
pub struct HtpasswdPassthrough {
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<String>,
}

/// `docker-registry htpasswd ARGS` and `docker-registry-htpasswd ARGS`.
pub(super) fn run(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let argv = std::iter::once("docker-registry htpasswd".into()).chain(args);
    match HtpasswdArgs::try_parse_from(argv) {
        Ok(a) => ExitCode::from(execute(a)),
        Err(e) => {
            let _ = e.print();
            ExitCode::from(if e.use_stderr() { 2 } else { 0 })
        }
    }
}

/// A failure with the exit code Apache's htpasswd uses for it.
#[derive(Debug)]
pub struct CommandError {
    pub code: u8,
    pub message: String,
}

fn fail(code: u8, message: impl Into<String>) -> CommandError {
    CommandError {
        code,
        message: message.into(),
    }
}

/// Runs the command; returns the exit code (messages go to stderr, `-n` output to stdout).
fn execute(args: HtpasswdArgs) -> u8 {
    match edit(&args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("docker-registry htpasswd: {}", e.message);
            e.code
        }
    }
}

fn scheme(a: &HtpasswdArgs) -> Result<HashScheme, CommandError> {
    let chosen = [a.bcrypt, a.md5, a.sha1, a.sha256, a.sha512]
        .iter()
        .filter(|x| **x)
        .count();
    if chosen > 1 {
        return Err(fail(2, "choose one of -B, -m, -s, -2, -5"));
    }
    if !(4..=31).contains(&a.cost) {
        return Err(fail(2, "the bcrypt cost (-C) must be between 4 and 31"));
    }
    Ok(if a.md5 {
        HashScheme::Apr1
    } else if a.sha1 {
        HashScheme::Sha1
    } else if a.sha256 {
        HashScheme::Sha256Crypt
    } else if a.sha512 {
        HashScheme::Sha512Crypt
    } else {
        HashScheme::Bcrypt(a.cost)
    })
}

fn edit(a: &HtpasswdArgs) -> Result<(), CommandError> {
    let scheme = scheme(a)?;
    let takes_password = check_arguments(a)?;
    let (file, rest) = if a.print {
        (None, &a.args[..])
    } else {
        (Some(PathBuf::from(&a.args[0])), &a.args[1..])
    };
    let user = &rest[0];
    check_user(user)?;
    if a.delete {
        return delete_user(file.as_deref().unwrap_or(Path::new("")), user);
    }
    let password = if takes_password {
        rest[1].clone().into_bytes()
    } else {
        read_password(a.stdin, a.verify)?
    };
    if password.len() > MAX_INPUT {
        return Err(fail(
            5,
            format!("the password must be at most {MAX_INPUT} bytes"),
        ));
    }
    if a.verify {
        return verify_user(file.as_deref().unwrap_or(Path::new("")), user, &password);
    }
    let hash = new_hash(&password, scheme)?;
    let Some(file) = file else {
        println!("{user}:{hash}");
        println!();
        return Ok(());
    };
    let mut users = if a.create {
        UsersFile::empty(&file)
    } else {
        UsersFile::read(&file)?
    };
    let found = users.set(user, &hash);
    save(&users, a.create)?;
    eprintln!(
        "{} password for user {user}",
        if found { "Updating" } else { "Adding" }
    );
    Ok(())
}

/// The options go together and the arguments are as many as they ask for; whether the
/// password is one of them (`-b`).
fn check_arguments(a: &HtpasswdArgs) -> Result<bool, CommandError> {
    if a.batch && a.stdin {
        return Err(fail(2, "-b and -i cannot be combined"));
    }
    if a.print && (a.create || a.delete || a.verify) {
        return Err(fail(2, "-n cannot be combined with -c, -D or -v"));
    }
    if a.create && (a.delete || a.verify) {
        return Err(fail(2, "-c cannot be combined with -D or -v"));
    }
    let takes_password = a.batch && !a.delete;
    let expected = usize::from(!a.print) + 1 + usize::from(takes_password);
    if a.args.len() != expected {
        return Err(fail(
            2,
            format!(
                "expected {expected} arguments, got {}; see --help",
                a.args.len()
            ),
        ));
    }
    Ok(takes_password)
}

/// A user name the file can hold.
fn check_user(user: &str) -> Result<(), CommandError> {
    if user.contains(':') {
        return Err(fail(6, "the user name cannot contain a colon"));
    }
    if user.is_empty() || user.len() > MAX_INPUT {
        return Err(fail(
            5,
            format!("the user name must be 1 to {MAX_INPUT} bytes"),
        ));
    }
    Ok(())
}

/// `-D`: removes the user; one not there is said, and not a failure (as Apache's does).
fn delete_user(file: &Path, user: &str) -> Result<(), CommandError> {
    let mut users = UsersFile::read(file)?;
    if !users.remove(user) {
        eprintln!("User {user} not found");
        return Ok(());
    }
    save(&users, false)?;
    eprintln!("Deleting password for user {user}");
    Ok(())
}

/// `-v`: the password must be the user's.
fn verify_user(file: &Path, user: &str, password: &[u8]) -> Result<(), CommandError> {
    let users = Htpasswd::load(file).map_err(|e| fail(7, e.to_string()))?;
    if !users.contains(user) {
        return Err(fail(3, format!("User {user} not found")));
    }
    if users.verify(user, password) {
        eprintln!("Password for user {user} correct.");
        return Ok(());
    }
    Err(fail(3, "password verification failed"))
}

/// The password hashed with `scheme`, checked to verify before anything is written; a
/// warning when bcrypt would ignore part of it.
fn new_hash(password: &[u8], scheme: HashScheme) -> Result<String, CommandError> {
    if matches!(scheme, HashScheme::Bcrypt(_)) && password.len() > BCRYPT_MAX_PASSWORD {
        eprintln!(
            "warning: bcrypt uses only the first {BCRYPT_MAX_PASSWORD} bytes of a password; \
             the last {} of this one's {} bytes will not be checked. Use a shorter password, \
             or SHA-512 crypt (-5), which uses all of it.",
            password.len() - BCRYPT_MAX_PASSWORD,
            password.len()
        );
    }
    let hash = hash_password(password, scheme).map_err(|e| fail(1, e))?;
    // Never write what we could not read back.
    if !PasswordHash::parse(&hash).is_ok_and(|h| h.verify(password)) {
        return Err(fail(
            1,
            "internal error: the new hash does not verify; nothing written",
        ));
    }
    Ok(hash)
}

fn save(users: &UsersFile, create: bool) -> Result<(), CommandError> {
    for w in users.write(create)? {
        eprintln!("warning: {w}");
    }
    Ok(())
}

impl From<crate::auth::AuthError> for CommandError {
    fn from(e: crate::auth::AuthError) -> CommandError {
        fail(1, e.0)
    }
}

/// A password from standard input (`-i`: one line) or the terminal (asked twice, no echo).
fn read_password(from_stdin: bool, verify: bool) -> Result<Vec<u8>, CommandError> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().take_line(&mut line).map_err(|e| {
            fail(
                1,
                format!("cannot read the password from standard input: {e}"),
            )
        })?;
        return Ok(line.into_bytes());
    }
    let first = prompt(if verify {
        "Enter password: "
    } else {
        "New password: "
    })?;
    if verify {
        return Ok(first);
    }
    let second = prompt("Re-type new password: ")?;
    if first != second {
        return Err(fail(3, "password verification error"));
    }
    Ok(first)
}

trait TakeLine {
    fn take_line(&mut self, out: &mut String) -> std::io::Result<()>;
}

impl<R: BufRead> TakeLine for R {
    /// One line without its end (`\n` or `\r\n`).
    fn take_line(&mut self, out: &mut String) -> std::io::Result<()> {
        self.read_line(out)?;
        while out.ends_with('\n') || out.ends_with('\r') {
            out.pop();
        }
        Ok(())
    }
}

/// Asks on the terminal with echo off, restoring it whatever happens.
fn prompt(text: &str) -> Result<Vec<u8>, CommandError> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|e| {
            fail(
                2,
                format!("no terminal to ask for the password ({e}): use -i or -b"),
            )
        })?;
    let saved =
        tcgetattr(&tty).map_err(|e| fail(1, format!("cannot read terminal settings: {e}")))?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    let _ = tcsetattr(&tty, SetArg::TCSANOW, &quiet);
    let mut w = &tty;
    let _ = w.write_all(text.as_bytes());
    let mut line = String::new();
    let read = std::io::BufReader::new(&tty).take_line(&mut line);
    let _ = tcsetattr(&tty, SetArg::TCSANOW, &saved);
    let _ = w.write_all(b"\n");
    read.map_err(|e| fail(1, format!("cannot read the password: {e}")))?;
    Ok(line.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn args(list: &[&str]) -> HtpasswdArgs {
        HtpasswdArgs::try_parse_from(std::iter::once("htpasswd").chain(list.iter().copied()))
            .expect("parses")
    }

    #[test]
    fn apache_style_combined_flags_parse() {
        let a = args(&["-cbB", "-C", "5", "f", "u", "p"]);
        assert!(a.create && a.batch && a.bcrypt);
        assert_eq!(a.cost, 5);
        assert_eq!(a.args, ["f", "u", "p"]);
        let n = args(&["-nb5", "u", "p"]);
        assert!(n.print && n.batch && n.sha512);
        assert_eq!(args(&["f", "u"]).cost, DEFAULT_BCRYPT_COST);
    }

    #[test]
    fn create_update_verify_delete_keep_other_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("users");
        let fs = f.to_str().expect("utf-8");
        assert_eq!(execute(args(&["-cbB", "-C", "4", fs, "alice", "one"])), 0);
        assert_eq!(std::fs::metadata(&f).expect("exists").mode() & 0o777, 0o640);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let mut text = std::fs::read_to_string(&f).expect("read");
        text.insert_str(0, "# kept comment\n");
        std::fs::write(&f, text).expect("write");
        assert_eq!(execute(args(&["-bm", fs, "bob", "two"])), 0);
        assert_eq!(execute(args(&["-b", "-C", "4", fs, "alice", "three"])), 0);
        assert_eq!(execute(args(&["-vb", fs, "alice", "three"])), 0);
        assert_eq!(execute(args(&["-vb", fs, "alice", "one"])), 3);
        assert_eq!(execute(args(&["-vb", fs, "bob", "two"])), 0);
        let text = std::fs::read_to_string(&f).expect("read");
        assert!(text.starts_with("# kept comment\nalice:$2y$04$"), "{text}");
        assert_eq!(std::fs::metadata(&f).expect("exists").mode() & 0o777, 0o600);
        assert_eq!(execute(args(&["-D", fs, "alice"])), 0);
        assert_eq!(execute(args(&["-vb", fs, "alice", "three"])), 3);
        assert_eq!(execute(args(&["-b", fs, "bad:name", "x"])), 6);
        assert_eq!(execute(args(&["-b", "/nonexistent/x", "u", "x"])), 1);
        assert_eq!(execute(args(&["-bBm", fs, "u", "x"])), 2);
    }
}
