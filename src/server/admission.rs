//! Which accepted connections are served: at most `max` at once in all and `per_client` from
//! one client address. When the daemon is full, the connection idle the longest (one that
//! never sent a request first) is asked to close to make room; when nothing is idle, or a
//! client already has its share, the newcomer gets a 503 with `Retry-After` and is closed,
//! so it learns at once what an unanswered connection in the kernel's backlog would not
//! tell it.
//!
//! Refusing must cost less than serving, or refusing becomes the attack: the answer is one
//! fixed write, and over TLS there is none (it would take a handshake); the connection is
//! just closed. At most [`REFUSALS_AT_ONCE`] refusals (or waits for room) run at once;
//! beyond that connections are closed as they are accepted.

use super::activity::Activity;
use super::limits::REFUSALS_AT_ONCE;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// How long a newcomer waits for an evicted connection to make room.
pub const ROOM_WAIT: Duration = Duration::from_secs(1);
/// The most a refusal may take: the write, and reading what the client sent meanwhile (so
/// that closing does not reset the connection before the client has read the answer).
const REFUSAL_TIME: Duration = Duration::from_secs(2);
/// How often refusals are logged at most (a count), so a flood does not flood the log.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// The answer to a connection that cannot be served now.
const UNAVAILABLE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Retry-After: 2\r\n\
Content-Type: application/json\r\n\
Docker-Distribution-Api-Version: registry/2.0\r\n\
Connection: close\r\n\
Content-Length: 96\r\n\
\r\n\
{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"too many connections; retry later\",\"detail\":null}]}\n";

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its client address already has `per_client` connections.
    Client,
    /// The daemon has `max` connections.
    Full,
}

pub struct Admission {
    table: Mutex<Table>,
    /// Signalled whenever a connection ends, for the newcomers waiting for room.
    freed: Notify,
    max: usize,
    /// 0: no per-client limit.
    per_client: usize,
    refusals: Arc<Semaphore>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    live: HashMap<u64, Arc<Activity>>,
    clients: HashMap<IpAddr, usize>,
    /// Places freed by an eviction and promised to the newcomer that asked for it, so that
    /// another newcomer (in a flood, many arrive at once) cannot take them first.
    reserved: usize,
    refused: u64,
    reported: Option<Instant>,
}

/// A place promised by [`Admission::evict_one`] to the newcomer that evicted a connection:
/// taken by [`Admission::admit_soon`], or given back when it drops unused.
pub struct Reservation {
    admission: Arc<Admission>,
    /// Taken: the place is the newcomer's now, nothing to give back.
    taken: bool,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.taken {
            return;
        }
        let mut t = self.admission.table();
        t.reserved = t.reserved.saturating_sub(1);
        drop(t);
        // The place is free for anyone again.
        self.admission.freed.notify_waiters();
    }
}

/// A connection's place in the table, given back when it drops.
pub struct Ticket {
    admission: Arc<Admission>,
    id: u64,
    client: IpAddr,
}

impl Admission {
    pub fn new(max: usize, per_client: usize) -> Arc<Admission> {
        Arc::new(Admission {
            table: Mutex::new(Table::default()),
            freed: Notify::new(),
            max,
            per_client,
            refusals: Arc::new(Semaphore::new(REFUSALS_AT_ONCE)),
        })
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // The table stays consistent across a panic elsewhere: each change is one insert or
        // one remove.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a connection from `peer`, if there is one.
    pub fn admit(
        self: &Arc<Self>,
        peer: IpAddr,
        activity: &Arc<Activity>,
    ) -> Result<Ticket, Refused> {
        self.admit_with(peer, activity, None)
    }

    /// [`Admission::admit`], in the place `reservation` promised when there is one.
    fn admit_with(
        self: &Arc<Self>,
        peer: IpAddr,
        activity: &Arc<Activity>,
        reservation: Option<&mut Reservation>,
    ) -> Result<Ticket, Refused> {
        let client = client_key(peer);
        let mut t = self.table();
        let from_client = t.clients.get(&client).copied().unwrap_or(0);
        if self.per_client != 0 && from_client >= self.per_client {
            return Err(Refused::Client);
        }
        // Everyone else's promised places stay out of reach; its own is counted as free.
        let own = reservation.filter(|r| !r.taken);
        let promised = t.reserved.saturating_sub(usize::from(own.is_some()));
        if t.live.len() + promised >= self.max {
            return Err(Refused::Full);
        }
        if let Some(r) = own {
            r.taken = true;
            t.reserved = promised;
        }
        let id = t.next_id;
        t.next_id += 1;
        t.live.insert(id, activity.clone());
        t.clients.insert(client, from_client + 1);
        Ok(Ticket {
            admission: self.clone(),
            id,
            client,
        })
    }

    /// Asks the connection idle the longest to close, and promises its place to the caller;
    /// `None` when no connection is idle.
    pub fn evict_one(self: &Arc<Self>) -> Option<Reservation> {
        let mut t = self.table();
        let victim = t
            .live
            .values()
            .filter_map(|a| a.idleness().map(|idle| (idle, a)))
            .max_by_key(|(idle, _)| *idle);
        if !victim.is_some_and(|(_, a)| a.evict()) {
            return None;
        }
        t.reserved += 1;
        Some(Reservation {
            admission: self.clone(),
            taken: false,
        })
    }

    /// Waits up to [`ROOM_WAIT`] for the place `reservation` promised (its connection to
    /// close).
    pub async fn admit_soon(
        self: &Arc<Self>,
        peer: IpAddr,
        activity: &Arc<Activity>,
        mut reservation: Reservation,
    ) -> Result<Ticket, Refused> {
        let deadline = tokio::time::sleep(ROOM_WAIT);
        tokio::pin!(deadline);
        loop {
            // Registered before trying, so a place freed in between is not missed.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match self.admit_with(peer, activity, Some(&mut reservation)) {
                Err(Refused::Full) => {}
                admitted => return admitted,
            }
            tokio::select! {
                _ = freed => {}
                _ = &mut deadline => return Err(Refused::Full),
            }
        }
    }

    /// A permit to spend time on a connection that is not (yet) admitted; `None`: close it.
    pub fn refusal_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.refusals.clone().try_acquire_owned().ok()
    }

    /// Answers 503 (plain HTTP) and closes.
    pub async fn refuse(&self, mut stream: TcpStream, why: Refused, tls: bool) {
        self.report(why);
        if tls {
            return;
        }
        let _ = tokio::time::timeout(REFUSAL_TIME, async {
            stream.write_all(UNAVAILABLE).await?;
            stream.shutdown().await?;
            // Until the client closes: closing with its request unread would reset the
            // connection, and a reset may destroy the answer before the client reads it.
            let mut sink = [0u8; 4096];
            while stream.read(&mut sink).await? != 0 {}
            Ok::<_, std::io::Error>(())
        })
        .await;
    }

    fn report(&self, why: Refused) {
        let mut t = self.table();
        t.refused += 1;
        let due = t.reported.is_none_or(|at| at.elapsed() >= REPORT_EVERY);
        if due {
            let refused = std::mem::take(&mut t.refused);
            t.reported = Some(Instant::now());
            drop(t);
            tracing::warn!(
                "{refused} connection(s) refused in the last {}s, the last because {}: answered 503 with Retry-After",
                REPORT_EVERY.as_secs(),
                match why {
                    Refused::Client => format!("its address already had {} connections", self.per_client),
                    Refused::Full => format!("{} connections were open and none idle", self.max),
                }
            );
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut t = self.admission.table();
        t.live.remove(&self.id);
        if let Some(n) = t.clients.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                t.clients.remove(&self.client);
            }
        }
        drop(t);
        self.admission.freed.notify_waiters();
    }
}

/// The address a per-client limit counts: an IPv4 address, or an IPv6 client's /64 (one
/// host usually has a whole /64 to pick addresses from).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_announces_its_body_length_exactly() {
        let text = std::str::from_utf8(UNAVAILABLE).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        serde_json::from_str::<serde_json::Value>(body).expect("a registry error body");
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(
            client_key(mapped),
            "192.0.2.7".parse::<IpAddr>().expect("ip")
        );
    }

    #[test]
    fn a_client_past_its_share_or_a_full_daemon_is_refused_and_a_closed_connection_frees_its_place()
    {
        let admission = Admission::new(3, 2);
        let one: IpAddr = "192.0.2.1".parse().expect("ip");
        let two: IpAddr = "192.0.2.2".parse().expect("ip");
        let a = Arc::new(Activity::new());
        let first = admission.admit(one, &a).expect("first");
        let _second = admission.admit(one, &a).expect("second");
        assert_eq!(admission.admit(one, &a).err(), Some(Refused::Client));
        let _third = admission.admit(two, &a).expect("another client");
        assert_eq!(admission.admit(two, &a).err(), Some(Refused::Full));
        drop(first);
        assert!(admission.admit(two, &a).is_ok());
    }

    #[tokio::test]
    async fn the_place_an_eviction_frees_goes_to_the_newcomer_that_asked_for_it() {
        let admission = Admission::new(2, 0);
        let attacker: IpAddr = "192.0.2.1".parse().expect("ip");
        let client: IpAddr = "192.0.2.2".parse().expect("ip");
        let idle = Arc::new(Activity::new());
        let first = admission.admit(attacker, &idle).expect("first");
        let _second = admission
            .admit(attacker, &Arc::new(Activity::new()))
            .expect("second");
        let reservation = admission.evict_one().expect("an idle connection to evict");
        drop(first);
        // Another newcomer arriving before the evicter finds the daemon full...
        let other = Arc::new(Activity::new());
        assert_eq!(admission.admit(attacker, &other).err(), Some(Refused::Full));
        // ...and the evicter gets the place at once.
        let newcomer = Arc::new(Activity::new());
        let ticket = admission
            .admit_soon(client, &newcomer, reservation)
            .await
            .expect("the promised place");
        assert_eq!(admission.table().reserved, 0);
        drop(ticket);
        assert!(admission.admit(attacker, &other).is_ok());
    }

    #[tokio::test]
    async fn an_unused_promise_is_given_back() {
        let admission = Admission::new(1, 0);
        let one: IpAddr = "192.0.2.1".parse().expect("ip");
        let _busy = admission
            .admit(one, &Arc::new(Activity::new()))
            .expect("first");
        let reservation = admission.evict_one().expect("idle");
        drop(reservation);
        assert_eq!(admission.table().reserved, 0);
    }
}
