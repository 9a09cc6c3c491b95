//! Generates the man pages and shell completions the packages ship, from the same clap
//! definition the binary parses (`docker_registry::cli::Cli`), so they cannot drift from
//! `--help`. Run by `packaging/build.sh`:
//!
//! `cargo run --example gen-docs -- OUT_DIR [DATE]` writes `OUT_DIR/man/*.{1,8}` and
//! `OUT_DIR/completions/{docker-registry.bash,_docker-registry,docker-registry.fish}`.
//!
//! It is an example rather than a subcommand so the shipped binary carries no generator code.
//! Every subcommand that exists gets its own page (`docker-registry-NAME`), so pages for
//! commands added later (htpasswd, garbage-collect) appear without touching this file.

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::Man;
use docker_registry::cli::Cli;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const BIN: &str = "docker-registry";

/// Commands a user (not only the administrator) runs go to section 1; the daemon and the
/// maintenance commands are section 8, as system administration commands.
fn section_of(subcommand: &str) -> &'static str {
    match subcommand {
        "htpasswd" => "1",
        _ => "8",
    }
}

/// The sections clap knows nothing about: where the files are, the variables, the signals.
const MAIN_EXTRA: &str = r#".SH FILES
.TP
.I /etc/sysconfig/docker-registry
KEY=VALUE settings read by the daemon and by the systemd unit (EnvironmentFile=):
REGISTRY_ADDRESS, REGISTRY_PORT, GUNICORN_WORKERS (worker threads), SETTINGS_FLAVOR,
DOCKER_REGISTRY_CONFIG, and registry:2's REGISTRY_<SECTION>_<KEY> variables.
.TP
.I /etc/docker-registry.yml
The YAML configuration: the legacy flavored format or a registry:2 file; see
.BR docker-registry.yml (5).
.TP
.I /var/lib/docker-registry
The storage root of the packaged service (systemd's StateDirectory=), in the registry:2
on-disk layout.
.SH ENVIRONMENT
.TP
.B DOCKER_REGISTRY_CONFIG
The YAML file to read instead of /etc/docker-registry.yml.
.TP
.B SETTINGS_FLAVOR
The flavor section of a legacy YAML file to use (default: local).
.TP
.BR REGISTRY_ADDRESS ", " REGISTRY_PORT ", " GUNICORN_WORKERS
As in /etc/sysconfig/docker-registry; the environment overrides that file.
.TP
.B REGISTRY_<SECTION>_<KEY>
registry:2's overrides, for example REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY or
REGISTRY_STORAGE_DELETE_ENABLED=true.
.TP
.B STATE_DIRECTORY
Set by systemd (StateDirectory=): the default storage root when no file names one.
.TP
.BR NOTIFY_SOCKET ", " WATCHDOG_USEC
Set by systemd for Type=notify: the daemon sends READY=1 once the port accepts connections
and storage is writable, STATUS= lines, watchdog pings and STOPPING=1.
.TP
.BR LISTEN_FDS ", " LISTEN_PID
Set by systemd for socket activation (docker-registry.socket): the daemon serves on the
socket it is given and ignores the configured address and port.
.SH SIGNALS
.TP
.B SIGHUP
Reload the configuration (systemctl reload docker-registry). A configuration with errors
is reported and the running one kept.
.TP
.BR SIGTERM ", " SIGINT
Stop accepting connections, let in-flight requests finish (up to 20 seconds) and exit 0.
.SH EXIT STATUS
0 after a clean stop; 1 when the daemon cannot start (storage not writable, port in use);
2 when the configuration has errors.
.SH EXAMPLES
.nf
systemctl enable \-\-now docker\-registry
docker\-registry config
skopeo copy \-\-dest\-tls\-verify=false oci:img:latest docker://127.0.0.1:5000/centos:latest
.fi
"#;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(out) = args.next().map(PathBuf::from) else {
        eprintln!("usage: gen-docs OUT_DIR [YYYY-MM-DD]");
        return ExitCode::from(2);
    };
    let date = args
        .next()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    match generate(&out, &date) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen-docs: cannot write into {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}

fn generate(out: &Path, date: &str) -> std::io::Result<()> {
    let man_dir = out.join("man");
    let completion_dir = out.join("completions");
    std::fs::create_dir_all(&man_dir)?;
    std::fs::create_dir_all(&completion_dir)?;

    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Building fills in the subcommands' display names (docker-registry-serve, ...).
    cmd.build();
    let version = cmd.get_version().unwrap_or_default().to_owned();
    let source = format!("{BIN} {version}");
    let manual = "docker-registry manual";

    let subcommands: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let see_also: Vec<String> = subcommands
        .iter()
        .map(|s| {
            format!(
                ".BR {BIN}\\-{} ({})",
                s.get_name(),
                section_of(s.get_name())
            )
        })
        .chain([
            ".BR docker-registry.yml (5)".to_owned(),
            ".BR systemd.exec (5)".to_owned(),
        ])
        .collect();

    let main = Man::new(cmd.clone())
        .section("8")
        .date(date)
        .source(&source)
        .manual(manual);
    let mut page = Vec::new();
    main.render_title(&mut page)?;
    main.render_name_section(&mut page)?;
    main.render_synopsis_section(&mut page)?;
    main.render_description_section(&mut page)?;
    main.render_options_section(&mut page)?;
    main.render_subcommands_section(&mut page)?;
    page.write_all(MAIN_EXTRA.as_bytes())?;
    write_see_also(&mut page, &see_also)?;
    main.render_version_section(&mut page)?;
    std::fs::write(man_dir.join(main.get_filename()), page)?;

    for sub in subcommands {
        let section = section_of(sub.get_name());
        let man = Man::new(sub)
            .section(section)
            .date(date)
            .source(&source)
            .manual(manual);
        let mut page = Vec::new();
        man.render(&mut page)?;
        write_see_also(&mut page, &[".BR docker-registry (8)".to_owned()])?;
        std::fs::write(man_dir.join(man.get_filename()), page)?;
    }

    for (shell, file) in [
        (Shell::Bash, "docker-registry.bash"),
        (Shell::Zsh, "_docker-registry"),
        (Shell::Fish, "docker-registry.fish"),
    ] {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), BIN, &mut script);
        std::fs::write(completion_dir.join(file), script)?;
    }
    Ok(())
}

fn write_see_also(page: &mut Vec<u8>, refs: &[String]) -> std::io::Result<()> {
    writeln!(page, ".SH \"SEE ALSO\"")?;
    for (i, r) in refs.iter().enumerate() {
        // `.BR name (n)` followed by a comma on all but the last reference.
        let sep = if i + 1 < refs.len() { "," } else { "" };
        writeln!(page, "{r}{sep}")?;
    }
    Ok(())
}
