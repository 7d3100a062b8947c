//! The floor for async agents: W1-W3 of BENCHMARKS.md on a bare std-only
//! executor, the least any async-agent design does per hop. No agents,
//! bounds, priority lane, links, terms or counters: what async agents
//! cannot beat.
//!
//! - A task is an `Arc` holding its state (queued at most once) and its
//!   boxed future; its waker is the `Arc` (`std::task::Wake`).
//! - A mailbox is a `Mutex<VecDeque<u64>>` plus the receiver's `Waker`.
//! - Each worker has a run queue of its own (`Mutex<VecDeque>`) and a
//!   "next" slot: a task woken by the running task runs next on the same
//!   worker (at most 32 in a row while others wait). Wake-ups from outside
//!   the workers go to one injector. An idle worker takes from the
//!   injector, steals half of another worker's queue, then parks on a
//!   `Condvar`; queueing work while a worker is parked wakes it.
//! - A task spawned on a worker waits in that worker's own `spawned` queue,
//!   which no other worker takes from, and wakes nobody: a short-lived
//!   task runs, ends and is freed next to its spawner (moved to another
//!   core, its free takes the allocator's lock of the spawner's arena and
//!   its reply wakes the spawner across cores: W3 took 0.6 µs per spawn on
//!   two workers against 0.18 on one). A general executor must let other
//!   workers take them once they pile up (Erlangen does past 1 ms of work);
//!   the floor's workloads never need that.
//!
//! Result lines start with "async ", as the `--async` runs of Erlangen's
//! benchmark programs do, and use their wording.
//!
//!   rustc -O --edition 2021 bench/floor_async.rs -o target/bench-floor-async
//!   target/bench-floor-async [workers]

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Instant;

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

const IDLE: u8 = 0;
const SCHEDULED: u8 = 1;
const RUNNING: u8 = 2;
const NOTIFIED: u8 = 3;
const DONE: u8 = 4;

struct Task {
    state: AtomicU8,
    future: Mutex<Option<BoxFuture>>,
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        if self.transition() {
            schedule(self);
        }
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if self.transition() {
            schedule(Arc::clone(self));
        }
    }
}

impl Task {
    /// A wake: true if the caller queues the task.
    fn transition(&self) -> bool {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let next = match s {
                IDLE => SCHEDULED,
                RUNNING => NOTIFIED,
                _ => return false,
            };
            match self.state.compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return next == SCHEDULED,
                Err(now) => s = now,
            }
        }
    }
}

struct Local {
    queue: Mutex<VecDeque<Arc<Task>>>,
    len: AtomicUsize,
    /// Tasks spawned on this worker, not yet run: its own.
    spawned: Mutex<VecDeque<Arc<Task>>>,
    spawned_len: AtomicUsize,
}

struct Executor {
    locals: Box<[Local]>,
    injector: Mutex<VecDeque<Arc<Task>>>,
    injected: AtomicUsize,
    idle: AtomicUsize,
    park: Mutex<()>,
    unpark: Condvar,
}

static EXECUTOR: OnceLock<Arc<Executor>> = OnceLock::new();

thread_local! {
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
    static NEXT: RefCell<Option<Arc<Task>>> = const { RefCell::new(None) };
}

fn executor() -> &'static Arc<Executor> {
    EXECUTOR.get().expect("executor started")
}

fn start(workers: usize) {
    let ex = Arc::new(Executor {
        locals: (0..workers)
            .map(|_| Local {
                queue: Mutex::new(VecDeque::new()),
                len: AtomicUsize::new(0),
                spawned: Mutex::new(VecDeque::new()),
                spawned_len: AtomicUsize::new(0),
            })
            .collect(),
        injector: Mutex::new(VecDeque::new()),
        injected: AtomicUsize::new(0),
        idle: AtomicUsize::new(0),
        park: Mutex::new(()),
        unpark: Condvar::new(),
    });
    let _ = EXECUTOR.set(Arc::clone(&ex));
    for i in 0..workers {
        let ex = Arc::clone(&ex);
        thread::spawn(move || ex.worker(i));
    }
}

/// Queues a woken task: into this worker's next slot (the one there goes
/// to the back of the local queue), or from outside into the injector.
fn schedule(task: Arc<Task>) {
    let ex = executor();
    match WORKER.with(Cell::get) {
        Some(i) => {
            if let Some(old) = NEXT.with(|n| n.borrow_mut().replace(task)) {
                ex.push_local(i, old);
            }
        }
        None => ex.inject(task),
    }
}

/// Starts a task: at the back of this worker's `spawned` queue, or the
/// injector.
fn spawn(future: impl Future<Output = ()> + Send + 'static) {
    let task = Arc::new(Task { state: AtomicU8::new(SCHEDULED), future: Mutex::new(Some(Box::pin(future))) });
    let ex = executor();
    match WORKER.with(Cell::get) {
        Some(i) => {
            let local = &ex.locals[i];
            let mut q = local.spawned.lock().unwrap();
            q.push_back(task);
            local.spawned_len.store(q.len(), Ordering::Release);
        }
        None => ex.inject(task),
    }
}

impl Executor {
    fn push_local(&self, i: usize, task: Arc<Task>) {
        let local = &self.locals[i];
        let mut q = local.queue.lock().unwrap();
        q.push_back(task);
        local.len.store(q.len(), Ordering::Release);
        drop(q);
        self.notify();
    }

    fn inject(&self, task: Arc<Task>) {
        let mut q = self.injector.lock().unwrap();
        q.push_back(task);
        self.injected.store(q.len(), Ordering::Release);
        drop(q);
        self.notify();
    }

    fn notify(&self) {
        if self.idle.load(Ordering::SeqCst) > 0 {
            let _g = self.park.lock().unwrap();
            self.unpark.notify_one();
        }
    }

    fn next_task(&self, i: usize, in_a_row: &mut u32) -> Option<Arc<Task>> {
        let local = &self.locals[i];
        if *in_a_row < 32 || (local.len.load(Ordering::Acquire) == 0 && local.spawned_len.load(Ordering::Acquire) == 0) {
            if let Some(t) = NEXT.with(|n| n.borrow_mut().take()) {
                *in_a_row += 1;
                return Some(t);
            }
        }
        *in_a_row = 0;
        if local.len.load(Ordering::Acquire) > 0 {
            let mut q = local.queue.lock().unwrap();
            let t = q.pop_front();
            local.len.store(q.len(), Ordering::Release);
            if t.is_some() {
                return t;
            }
        }
        if local.spawned_len.load(Ordering::Acquire) > 0 {
            let mut q = local.spawned.lock().unwrap();
            let t = q.pop_front();
            local.spawned_len.store(q.len(), Ordering::Release);
            if t.is_some() {
                return t;
            }
        }
        if let Some(t) = NEXT.with(|n| n.borrow_mut().take()) {
            return Some(t);
        }
        if self.injected.load(Ordering::Acquire) > 0 {
            let mut inj = self.injector.lock().unwrap();
            let first = inj.pop_front();
            let take = inj.len().min(32);
            let batch: Vec<_> = inj.drain(..take).collect();
            self.injected.store(inj.len(), Ordering::Release);
            drop(inj);
            if !batch.is_empty() {
                let mut q = local.queue.lock().unwrap();
                q.extend(batch);
                local.len.store(q.len(), Ordering::Release);
            }
            if first.is_some() {
                return first;
            }
        }
        for k in 1..self.locals.len() {
            let j = (i + k) % self.locals.len();
            let victim = &self.locals[j];
            if victim.len.load(Ordering::Acquire) == 0 {
                continue;
            }
            let mut stolen = {
                let mut q = victim.queue.lock().unwrap();
                let take = q.len().div_ceil(2);
                let at = q.len() - take;
                let s = q.split_off(at);
                victim.len.store(q.len(), Ordering::Release);
                s
            };
            let first = stolen.pop_front();
            if !stolen.is_empty() {
                let mut q = local.queue.lock().unwrap();
                q.extend(stolen);
                local.len.store(q.len(), Ordering::Release);
            }
            if first.is_some() {
                return first;
            }
        }
        None
    }

    fn has_work(&self, i: usize) -> bool {
        self.injected.load(Ordering::SeqCst) > 0
            || self.locals.iter().any(|l| l.len.load(Ordering::SeqCst) > 0)
            || self.locals[i].spawned_len.load(Ordering::SeqCst) > 0
    }

    fn worker(&self, i: usize) {
        WORKER.with(|w| w.set(Some(i)));
        let mut in_a_row = 0;
        loop {
            if let Some(task) = self.next_task(i, &mut in_a_row) {
                self.run(i, task);
                continue;
            }
            let guard = self.park.lock().unwrap();
            self.idle.fetch_add(1, Ordering::SeqCst);
            if self.has_work(i) {
                self.idle.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            drop(self.unpark.wait(guard).unwrap());
            self.idle.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn run(&self, i: usize, task: Arc<Task>) {
        if task.state.compare_exchange(SCHEDULED, RUNNING, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return;
        }
        let waker = Waker::from(Arc::clone(&task));
        let mut cx = Context::from_waker(&waker);
        let mut slot = task.future.lock().unwrap();
        let ready = match slot.as_mut() {
            Some(f) => f.as_mut().poll(&mut cx).is_ready(),
            None => true,
        };
        if ready {
            task.state.store(DONE, Ordering::Release);
            let f = slot.take();
            drop(slot);
            drop(f);
            return;
        }
        drop(slot);
        if task.state.compare_exchange(RUNNING, IDLE, Ordering::AcqRel, Ordering::Acquire).is_err() {
            task.state.store(SCHEDULED, Ordering::Release);
            self.push_local(i, task);
        }
    }
}

/// A mailbox: a queue plus the receiver's waker.
#[derive(Default)]
struct Mailbox {
    inner: Mutex<(VecDeque<u64>, Option<Waker>)>,
}

impl Mailbox {
    fn new() -> Arc<Mailbox> {
        Arc::new(Mailbox::default())
    }

    fn send(&self, v: u64) {
        let waker = {
            let mut m = self.inner.lock().unwrap();
            m.0.push_back(v);
            m.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn receive(&self) -> Receive<'_> {
        Receive(self)
    }
}

struct Receive<'a>(&'a Mailbox);

impl Future for Receive<'_> {
    type Output = u64;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u64> {
        let mut m = self.0.inner.lock().unwrap();
        if let Some(v) = m.0.pop_front() {
            return Poll::Ready(v);
        }
        match &m.1 {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => m.1 = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

const STOP: u64 = u64::MAX;

fn ring(n: usize, hops: u64) {
    let boxes: Vec<Arc<Mailbox>> = (0..n).map(|_| Mailbox::new()).collect();
    let (done, finished) = mpsc::channel();
    for i in 0..n {
        let (me, next, done) = (Arc::clone(&boxes[i]), Arc::clone(&boxes[(i + 1) % n]), done.clone());
        spawn(async move {
            loop {
                match me.receive().await {
                    STOP => return,
                    0 => done.send(()).unwrap(),
                    k => next.send(k - 1),
                }
            }
        });
    }
    let start = Instant::now();
    boxes[0].send(hops);
    finished.recv().unwrap();
    let t = start.elapsed().as_secs_f64();
    for b in &boxes {
        b.send(STOP);
    }
    println!(
        "async W1 ring n={n}: {hops} hops in {t:.3} s, {:.0} msgs/s, {:.3} us/hop",
        hops as f64 / t,
        t * 1e6 / hops as f64
    );
}

fn ping_pong(messages: u64, pairs: usize) {
    let (done, finished) = mpsc::channel();
    let mut pingers = Vec::new();
    for _ in 0..pairs {
        let (ping, pong) = (Mailbox::new(), Mailbox::new());
        let (p2, q2) = (Arc::clone(&ping), Arc::clone(&pong));
        spawn(async move {
            loop {
                match q2.receive().await {
                    STOP => return,
                    v => p2.send(v),
                }
            }
        });
        let go = Mailbox::new();
        let (go2, done) = (Arc::clone(&go), done.clone());
        spawn(async move {
            go2.receive().await;
            for i in 0..messages / 2 {
                pong.send(i);
                ping.receive().await;
            }
            pong.send(STOP);
            done.send(()).unwrap();
        });
        pingers.push(go);
    }
    let start = Instant::now();
    for go in &pingers {
        go.send(0);
    }
    for _ in 0..pairs {
        finished.recv().unwrap();
    }
    let t = start.elapsed().as_secs_f64();
    let total = messages * pairs as u64;
    println!(
        "async W2 ping-pong pairs={pairs}: {total} messages in {t:.3} s, {:.0} msgs/s, {:.3} us/msg",
        total as f64 / t,
        t * 1e6 / total as f64
    );
}

/// A coordinator task spawns `count` tasks that tell it they ended (at
/// most 1,000 unacknowledged), as Erlangen's W3 spawns monitored agents.
fn spawn_exit(count: u64) {
    let (done, finished) = mpsc::channel();
    spawn(async move {
        let exits = Mailbox::new();
        let start = Instant::now();
        let mut outstanding = 0u64;
        for _ in 0..count {
            if outstanding == 1000 {
                exits.receive().await;
                outstanding -= 1;
            }
            let exits = Arc::clone(&exits);
            spawn(async move { exits.send(0) });
            outstanding += 1;
        }
        for _ in 0..outstanding {
            exits.receive().await;
        }
        done.send(start.elapsed()).unwrap();
    });
    let t = finished.recv().unwrap().as_secs_f64();
    println!("async W3 spawn: {count} spawns+exits in {t:.3} s, {:.3} us/spawn", t * 1e6 / count as f64);
}

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// `count` tasks each parked in a receive on its own mailbox at once.
fn alive(count: usize) {
    let before = resident_bytes();
    let reached = Arc::new(AtomicUsize::new(0));
    let (done, finished) = mpsc::channel();
    let mut boxes = Vec::with_capacity(count);
    for _ in 0..count {
        let mailbox = Mailbox::new();
        let (me, reached, done) = (Arc::clone(&mailbox), Arc::clone(&reached), done.clone());
        spawn(async move {
            let mut receive = me.receive();
            // Count the first poll, then park.
            let first = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut receive).poll(cx))).await;
            if first.is_pending() {
                if reached.fetch_add(1, Ordering::AcqRel) + 1 == count {
                    done.send(()).unwrap();
                }
                receive.await;
            }
        });
        boxes.push(mailbox);
    }
    drop(done);
    finished.recv().unwrap();
    let after = resident_bytes();
    println!(
        "async W3 alive: {count} parked tasks, resident {} bytes/agent",
        after.saturating_sub(before) / count as u64
    );
    for b in &boxes {
        b.send(STOP);
    }
}

fn main() {
    let workers = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| thread::available_parallelism().map_or(2, |n| n.get()));
    start(workers);
    println!("floor: bare std-only executor, {workers} workers, per-worker queues, next slot, injector");
    ring(10, 1_000_000);
    ring(1000, 1_000_000);
    ping_pong(1_000_000, 1);
    ping_pong(1_000_000, 2);
    ping_pong(1_000_000, 4);
    spawn_exit(100_000);
    alive(1_000_000);
}
