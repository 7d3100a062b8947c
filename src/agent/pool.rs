//! Thread reuse: a finished agent's thread parks and waits to run the next
//! spawned agent, because creating a thread costs 40-70 µs here while
//! handing a parked one a job costs a wake-up (BENCHMARKS.md, W3).
//!
//! Lock rule: `IDLE` and each slot's lock guard only the hand-off; jobs run
//! with no lock held.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

/// A job: the whole life of one agent.
pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

/// Stack size of agent threads: Rust's own default. It is virtual memory;
/// only the pages an agent touches become resident, and the thread ceiling
/// comes from the kernel's map count, not from stack size. Spawn options can
/// ask for another size (such an agent gets a thread of its own).
pub(crate) const DEFAULT_STACK: usize = 2 * 1024 * 1024;

/// Idle threads kept at most; beyond this a finished thread ends.
const MAX_IDLE: usize = 1024;

/// An idle thread ends after this long without work, so a burst of spawns
/// does not pin memory forever.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

struct Slot {
    job: Mutex<Option<Job>>,
    ready: Condvar,
}

static IDLE: Mutex<Vec<Arc<Slot>>> = Mutex::new(Vec::new());

/// Agent threads alive now (running or idle).
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Most agent threads at once. Each thread costs about four memory maps
/// (stack, guard page, signal stack and its guard), and Linux refuses maps
/// beyond `vm.max_map_count` (65530 by default) with an allocation failure
/// that aborts the process. Measured here: 16,000 threads live, 18,000
/// abort. So the limit leaves 2,048 maps for everything else:
/// `(max_map_count - 2048) / 4`, 15,870 by default. `ERLANGEN_MAX_THREADS`
/// overrides it.
fn thread_limit() -> usize {
    static LIMIT: OnceLock<usize> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        if let Some(n) = std::env::var("ERLANGEN_MAX_THREADS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
        {
            return n;
        }
        std::fs::read_to_string("/proc/sys/vm/max_map_count")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .map_or(15_870, |maps| maps.saturating_sub(2048) / 4)
    })
}

/// Releases a place of `LIVE` when a thread ends (also by unwinding).
struct LiveGuard;

impl Drop for LiveGuard {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::AcqRel);
    }
}

fn idle() -> std::sync::MutexGuard<'static, Vec<Arc<Slot>>> {
    IDLE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `job` on a parked thread if one is free, else on a new thread.
///
/// # Errors
/// The OS refused to create a thread.
pub(crate) fn execute(job: Job, stack_size: Option<usize>) -> io::Result<()> {
    let stack = stack_size.unwrap_or(DEFAULT_STACK);
    if stack == DEFAULT_STACK {
        let slot = idle().pop();
        if let Some(slot) = slot {
            *slot.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(job);
            slot.ready.notify_one();
            return Ok(());
        }
    }
    let reusable = stack == DEFAULT_STACK;
    let limit = thread_limit();
    if LIVE.fetch_add(1, Ordering::AcqRel) >= limit {
        LIVE.fetch_sub(1, Ordering::AcqRel);
        return Err(io::Error::other(format!(
            "{limit} agent threads are alive, the most this system allows (vm.max_map_count); set ERLANGEN_MAX_THREADS or raise vm.max_map_count"
        )));
    }
    let spawned = thread::Builder::new()
        .name("erlangen-agent".into())
        .stack_size(stack)
        .spawn(move || {
            let _live = LiveGuard;
            job();
            if reusable {
                worker_loop();
            }
        });
    match spawned {
        Ok(_) => Ok(()),
        Err(e) => {
            LIVE.fetch_sub(1, Ordering::AcqRel);
            Err(e)
        }
    }
}

fn worker_loop() {
    let slot = Arc::new(Slot {
        job: Mutex::new(None),
        ready: Condvar::new(),
    });
    loop {
        {
            let mut idle = idle();
            if idle.len() >= MAX_IDLE {
                return;
            }
            idle.push(Arc::clone(&slot));
        }
        let job = {
            let mut job = slot.job.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(j) = job.take() {
                    break Some(j);
                }
                let (guard, waited) = slot
                    .ready
                    .wait_timeout(job, IDLE_TIMEOUT)
                    .unwrap_or_else(|e| e.into_inner());
                job = guard;
                if waited.timed_out() && job.is_none() {
                    // Leave the idle list, unless a spawner already took
                    // this slot and is about to hand it a job.
                    let mut idle = idle();
                    if let Some(pos) = idle.iter().position(|s| Arc::ptr_eq(s, &slot)) {
                        idle.swap_remove(pos);
                        break None;
                    }
                }
            }
        };
        match job {
            Some(job) => job(),
            None => return,
        }
    }
}
