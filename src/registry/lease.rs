//! Leases in the store: which one of several instances on one store may do something alone
//! (collect garbage, purge uploads, apply retention, append to one upload), agreed through
//! the store itself, as nothing else is shared.
//!
//! A lease is a directory of generations, `<dir>/<generation>`, each created with the
//! driver's create-if-absent ([`StorageDriver::create_new`]) and naming its holder and the
//! time it ends. The newest generation is the lease. It is taken by creating the generation
//! after the newest one, which must be absent or *over*: its end has passed, or its holder
//! was a process of this machine (same boot, same PID namespace) that is gone, so that a
//! restarted instance need not wait. Of several instances taking it at once, exactly one
//! creates that generation; the others are refused, told who holds it.
//!
//! The holder renews its lease every third of the lifetime the same way, by creating the
//! next generation: a holder that was stalled past its end, and whose lease another took
//! over meanwhile, finds that generation taken at its next renewal and stops at once
//! ([`Lease::valid`] turns false); before any renewal, it stops by itself a quarter of the
//! lifetime before its lease ends, so that instances whose clocks differ by less than that
//! never both hold it.

use crate::storage::{StorageDriver, StorageError, StoragePath, StorageResult};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::task::JoinHandle;

/// A lease held in the store until released or dropped (then released in the background).
pub(crate) struct Lease {
    driver: Arc<dyn StorageDriver>,
    dir: StoragePath,
    state: Arc<Mutex<State>>,
    renewer: Option<JoinHandle<()>>,
}

struct State {
    generation: u64,
    /// When to stop, by this process's clock.
    stop_at: Instant,
    /// Another instance took it over.
    lost: bool,
}

fn generation_path(dir: &StoragePath, g: u64) -> StorageResult<StoragePath> {
    dir.join(&format!("{g:010}"))
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// How early the holder stops before its lease ends.
fn margin(lifetime: Duration) -> Duration {
    lifetime / 4
}

/// This process as a lease names it: enough to tell, on the same machine, whether it is
/// still running.
struct Me;

impl Me {
    fn boot_id() -> Option<String> {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_owned())
    }

    /// The PID namespace (its inode), so that a PID is only read in the namespace it
    /// belongs to.
    fn pid_namespace() -> Option<String> {
        let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
        Some(
            link.to_string_lossy()
                .trim_start_matches("pid:")
                .trim_matches(['[', ']'])
                .to_owned(),
        )
    }

    /// When process `pid` started (clock ticks since boot), if it is running.
    fn start_time(pid: &str) -> Option<String> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // After the command name in parentheses: state is field 3, starttime field 22.
        let rest = stat.rsplit_once(')')?.1;
        rest.split_whitespace().nth(19).map(str::to_owned)
    }

    /// `process <boot>/<pidns>/<pid>/<starttime>`, or nothing where /proc cannot tell.
    fn identity() -> String {
        let pid = std::process::id().to_string();
        match (
            Self::boot_id(),
            Self::pid_namespace(),
            Self::start_time(&pid),
        ) {
            (Some(b), Some(n), Some(s)) => format!(" process {b}/{n}/{pid}/{s},"),
            _ => String::new(),
        }
    }

    /// Whether the process a lease names is known to be gone: on this machine, in this PID
    /// namespace, and no process with its PID and start time runs.
    fn gone(text: &str) -> bool {
        let Some(id) = text
            .split_whitespace()
            .skip_while(|w| *w != "process")
            .nth(1)
        else {
            return false;
        };
        let parts: Vec<&str> = id.trim_end_matches(',').split('/').collect();
        let [boot, ns, pid, start] = parts[..] else {
            return false;
        };
        if Self::boot_id().as_deref() != Some(boot) || Self::pid_namespace().as_deref() != Some(ns)
        {
            return false;
        }
        Self::start_time(pid).as_deref() != Some(start)
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "an unknown host".into())
}

/// What a generation says: what for, who holds it, a token of its own (to recognise it
/// after a retried write), and when it ends (milliseconds since 1970, last).
fn holder_text(lifetime: Duration, token: &str, what: &str) -> String {
    let now = SystemTime::now();
    format!(
        "{what}, held by pid {} on {} since {},{} lease {token}, until {}",
        std::process::id(),
        hostname(),
        humantime::format_rfc3339_seconds(now),
        Me::identity(),
        unix_ms(now + lifetime)
    )
}

/// Whether the generation whose text this is no longer holds the lease.
fn over(text: &str) -> bool {
    let until = text
        .split_whitespace()
        .last()
        .and_then(|u| u.parse::<u64>().ok())
        .unwrap_or(0);
    unix_ms(SystemTime::now()) >= until || Me::gone(text)
}

/// Creates generation `g` for this holder: whether it did (a retried create that went
/// through the first time is recognised by its token).
async fn create(
    driver: &Arc<dyn StorageDriver>,
    path: &StoragePath,
    text: &str,
    token: &str,
) -> StorageResult<bool> {
    if driver.create_new(path, text.as_bytes()).await? {
        return Ok(true);
    }
    match driver.get_content(path, 4096).await {
        Ok(t) => Ok(String::from_utf8_lossy(&t).contains(token)),
        Err(StorageError::NotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

impl Lease {
    /// Takes the lease `dir` for `lifetime` (renewed while it is held) to do `what`:
    /// `Ok(Err(holder))` when another holds it, saying who and for what.
    pub(crate) async fn take(
        driver: &Arc<dyn StorageDriver>,
        dir: StoragePath,
        lifetime: Duration,
        what: &str,
    ) -> StorageResult<Result<Lease, String>> {
        let mut generations: Vec<u64> = match driver.list(&dir).await {
            Ok(names) => names.iter().filter_map(|n| n.parse().ok()).collect(),
            Err(StorageError::NotFound(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        generations.sort_unstable();
        let next = match generations.last() {
            None => 0,
            Some(&g) => match driver.get_content(&generation_path(&dir, g)?, 4096).await {
                Ok(text) => {
                    let text = String::from_utf8_lossy(&text).trim().to_owned();
                    if !over(&text) {
                        return Ok(Err(text));
                    }
                    tracing::warn!("{dir}: taking over a lease that is over ({text})");
                    g + 1
                }
                // Released meanwhile.
                Err(StorageError::NotFound(_)) => g + 1,
                Err(e) => return Err(e),
            },
        };
        let token = uuid::Uuid::new_v4().simple().to_string();
        let started = Instant::now();
        let path = generation_path(&dir, next)?;
        if !create(driver, &path, &holder_text(lifetime, &token, what), &token).await? {
            return Ok(Err("another instance took it just now".to_owned()));
        }
        for g in generations {
            let _ = driver.delete(&generation_path(&dir, g)?).await;
        }
        let state = Arc::new(Mutex::new(State {
            generation: next,
            stop_at: started + lifetime - margin(lifetime),
            lost: false,
        }));
        let renewer = tokio::spawn(renew(
            driver.clone(),
            dir.clone(),
            lifetime,
            token,
            what.to_owned(),
            Arc::downgrade(&state),
        ));
        Ok(Ok(Lease {
            driver: driver.clone(),
            dir,
            state,
            renewer: Some(renewer),
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the lease is still this process's to act on.
    pub(crate) fn valid(&self) -> bool {
        let s = self.state();
        !s.lost && Instant::now() < s.stop_at
    }

    /// The generation to remove when releasing: none once lost (it is another's now).
    fn stop(&mut self) -> Option<StoragePath> {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        let s = self.state();
        if s.lost {
            return None;
        }
        generation_path(&self.dir, s.generation).ok()
    }

    /// Stops holding the lease without removing it: its directory was removed with what
    /// it was in (an upload session finished).
    pub(crate) fn forget(&mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        self.state().lost = true;
    }

    pub(crate) async fn release(mut self) {
        if let Some(p) = self.stop() {
            if let Err(e) = self.driver.delete(&p).await {
                tracing::warn!("releasing the lease {p} failed: {e}");
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(p) = self.stop() else { return };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let driver = self.driver.clone();
            rt.spawn(async move {
                if let Err(e) = driver.delete(&p).await {
                    tracing::warn!("releasing the lease {p} failed: {e}");
                }
            });
        }
    }
}

/// Renews the lease every third of its lifetime until it is released or lost.
async fn renew(
    driver: Arc<dyn StorageDriver>,
    dir: StoragePath,
    lifetime: Duration,
    token: String,
    what: String,
    state: std::sync::Weak<Mutex<State>>,
) {
    let every = (lifetime / 3).max(Duration::from_millis(50));
    loop {
        tokio::time::sleep(every).await;
        let Some(shared) = state.upgrade() else {
            return;
        };
        let g = shared.lock().unwrap_or_else(|p| p.into_inner()).generation;
        let started = Instant::now();
        let (Ok(next), Ok(old)) = (generation_path(&dir, g + 1), generation_path(&dir, g)) else {
            return;
        };
        match create(
            &driver,
            &next,
            &holder_text(lifetime, &token, &what),
            &token,
        )
        .await
        {
            Ok(true) => {
                {
                    let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
                    s.generation = g + 1;
                    s.stop_at = started + lifetime - margin(lifetime);
                }
                let _ = driver.delete(&old).await;
            }
            Ok(false) => {
                let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
                s.lost = true;
                tracing::warn!("{dir}: the lease was taken over by another instance; stopping");
                return;
            }
            Err(e) => {
                tracing::warn!("{dir}: renewing the lease failed ({e}); trying again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryDriver;

    fn store() -> (Arc<dyn StorageDriver>, StoragePath) {
        let d: Arc<dyn StorageDriver> = Arc::new(MemoryDriver::new().as_shared());
        (d, StoragePath::new(["leases", "one"]).expect("path"))
    }

    /// What another instance's generation says, ending at `until`.
    fn planted(until: SystemTime, process: &str) -> String {
        format!(
            "collection, held by pid 1 on elsewhere since 2026-01-01T00:00:00Z,{process} lease x, until {}",
            unix_ms(until)
        )
    }

    async fn plant(d: &Arc<dyn StorageDriver>, dir: &StoragePath, g: u64, text: &str) {
        let p = generation_path(dir, g).expect("path");
        assert!(d.create_new(&p, text.as_bytes()).await.expect("plant"));
    }

    #[tokio::test]
    async fn one_holder_at_a_time_until_released() {
        let (d, dir) = store();
        let lease = Lease::take(&d, dir.clone(), Duration::from_secs(60), "collection")
            .await
            .expect("take")
            .expect("free");
        assert!(lease.valid());
        let held = Lease::take(&d, dir.clone(), Duration::from_secs(60), "retention")
            .await
            .expect("take")
            .err()
            .expect("held");
        assert!(held.starts_with("collection, held by pid"), "{held}");
        lease.release().await;
        let again = Lease::take(&d, dir, Duration::from_secs(60), "retention")
            .await
            .expect("take");
        assert!(again.is_ok(), "{:?}", again.err());
    }

    /// Held past its lifetime by renewals, each a new generation; refused to others all
    /// along.
    #[tokio::test]
    async fn a_lease_is_renewed_while_held() {
        let (d, dir) = store();
        // Long enough that a loaded test machine renews in time.
        let life = Duration::from_secs(1);
        let lease = Lease::take(&d, dir.clone(), life, "collection")
            .await
            .expect("take")
            .expect("free");
        let started = Instant::now();
        while started.elapsed() < 3 * life {
            assert!(lease.valid(), "lapsed after {:?}", started.elapsed());
            let other = Lease::take(&d, dir.clone(), life, "retention")
                .await
                .expect("take");
            assert!(other.is_err(), "taken while held");
            tokio::time::sleep(life / 10).await;
        }
        let generation = lease.state().generation;
        assert!(generation >= 2, "renewed {generation} times");
        assert_eq!(
            d.list(&dir).await.expect("list").len(),
            1,
            "old ones removed"
        );
    }

    /// A holder that stalled while another took its lease over learns it at its next
    /// renewal and stops at once, and releasing then leaves the other's lease alone.
    #[tokio::test]
    async fn a_lease_taken_over_stops_its_old_holder() {
        let (d, dir) = store();
        let life = Duration::from_millis(600);
        let lease = Lease::take(&d, dir.clone(), life, "collection")
            .await
            .expect("take")
            .expect("free");
        let taker = planted(SystemTime::now() + Duration::from_secs(60), "");
        plant(&d, &dir, 1, &taker).await;
        let started = Instant::now();
        while lease.valid() {
            assert!(
                started.elapsed() < life,
                "still valid after being taken over"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        lease.release().await;
        let left = d
            .get_content(&generation_path(&dir, 1).expect("path"), 4096)
            .await
            .expect("the taker's");
        assert_eq!(String::from_utf8_lossy(&left), taker);
    }

    /// A lease whose end passed is taken over (its holder died on another machine); one
    /// still running is not, whatever its holder.
    #[tokio::test]
    async fn an_ended_lease_is_taken_over() {
        let (d, dir) = store();
        let ended = planted(SystemTime::now() - Duration::from_secs(1), "");
        plant(&d, &dir, 0, &ended).await;
        let life = Duration::from_secs(60);
        let lease = Lease::take(&d, dir.clone(), life, "collection")
            .await
            .expect("take")
            .expect("over");
        assert_eq!(lease.state().generation, 1);
        lease.release().await;
        let (d, dir) = store();
        let running = planted(SystemTime::now() + Duration::from_secs(60), "");
        plant(&d, &dir, 0, &running).await;
        let held = Lease::take(&d, dir, life, "collection")
            .await
            .expect("take");
        assert_eq!(held.err().as_deref(), Some(running.as_str()));
    }

    /// A lease held by a process of this machine that is gone is taken over at once,
    /// before its end; one held by a running process is not.
    #[tokio::test]
    async fn a_lease_of_a_dead_process_of_this_machine_is_taken_over() {
        let (Some(boot), Some(ns)) = (Me::boot_id(), Me::pid_namespace()) else {
            return;
        };
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .expect("spawn");
        let pid = child.id().to_string();
        let start = Me::start_time(&pid).expect("start time");
        let process = format!(" process {boot}/{ns}/{pid}/{start},");
        let text = planted(SystemTime::now() + Duration::from_secs(60), &process);
        assert!(!over(&text), "a running holder");
        child.kill().expect("kill");
        child.wait().expect("wait");
        assert!(over(&text), "a dead holder");
        let (d, dir) = store();
        plant(&d, &dir, 0, &text).await;
        let lease = Lease::take(&d, dir, Duration::from_secs(60), "collection")
            .await
            .expect("take");
        assert!(lease.is_ok(), "{:?}", lease.err());
        // Our own identity is that of a running process.
        assert!(!over(&holder_text(Duration::from_secs(60), "t", "x")));
    }
}
