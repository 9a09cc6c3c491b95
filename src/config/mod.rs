//! One configuration model, built from everything our users already write.
//!
//! Precedence, low to high: built-in defaults; the YAML file (`DOCKER_REGISTRY_CONFIG`, the
//! legacy flavored format or a `registry:2` file); `/etc/sysconfig/docker-registry`; the
//! process environment (including `registry:2`'s `REGISTRY_<SECTION>_<KEY>` overrides);
//! command-line flags. Every value remembers where it came from ([`Source`]) so that
//! `docker-registry config` can show it and every error can name the file, line and key.
//!
//! Every setting is one row of the table in `table.rs`: its key path in a registry:2 file,
//! its keys in the flavored file, its variables, its flag, its kind and default, and the
//! [`Config`] field it fills. The files (`files.rs`), the variables and flags (`load.rs`),
//! `config` (`describe.rs`) and `--help` (`flags.rs`) all go through it; `model.rs` resolves
//! what several settings decide together.
//!
//! Rules worth knowing:
//! * The listening address is two settings, host and port. `http.addr` (and
//!   `REGISTRY_HTTP_ADDR`) set both; `REGISTRY_ADDRESS` and `REGISTRY_PORT` set one each, so a
//!   `registry:2` file's `http.addr: 127.0.0.1:6000` with `REGISTRY_PORT=7000` in the
//!   sysconfig file listens on `127.0.0.1:7000`. Within one level `REGISTRY_ADDRESS` /
//!   `REGISTRY_PORT` refine `REGISTRY_HTTP_ADDR`.
//! * systemd's `EnvironmentFile=` exports the sysconfig file's variables into the process
//!   environment. A process variable whose value equals the file's is taken as the file's (its
//!   precedence and its `file:line`), so a drop-in's `REGISTRY_HTTP_ADDR` still wins over the
//!   file's `REGISTRY_PORT=5000`.
//! * The sysconfig file's variables (and the process environment over them) are what
//!   `_env:NAME` values of the YAML file read.
//! * `SETTINGS_FLAVOR` defaults to `local` (the old Python registry used `dev` without it).
//! * Settings combine key by key across levels, groups too (`storage.maintenance.gc.*`): an
//!   interval of 0 turns scheduled collection off, so the environment can undo a file's
//!   schedule. Retention rules are a list and come only from the YAML file, as a whole.
//! * Authentication: `auth.htpasswd` or `auth.token` (`REGISTRY_AUTH`); without a method
//!   named, the htpasswd keys alone choose htpasswd and the token keys alone token (as
//!   registry:2 reads its `auth:` block), both at once is an error. `auth: token` with a
//!   signing key (`auth.token.signingkey`) is the built-in endpoint, whose users are
//!   `auth.token.htpasswd`. TLS keys and the flags over them combine key by key, so a file's
//!   `http.tls.clientcas` stays when `--tls-cert` replaces its certificate.
//! * When nothing names a storage directory: systemd's `STATE_DIRECTORY`, else a per-user
//!   directory.

mod describe;
mod files;
mod flags;
mod kinds;
mod lists;
mod load;
mod model;
mod notifications;
mod proxy;
mod retention;
mod setting;
mod source;
pub mod sysconfig;
mod table;
pub mod yaml;

pub use flags::SettingFlags;
pub use load::LoadOptions;
pub use model::*;
pub use setting::Setting;
pub use source::{ConfigError, ConfigErrors, Source, Sourced};
pub use table::{Config, Connections, GcConfig, ProxySettings, UploadPurging, SETTINGS};

#[cfg(test)]
mod tests;
