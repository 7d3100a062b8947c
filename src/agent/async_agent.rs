//! Async agents: an agent whose body is a Rust `async` block, run by a small
//! scheduler of worker threads (one per core by default), so a process can
//! hold a million of them and a message hand-off costs no OS wake-up.
//!
//! Everything else is as for thread agents: ids, names, links and monitors
//! (in both directions between the two kinds, and across nodes), exit
//! notifications with return values, exit signals, panics as exit reasons.
//! `send`, `exit`, `link`, `unlink` and [`Agent::current`] are the same
//! functions; what waits is async here:
//!
//! ```
//! use std::time::Duration;
//! use erlangen::async_agent::{self, receive};
//! use erlangen::{receive_matching, receive_timeout, Agent, Attach, SpawnOptions, Term};
//!
//! let me = Agent::current(); // a thread agent (here: main)
//! let doubler = async_agent::spawn_with(
//!     &SpawnOptions::new().attach(Attach::Monitor),
//!     async move {
//!         let n = receive().await.as_int().unwrap_or(0);
//!         me.send(n * 2);
//!         Term::keyword("done")
//!     },
//! )
//! .unwrap();
//! doubler.send(21);
//! let wait = Some(Duration::from_secs(5));
//! assert_eq!(receive_matching(|m| m.as_int().is_some(), wait), Ok(Term::from(42)));
//! // Exit notifications arrive in order with messages: this one after the 42.
//! let notice = receive_timeout(Duration::from_secs(5)).unwrap();
//! assert!(notice.to_string().ends_with(":OK :DONE)"));
//! ```
//!
//! # Do not block
//!
//! An async agent shares its worker thread with every other async agent on
//! it: a blocking call inside one (the thread receive [`crate::receive`],
//! `std::thread::sleep`, blocking I/O, a long computation) stalls them all.
//! Await [`receive`], [`receive_timeout`], [`receive_matching`] and
//! [`sleep`] instead, and hand blocking work to a thread agent with
//! [`blocking`]: `let data = blocking(|| std::fs::read("f")).await?;`.
//!
//! # Exits
//!
//! An exit signal ends an async agent at its next awaited receive (or when
//! its body returns): the body is dropped there, so destructors run, and the
//! agent exits with the signal's reason. A panic in the body ends the agent
//! with the panic's message, as for thread agents; the worker goes on.
//!
//! # Scheduling
//!
//! Each poll may take [`BUDGET`] messages; past that a receive yields, so an
//! agent flooded with messages cannot starve the others on its worker. See
//! the `scheduler` module's doc for the rest (next slot, stealing, timers).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use super::scheduler;
use super::{exit_self, Agent, IntoOutcome, SpawnError, SpawnOptions, Timeout};
use crate::mailbox::{deadline_after, Interrupt};
use crate::term::Term;

pub use super::scheduler::{set_workers, workers, BUDGET};

/// Starts an async agent running `body` with default options and returns
/// its handle at once. Callable from any agent or plain thread.
///
/// # Errors
/// [`SpawnError`] as for [`spawn_with`].
pub fn spawn<F>(body: F) -> Result<Agent, SpawnError>
where
    F: Future + Send + 'static,
    F::Output: IntoOutcome,
{
    spawn_with(&SpawnOptions::default(), body)
}

/// Starts an async agent running `body` with `options` (attach, mailbox
/// size, name; a stack size does not apply). Attaching and registering
/// happen before the agent first runs, so no exit can be missed.
///
/// # Errors
/// [`SpawnError`]: a taken or invalid name, a zero mailbox;
/// [`SpawnError::Thread`] only if no worker thread of the scheduler could
/// start (async agents take no thread of their own).
pub fn spawn_with<F>(options: &SpawnOptions, body: F) -> Result<Agent, SpawnError>
where
    F: Future + Send + 'static,
    F::Output: IntoOutcome,
{
    let parent = super::parent_of(options);
    super::spawn_async_inner(options, parent, |_| (), Box::pin(body))
}

/// Receives the next message (in arrival order), waiting as long
/// as it takes. If the agent has been killed, it ends here.
pub fn receive() -> Receive<fn(&Term) -> bool> {
    Receive::new(None, accept_all)
}

/// Receives the next message, waiting at most `timeout`; zero polls.
pub fn receive_timeout(timeout: Duration) -> ReceiveTimeout<fn(&Term) -> bool> {
    ReceiveTimeout(Receive::new(Some(deadline_after(timeout)), accept_all))
}

/// Selective receive: the first message for which `matches` is true, in
/// arrival order; the others stay queued in their order. `timeout` `None`
/// waits forever. `matches` runs under the mailbox lock: it must only look
/// at the message.
pub fn receive_matching<F>(matches: F, timeout: Option<Duration>) -> ReceiveTimeout<F>
where
    F: FnMut(&Term) -> bool + Send + Unpin,
{
    ReceiveTimeout(Receive::new(timeout.map(deadline_after), matches))
}

fn accept_all(_: &Term) -> bool {
    true
}

/// The future of [`receive`]: a message.
#[derive(Debug)]
#[must_use = "a receive does nothing unless awaited"]
pub struct Receive<F> {
    /// The deadline and its timer; `None` waits forever. Boxed: a receive
    /// without a deadline (what most parked agents' bodies hold) stays two
    /// words, so a million parked agents' bodies stay small.
    timed: Option<Box<Timed>>,
    matches: F,
}

/// A receive's deadline, and its timer while one is set: cancelled when
/// the receive completes or is dropped, so the timer does not keep the
/// agent's waker (and so the agent) until the deadline.
#[derive(Debug)]
struct Timed {
    at: Instant,
    timer: Option<u64>,
}

impl<F: FnMut(&Term) -> bool> Receive<F> {
    /// `deadline`: `None` waits forever, as does `Some(None)` (a deadline
    /// past the end of time).
    fn new(deadline: Option<Option<Instant>>, matches: F) -> Receive<F> {
        Receive {
            timed: deadline
                .flatten()
                .map(|at| Box::new(Timed { at, timer: None })),
            matches,
        }
    }

    /// One look at the mailbox: a message, a timeout, or `Pending` with the
    /// waker (and timer) in place.
    fn poll_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<Term, Timeout>> {
        let polled = self.poll_mailbox(cx);
        if polled.is_ready() {
            if let Some(timed) = self.timed.as_mut() {
                cancel_timer(&mut timed.timer);
            }
        }
        polled
    }

    fn poll_mailbox(&mut self, cx: &mut Context<'_>) -> Poll<Result<Term, Timeout>> {
        if !scheduler::take_budget() {
            // Spent this poll's share: to the back of the queue.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let matches = &mut self.matches;
        match super::with_current(|me| me.0.mailbox().poll_receive(cx.waker(), matches)) {
            Some(Ok(message)) => Poll::Ready(Ok(message)),
            Some(Err(Interrupt::Exit(reason))) => exit_self(reason),
            Some(Err(Interrupt::Timeout)) => Poll::Ready(Err(Timeout)),
            None => match self.timed.as_mut() {
                None => Poll::Pending,
                Some(timed) => {
                    if Instant::now() >= timed.at {
                        return Poll::Ready(Err(Timeout));
                    }
                    if timed.timer.is_none() {
                        timed.timer =
                            Some(scheduler::get().add_timer(timed.at, cx.waker().clone()));
                    }
                    Poll::Pending
                }
            },
        }
    }
}

impl<F> Drop for Receive<F> {
    fn drop(&mut self) {
        if let Some(timed) = self.timed.as_mut() {
            cancel_timer(&mut timed.timer);
        }
    }
}

/// Cancels a receive's or sleep's timer, if one is set.
fn cancel_timer(timer: &mut Option<u64>) {
    if let Some(id) = timer.take() {
        scheduler::get().cancel_timer(id);
    }
}

impl<F: FnMut(&Term) -> bool + Unpin> Future for Receive<F> {
    type Output = Term;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Term> {
        match self.poll_inner(cx) {
            Poll::Ready(Ok(message)) => Poll::Ready(message),
            // No deadline: a timeout cannot come.
            Poll::Ready(Err(Timeout)) | Poll::Pending => Poll::Pending,
        }
    }
}

/// The future of [`receive_timeout`] and [`receive_matching`].
#[derive(Debug)]
#[must_use = "a receive does nothing unless awaited"]
pub struct ReceiveTimeout<F>(Receive<F>);

impl<F: FnMut(&Term) -> bool + Unpin> Future for ReceiveTimeout<F> {
    type Output = Result<Term, Timeout>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Term, Timeout>> {
        self.0.poll_inner(cx)
    }
}

/// Waits `duration` without blocking the worker. Unlike a receive, a sleep
/// does not end the agent when it is killed: it ends at its next receive.
pub fn sleep(duration: Duration) -> Sleep {
    Sleep {
        at: deadline_after(duration),
        timer: None,
    }
}

/// The future of [`sleep`].
#[derive(Debug)]
#[must_use = "a sleep does nothing unless awaited"]
pub struct Sleep {
    at: Option<Instant>,
    /// The deadline's timer, while one is set (cancelled as a receive's).
    timer: Option<u64>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(at) = self.at else {
            return Poll::Pending;
        };
        if Instant::now() >= at {
            cancel_timer(&mut self.timer);
            return Poll::Ready(());
        }
        if self.timer.is_none() {
            self.timer = Some(scheduler::get().add_timer(at, cx.waker().clone()));
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        cancel_timer(&mut self.timer);
    }
}

/// Lets the other agents on this worker run before this one goes on.
pub fn yield_now() -> YieldNow {
    YieldNow(false)
}

/// The future of [`yield_now`].
#[derive(Debug)]
#[must_use = "a yield does nothing unless awaited"]
pub struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Runs a blocking `job` on a thread agent of its own and waits for its
/// result without blocking the worker: the way to do file I/O, blocking
/// calls or long computations from an async agent.
///
/// # Errors
/// The job's exit reason if it panicked (or its thread could not start).
pub fn blocking<R, J>(job: J) -> Blocking<R>
where
    J: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let shared = Arc::new(Mutex::new(BlockingState::<R> {
        result: None,
        waker: None,
    }));
    let filled = Arc::clone(&shared);
    let started = super::spawn(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
            .map_err(super::unwind_reason);
        let waker = {
            let mut s = filled.lock().unwrap_or_else(|e| e.into_inner());
            s.result = Some(result);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    });
    if let Err(e) = started {
        shared.lock().unwrap_or_else(|e| e.into_inner()).result =
            Some(Err(Term::Str(e.to_string())));
    }
    Blocking(shared)
}

struct BlockingState<R> {
    result: Option<Result<R, Term>>,
    waker: Option<Waker>,
}

/// The future of [`blocking`].
#[must_use = "the job runs anyway; await it for its result"]
pub struct Blocking<R>(Arc<Mutex<BlockingState<R>>>);

impl<R> std::fmt::Debug for Blocking<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Blocking { .. }")
    }
}

impl<R> Future for Blocking<R> {
    type Output = Result<R, Term>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<R, Term>> {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match s.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Runs `future` to completion on the calling thread, which blocks (parks)
/// while it waits. For thread agents and plain threads that want to await
/// something, such as an async registered function. Inside an async agent
/// it would block the worker (and every agent queued there): called there,
/// it ends the agent at once, with a reason saying to await the future
/// instead.
pub fn block_on<F: Future>(future: F) -> F::Output {
    if scheduler::on_worker() {
        super::refuse_blocking("async_agent::block_on", "the future itself (future.await)");
    }
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        scheduler::reset_budget();
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        thread::park();
    }
}
