//! How long a client may keep a connection without making progress, and how many
//! connections the daemon holds at once, in all and per client address.
//!
//! The numbers are bounded by the open-file limit (RLIMIT_NOFILE, systemd's `LimitNOFILE=`):
//! every connection is a descriptor, and a request usually opens a storage file besides. The
//! daemon keeps [`RESERVED_FDS`] for itself (the admin socket, logs, collection, the
//! refusals of connections past the limit) and admits no more connections than leave one
//! more descriptor each for storage, so clients past the limit get an answer instead of an
//! `accept` that fails with EMFILE and a kernel backlog that fills up while every client
//! waits.

use crate::config::Connections;
use std::time::Duration;

/// Descriptors kept out of the connection budget: standard streams, the runtime's epoll and
/// wake-up descriptors, the listening and admin sockets, syslog, the collection's directory
/// walks and authentication files (64), and the refusals in progress
/// ([`REFUSALS_AT_ONCE`]).
pub const RESERVED_FDS: u64 = 64 + REFUSALS_AT_ONCE as u64;
/// Connections past the limit answered (or waiting for an idle connection to make room) at
/// once; more are closed without an answer.
pub const REFUSALS_AT_ONCE: usize = 64;
/// The most connections admitted when no maximum is configured, however high the
/// open-file limit: enough for a busy registry, and a bound on memory.
const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// How the daemon applies the connection settings (`http.timeouts.*`,
/// `http.connections.*`, see the configuration's table). Their defaults suit a 1 GiB layer
/// pushed over a slow link: only a client that sends nothing at all for a while is cut off,
/// never a slow one.
impl Connections {
    /// How often a connection's watchdog looks at it: often enough that no deadline is
    /// missed by more than the time it takes to notice it.
    pub fn check_every(&self) -> Duration {
        self.header_timeout
            .min(self.body_idle_timeout)
            .min(self.idle_timeout)
            .max(Duration::from_millis(100))
    }

    /// The connections admitted at once with `open_files` descriptors: the configured
    /// maximum, or the default; never more than the descriptors allow. A configured maximum
    /// that does not fit is lowered with a warning.
    pub fn max_connections(&self, open_files: u64) -> usize {
        let fit = usize::try_from(open_files.saturating_sub(RESERVED_FDS) / 2)
            .unwrap_or(usize::MAX)
            .max(1);
        match self.max {
            0 => fit.min(DEFAULT_MAX_CONNECTIONS),
            wanted if wanted > fit => {
                tracing::warn!(
                    "at most {fit} connections fit the open-file limit of {open_files} (two descriptors each, {RESERVED_FDS} kept for the daemon); \
                     serving {fit} instead of the {wanted} of http.connections.max: raise LimitNOFILE= in the systemd unit (or ulimit -n) to serve more"
                );
                fit
            }
            wanted => wanted,
        }
    }
}

/// Raises the soft open-file limit to the hard one, as the Go runtime does for registry:2:
/// the soft limit (often 1024) is a leftover of `select(2)`, which the daemon does not use.
/// Returns the limit now in force.
pub fn raise_open_file_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    // An unlimited hard limit still has the kernel's per-process ceiling.
    let target = if hard == RLIM_INFINITY {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1 << 20)
    } else {
        hard
    };
    if target > soft && setrlimit(Resource::RLIMIT_NOFILE, target, hard).is_ok() {
        return target;
    }
    soft
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_maximum_leaves_a_descriptor_per_connection_and_the_reserve() {
        let limits = Connections::default();
        assert_eq!(
            limits.max_connections(256),
            (256 - RESERVED_FDS as usize) / 2
        );
        assert_eq!(limits.max_connections(1024), 448);
        assert_eq!(limits.max_connections(65536), DEFAULT_MAX_CONNECTIONS);
        assert_eq!(limits.max_connections(10), 1);
    }

    #[test]
    fn a_configured_maximum_is_kept_when_it_fits_and_lowered_when_not() {
        let limits = Connections {
            max: 10_000,
            ..Connections::default()
        };
        assert_eq!(limits.max_connections(65536), 10_000);
        assert_eq!(limits.max_connections(1024), 448);
    }
}
