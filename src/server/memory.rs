//! How the daemon uses the C allocator. Two things matter for a registry:
//!
//! * Blob traffic allocates and frees buffers of 0.5–1 MiB all the time. By default glibc
//!   hands such sizes out as fresh `mmap`s, or trims them off the heap as soon as they are
//!   freed, so every buffer costs a page fault and the kernel zeroing each page: as much as
//!   the copy the buffer exists for. Buffers up to 4 MiB therefore come from the heap, and the
//!   heap is not trimmed on every free.
//! * Each thread would otherwise get its own arena (up to eight per core), and memory freed
//!   in one arena cannot serve another: with tokio's blocking pool that means one arena per
//!   short-lived thread. Two arenas are plenty for a daemon that spends its time in syscalls.
//!
//! What the heap keeps after a burst is handed back to the kernel by [`spawn_trimmer`], every
//! few seconds, so a daemon that was busy does not sit at its peak once it is idle.

use std::time::Duration;

/// How often freed memory is returned to the kernel.
const TRIM_EVERY: Duration = Duration::from_secs(5);

/// Sets the allocator up as the module doc says. Call before the runtime starts its threads.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use nix::libc::{mallopt, M_ARENA_MAX, M_MMAP_THRESHOLD, M_TRIM_THRESHOLD};
        // SAFETY: mallopt only changes glibc's tunables (under its own locks);
        // a refused value leaves the default in place.
        unsafe {
            mallopt(M_ARENA_MAX, 2);
            mallopt(M_MMAP_THRESHOLD, 4 << 20);
            mallopt(M_TRIM_THRESHOLD, 64 << 20);
        }
    }
}

/// Returns freed heap memory to the kernel now and then (see the module doc).
pub fn spawn_trimmer() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::spawn(async {
        let mut tick = tokio::time::interval(TRIM_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            trim().await;
        }
    });
}

/// Returns the heap's free memory to the kernel. A walk of the free lists: microseconds for
/// heaps of this size, and on a blocking thread so that no request waits behind it.
pub async fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    let _ = tokio::task::spawn_blocking(|| {
        // SAFETY: malloc_trim has no preconditions.
        unsafe { nix::libc::malloc_trim(0) }
    })
    .await;
}
