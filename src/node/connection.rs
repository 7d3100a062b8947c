//! One authenticated TCP connection to a peer node: a writer thread that
//! batches, a reader thread that dispatches, heartbeats and failure
//! detection.
//!
//! Outgoing frames are encoded by the sending thread straight into a shared
//! buffer; the writer swaps the whole buffer out and writes it with one
//! `write_all`, so a burst of sends costs few syscalls (BENCHMARKS.md: one
//! `write` per message is slower than Erlang, batching is 10x-150x faster).
//! The buffer is bounded (`max_queue` bytes); beyond it frames are dropped
//! and counted, never piled up. On a connection with nothing queued and
//! nothing being written, that has been quiet (nothing written for
//! `DIRECT_WRITE_GAP`) or has read a frame from the peer since it last
//! wrote (request/reply traffic: the peer answered), the sender writes
//! its one frame itself, with a write that never waits
//! (`sys::write_now`): waking the writer thread would cost more than the
//! write. What the socket does not take at once goes back to the front of
//! the buffer for the writer thread, so a send to a stopped peer returns at
//! once. Only one thread writes at a time (`writing`), so frames keep their
//! order. A one-way burst reads nothing from the peer, so it queues behind
//! the writer thread and is written in batches.
//!
//! The reader, after it handed over traffic (a message or a request, never
//! a heartbeat), polls the socket for a while before it blocks (`Poller`):
//! on a VM an OS wake-up of an idle CPU costs tens of µs, more than a
//! whole round trip between two nodes that poll. Polling is bounded and
//! adaptive, yields the core between reads, and never happens on an idle
//! connection.
//!
//! Failure detection (the bound SPEC section 6 asks for): the node's
//! ticker (cluster.rs) wakes once per `tick` and queues a heartbeat on
//! every connection that wrote nothing for half a tick, so a live peer is
//! never silent for longer than 1.5 `tick` plus scheduling noise; the
//! reader's socket timeout is `timeout` (> 1.5 `tick`), so a peer is
//! declared down at most `timeout` after its last frame, and a broken
//! socket at once. One thread per node wakes for heartbeats, not one per
//! connection: idle connections cost a write on the sending side and a
//! read on the receiving side, and nothing else.
//!
//! Sealing (PROTOCOL.md section 5, "Sealed frames"): `out.buf` holds clear
//! frames, appended by every sender (messages, the ticker's heartbeats,
//! the first NODES frame) under the `out` lock. Whoever writes (the writer
//! thread, or a sender writing directly; only one at a time, `writing`)
//! takes the buffer and the connection's one `Sealer` together under that
//! lock, seals what it took into its write buffer (records of whole
//! frames: one frame on a quiet connection, a batch in a burst) and
//! gives the sealer back; so record numbers follow the byte order on the
//! wire. Bytes a direct write could not finish are already sealed: they
//! wait in `out.front`, which is written before anything in `buf`. The
//! reader opens each record with the receiving direction's `Opener`; one
//! that fails to open (altered, replayed, reordered, truncated) closes the
//! connection before anything of it is delivered: one log line (the loss,
//! with the reason), one count in the peer's `bad-seals` and `errors`.
//!
//! Lock rule: `out` is held only to append or swap bytes (and while the
//! codec encodes a term into it, which runs no user code); sealing runs
//! outside it.

use std::collections::HashMap;
use std::io::{self, BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use super::attachments::Attachments;
use super::handshake::PeerInfo;
use super::latch::Latch;
use super::protocol::{self, Request};
use super::seal::{Keys, Opener, RecordError, Sealer};
use crate::agent::Agent;
use crate::frame;
use crate::sys;
use crate::term::{AgentIds, EncodeError};

/// Counters of one peer, kept across reconnects.
#[derive(Default)]
pub(crate) struct PeerStats {
    pub errors: AtomicU64,
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub dropped: AtomicU64,
    /// Sealed records that failed to open (each closed its connection).
    pub bad_seals: AtomicU64,
    pub established: Mutex<Option<SystemTime>>,
}

struct Out {
    buf: Vec<u8>,
    closed: bool,
    /// The writer is parked on `ready`: only then does a send pay for a
    /// notify (a futex syscall).
    writer_waiting: bool,
    /// Someone (the writer, or a sender writing directly) is writing to
    /// the socket now; bytes in `buf` wait for them.
    writing: bool,
    /// An empty buffer with capacity, for a sender's direct write.
    spare: Vec<u8>,
    /// When the socket last finished a write: a sender writes directly
    /// only on a connection that has been quiet, so a stream of sends is
    /// batched by the writer thread.
    last_write: Option<Instant>,
    /// The peer's frames read (`PeerStats::messages_in`) when the socket
    /// last finished a write: if more were read since, the peer answered
    /// what we wrote (request/reply traffic) and the next frame is
    /// written directly however soon it comes.
    in_at_last_write: u64,
    /// The last frame is queued (`send_last`): the socket is shut down once
    /// the buffer is written, and nothing more is queued.
    closing: bool,
    /// Bytes in wire form (sealed records, or clear frames) that a direct
    /// write left over: written before anything in `buf`.
    front: Vec<u8>,
    /// Seals what is written, once the connection is established with
    /// sealing on; taken by whoever writes (`writing`) and given back.
    sealer: Option<Sealer>,
    /// An empty buffer with capacity, for a direct write's records.
    spare_wire: Vec<u8>,
}

impl Out {
    /// Nothing waits to be written.
    fn idle(&self) -> bool {
        self.buf.is_empty() && self.front.is_empty()
    }

    /// A write to the socket ended (the writer's or a direct one): the
    /// sealer is given back, and the moment and the peer's frames read so
    /// far (`messages_in`) are noted for the next direct write.
    fn wrote(&mut self, sealer: Option<Sealer>, messages_in: u64) {
        self.writing = false;
        self.sealer = sealer;
        self.last_write = Some(Instant::now());
        self.in_at_last_write = messages_in;
    }
}

/// What the connection calls back into (the node).
pub(crate) trait Dispatch: Send + Sync {
    /// Handles one request from `conn`'s peer.
    fn dispatch(&self, conn: &Arc<Connection>, request: Request);
    /// The connection is gone (called once).
    fn down(&self, conn: &Arc<Connection>, reason: &str);
    /// Limits for decoding terms.
    fn limits(&self) -> &crate::term::Limits;
    /// The local agent a SEND's `to_incarnation` and `to` fields name, if
    /// any (none for an agent of an earlier run of this node).
    fn resolve(&self, to_inc: u64, aid: &str) -> Option<crate::agent::Agent>;
}

/// SEND targets already resolved by this connection's reader. Bounded: a
/// peer naming many agents only costs lookups, not memory.
const RESOLVED_CACHE: usize = 256;

/// A sender writes its frame itself if nothing was written on the
/// connection for this long (or the peer sent something since the last
/// write): isolated messages skip the writer thread's wake-up, while a
/// burst queues behind the writer and is written in batches (one `write`
/// per message would be slower than Erlang, BENCHMARKS.md). 20 µs is above
/// the time between batch writes in a burst; replies, which may follow
/// each other faster than that (a round trip between polling nodes takes
/// about 15 µs), are recognised by the frames read in between.
const DIRECT_WRITE_GAP: Duration = Duration::from_micros(20);

/// How long a reader that just handed over traffic polls its socket
/// before it blocks, in nanoseconds (adapted per connection: doubled
/// after a poll that caught something, halved after one that did not,
/// within [`POLL_MIN`, `POLL_MAX`]). A blocking read that the peer's
/// next frame wakes costs an OS wake-up of an idle CPU, about 25 µs on
/// the 2-vCPU test machine (a blocking TCP ping-pong between two
/// processes there takes 52 µs a round trip, a polling one 6 µs); a
/// round trip of a small message between two nodes that poll takes
/// 15-30 µs, so the ceiling covers one.
const POLL_MAX: u32 = 100_000;
const POLL_MIN: u32 = 5_000;
const POLL_START: u32 = 100_000;
/// A yield that gave the core away for this long means threads that
/// compute were waiting for it (one that does runs for a time slice, 0.75
/// ms or more on Linux): polling stops (see `Poller::wait`). It is above
/// an async worker's spin (at most 50 µs, agent/scheduler.rs), which a
/// yield may also have to wait out.
const YIELD_CONTENDED: Duration = Duration::from_micros(500);
/// A reader polls only after handing over at most this many frames since
/// its last wait: request/reply traffic, not a stream.
const POLL_BURST: u32 = 16;
/// While polling does not pay, one read in this many polls again.
const POLL_PROBE_EVERY: u32 = 64;
// Readers of this process polling now (kept by the scheduler, whose idle
// workers do not spin meanwhile): at most one per core but one, so that
// polling never takes every core.
use crate::agent::scheduler::SOCKET_POLLERS as POLLING;

fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The reader's wait for the socket. Before a read that would block, the
/// reader polls the socket (peeks that never block, yielding the core
/// between them) for a few microseconds, but only when it just handed
/// over a little traffic (`frames`: a few messages or requests, never a
/// heartbeat alone, so an idle connection never polls; not a burst, whose
/// next read has bytes waiting or is worth one wake-up for many frames),
/// while polling has been paying off, while
/// no more thread agents of this node are runnable than there are cores,
/// while fewer readers of this process than cores poll, and while its
/// yields get the core straight back (a yield that gave the core away for
/// long shows threads of any process waiting for one: polling stops). Request/reply
/// traffic then reaches the reader without an OS wake-up. (A wrapper
/// implementing `Read` would make `BufReader` zero its 64 KiB buffer,
/// which std's `TcpStream` avoids.)
struct Poller {
    /// Messages and requests handed over since the last wait: the next
    /// wait polls only after a few (`POLL_BURST` at most).
    frames: u32,
    /// The adaptive poll budget, in nanoseconds.
    budget_ns: u32,
    /// Waits that did not poll since the budget fell under `POLL_MIN`.
    skips: u32,
}

/// Counts a polling reader for as long as it lives.
struct PollingGuard;

impl Drop for PollingGuard {
    fn drop(&mut self) {
        POLLING.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Poller {
    fn new() -> Poller {
        Poller {
            frames: 0,
            budget_ns: POLL_START,
            skips: 0,
        }
    }

    /// Counts a message or request handed over.
    fn arm(&mut self) {
        self.frames = self.frames.saturating_add(1);
    }

    /// After a few frames (and counting again from 0), polls `stream`
    /// within the budget:
    /// `true` if a read would now return at once, `false` if the read will
    /// block (nothing came, polling does not pay now, or the socket
    /// reported an error, which the read then reports).
    fn wait(&mut self, stream: &TcpStream) -> bool {
        let frames = std::mem::take(&mut self.frames);
        if frames == 0 || frames > POLL_BURST {
            return false;
        }
        if self.budget_ns < POLL_MIN {
            self.skips = self.skips.wrapping_add(1);
            if self.skips % POLL_PROBE_EVERY != 0 {
                return false;
            }
            self.budget_ns = POLL_START;
        }
        let cores = cores();
        if cores < 2 || crate::agent::runnable_threads() >= cores {
            return false;
        }
        if POLLING.fetch_add(1, Ordering::Relaxed) >= cores - 1 {
            POLLING.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        let _polling = PollingGuard;
        let budget = Duration::from_nanos(self.budget_ns.into());
        let start = Instant::now();
        loop {
            match sys::readable_now(stream) {
                Ok(()) => {
                    self.budget_ns = (self.budget_ns.saturating_mul(2)).clamp(POLL_MIN, POLL_MAX);
                    return true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return false,
            }
            let now = Instant::now();
            if now.duration_since(start) >= budget {
                // Under POLL_MIN means "do not poll".
                self.budget_ns /= 2;
                return false;
            }
            thread::yield_now();
            if now.elapsed() >= YIELD_CONTENDED {
                // Other threads (of any process) were waiting for this
                // core: the cores are oversubscribed, and polling would
                // only take time from them. Block, and poll again only at
                // the next probe.
                self.budget_ns = 0;
                return false;
            }
        }
    }
}

/// Most messages handed to an agent in one batch.
const MAX_BATCH: usize = 1024;

/// Consecutive messages for one agent, decoded and not yet delivered.
#[derive(Default)]
struct Batch {
    to_inc: u64,
    to: String,
    messages: Vec<crate::term::Term>,
}

/// A connection; before `established` it only queues.
pub(crate) struct Connection {
    /// `"host/node"` of the peer.
    pub peer: String,
    /// Set once the handshake succeeded.
    info: OnceLock<PeerInfo>,
    stream: OnceLock<TcpStream>,
    out: Mutex<Out>,
    ready: Condvar,
    down: AtomicBool,
    pub stats: Arc<PeerStats>,
    max_queue: usize,
    /// Local agents attached to the peer's agents over this connection.
    pub attached: Attachments,
    /// An accepted connection from the peer took this (dialing) connection
    /// over: simultaneous dials end with one connection (see `node`).
    claimed: Latch,
    /// Held while the reader hands what it read to agents, and taken to
    /// mark the connection down: whatever this connection delivers is
    /// delivered before anyone is told it is down, and nothing after
    /// (bytes still buffered when another thread takes it down, say a
    /// writer that found the socket broken, are dropped and counted).
    delivery: Mutex<()>,
    /// The reader thread, which may take the connection down while it
    /// holds `delivery` itself.
    reader: OnceLock<std::thread::ThreadId>,
    /// Set once the node has told everyone attached over this connection
    /// that it is down (`loss_handled`).
    lost: Latch,
    /// The connection to the same peer this one replaces, while that one's
    /// loss may still be being told: this one delivers nothing before.
    predecessor: Mutex<Option<Arc<Connection>>>,
    /// When the handshake succeeded.
    established_at: OnceLock<Instant>,
    /// Whether the peer is hidden, once its first NODES frame said
    /// (cluster.rs); a peer that never sends one counts as hidden.
    pub hidden: OnceLock<bool>,
    /// Set when this connection is closed on purpose by either side
    /// (DISCONNECT, a replaced connection): its loss is not reported to
    /// other members and not dialed again.
    pub quiet_loss: AtomicBool,
    /// Set when the node dialed on its own (a redial of a lost member, a
    /// member another node listed; cluster.rs): a failure of that dial
    /// is logged at debug.
    pub background: AtomicBool,
}

/// Appends one frame whose payload `write` encodes (returning the frame's
/// kind) to `buf`: `Ok(false)`, with `buf` as it was, if its length does
/// not fit the header; `Err`, with `buf` as it was, if the payload cannot
/// be encoded or is larger than peers accept (checked here, at the
/// sender, so an oversized message is the sending call's error and not a
/// protocol error that would take the connection down for every agent
/// using it).
fn append_frame(
    buf: &mut Vec<u8>,
    write: impl FnOnce(&mut Vec<u8>) -> Result<u8, EncodeError>,
) -> Result<bool, EncodeError> {
    let start = buf.len();
    let header = frame::begin_frame(buf, 0);
    match write(buf) {
        Ok(kind) => buf[header + 4] = kind,
        Err(e) => {
            buf.truncate(start);
            return Err(e);
        }
    }
    let size = buf.len() - header - 4;
    if size > protocol::MAX_FRAME {
        buf.truncate(start);
        return Err(EncodeError::TooBig {
            size,
            max: protocol::MAX_FRAME,
        });
    }
    if frame::finish_frame(buf, header).is_err() {
        buf.truncate(start);
        return Ok(false);
    }
    Ok(true)
}

impl Connection {
    pub(crate) fn new(peer: String, stats: Arc<PeerStats>, max_queue: usize) -> Arc<Connection> {
        Arc::new(Connection {
            peer,
            info: OnceLock::new(),
            stream: OnceLock::new(),
            out: Mutex::new(Out {
                buf: Vec::with_capacity(64 * 1024),
                closed: false,
                writer_waiting: false,
                writing: false,
                spare: Vec::with_capacity(1024),
                last_write: None,
                in_at_last_write: 0,
                closing: false,
                front: Vec::new(),
                sealer: None,
                spare_wire: Vec::with_capacity(1024),
            }),
            ready: Condvar::new(),
            down: AtomicBool::new(false),
            stats,
            max_queue,
            attached: Attachments::new(),
            claimed: Latch::new(),
            delivery: Mutex::new(()),
            reader: OnceLock::new(),
            lost: Latch::new(),
            predecessor: Mutex::new(None),
            established_at: OnceLock::new(),
            hidden: OnceLock::new(),
            quiet_loss: AtomicBool::new(false),
            background: AtomicBool::new(false),
        })
    }

    /// Marks this dialing connection as taken over by an accepted one.
    /// Returns `false` if it already was.
    pub(crate) fn claim(&self) -> bool {
        self.claimed.set()
    }

    /// Waits until the connection is claimed or `deadline` passes; `true`
    /// if it was claimed.
    pub(crate) fn wait_claimed(&self, deadline: Instant) -> bool {
        self.claimed.wait(deadline, || !self.is_down())
    }

    /// `true` if an accepted connection took this one over.
    pub(crate) fn is_claimed(&self) -> bool {
        self.claimed.is_set()
    }

    fn lock(&self) -> MutexGuard<'_, Out> {
        super::lock(&self.out)
    }

    /// How long ago the handshake succeeded (`None` before).
    pub(crate) fn established_for(&self) -> Option<Duration> {
        self.established_at.get().map(Instant::elapsed)
    }

    /// The peer's incarnation, once connected.
    pub(crate) fn incarnation(&self) -> Option<u64> {
        self.info.get().map(|i| i.incarnation)
    }

    /// Bytes queued for the peer and not yet written.
    pub(crate) fn queued_bytes(&self) -> usize {
        let out = self.lock();
        out.buf.len() + out.front.len()
    }

    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// Queues a request. Returns `Ok(false)` if it was dropped (queue full
    /// or connection down; counted), `Err` if it cannot go on the wire (a
    /// term that cannot be encoded, a frame larger than peers accept;
    /// nothing is queued and the connection is unaffected).
    pub(crate) fn send(
        &self,
        request: &Request,
        agents: &dyn AgentIds,
    ) -> Result<bool, EncodeError> {
        self.enqueue(|buf| protocol::encode(request, buf, agents))
    }

    /// Queues a SEND to `aid` of the peer's run `to_inc` without building a
    /// [`Request`] (the hot path of remote sends). Same results as
    /// [`Connection::send`].
    pub(crate) fn send_message(
        &self,
        to_inc: u64,
        aid: &str,
        message: &crate::term::Term,
        agents: &dyn AgentIds,
    ) -> Result<bool, EncodeError> {
        self.enqueue(|buf| {
            buf.extend_from_slice(&to_inc.to_be_bytes());
            frame::put_str(buf, aid);
            crate::term::encode_into(message, buf, agents)?;
            Ok(protocol::kind::SEND)
        })
    }

    /// Appends one frame whose payload `write` encodes (returning the
    /// frame's kind) to the outgoing buffer, and wakes the writer if it is
    /// parked.
    fn enqueue(
        &self,
        write: impl FnOnce(&mut Vec<u8>) -> Result<u8, EncodeError>,
    ) -> Result<bool, EncodeError> {
        let mut out = self.lock();
        if out.closed || out.closing || out.buf.len() >= self.max_queue {
            drop(out);
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        }
        let start = out.buf.len();
        if !append_frame(&mut out.buf, write)? {
            drop(out);
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        }
        self.stats.messages_out.fetch_add(1, Ordering::Relaxed);
        // Only an empty, idle buffer can be written directly; the clock is
        // read only then, not on every send.
        let quiet = start == 0
            && !out.writing
            && out.front.is_empty()
            && (self.stats.messages_in.load(Ordering::Relaxed) != out.in_at_last_write
                || out
                    .last_write
                    .is_none_or(|t| t.elapsed() >= DIRECT_WRITE_GAP));
        if quiet {
            if let Some(stream) = self.stream.get() {
                self.write_directly(out, stream);
                return Ok(true);
            }
        }
        let wake = start == 0 && out.writer_waiting;
        drop(out);
        if wake {
            self.ready.notify_one();
        }
        Ok(true)
    }

    /// Writes what `out.buf` holds (one frame: the connection was idle)
    /// from the sending thread, rather than wake the writer thread (a
    /// wake-up costs more than the write, which goes into an empty socket
    /// buffer).
    fn write_directly(&self, mut out: MutexGuard<'_, Out>, stream: &TcpStream) {
        let spare = std::mem::take(&mut out.spare);
        let mut frame = std::mem::replace(&mut out.buf, spare);
        out.writing = true;
        let mut sealer = out.sealer.take();
        let mut wire = std::mem::take(&mut out.spare_wire);
        drop(out);
        if let Some(s) = sealer.as_mut() {
            s.seal_batch(&frame, &mut wire);
        }
        let bytes: &[u8] = if sealer.is_some() { &wire } else { &frame };
        let written = sys::write_now(stream, bytes);
        let mut out = self.lock();
        out.wrote(sealer, self.stats.messages_in.load(Ordering::Relaxed));
        let taken = match &written {
            Ok(n) => *n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(_) => bytes.len(),
        };
        if taken < bytes.len() {
            // The socket is full (a slow or stopped peer): the rest
            // (in wire form, sealed if sealing) goes to the writer
            // thread, ahead of anything queued meanwhile, and this
            // send returns now.
            out.front.extend_from_slice(&bytes[taken..]);
        }
        frame.clear();
        if frame.capacity() <= 64 * 1024 {
            out.spare = frame;
        }
        wire.clear();
        if wire.capacity() <= 64 * 1024 {
            out.spare_wire = wire;
        }
        let wake = !out.idle() && out.writer_waiting;
        let close_now = out.closing && out.idle();
        drop(out);
        if close_now {
            let _ = stream.shutdown(Shutdown::Both);
        }
        match written {
            Ok(n) => {
                self.stats.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // The reader sees the closed socket and takes the
            // connection down.
            Err(_) => {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
        if wake {
            self.ready.notify_one();
        }
    }

    /// Puts `request` in front of everything queued: the first frame of a
    /// connection (NODES), queued before the writer starts, so frames
    /// queued while dialing follow it.
    pub(crate) fn send_first(
        &self,
        request: &Request,
        agents: &dyn AgentIds,
    ) -> Result<(), EncodeError> {
        let mut frame = Vec::with_capacity(64);
        if append_frame(&mut frame, |buf| protocol::encode(request, buf, agents))? {
            self.stats.messages_out.fetch_add(1, Ordering::Relaxed);
            self.lock().buf.splice(0..0, frame);
        }
        Ok(())
    }

    /// Queues `request` as the last frame: once it is written the socket is
    /// shut down (the peer reads it before the end of the stream), and
    /// nothing queued after it is sent.
    pub(crate) fn send_last(&self, request: &Request, agents: &dyn AgentIds) {
        let _ = self.send(request, agents);
        let mut out = self.lock();
        out.closing = true;
        let idle = out.idle() && !out.writing;
        let wake = out.writer_waiting;
        drop(out);
        if idle {
            if let Some(s) = self.stream.get() {
                let _ = s.shutdown(Shutdown::Both);
            }
        } else if wake {
            self.ready.notify_one();
        }
    }

    /// Queues a heartbeat if nothing was written for half of `tick` and
    /// nothing is queued: called once per tick, it keeps every gap in what
    /// the peer hears from us under 1.5 ticks. Written directly by the calling thread when the socket takes
    /// it, so an idle connection costs no writer wake-up.
    pub(crate) fn heartbeat_if_quiet(&self, tick: Duration, agents: &dyn AgentIds) {
        if self.stream.get().is_none() || self.is_down() {
            return;
        }
        {
            let out = self.lock();
            // Never before the first frame (NODES, written at establish):
            // a peer reads that first.
            let quiet = out.idle()
                && !out.writing
                && out.last_write.is_some_and(|t| t.elapsed() >= tick / 2);
            if !quiet {
                return;
            }
        }
        let _ = self.send(&Request::Heartbeat, agents);
    }

    /// Starts the reader and writer once the handshake is done.
    pub(crate) fn establish(
        self: &Arc<Self>,
        stream: TcpStream,
        info: PeerInfo,
        keys: Option<Keys>,
        dispatch: Arc<dyn Dispatch>,
        timeout: Duration,
    ) -> io::Result<()> {
        let opener = keys.map(|keys| {
            // Set before the stream is visible to a sender's direct write:
            // everything written on this connection is sealed, the frames
            // queued while dialing included.
            self.lock().sealer = Some(Sealer::new(keys.send));
            Opener::new(keys.recv)
        });
        let _ = self.established_at.set(Instant::now());
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let reader_stream = stream.try_clone()?;
        let writer_stream = stream.try_clone()?;
        let _ = self.info.set(info);
        let _ = self.stream.set(stream);
        *self
            .stats
            .established
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(SystemTime::now());
        let conn = Arc::clone(self);
        let d = Arc::clone(&dispatch);
        thread::Builder::new()
            .name(format!("node-writer {}", self.peer))
            .spawn(move || conn.write_loop(writer_stream, d))?;
        let conn = Arc::clone(self);
        thread::Builder::new()
            .name(format!("node-reader {}", self.peer))
            .spawn(move || conn.read_loop(reader_stream, opener, dispatch))?;
        Ok(())
    }

    fn write_loop(self: Arc<Self>, mut stream: TcpStream, dispatch: Arc<dyn Dispatch>) {
        let mut batch: Vec<u8> = Vec::with_capacity(64 * 1024);
        // Wire bytes: what a direct write left over, then the batch sealed
        // (or, clear, only the leftover: the batch is written as it is).
        let mut wire: Vec<u8> = Vec::with_capacity(64 * 1024);
        loop {
            let mut sealer = {
                let mut out = self.lock();
                while (out.idle() || out.writing) && !out.closed {
                    if out.closing && out.idle() && !out.writing {
                        drop(out);
                        let _ = stream.shutdown(Shutdown::Both);
                        return;
                    }
                    // No timeout: heartbeats are queued by the node's
                    // ticker (`heartbeat_if_quiet`), which wakes once per
                    // tick for all connections instead of once per
                    // connection.
                    out.writer_waiting = true;
                    out = self.ready.wait(out).unwrap_or_else(|e| e.into_inner());
                    out.writer_waiting = false;
                }
                if out.closed {
                    return;
                }
                std::mem::swap(&mut out.buf, &mut batch);
                std::mem::swap(&mut out.front, &mut wire);
                out.writing = true;
                out.sealer.take()
            };
            let written = match sealer.as_mut() {
                Some(s) => {
                    s.seal_batch(&batch, &mut wire);
                    stream.write_all(&wire)
                }
                None => stream
                    .write_all(&wire)
                    .and_then(|()| stream.write_all(&batch)),
            };
            let sent = wire.len() + if sealer.is_some() { 0 } else { batch.len() };
            self.lock()
                .wrote(sealer, self.stats.messages_in.load(Ordering::Relaxed));
            if let Err(e) = written {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                self.fail(&dispatch, &format!("write failed: {e}"));
                return;
            }
            self.stats
                .bytes_out
                .fetch_add(sent as u64, Ordering::Relaxed);
            batch.clear();
            wire.clear();
            if batch.capacity() > 4 * 1024 * 1024 {
                batch.shrink_to(64 * 1024);
            }
            if wire.capacity() > 4 * 1024 * 1024 {
                wire.shrink_to(64 * 1024);
            }
        }
    }

    fn read_loop(
        self: Arc<Self>,
        stream: TcpStream,
        mut opener: Option<Opener>,
        dispatch: Arc<dyn Dispatch>,
    ) {
        let _ = self.reader.set(std::thread::current().id());
        self.wait_for_predecessor();
        let mut reader = BufReader::with_capacity(64 * 1024, stream);
        let mut poller = Poller::new();
        // Clear: one frame's payload. Sealed: the frames of the last record
        // opened, the next one at `at`.
        let mut body = Vec::new();
        let mut at = 0;
        let max = dispatch
            .limits()
            .max_size
            .saturating_add(protocol::FRAME_OVERHEAD);
        let mut resolved: HashMap<(u64, String), Agent> = HashMap::new();
        let mut batch = Batch::default();
        // The async agents the messages of one read buffer wake, handed to
        // the scheduler together (see `WakeBatch`).
        let mut wakes = None;
        // Why the reader stops (each exit counts its own error first).
        let reason = loop {
            // About to block on the socket: hand over what was decoded,
            // and queue the agents it woke.
            if reader.buffer().is_empty() && (opener.is_none() || at >= body.len()) {
                self.flush(&dispatch, &mut resolved, &mut batch);
                drop(wakes.take());
                poller.wait(reader.get_ref());
            }
            let read = match &mut opener {
                Some(o) => {
                    let opened = if at >= body.len() {
                        at = 0;
                        o.read(&mut reader, max, &mut body).inspect(|()| {
                            self.stats.bytes_in.fetch_add(
                                (body.len() + 4 + super::seal::TAG_LEN) as u64,
                                Ordering::Relaxed,
                            );
                        })
                    } else {
                        Ok(())
                    };
                    opened.and_then(|()| {
                        super::seal::next_frame(&body, &mut at, max).map_err(RecordError::Frame)
                    })
                }
                None => frame::read_frame(&mut reader, max, &mut body)
                    .inspect(|_| {
                        self.stats
                            .bytes_in
                            .fetch_add((body.len() + frame::HEADER_LEN) as u64, Ordering::Relaxed);
                    })
                    .map(|k| (k, 0..body.len()))
                    .map_err(RecordError::Frame),
            };
            let (kind, range) = match read {
                Ok(read) => read,
                Err(RecordError::Frame(e)) => {
                    if !matches!(e, frame::FrameError::Closed) && !self.is_down() {
                        self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    break if e.is_timeout() {
                        "peer silent past the failure timeout".to_owned()
                    } else {
                        e.to_string()
                    };
                }
                Err(RecordError::Unsealed) => {
                    // Nothing of it is delivered; what came before it was
                    // authentic and in order, and is.
                    if !self.is_down() {
                        self.stats.errors.fetch_add(1, Ordering::Relaxed);
                        self.stats.bad_seals.fetch_add(1, Ordering::Relaxed);
                    }
                    break "a sealed frame failed to open (altered, replayed, reordered or not from the peer)".to_owned();
                }
            };
            let payload = &body[range];
            if kind == protocol::kind::SEND {
                // The hot path: no Request is built, the target is looked
                // up once per connection, and consecutive messages to one
                // agent are delivered together.
                if wakes.is_none() {
                    wakes = Some(crate::agent::scheduler::batch_wakes());
                }
                match protocol::decode_send(payload, dispatch.limits()) {
                    Ok((to_inc, to, message)) => {
                        self.stats.messages_in.fetch_add(1, Ordering::Relaxed);
                        poller.arm();
                        if batch.to != to
                            || batch.to_inc != to_inc
                            || batch.messages.len() >= MAX_BATCH
                        {
                            self.flush(&dispatch, &mut resolved, &mut batch);
                            batch.to.clear();
                            batch.to.push_str(to);
                            batch.to_inc = to_inc;
                        }
                        batch.messages.push(message);
                        continue;
                    }
                    Err(e) => {
                        self.stats.errors.fetch_add(1, Ordering::Relaxed);
                        break format!("protocol error: {e}");
                    }
                }
            }
            // Requests keep their order relative to messages. A request's
            // handling may wait on an agent: the agents woken so far are
            // queued first.
            self.flush(&dispatch, &mut resolved, &mut batch);
            drop(wakes.take());
            match protocol::decode(kind, payload, dispatch.limits()) {
                Ok(Request::Heartbeat) => {}
                Ok(request) => {
                    self.stats.messages_in.fetch_add(1, Ordering::Relaxed);
                    poller.arm();
                    let _gate = super::lock(&self.delivery);
                    if self.is_down() {
                        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    dispatch.dispatch(&self, request);
                }
                Err(e) => {
                    // A malformed frame closes this connection only.
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    break format!("protocol error: {e}");
                }
            }
        };
        // What was decoded before the failure is delivered, then the
        // connection is taken down.
        self.flush(&dispatch, &mut resolved, &mut batch);
        drop(wakes);
        self.fail(&dispatch, &reason);
    }

    /// Delivers the batch to its agent: one lock and at most one wake-up
    /// for the lot.
    fn flush(
        &self,
        dispatch: &Arc<dyn Dispatch>,
        resolved: &mut HashMap<(u64, String), Agent>,
        batch: &mut Batch,
    ) {
        if batch.messages.is_empty() {
            return;
        }
        let _gate = super::lock(&self.delivery);
        if self.is_down() {
            self.stats
                .dropped
                .fetch_add(batch.messages.len() as u64, Ordering::Relaxed);
            batch.messages.clear();
            return;
        }
        let key = (batch.to_inc, std::mem::take(&mut batch.to));
        for attempt in 0..2 {
            let agent = match resolved.get(&key) {
                Some(a) if attempt == 0 => a.clone(),
                _ => match dispatch.resolve(key.0, &key.1) {
                    Some(a) => {
                        if resolved.len() >= RESOLVED_CACHE {
                            resolved.clear();
                        }
                        resolved.insert(key.clone(), a.clone());
                        a
                    }
                    None => break,
                },
            };
            match agent.offer_many(&mut batch.messages) {
                Ok(dropped) => {
                    self.stats
                        .dropped
                        .fetch_add(dropped as u64, Ordering::Relaxed);
                    batch.messages.clear();
                    batch.to = key.1;
                    return;
                }
                // Exited, or a name now held by another agent: look again.
                Err(()) => {
                    resolved.remove(&key);
                }
            }
        }
        batch.to = key.1;
        self.stats
            .dropped
            .fetch_add(batch.messages.len() as u64, Ordering::Relaxed);
        batch.messages.clear();
    }

    /// Marks the connection down once: closes the socket, stops the writer,
    /// and tells the node.
    pub(crate) fn fail(self: &Arc<Self>, dispatch: &Arc<dyn Dispatch>, reason: &str) {
        if !self.set_down() {
            return;
        }
        self.close_socket();
        dispatch.down(self, reason);
    }

    /// Makes this connection deliver nothing before everyone attached over
    /// `old` (the previous connection to the same peer) has been told it is
    /// down: a receiver hears of the loss before anything of the new
    /// connection.
    pub(crate) fn follows(&self, old: Arc<Connection>) {
        *super::lock(&self.predecessor) = Some(old);
    }

    /// Everyone attached over this connection has been told it is down.
    pub(crate) fn loss_handled(&self) {
        self.lost.set();
    }

    /// Waits (at most 10 s, a bound in case the old one is never handled)
    /// until the predecessor's loss has been told.
    fn wait_for_predecessor(&self) {
        let Some(old) = super::lock(&self.predecessor).take() else {
            return;
        };
        old.lost
            .wait(Instant::now() + Duration::from_secs(10), || old.is_down());
    }

    /// Marks the connection down, between two deliveries of the reader
    /// (see `delivery`); `true` the first time.
    fn set_down(&self) -> bool {
        if self.reader.get() == Some(&std::thread::current().id()) {
            // The reader itself, holding `delivery` or between frames.
            return !self.down.swap(true, Ordering::AcqRel);
        }
        let _gate = super::lock(&self.delivery);
        !self.down.swap(true, Ordering::AcqRel)
    }

    /// Closes without telling anyone (used by `fail` and at node stop).
    pub(crate) fn close_socket(&self) {
        {
            let mut out = self.lock();
            out.closed = true;
            out.buf = Vec::new();
            out.front = Vec::new();
        }
        self.ready.notify_all();
        // A dial waiting to be taken over stops waiting.
        self.claimed.nudge();
        if let Some(s) = self.stream.get() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Marks down without a socket (a dial that failed).
    pub(crate) fn mark_down(&self) -> bool {
        let first = self.set_down();
        self.close_socket();
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    /// A connected pair of sockets on 127.0.0.1; reads time out after 10 s
    /// so a failing test ends.
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (b, _) = listener.accept().expect("accept");
        b.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        (a, b)
    }

    #[test]
    fn a_wait_after_a_few_frames_returns_once_bytes_or_the_end_are_there() {
        if cores() < 2 {
            return; // Never polls.
        }
        let (mut a, mut b) = pair();
        let mut poller = Poller::new();
        // After no frame, or a burst: no poll.
        a.write_all(&[1]).expect("write");
        assert!(!poller.wait(&b));
        for _ in 0..=POLL_BURST {
            poller.arm();
        }
        assert!(!poller.wait(&b));
        assert_eq!(poller.frames, 0, "a wait counts again");
        // Armed, bytes there: ready (unless another test's reader holds
        // the only polling slot), and nothing is taken from the socket.
        poller.arm();
        let ready = poller.wait(&b);
        assert_eq!(poller.frames, 0, "a wait counts again");
        let mut byte = [0u8; 1];
        b.read_exact(&mut byte).expect("read");
        assert_eq!(byte, [1]);
        if ready {
            assert_eq!(poller.budget_ns, POLL_MAX, "a poll that paid grows");
        }
        // The end of the stream counts as ready too.
        drop(a);
        poller.arm();
        let _ = poller.wait(&b);
        assert_eq!(b.read(&mut byte).expect("read"), 0, "the end");
    }

    #[test]
    fn polling_that_does_not_pay_stops_and_probes_again() {
        if cores() < 2 {
            return; // Never polls.
        }
        let (_a, b) = pair();
        let mut poller = Poller::new();
        // Nothing ever comes: each poll halves the budget until it is
        // under the floor, then polls stop. (A poll may also be skipped
        // while another test's reader polls: the bound is generous.)
        let mut polls = 0;
        while poller.budget_ns >= POLL_MIN {
            poller.arm();
            assert!(!poller.wait(&b));
            polls += 1;
            assert!(polls < 1_000_000, "the budget shrinks");
        }
        // Under the floor: no poll until the probe.
        for _ in 1..POLL_PROBE_EVERY {
            poller.arm();
            assert!(!poller.wait(&b));
            assert!(poller.budget_ns < POLL_MIN);
        }
        // The probe polls with the starting budget (and, finding nothing,
        // halves it again).
        poller.arm();
        assert!(!poller.wait(&b));
        assert!(poller.budget_ns >= POLL_START / 2);
    }
}
