//! A few long-lived threads for the filesystem driver's work that must run side by side: the
//! syncs of a commit cycle (the filesystem folds syncs issued together into one journal
//! commit) and the renames of a cycle's journaled requests.
//!
//! Each cycle used to start its own threads for these and let them end with it. Starting a
//! thread is a dozen system calls (a stack mapped and unmapped, signal stacks, scheduler
//! state), and a cycle started up to ten: for a push of a small blob, more system calls than
//! the push itself made. The pool's threads wait for work instead.
//!
//! The caller takes the first share itself and waits for the others, so a call returns only
//! once everything it handed over is done, as a scoped thread would. Work never waits on the
//! pool from inside the pool, so the pool cannot deadlock; when it cannot start its threads,
//! the caller does everything itself, one share after the other.

use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};

/// Threads in the pool: with the caller, up to eight shares run at once.
const THREADS: usize = 7;

type Task = Box<dyn FnOnce() + Send>;

/// The queue in front of the pool's threads; `None` when none could be started.
fn queue() -> Option<&'static Mutex<Sender<Task>>> {
    static QUEUE: OnceLock<Option<Mutex<Sender<Task>>>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Task>();
            let rx = Arc::new(Mutex::new(rx));
            let started = (0..THREADS)
                .filter(|_| {
                    let rx = rx.clone();
                    std::thread::Builder::new()
                        .name("registry-sync".into())
                        .spawn(move || work(&rx))
                        .is_ok()
                })
                .count();
            if started == 0 {
                tracing::warn!("cannot start the storage sync threads: syncs run one at a time");
                return None;
            }
            Some(Mutex::new(tx))
        })
        .as_ref()
}

/// A pool thread: runs tasks until the queue is gone. A task that panics loses its result
/// (its caller reports that), not the thread.
fn work(rx: &Mutex<Receiver<Task>>) {
    loop {
        let task = {
            let rx = rx.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match rx.recv() {
                Ok(task) => task,
                Err(_) => return,
            }
        };
        let _ = panic::catch_unwind(AssertUnwindSafe(task));
    }
}

/// `items` split into at most `most` shares of (nearly) equal length, in order.
pub(super) fn shares<T>(items: Vec<T>, most: usize) -> Vec<Vec<T>> {
    let per_share = items.len().div_ceil(most.max(1)).max(1);
    let mut out = Vec::new();
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        out.push(items.by_ref().take(per_share).collect());
    }
    out
}

/// `f` applied to every share, the first on this thread and the others on the pool, side
/// by side; the results in the shares' order. A share whose `f` panicked has no result:
/// `None` in its place.
pub(super) fn map<T, R, F>(shares: Vec<T>, f: F) -> Vec<Option<R>>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> R + Send + Sync + 'static,
{
    let f = Arc::new(f);
    let mut out: Vec<Option<R>> = Vec::new();
    out.resize_with(shares.len(), || None);
    let mut shares = shares.into_iter();
    let Some(first) = shares.next() else {
        return out;
    };
    let (done, results) = mpsc::channel::<(usize, R)>();
    for (i, share) in shares.enumerate() {
        let (f, done) = (f.clone(), done.clone());
        let task: Task = Box::new(move || {
            let _ = done.send((i + 1, f(share)));
        });
        let refused = match queue() {
            Some(q) => q
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .send(task)
                .err()
                .map(|e| e.0),
            None => Some(task),
        };
        if let Some(task) = refused {
            // No pool: this thread does it.
            let _ = panic::catch_unwind(AssertUnwindSafe(task));
        }
    }
    drop(done);
    if let Some(slot) = out.first_mut() {
        *slot = panic::catch_unwind(AssertUnwindSafe(|| f(first))).ok();
    }
    // Each task drops its sender once it ran (or panicked): the loop ends after the last.
    for (i, r) in results.iter() {
        if let Some(slot) = out.get_mut(i) {
            *slot = Some(r);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn shares_run_side_by_side_and_come_back_in_order() {
        let t = Instant::now();
        let out = map((0..8u64).collect(), |i| {
            std::thread::sleep(Duration::from_millis(200));
            i * 10
        });
        let got: Vec<u64> = out.into_iter().map(|r| r.expect("result")).collect();
        assert_eq!(got, (0..8).map(|i| i * 10).collect::<Vec<_>>());
        // One after the other, eight would take 1.6 s.
        assert!(
            t.elapsed() < Duration::from_millis(1000),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn items_are_split_into_at_most_so_many_shares_in_order() {
        assert_eq!(
            shares((1..=10).collect(), 4),
            vec![vec![1, 2, 3], vec![4, 5, 6], vec![7, 8, 9], vec![10]]
        );
        assert_eq!(shares(vec![1, 2], 8), vec![vec![1], vec![2]]);
        assert!(shares(Vec::<u8>::new(), 8).is_empty());
    }

    #[test]
    fn a_share_that_panics_has_no_result_and_the_pool_goes_on() {
        let out = map(vec![1, 2, 3], |i| {
            if i == 2 {
                panic!("share {i}");
            }
            i
        });
        assert_eq!(out, vec![Some(1), None, Some(3)]);
        let again = map(vec![4, 5, 6, 7, 8, 9, 10, 11, 12], |i| i + 1);
        assert!(again.iter().all(Option::is_some));
        assert!(map(Vec::<u8>::new(), |i| i).is_empty());
    }

    #[test]
    fn the_same_threads_do_every_call() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            let ids = map(vec![(); 8], |()| {
                std::thread::sleep(Duration::from_millis(2));
                std::thread::current().id()
            });
            seen.extend(ids.into_iter().flatten());
        }
        // The pool's threads, and this one; a thread for each share would be 141.
        assert!(seen.len() <= THREADS + 1, "{} threads", seen.len());
    }
}
