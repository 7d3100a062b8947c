//! The scheduler of async agents: a fixed set of worker threads polling
//! agents' futures, with std only.
//!
//! The shape follows Go's and tokio's schedulers:
//!
//! - **Next slot.** When a running agent wakes another (it sent it a
//!   message), the woken one goes into this worker's `next` slot and runs
//!   right after, on this core: a message hand-off costs no OS wake-up and
//!   no cache miss (BENCHMARKS.md: the floor's "next" slot is what takes a
//!   hop from microseconds to 0.09 µs). So that two agents passing a message
//!   back and forth cannot keep the slot forever, a worker takes from it at
//!   most `MAX_NEXT_IN_A_ROW` times in a row while other work waits. The
//!   slot can be stolen, as Go's `runnext` can: an idle worker, while
//!   another worker is busy, parks for at most `STEAL_NEXT_AFTER`, and if
//!   a busy worker is still in the same poll then (its agent computes)
//!   with an agent waiting in its next slot, it takes that agent and runs
//!   it. A worker that fills its slot while some workers are parked and
//!   none of them watches wakes one to watch.
//! - **Run queues.** Each worker has a queue of its own (a `Mutex` its owner
//!   almost never contends) and there is one shared injector for wake-ups
//!   from outside the workers (thread agents, node reader threads, timers
//!   fired while nobody runs).
//! - **Stealing, then parking.** A worker with nothing to do takes from the
//!   injector, then steals half of another worker's queue, and only then
//!   parks on a `Condvar`. A worker that queues work while others are
//!   parked wakes one of them.
//! - **Spawns stay home.** An agent spawned on a worker waits in that
//!   worker's `spawned` queue until its first poll, and other workers steal
//!   from it only when it holds more work than `STEAL_SPAWNED_BACKLOG` (its
//!   length times the worker's mean poll time) or when the worker has been
//!   in one poll for `STEAL_NEXT_AFTER`. A short-lived agent then runs,
//!   exits and is freed on the worker that allocated it, next to its
//!   spawner: moved to another core, its free took the allocator's lock of
//!   the spawner's arena, and its exit notice woke the spawner across cores
//!   (spawn + exit took 1.5-2 µs on two workers against 0.75 on one).
//! - **Budget.** Each poll may take at most `BUDGET` messages; a receive
//!   past it yields (the agent goes to the back of the queue), so one agent
//!   with a full mailbox cannot starve the rest of its worker.
//! - **Timers.** Receive deadlines and sleeps sit in one heap; workers fire
//!   the due ones between polls (checking the clock every
//!   `TIMER_CHECK_EVERY` polls) and sleep no longer than the earliest.
//!   A receive or sleep cancels its timer when it completes or is dropped,
//!   so a timer does not keep its agent alive until the deadline.
//!
//! Lock rule: every lock here guards only moving tasks or timers in or out;
//! no user code runs under one, and none is held while taking another
//! (a queue, then the park lock, is the one nesting, and the park lock is a
//! leaf).

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use super::task;
use super::{Agent, Cell as AgentCell};
use crate::mailbox::RunnableGuard;

/// Messages one poll of an agent may receive before its receive yields.
pub const BUDGET: u32 = 128;
/// Polls from the next slot in a row before the worker looks at its queue.
const MAX_NEXT_IN_A_ROW: u32 = 32;
/// Polls between two looks at the timer heap's earliest deadline.
const TIMER_CHECK_EVERY: u32 = 16;
/// How long an idle worker lets another keep a filled next slot while it
/// stays in one poll before taking the agent waiting there.
const STEAL_NEXT_AFTER: Duration = Duration::from_millis(1);
/// An idle worker's spin before it parks, in nanoseconds: at most about a
/// round trip between two nodes on one host (so a reply is caught without
/// an OS wake-up), at least enough to catch a hand-off from another core.
const SPIN_MAX: u32 = 50_000;
const SPIN_MIN: u32 = 1_000;
const SPIN_START: u32 = 10_000;
/// Node readers polling their sockets now (they count themselves here,
/// node/connection.rs): an idle worker then parks rather than spin, since
/// a spinning worker never yields its core to the reader a reply needs.
pub(crate) static SOCKET_POLLERS: AtomicUsize = AtomicUsize::new(0);
/// Tasks taken from the injector at once (the rest go to the local queue).
const INJECT_BATCH: usize = 32;
/// Work a worker's `spawned` queue must hold (its length times the
/// worker's mean poll time) before another worker steals from it.
const STEAL_SPAWNED_BACKLOG: Duration = Duration::from_millis(1);
/// Polls over which a worker measures its mean poll time.
const POLL_SAMPLE: u32 = 64;
/// Every this many looks, a worker takes a spawned agent before its woken
/// ones (so neither kind can starve the other).
const SPAWNED_FIRST_EVERY: u32 = 4;
/// Polls between two looks at the injector while the worker's own queue
/// is never empty (agents that keep yielding would otherwise starve what
/// threads and timers queue there; tokio uses 61 for the same reason).
const INJECTOR_EVERY: u32 = 61;

/// One worker's run queue and next slot.
struct Local {
    queue: Mutex<VecDeque<Agent>>,
    /// `queue.len()`, readable without the lock (for stealing and parking).
    len: AtomicUsize,
    /// The serial of the agent in this worker's next slot (0: none), for
    /// idle workers to see and claim (see the module doc). The owner keeps
    /// the agent's handle in its thread-local `NEXT` and writes this with
    /// plain stores (no locked instruction on the hand-off path); a thief
    /// claims a serial with a compare-and-swap and finds the agent by it.
    /// Should the owner run an agent a thief claimed a moment before, the
    /// task's state lets only one of them poll it (the other finds it
    /// running or idle and leaves it), as for any agent queued twice.
    next: AtomicU64,
    /// Polls this worker has started (written by the worker only): a
    /// watcher that sees the same count twice knows one poll has run all
    /// along.
    polls: AtomicU64,
    /// Agents spawned on this worker that have not run yet (see the module
    /// doc), and how many.
    spawned: Mutex<VecDeque<Agent>>,
    spawned_len: AtomicUsize,
    /// This worker's mean poll time over its last `POLL_SAMPLE` polls, in
    /// nanoseconds (written by the worker only): what its `spawned` queue
    /// is worth in time.
    poll_ns: AtomicU64,
}

/// The async timers: receive deadlines and sleeps. Each has an id; the
/// heap orders `(deadline, id)` earliest first, and `wakers` holds the
/// waker of every timer still wanted. A cancelled timer leaves the map at
/// once (so it no longer keeps its agent alive) and its heap entry is
/// skipped when it comes up, or dropped when cancelled entries are most of
/// the heap (as `crate::timer` does for its own entries).
#[derive(Default)]
struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    wakers: HashMap<u64, Waker>,
}

pub(crate) struct Scheduler {
    locals: Box<[Local]>,
    injector: Mutex<VecDeque<Agent>>,
    injected: AtomicUsize,
    /// Workers parked (or about to park) on `unpark`.
    idle: AtomicUsize,
    /// Parked workers watching the busy ones' next slots (see
    /// `worker_loop`).
    watchers: AtomicUsize,
    park: Mutex<()>,
    unpark: Condvar,
    /// A worker is spinning before it parks (see `spin_for_work`).
    spinning: AtomicBool,
    timers: Mutex<Timers>,
    /// The earliest timer as nanoseconds since `epoch`; `u64::MAX`: none.
    next_timer: AtomicU64,
    /// The next timer id.
    timer_seq: AtomicU64,
    epoch: Instant,
}

thread_local! {
    /// The worker this thread is, if it is one.
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
    /// The agent to run next on this worker (its serial is in the worker's
    /// `Local::next` while it is this worker's to run).
    static NEXT: RefCell<Option<Agent>> = const { RefCell::new(None) };
    /// Messages the running poll may still receive.
    static BUDGET_LEFT: Cell<u32> = const { Cell::new(BUDGET) };
    /// Whether a [`WakeBatch`] is open on this thread (not a worker), and
    /// the agents it woke so far.
    static BATCHING: Cell<bool> = const { Cell::new(false) };
    static DEFERRED: RefCell<Vec<Agent>> = const { RefCell::new(Vec::new()) };
}

/// Collects the wake-ups of async agents a thread that is not a worker
/// makes while it lives, and queues them together when dropped: one
/// injector lock and one round of worker wake-ups for the lot, instead of
/// one each. A node's reader opens one for the messages of one read
/// buffer, so the agents they wake are handed over at once. Whoever holds
/// one must not wait for an agent it may have woken (the agent is not
/// queued until the batch closes). A no-op on a worker (its wake-ups go
/// to its next slot) and when one is open already.
pub(crate) struct WakeBatch {
    outermost: bool,
}

/// Opens a [`WakeBatch`] on the calling thread.
pub(crate) fn batch_wakes() -> WakeBatch {
    let outermost = !on_worker() && !BATCHING.with(|b| b.replace(true));
    WakeBatch { outermost }
}

impl Drop for WakeBatch {
    fn drop(&mut self) {
        if !self.outermost {
            return;
        }
        BATCHING.with(|b| b.set(false));
        let woken = DEFERRED.with(|d| std::mem::take(&mut *d.borrow_mut()));
        if !woken.is_empty() {
            get().inject_many(woken);
        }
    }
}

static SCHEDULER: OnceLock<Arc<Scheduler>> = OnceLock::new();
static WORKERS_WANTED: AtomicUsize = AtomicUsize::new(0);
static STARTED: AtomicBool = AtomicBool::new(false);
/// Worker threads that started (set once, when the scheduler starts).
static STARTED_WORKERS: AtomicUsize = AtomicUsize::new(0);

/// Starts the scheduler if need be; an error if no worker thread could
/// start (an async agent would never run).
pub(crate) fn check_started() -> std::io::Result<()> {
    get();
    workers_running(STARTED_WORKERS.load(Ordering::Acquire))
}

fn workers_running(started: usize) -> std::io::Result<()> {
    if started == 0 {
        return Err(std::io::Error::other(
            "no worker thread of the async scheduler could start",
        ));
    }
    Ok(())
}

/// Sets how many worker threads run async agents (default: one per core,
/// or `ERLANGEN_WORKERS`). Takes effect only before the first async agent
/// is spawned; returns `false` if the scheduler already runs.
pub fn set_workers(n: usize) -> bool {
    if STARTED.load(Ordering::Acquire) {
        return false;
    }
    WORKERS_WANTED.store(n.max(1), Ordering::Release);
    !STARTED.load(Ordering::Acquire)
}

/// How many workers run async agents (0 before the first one is spawned).
pub fn workers() -> usize {
    SCHEDULER.get().map_or(0, |s| s.locals.len())
}

fn worker_count() -> usize {
    match WORKERS_WANTED.load(Ordering::Acquire) {
        0 => std::env::var("ERLANGEN_WORKERS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get())),
        n => n,
    }
}

/// The scheduler, started on first use.
pub(crate) fn get() -> &'static Arc<Scheduler> {
    SCHEDULER.get_or_init(|| {
        STARTED.store(true, Ordering::Release);
        let n = worker_count();
        let scheduler = Arc::new(Scheduler {
            locals: (0..n)
                .map(|_| Local {
                    queue: Mutex::new(VecDeque::new()),
                    len: AtomicUsize::new(0),
                    next: AtomicU64::new(0),
                    polls: AtomicU64::new(0),
                    spawned: Mutex::new(VecDeque::new()),
                    spawned_len: AtomicUsize::new(0),
                    poll_ns: AtomicU64::new(0),
                })
                .collect(),
            injector: Mutex::new(VecDeque::new()),
            injected: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            watchers: AtomicUsize::new(0),
            park: Mutex::new(()),
            unpark: Condvar::new(),
            spinning: AtomicBool::new(false),
            timers: Mutex::new(Timers::default()),
            next_timer: AtomicU64::new(u64::MAX),
            timer_seq: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        let mut started = 0;
        for i in 0..n {
            let s = Arc::clone(&scheduler);
            // A worker that cannot start leaves its queue to be stolen
            // from; with none at all, spawning an async agent fails (see
            // `check_started`).
            if thread::Builder::new()
                .name(format!("erlangen-worker-{i}"))
                .spawn(move || s.worker_loop(i))
                .is_ok()
            {
                started += 1;
            }
        }
        STARTED_WORKERS.store(started, Ordering::Release);
        scheduler
    })
}

fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| thread::available_parallelism().map_or(1, |n| n.get()))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `true` if the calling thread is one of the scheduler's workers, where
/// nothing may block: the workers are what fire the async timers, so a
/// worker blocked waiting on one could wait forever.
pub(crate) fn on_worker() -> bool {
    WORKER.with(Cell::get).is_some()
}

/// Gives the calling thread a fresh budget (`block_on` polls).
pub(crate) fn reset_budget() {
    BUDGET_LEFT.with(|b| b.set(BUDGET));
}

/// Takes one message's worth of the running poll's budget; `false` when
/// the budget is spent and the agent should yield.
pub(crate) fn take_budget() -> bool {
    BUDGET_LEFT.with(|b| {
        let left = b.get();
        if left == 0 {
            return false;
        }
        b.set(left - 1);
        true
    })
}

impl Scheduler {
    /// Queues a woken agent: into the next slot when woken on a worker (by
    /// the agent running there), else into the injector.
    pub(crate) fn schedule(&self, agent: Agent) {
        match WORKER.with(Cell::get) {
            Some(i) => {
                let serial = agent.serial();
                let displaced = NEXT.with(|n| n.borrow_mut().replace(agent));
                self.locals[i].next.store(serial, Ordering::Release);
                match displaced {
                    // Behind the queue it goes.
                    Some(older) => self.push_local(i, older),
                    // Someone parked should keep an eye on the slot, in
                    // case this poll runs long.
                    None => self.wake_watcher(),
                }
            }
            None => self.inject(agent),
        }
    }

    /// Wakes a parked worker to watch the busy ones (see `worker_loop`),
    /// unless one watches already or none is parked.
    fn wake_watcher(&self) {
        // `notify_one` does nothing when none is parked.
        if self.watchers.load(Ordering::SeqCst) == 0 {
            self.notify_one();
        }
    }

    /// Takes the agent in this worker's (`i`'s) next slot.
    fn take_next(&self, i: usize) -> Option<Agent> {
        let agent = NEXT.with(|n| n.borrow_mut().take())?;
        self.locals[i].next.store(0, Ordering::Release);
        Some(agent)
    }

    /// Records every worker's poll count in `seen`.
    fn poll_counts(&self, seen: &mut Vec<u64>) {
        seen.clear();
        seen.extend(self.locals.iter().map(|l| l.polls.load(Ordering::Acquire)));
    }

    /// Takes the next agent of a worker other than `i` that has been in
    /// one poll since `seen` was taken (and so, for at least the time we
    /// watched, has kept its next agent waiting).
    fn steal_next(&self, i: usize, seen: &[u64]) -> Option<Agent> {
        let n = self.locals.len();
        (1..n).map(|k| (i + k) % n).find_map(|j| {
            let local = &self.locals[j];
            let serial = local.next.load(Ordering::Acquire);
            if serial == 0 || local.polls.load(Ordering::Acquire) != seen[j] {
                return None;
            }
            local
                .next
                .compare_exchange(serial, 0, Ordering::AcqRel, Ordering::Acquire)
                .ok()?;
            // Claimed: ours to run. A queued agent is in the agent table
            // until its exit protocol ends.
            super::target::by_serial(serial)
        })
    }

    /// Queues an agent at the back of worker `i`'s queue (yielded agents,
    /// displaced next slots), waking an idle worker to steal it.
    fn push_local(&self, i: usize, agent: Agent) {
        let local = &self.locals[i];
        let was_empty = push(&local.queue, &local.len, agent) == 1;
        // Only the first queued agent is news to an idle worker: it steals
        // half the queue when it wakes, and waking it for every push (a
        // futex call each) would cost more than the work.
        if was_empty {
            self.notify_one();
        }
    }

    /// Queues a new or yielded agent from the running worker's side: its
    /// own queue if this is a worker, else the injector.
    pub(crate) fn push_back(&self, agent: Agent) {
        match WORKER.with(Cell::get) {
            Some(i) => self.push_local(i, agent),
            None => self.inject(agent),
        }
    }

    fn inject(&self, agent: Agent) {
        if BATCHING.with(Cell::get) {
            DEFERRED.with(|d| d.borrow_mut().push(agent));
            return;
        }
        {
            let mut q = lock(&self.injector);
            q.push_back(agent);
            self.injected.store(q.len(), Ordering::Release);
        }
        self.notify_one();
    }

    /// Queues the agents a [`WakeBatch`] collected, under one lock, and
    /// wakes as many parked workers as there are agents (at most all).
    fn inject_many(&self, mut agents: Vec<Agent>) {
        let n = agents.len();
        {
            let mut q = lock(&self.injector);
            q.extend(agents.drain(..));
            self.injected.store(q.len(), Ordering::Release);
        }
        // The batch's vector goes back to the thread for the next batch.
        DEFERRED.with(|d| {
            if let Ok(mut d) = d.try_borrow_mut() {
                if d.capacity() == 0 {
                    *d = agents;
                }
            }
        });
        let idle = self.idle.load(Ordering::SeqCst);
        if idle > 0 {
            let _guard = lock(&self.park);
            for _ in 0..n.min(idle) {
                self.unpark.notify_one();
            }
        }
    }

    /// Wakes a parked worker, if any (cheap when none is parked).
    fn notify_one(&self) {
        if self.idle.load(Ordering::SeqCst) > 0 {
            let _guard = lock(&self.park);
            self.unpark.notify_one();
        }
    }

    /// Registers a timer that wakes `waker` at `at`; returns its id for
    /// [`Scheduler::cancel_timer`].
    pub(crate) fn add_timer(&self, at: Instant, waker: Waker) -> u64 {
        let nanos = self.nanos(at);
        let id = self.timer_seq.fetch_add(1, Ordering::Relaxed);
        {
            let mut timers = lock(&self.timers);
            timers.heap.push(Reverse((at, id)));
            timers.wakers.insert(id, waker);
        }
        if self.next_timer.fetch_min(nanos, Ordering::AcqRel) > nanos {
            // Earlier than every parked worker's sleep: wake one to look.
            self.notify_one();
        }
        id
    }

    /// Cancels timer `id` (a no-op if it has fired): its waker is dropped
    /// now; its heap entry is skipped when it comes up. `next_timer` is left
    /// as it is: early at worst, which costs one look at the heap.
    pub(crate) fn cancel_timer(&self, id: u64) {
        let waker = {
            let mut timers = lock(&self.timers);
            let waker = timers.wakers.remove(&id);
            // Cancelled entries wait in the heap for their deadline; when
            // they are most of it (timed receives that got their message
            // early, as most do), drop them so the heap does not grow
            // with long timeouts.
            if timers.heap.len() > 64 && timers.heap.len() > 2 * timers.wakers.len() {
                let Timers { heap, wakers } = &mut *timers;
                heap.retain(|Reverse((_, id))| wakers.contains_key(id));
            }
            waker
        };
        // Dropped outside the lock: it may be the agent's last reference.
        drop(waker);
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// Fires the timers that are due; returns the time until the next one.
    fn fire_timers(&self) -> Option<Duration> {
        let next = self.next_timer.load(Ordering::Acquire);
        if next == u64::MAX {
            return None;
        }
        let now = Instant::now();
        if self.nanos(now) < next {
            return Some(Duration::from_nanos(next - self.nanos(now)));
        }
        let mut due = Vec::new();
        let left = {
            let mut timers = lock(&self.timers);
            let Timers { heap, wakers } = &mut *timers;
            // Due timers fire; cancelled ones at the top go too, so the
            // next deadline is one still wanted.
            while let Some(&Reverse((at, id))) = heap.peek() {
                let wanted = wakers.contains_key(&id);
                if wanted && at > now {
                    break;
                }
                heap.pop();
                if let Some(w) = wakers.remove(&id) {
                    due.push(w);
                }
            }
            let first = heap.peek().map(|Reverse((at, _))| *at);
            let next = first.map_or(u64::MAX, |at| self.nanos(at));
            self.next_timer.store(next, Ordering::Release);
            first.map(|at| at.saturating_duration_since(now))
        };
        for w in due {
            w.wake();
        }
        left
    }

    /// The next agent for worker `i`, or `None` if there is no work here.
    /// Every `INJECTOR_EVERY` polls the injector goes first.
    fn next_task(&self, i: usize, in_a_row: &mut u32, polls: u32) -> Option<Agent> {
        if polls % INJECTOR_EVERY == 0 && self.injected.load(Ordering::Acquire) > 0 {
            if let Some(agent) = self.take_injected(i) {
                return Some(agent);
            }
        }
        if let Some(agent) = self.take_next(i) {
            let others_wait = self.locals[i].len.load(Ordering::Acquire) > 0
                || self.locals[i].spawned_len.load(Ordering::Acquire) > 0
                || self.injected.load(Ordering::Acquire) > 0;
            if *in_a_row < MAX_NEXT_IN_A_ROW || !others_wait {
                *in_a_row += 1;
                return Some(agent);
            }
            // Let the queue have a turn; the hand-off pair goes behind it.
            self.push_local(i, agent);
        }
        *in_a_row = 0;
        let local = &self.locals[i];
        let spawned_first = polls % SPAWNED_FIRST_EVERY == 0;
        if spawned_first {
            if let Some(agent) = pop(&local.spawned, &local.spawned_len) {
                return Some(agent);
            }
        }
        if let Some(agent) = pop(&local.queue, &local.len) {
            return Some(agent);
        }
        if !spawned_first {
            if let Some(agent) = pop(&local.spawned, &local.spawned_len) {
                return Some(agent);
            }
        }
        if self.injected.load(Ordering::Acquire) > 0 {
            return self.take_injected(i);
        }
        None
    }

    /// Takes a batch from the injector: the first to run now, the rest to
    /// worker `i`'s queue.
    fn take_injected(&self, i: usize) -> Option<Agent> {
        let mut batch: VecDeque<Agent> = {
            let mut q = lock(&self.injector);
            let take = q.len().min(INJECT_BATCH);
            let batch = q.drain(..take).collect();
            self.injected.store(q.len(), Ordering::Release);
            batch
        };
        let first = batch.pop_front();
        if !batch.is_empty() {
            let local = &self.locals[i];
            let mut q = lock(&local.queue);
            q.extend(batch);
            local.len.store(q.len(), Ordering::Release);
        }
        first
    }

    /// Steals half of another worker's queue of woken agents, or of its
    /// spawned agents when they are worth it (see [`Scheduler::spawned_worth_stealing`];
    /// `stuck`: every worker's poll count when this one started watching).
    fn steal(&self, i: usize, stuck: Option<&[u64]>) -> Option<Agent> {
        let n = self.locals.len();
        for k in 1..n {
            let j = (i + k) % n;
            let victim = &self.locals[j];
            if let Some(agent) = self.steal_half(i, &victim.queue, &victim.len) {
                return Some(agent);
            }
            if self.spawned_worth_stealing(j, stuck) {
                if let Some(agent) = self.steal_half(i, &victim.spawned, &victim.spawned_len) {
                    return Some(agent);
                }
            }
        }
        None
    }

    /// Moves the back half of `queue` (another worker's) to worker `i`'s
    /// queue, but the first of them, which it returns to run now.
    fn steal_half(
        &self,
        i: usize,
        queue: &Mutex<VecDeque<Agent>>,
        len: &AtomicUsize,
    ) -> Option<Agent> {
        if len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut stolen: VecDeque<Agent> = {
            let mut q = queue.try_lock().ok()?;
            let take = q.len().div_ceil(2);
            let split = q.len() - take;
            let stolen = q.split_off(split);
            len.store(q.len(), Ordering::Release);
            stolen
        };
        let first = stolen.pop_front();
        if !stolen.is_empty() {
            let mut q = lock(&self.locals[i].queue);
            q.extend(stolen);
            self.locals[i].len.store(q.len(), Ordering::Release);
        }
        first
    }

    /// Whether worker `j`'s spawned agents are worth moving to another
    /// worker: they hold at least `STEAL_SPAWNED_BACKLOG` of its time, or
    /// it has stayed in one poll since `stuck` was taken.
    fn spawned_worth_stealing(&self, j: usize, stuck: Option<&[u64]>) -> bool {
        let local = &self.locals[j];
        let len = local.spawned_len.load(Ordering::Acquire);
        if len == 0 {
            return false;
        }
        if stuck.is_some_and(|seen| local.polls.load(Ordering::Acquire) == seen[j]) {
            return true;
        }
        let backlog = (len as u64).saturating_mul(local.poll_ns.load(Ordering::Relaxed));
        backlog >= STEAL_SPAWNED_BACKLOG.as_nanos() as u64
    }

    fn has_work(&self, i: usize) -> bool {
        self.injected.load(Ordering::Acquire) > 0
            || self.locals.iter().enumerate().any(|(j, l)| {
                let len = l.len.load(Ordering::Acquire);
                // Our own queues, or another worth stealing from.
                if j == i {
                    len > 0 || l.spawned_len.load(Ordering::Acquire) > 0
                } else {
                    len > 1 || self.spawned_worth_stealing(j, None)
                }
            })
    }

    /// Runs one poll of `agent` on worker `i`.
    fn poll(&self, i: usize, agent: Agent) {
        let local = &self.locals[i];
        // Only this worker writes it: no locked read-modify-write.
        let polls = local.polls.load(Ordering::Relaxed);
        local.polls.store(polls.wrapping_add(1), Ordering::Release);
        // The poll catches panics of the agent's code and of its
        // destructors; this is the backstop that keeps the worker (and
        // every agent queued on it) alive whatever escapes.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.start_poll();
            if let Some(agent) = task::run(agent) {
                self.push_back(agent);
            }
        }));
    }

    fn worker_loop(self: Arc<Self>, i: usize) {
        WORKER.with(|w| w.set(Some(i)));
        let mut runnable = Some(RunnableGuard::enter());
        let mut in_a_row = 0;
        let mut polls: u32 = 0;
        // Every worker's poll count when this one last parked to watch.
        let mut seen: Vec<u64> = Vec::with_capacity(self.locals.len());
        let mut spin_budget = SPIN_START;
        // The mean poll time's sample: since when, and how many polls.
        let mut sample = (Instant::now(), 0u32);
        loop {
            polls = polls.wrapping_add(1);
            if polls % TIMER_CHECK_EVERY == 0 {
                self.fire_timers();
            }
            if let Some(agent) = self
                .next_task(i, &mut in_a_row, polls)
                .or_else(|| self.steal(i, None))
            {
                self.poll(i, agent);
                sample.1 += 1;
                if sample.1 == POLL_SAMPLE {
                    let now = Instant::now();
                    let ns =
                        now.saturating_duration_since(sample.0).as_nanos() / POLL_SAMPLE as u128;
                    self.locals[i]
                        .poll_ns
                        .store(u64::try_from(ns).unwrap_or(u64::MAX), Ordering::Relaxed);
                    sample = (now, 0);
                }
                continue;
            }
            // Idle time is no poll's: the next sample starts when work does.
            sample = (Instant::now(), 0);
            // Nothing queued: fire due timers (they may queue work), then
            // park until woken or the next timer is due.
            let sleep = self.fire_timers();
            if NEXT.with(|n| n.borrow().is_some()) {
                continue;
            }
            if self.spin_for_work(i, &mut spin_budget) {
                continue;
            }
            let guard = lock(&self.park);
            self.idle.fetch_add(1, Ordering::SeqCst);
            if self.has_work(i) {
                self.idle.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            // Recomputed under the lock: a timer added since (which would
            // notify) is seen here or wakes us.
            let mut sleep = match self.next_timer.load(Ordering::Acquire) {
                u64::MAX => sleep,
                next => Some(Duration::from_nanos(
                    next.saturating_sub(self.nanos(Instant::now())),
                )),
            };
            // Another worker is busy: watch it (wake up in a while to see
            // whether it has stayed in one poll with an agent waiting in
            // its next slot).
            let watching = self.idle.load(Ordering::SeqCst) < self.locals.len();
            if watching {
                self.poll_counts(&mut seen);
                self.watchers.fetch_add(1, Ordering::SeqCst);
                sleep = Some(sleep.map_or(STEAL_NEXT_AFTER, |d| d.min(STEAL_NEXT_AFTER)));
            }
            let parked_at = Instant::now();
            drop(runnable.take());
            let guard = match sleep {
                None => self.unpark.wait(guard).unwrap_or_else(|e| e.into_inner()),
                Some(d) if d.is_zero() => guard,
                Some(d) => {
                    self.unpark
                        .wait_timeout(guard, d)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            drop(guard);
            runnable = Some(RunnableGuard::enter());
            if watching {
                self.watchers.fetch_sub(1, Ordering::SeqCst);
            }
            self.idle.fetch_sub(1, Ordering::SeqCst);
            if watching && parked_at.elapsed() >= STEAL_NEXT_AFTER {
                if let Some(agent) = self
                    .steal_next(i, &seen)
                    .or_else(|| self.steal(i, Some(&seen)))
                {
                    self.poll(i, agent);
                }
            }
        }
    }

    /// Before parking, looks for work for a while (see `SPIN_MAX`): a
    /// wake-up from outside (a node's reader, a thread agent) then costs
    /// the waker no futex call and this worker no OS wake-up. At most one
    /// worker spins at a time, and none when the runnable threads already
    /// fill the cores (it would only take a core from them). The budget
    /// (per worker) doubles after a spin that found work and halves after
    /// one that did not. Returns whether work turned up.
    fn spin_for_work(&self, i: usize, budget_ns: &mut u32) -> bool {
        // This worker counts as runnable itself.
        if crate::mailbox::runnable() > self.locals.len().min(cores())
            || SOCKET_POLLERS.load(Ordering::Relaxed) > 0
            || self.spinning.swap(true, Ordering::AcqRel)
        {
            return false;
        }
        let start = Instant::now();
        let budget = Duration::from_nanos((*budget_ns).into());
        let found = loop {
            for _ in 0..16 {
                std::hint::spin_loop();
            }
            if self.has_work(i) {
                break true;
            }
            if start.elapsed() >= budget {
                break false;
            }
        };
        self.spinning.store(false, Ordering::Release);
        *budget_ns = if found {
            budget_ns.saturating_mul(2).min(SPIN_MAX)
        } else {
            (*budget_ns / 2).max(SPIN_MIN)
        };
        found
    }

    /// Resets the running poll's budget (called before each poll).
    pub(crate) fn start_poll(&self) {
        BUDGET_LEFT.with(|b| b.set(BUDGET));
    }
}

/// An agent is its own waker: waking it queues it, once.
impl Wake for AgentCell {
    fn wake(self: Arc<Self>) {
        if self.task.wake() {
            get().schedule(Agent(self));
        }
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.task.wake() {
            get().schedule(Agent(Arc::clone(self)));
        }
    }
}

/// Queues a new async agent (its slot is SCHEDULED from birth): on a
/// worker, in its `spawned` queue, waking an idle worker only when none
/// watches (idle workers watching a busy one look at it every
/// `STEAL_NEXT_AFTER`; see the module doc); elsewhere, in the injector.
pub(crate) fn start(agent: Agent) {
    let scheduler = get();
    match WORKER.with(Cell::get) {
        Some(i) => {
            let local = &scheduler.locals[i];
            push(&local.spawned, &local.spawned_len, agent);
            // Someone parked should keep an eye on this worker (in case
            // this poll runs long, or the queue grows worth stealing), as
            // for a filled next slot: a parked worker that does not watch
            // would never look.
            scheduler.wake_watcher();
        }
        None => scheduler.inject(agent),
    }
}

/// Queues `agent` at the back of one of a worker's queues; returns the
/// queue's new length.
fn push(queue: &Mutex<VecDeque<Agent>>, len: &AtomicUsize, agent: Agent) -> usize {
    let mut q = lock(queue);
    q.push_back(agent);
    len.store(q.len(), Ordering::Release);
    q.len()
}

/// Takes the first agent of one of a worker's queues (its owner's side).
fn pop(queue: &Mutex<VecDeque<Agent>>, len: &AtomicUsize) -> Option<Agent> {
    if len.load(Ordering::Acquire) == 0 {
        return None;
    }
    let mut q = lock(queue);
    let agent = q.pop_front();
    len.store(q.len(), Ordering::Release);
    agent
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Wake, Waker};
    use std::time::{Duration, Instant};

    use crate::agent::async_agent;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Agents woken while a wake batch is open (as a node's reader holds
    /// one) are queued when it closes, all of them, and the thread's next
    /// batch works the same.
    #[test]
    fn a_wake_batch_queues_every_agent_it_woke() {
        use crate::agent::{receive_timeout, Agent};
        use crate::term::Term;
        let me = Agent::current();
        let agents: Vec<Agent> = (0..10)
            .map(|_| {
                let me = me.clone();
                async_agent::spawn(async move {
                    loop {
                        let m = async_agent::receive().await;
                        me.send(m);
                    }
                })
                .unwrap()
            })
            .collect();
        for round in 0..2 {
            {
                let _batch = super::batch_wakes();
                // Nested: only the outermost one queues.
                let _inner = super::batch_wakes();
                for a in &agents {
                    a.send(Term::Int(round));
                }
            }
            for _ in &agents {
                let m = receive_timeout(Duration::from_secs(30)).expect("every agent runs");
                assert_eq!(m, Term::Int(round));
            }
        }
        for a in &agents {
            let _ = crate::agent::exit(Term::keyword("done"), a);
        }
    }

    /// Without a worker thread, spawning an async agent is an error (it
    /// would never run), as the scheduler's start promises.
    #[test]
    fn no_worker_is_an_error() {
        assert!(super::workers_running(0).is_err());
        assert!(super::workers_running(1).is_ok());
        assert!(super::check_started().is_ok());
    }

    #[test]
    fn a_cancelled_timer_lets_go_of_its_waker_and_never_fires() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let scheduler = super::get();
        let at = Instant::now() + Duration::from_millis(20);
        let ids: Vec<u64> = (0..200)
            .map(|_| scheduler.add_timer(at, Waker::from(Arc::clone(&count))))
            .collect();
        assert_eq!(Arc::strong_count(&count), 201);
        for id in &ids[1..] {
            scheduler.cancel_timer(*id);
        }
        // Cancelled wakers are gone at once, the one kept is still held.
        assert_eq!(Arc::strong_count(&count), 2);
        // The kept timer fires: its waker is woken and let go of. No other
        // waker is held, so nothing can wake after that.
        let deadline = Instant::now() + Duration::from_secs(20);
        while Arc::strong_count(&count) > 1 {
            assert!(
                Instant::now() < deadline,
                "the kept timer did not fire (woken {} times)",
                count.0.load(Ordering::SeqCst)
            );
            std::thread::park_timeout(Duration::from_millis(5));
        }
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_dropped_sleep_cancels_its_timer() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let mut sleep = Box::pin(async_agent::sleep(Duration::from_secs(3600)));
        assert!(sleep.as_mut().poll(&mut cx).is_pending());
        assert_eq!(Arc::strong_count(&count), 3);
        drop(sleep);
        assert_eq!(Arc::strong_count(&count), 2);
        let mut short = Box::pin(async_agent::sleep(Duration::from_millis(1)));
        let _ = short.as_mut().poll(&mut cx);
        std::thread::sleep(Duration::from_millis(5));
        assert!(short.as_mut().poll(&mut cx).is_ready());
        // Completed: no timer holds the waker any more, fired or not.
        assert_eq!(Arc::strong_count(&count), 2);
    }
}
