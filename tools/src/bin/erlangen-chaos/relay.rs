//! A TCP relay with adjustable latency: what `tc netem` would do, in user
//! space (the kernels here lack netem). Every chunk read from one side is
//! written to the other `delay` later, in order, so a connection through
//! the relay keeps its byte stream intact and only gets slower. Packet
//! loss is added by the kernel (`iptables -m statistic`) on the relayed
//! path, where TCP retransmits it as it would on a lossy link.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

/// A relay listening on one address and forwarding to a target whose
/// port may change (a restarted node listens on a new port).
pub struct Relay {
    pub listen: SocketAddr,
    pub target_port: Arc<AtomicU16>,
    pub delay_ms: Arc<AtomicU64>,
}

impl Relay {
    /// Listens on `listen` and forwards every connection to
    /// `target_ip:target_port`.
    pub fn start(
        listen: SocketAddr,
        target_ip: std::net::IpAddr,
        target_port: u16,
    ) -> std::io::Result<Relay> {
        let listener = TcpListener::bind(listen)?;
        let relay = Relay {
            listen: listener.local_addr()?,
            target_port: Arc::new(AtomicU16::new(target_port)),
            delay_ms: Arc::new(AtomicU64::new(0)),
        };
        let (port, delay) = (Arc::clone(&relay.target_port), Arc::clone(&relay.delay_ms));
        thread::Builder::new()
            .name("relay-accept".into())
            .spawn(move || {
                for client in listener.incoming().flatten() {
                    let to = SocketAddr::new(target_ip, port.load(Ordering::SeqCst));
                    let delay = Arc::clone(&delay);
                    let _ = thread::Builder::new()
                        .name("relay-conn".into())
                        .spawn(move || {
                            if let Ok(server) =
                                TcpStream::connect_timeout(&to, Duration::from_secs(2))
                            {
                                pipe(client, server, &delay);
                            }
                        });
                }
            })?;
        Ok(relay)
    }
}

/// Relays both ways until either side ends, then closes both.
fn pipe(a: TcpStream, b: TcpStream, delay: &Arc<AtomicU64>) {
    let _ = a.set_nodelay(true);
    let _ = b.set_nodelay(true);
    let handles: Vec<_> = [
        (a.try_clone(), b.try_clone()),
        (b.try_clone(), a.try_clone()),
    ]
    .into_iter()
    .filter_map(|(from, to)| match (from, to) {
        (Ok(from), Ok(to)) => {
            let delay = Arc::clone(delay);
            Some(thread::spawn(move || one_way(from, to, &delay)))
        }
        _ => None,
    })
    .collect();
    for h in handles {
        let _ = h.join();
    }
    let _ = a.shutdown(Shutdown::Both);
    let _ = b.shutdown(Shutdown::Both);
}

/// Reads `from`, writes to `to` each chunk `delay` after it was read.
fn one_way(mut from: TcpStream, to: TcpStream, delay: &Arc<AtomicU64>) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = {
        let mut to2 = match to.try_clone() {
            Ok(t) => t,
            Err(_) => return,
        };
        thread::spawn(move || {
            for (due, chunk) in rx {
                let wait = due.saturating_duration_since(Instant::now());
                if !wait.is_zero() {
                    thread::sleep(wait);
                }
                if to2.write_all(&chunk).is_err() {
                    break;
                }
            }
            let _ = to2.shutdown(Shutdown::Both);
        })
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let due = Instant::now() + Duration::from_millis(delay.load(Ordering::Relaxed));
                if tx.send((due, buf[..n].to_vec())).is_err() {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.join();
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
