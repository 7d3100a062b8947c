//! The floor: W1-W4 of BENCHMARKS.md on bare threads, each with a
//! `Mutex<VecDeque<u64>>` + `Condvar` mailbox that notifies only a waiting
//! receiver. No agents, links, terms or pooling: what this design cannot
//! beat. `--spin` spins up to 5 µs before parking (BENCHMARKS.md's last
//! column).
//!
//!   rustc -O --edition 2021 bench/floor.rs -o target/bench-floor
//!   target/bench-floor [--spin]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

static SPIN: AtomicBool = AtomicBool::new(false);

struct Mailbox {
    queue: Mutex<(VecDeque<u64>, bool)>,
    ready: Condvar,
    len: AtomicUsize,
}

impl Mailbox {
    fn new() -> Arc<Mailbox> {
        Arc::new(Mailbox {
            queue: Mutex::new((VecDeque::new(), false)),
            ready: Condvar::new(),
            len: AtomicUsize::new(0),
        })
    }

    fn send(&self, v: u64) {
        let mut q = self.queue.lock().unwrap();
        q.0.push_back(v);
        self.len.fetch_add(1, Ordering::Release);
        let waiting = q.1;
        drop(q);
        if waiting {
            self.ready.notify_one();
        }
    }

    fn receive(&self) -> u64 {
        if SPIN.load(Ordering::Relaxed) {
            let start = Instant::now();
            while self.len.load(Ordering::Acquire) == 0 && start.elapsed() < Duration::from_micros(5) {
                std::hint::spin_loop();
            }
        }
        let mut q = self.queue.lock().unwrap();
        loop {
            if let Some(v) = q.0.pop_front() {
                self.len.fetch_sub(1, Ordering::Release);
                return v;
            }
            q.1 = true;
            q = self.ready.wait(q).unwrap();
            q.1 = false;
        }
    }
}

const STOP: u64 = u64::MAX;

fn ring(n: usize, hops: u64) {
    let boxes: Vec<Arc<Mailbox>> = (0..n).map(|_| Mailbox::new()).collect();
    let report = Mailbox::new();
    let mut threads = Vec::new();
    for i in 0..n {
        let (me, next, report) = (Arc::clone(&boxes[i]), Arc::clone(&boxes[(i + 1) % n]), Arc::clone(&report));
        threads.push(thread::spawn(move || loop {
            match me.receive() {
                STOP => return,
                0 => report.send(0),
                k => next.send(k - 1),
            }
        }));
    }
    let start = Instant::now();
    boxes[0].send(hops);
    report.receive();
    let t = start.elapsed().as_secs_f64();
    for b in &boxes {
        b.send(STOP);
    }
    for t in threads {
        t.join().unwrap();
    }
    println!(
        "W1 ring n={n}: {hops} hops in {t:.3} s, {:.0} msgs/s, {:.2} us/hop",
        hops as f64 / t,
        t * 1e6 / hops as f64
    );
}

fn ping_pong(messages: u64, pairs: usize) {
    let go = Arc::new(std::sync::Barrier::new(pairs + 1));
    let mut threads = Vec::new();
    for _ in 0..pairs {
        let (ping, pong) = (Mailbox::new(), Mailbox::new());
        let (p2, q2) = (Arc::clone(&ping), Arc::clone(&pong));
        threads.push(thread::spawn(move || loop {
            match q2.receive() {
                STOP => return,
                v => p2.send(v),
            }
        }));
        let go = Arc::clone(&go);
        threads.push(thread::spawn(move || {
            go.wait();
            for i in 0..messages / 2 {
                pong.send(i);
                ping.receive();
            }
            pong.send(STOP);
        }));
    }
    go.wait();
    let start = Instant::now();
    for t in threads {
        t.join().unwrap();
    }
    let t = start.elapsed().as_secs_f64();
    let total = messages * pairs as u64;
    println!(
        "W2 ping-pong pairs={pairs}: {total} messages in {t:.3} s, {:.0} msgs/s, {:.2} us/msg",
        total as f64 / t,
        t * 1e6 / total as f64
    );
}

fn spawn_join(count: u64) {
    let start = Instant::now();
    let mut window = VecDeque::new();
    for _ in 0..count {
        if window.len() == 1000 {
            let h: thread::JoinHandle<()> = window.pop_front().unwrap();
            h.join().unwrap();
        }
        window.push_back(thread::spawn(|| ()));
    }
    for h in window {
        h.join().unwrap();
    }
    let t = start.elapsed().as_secs_f64();
    println!("W3 spawn: {count} spawns+exits in {t:.3} s, {:.2} us/spawn", t * 1e6 / count as f64);
}

fn fan_in(per: u64, senders: usize) {
    let rx = Mailbox::new();
    let go = Arc::new(std::sync::Barrier::new(senders + 1));
    let mut threads = Vec::new();
    for _ in 0..senders {
        let (rx, go) = (Arc::clone(&rx), Arc::clone(&go));
        threads.push(thread::spawn(move || {
            go.wait();
            for i in 0..per {
                rx.send(i);
            }
        }));
    }
    go.wait();
    let start = Instant::now();
    for _ in 0..per * senders as u64 {
        rx.receive();
    }
    let t = start.elapsed().as_secs_f64();
    for t in threads {
        t.join().unwrap();
    }
    let total = per * senders as u64;
    println!("W4 fan-in senders={senders}: {total} messages in {t:.3} s, {:.0} msgs/s", total as f64 / t);
}

fn main() {
    SPIN.store(std::env::args().any(|a| a == "--spin"), Ordering::Relaxed);
    println!("floor: bare threads, Mutex+Condvar mailboxes{}", if SPIN.load(Ordering::Relaxed) { ", 5 us spin" } else { "" });
    ring(10, 1_000_000);
    ring(1000, 1_000_000);
    ping_pong(1_000_000, 1);
    ping_pong(1_000_000, 2);
    ping_pong(1_000_000, 4);
    spawn_join(100_000);
    fan_in(1_000_000, 4);
}
