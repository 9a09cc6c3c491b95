//! The `docker-registry` binary (also installed as `docker-registry-htpasswd`); the commands
//! are in the library's `cli` module.

fn main() -> std::process::ExitCode {
    docker_registry::cli::main(std::env::args_os().collect())
}
