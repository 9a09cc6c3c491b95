//! What a connection is doing, as far as its timeouts care: requests in flight, when it last
//! became idle, when the next request's first byte came, whether a write waits for the
//! client to read. The byte stream ([`super::connection::Conn`]) and the requests update it
//! with a few relaxed atomic operations; the connection's watchdog reads it now and then and
//! decides, in [`Activity::overdue`], whether the client has had its time.
//!
//! HTTP/1 alone could use hyper's header timeout, but that one also bounds keep-alive idling
//! and does not start before the protocol is known (a client that sends nothing is never
//! timed out); HTTP/2 has none. This covers both the same way.

use crate::config::Connections;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// "Not set", for the time stamps below.
const NEVER: u64 = u64::MAX;

/// Why a connection was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overdue {
    /// Nothing, or not a whole request head, within the header timeout.
    Head,
    /// Kept alive without a new request for the idle timeout.
    Idle,
    /// A response waited for the client to read for the body idle timeout.
    Reading,
}

impl Overdue {
    pub fn describe(self, limits: &Connections) -> String {
        match self {
            Overdue::Head => format!(
                "no complete request head within {}s",
                limits.header_timeout.as_secs_f64()
            ),
            Overdue::Idle => format!(
                "idle for {}s between requests",
                limits.idle_timeout.as_secs_f64()
            ),
            Overdue::Reading => format!(
                "the client read nothing of the response for {}s",
                limits.body_idle_timeout.as_secs_f64()
            ),
        }
    }
}

pub struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Requests started, so the first request's head is timed from accept.
    requests: AtomicU64,
    /// Milliseconds since `opened` (here and below): when the last request in flight ended.
    idle_since: AtomicU64,
    /// The first byte read since `idle_since`, or NEVER.
    first_byte: AtomicU64,
    /// Since when a write has been waiting for room in the socket, or NEVER.
    write_blocked: AtomicU64,
    /// The bytes the socket still held for the client when that wait began or was last
    /// seen to shrink: while a write waits, the client reading shows as this going down.
    unsent: AtomicU64,
    /// The last response is out of our hands but not yet in the client's: its last bytes
    /// wait in the socket (`write_blocked` times that wait as if a write waited).
    draining: AtomicBool,
    evicted: AtomicBool,
    /// Wakes the connection when it is [evicted](Activity::evict).
    pub eviction: Notify,
}

impl Activity {
    pub fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            first_byte: AtomicU64::new(NEVER),
            write_blocked: AtomicU64::new(NEVER),
            unsent: AtomicU64::new(NEVER),
            draining: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            eviction: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        millis(self.opened.elapsed())
    }

    /// Bytes arrived from the client.
    pub fn read(&self) {
        if self.in_flight.load(Relaxed) == 0 && self.first_byte.load(Relaxed) == NEVER {
            self.first_byte.store(self.now(), Relaxed);
        }
    }

    /// A write found the socket full (`blocked`), or got through. `unsent` tells how many
    /// bytes the socket holds for the client; it is asked once, when a wait begins.
    pub fn write(&self, blocked: bool, unsent: impl FnOnce() -> Option<u64>) {
        let since = self.write_blocked.load(Relaxed);
        if blocked && since == NEVER {
            self.unsent.store(unsent().unwrap_or(NEVER), Relaxed);
            self.write_blocked.store(self.now(), Relaxed);
        } else if !blocked && since != NEVER {
            self.write_blocked.store(NEVER, Relaxed);
            self.draining.store(false, Relaxed);
        }
    }

    /// The watchdog's look at the socket of a connection with no request in flight, which
    /// holds `unsent()` bytes for the client. hyper lets go of a response once its last bytes
    /// are written to the socket, but a socket and the client's receive buffer take
    /// megabytes, which a slow client can take seconds to read: the connection is not idle
    /// until they are read (closing it before would lose them, or have the kernel reset it
    /// when the client's window stays shut). Until then it is timed as a write waiting for
    /// the client (the body idle timeout, restarted while the bytes go down); the idle
    /// timeout starts once they are all read.
    pub fn socket_holds(&self, unsent: impl FnOnce() -> Option<u64>) {
        if self.in_flight.load(Relaxed) != 0 || self.requests.load(Relaxed) == 0 {
            return;
        }
        let draining = self.draining.load(Relaxed);
        match unsent() {
            Some(n) if n > 0 => {
                if !draining && self.write_blocked.load(Relaxed) == NEVER {
                    self.unsent.store(n, Relaxed);
                    self.write_blocked.store(self.now(), Relaxed);
                    self.draining.store(true, Relaxed);
                } else if draining {
                    self.client_read_since(Some(n));
                }
            }
            _ if draining => {
                self.draining.store(false, Relaxed);
                self.write_blocked.store(NEVER, Relaxed);
                self.idle_since.store(self.now(), Relaxed);
            }
            _ => {}
        }
    }

    /// Whether a response is still on its way out: a write waits, or the socket holds the
    /// end of the last one.
    fn sending(&self) -> bool {
        self.write_blocked.load(Relaxed) != NEVER
    }

    /// The watchdog found a write waiting for the body idle timeout, and the socket now
    /// holds `unsent` bytes for the client: if fewer than when last seen, the client has
    /// been reading (slowly, or by the socket's free-space threshold, which a rate-limited
    /// client can take longer than the timeout to cross), so its time starts again.
    /// Returns whether it did.
    pub fn client_read_since(&self, unsent: Option<u64>) -> bool {
        let Some(unsent) = unsent else {
            return false;
        };
        if self.write_blocked.load(Relaxed) == NEVER || unsent >= self.unsent.load(Relaxed) {
            return false;
        }
        self.unsent.store(unsent, Relaxed);
        self.write_blocked.store(self.now(), Relaxed);
        true
    }

    /// A request reached the API; the connection is busy until the returned guard drops
    /// (with the response body, once it is sent).
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Relaxed);
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(self.clone())
    }

    /// Keeps the connection busy, without counting a request, until the guard drops: for a
    /// response still being sent after hyper let go of its body (a zero-copy window).
    pub fn hold(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(self.clone())
    }

    /// Asks the connection to close as soon as it is idle; false if it is busy or already
    /// asked.
    pub fn evict(&self) -> bool {
        if self.in_flight.load(Relaxed) != 0 || self.sending() || self.evicted.swap(true, Relaxed) {
            return false;
        }
        self.eviction.notify_one();
        true
    }

    /// How long the connection has been idle (no request in flight), for choosing which to
    /// evict: `None` when busy or already evicted. Connections that never sent a request
    /// come first.
    pub fn idleness(&self) -> Option<(bool, Duration)> {
        if self.in_flight.load(Relaxed) != 0 || self.sending() || self.evicted.load(Relaxed) {
            return None;
        }
        let since = self.idle_since.load(Relaxed);
        let idle = Duration::from_millis(self.now().saturating_sub(since));
        Some((self.requests.load(Relaxed) == 0, idle))
    }

    /// Whether the client has run out of time, or when to look again.
    pub fn check(&self, limits: &Connections) -> Verdict {
        self.check_at(self.now(), limits)
    }

    fn check_at(&self, now: u64, limits: &Connections) -> Verdict {
        let mut next = now.saturating_add(millis(limits.check_every()));
        let mut over = None;
        let mut consider = |from: u64, timeout: Duration, why: Overdue| {
            if from == NEVER {
                return;
            }
            let at = from.saturating_add(millis(timeout));
            if at <= now {
                over = over.or(Some(why));
            }
            next = next.min(at);
        };
        consider(
            self.write_blocked.load(Relaxed),
            limits.body_idle_timeout,
            Overdue::Reading,
        );
        if self.in_flight.load(Relaxed) == 0 {
            let first_byte = self.first_byte.load(Relaxed);
            if first_byte != NEVER {
                consider(first_byte, limits.header_timeout, Overdue::Head);
            } else if self.requests.load(Relaxed) == 0 {
                consider(0, limits.header_timeout, Overdue::Head);
            } else if !self.sending() {
                let since = self.idle_since.load(Relaxed);
                consider(since, limits.idle_timeout, Overdue::Idle);
            }
        }
        match over {
            Some(why) => Verdict::Close(why),
            None => Verdict::LookAgainIn(Duration::from_millis(next.saturating_sub(now))),
        }
    }
}

/// What the watchdog does with a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Close(Overdue),
    LookAgainIn(Duration),
}

/// A request in flight; dropping it (with the response body) may make the connection idle.
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        // The next request's clock starts now; the last in flight sets it.
        if a.in_flight.load(Relaxed) == 1 {
            a.idle_since.store(a.now(), Relaxed);
            a.first_byte.store(NEVER, Relaxed);
        }
        a.in_flight.fetch_sub(1, Relaxed);
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(NEVER - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Connections {
        Connections::default()
    }

    #[test]
    fn a_connection_that_sends_nothing_is_closed_at_the_header_timeout_from_accept() {
        let a = Activity::new();
        assert_eq!(
            a.check_at(29_000, &limits()),
            Verdict::LookAgainIn(Duration::from_secs(1))
        );
        assert_eq!(a.check_at(30_000, &limits()), Verdict::Close(Overdue::Head));
    }

    #[test]
    fn keep_alive_idling_has_its_own_timeout_and_a_started_head_the_header_timeout() {
        let a = Activity::new();
        a.requests.store(1, Relaxed);
        a.idle_since.store(5_000, Relaxed);
        assert_eq!(
            a.check_at(100_000, &limits()),
            Verdict::LookAgainIn(Duration::from_secs(25))
        );
        assert_eq!(
            a.check_at(125_000, &limits()),
            Verdict::Close(Overdue::Idle)
        );
        a.first_byte.store(10_000, Relaxed);
        assert_eq!(a.check_at(40_000, &limits()), Verdict::Close(Overdue::Head));
    }

    #[test]
    fn a_busy_connection_is_left_alone_unless_its_client_stops_reading() {
        let a = Arc::new(Activity::new());
        let request = a.request();
        let every = limits().check_every();
        assert_eq!(
            a.check_at(1_000_000, &limits()),
            Verdict::LookAgainIn(every)
        );
        a.write_blocked.store(1_000, Relaxed);
        assert_eq!(
            a.check_at(61_000, &limits()),
            Verdict::Close(Overdue::Reading)
        );
        a.write(false, || None);
        drop(request);
        assert!(a.idleness().is_some());
        assert!(a.evict());
        assert!(!a.evict(), "evicted once");
    }

    #[test]
    fn a_client_that_reads_slowly_while_a_write_waits_gets_its_time_again() {
        let a = Activity::new();
        a.write(true, || Some(4_000_000));
        assert!(!a.client_read_since(Some(4_000_000)), "nothing read");
        assert!(!a.client_read_since(None), "unknown");
        assert!(a.client_read_since(Some(3_000_000)));
        assert!(a.write_blocked.load(Relaxed) != NEVER, "still waiting");
        assert!(!a.client_read_since(Some(3_000_000)), "nothing more read");
        a.write(false, || None);
        assert!(!a.client_read_since(Some(1)), "no write waits");
    }

    #[test]
    fn a_connection_whose_socket_still_holds_the_last_response_is_not_idle() {
        let a = Arc::new(Activity::new());
        drop(a.request());
        let lim = Connections {
            idle_timeout: Duration::from_secs(1),
            body_idle_timeout: Duration::from_secs(5),
            ..limits()
        };
        let (idle, body_idle) = (1_000, 5_000);
        // The response left hyper; 3 MB of it wait in the socket when the watchdog looks.
        a.socket_holds(|| Some(3_000_000));
        let start = a.write_blocked.load(Relaxed);
        assert!(start != NEVER && a.idleness().is_none() && !a.evict());
        assert_eq!(
            a.check_at(start + idle + 1, &lim),
            Verdict::LookAgainIn(Duration::from_secs(1))
        );
        // The client reads some: its time starts again; then it stops reading.
        a.socket_holds(|| Some(1_000_000));
        let later = a.write_blocked.load(Relaxed);
        assert!(later >= start);
        assert_eq!(
            a.check_at(later + body_idle, &lim),
            Verdict::Close(Overdue::Reading)
        );
        // All read: idle from now on, for the idle timeout.
        a.socket_holds(|| Some(0));
        assert_eq!(a.write_blocked.load(Relaxed), NEVER);
        let since = a.idle_since.load(Relaxed);
        assert!(since >= later && a.idleness().is_some());
        assert_eq!(
            a.check_at(since + idle, &lim),
            Verdict::Close(Overdue::Idle)
        );
        // A socket that holds nothing was never draining.
        let b = Arc::new(Activity::new());
        drop(b.request());
        b.socket_holds(|| Some(0));
        assert_eq!(b.write_blocked.load(Relaxed), NEVER);
    }
}
