//! Thread reuse: a finished agent's thread parks and waits to run the next
//! spawned agent, because creating a thread costs 40-70 µs here while
//! handing a parked one a job costs a wake-up (BENCHMARKS.md, W3).
//!
//! Lock rule: `IDLE` and each slot's lock guard only the hand-off; jobs run
//! with no lock held.

use std::io;
use std::sync::{Arc, Condvar, Mutex};
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
    thread::Builder::new()
        .name("erlangen-agent".into())
        .stack_size(stack)
        .spawn(move || {
            job();
            if reusable {
                worker_loop();
            }
        })
        .map(|_| ())
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
