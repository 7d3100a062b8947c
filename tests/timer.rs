//! Timers (src/timer.rs): order of firing, cancellation, one service
//! thread for all timers.

use std::time::{Duration, Instant};

use erlangen::{receive_timeout, timer, Agent, Attach, SpawnOptions, Term};

const WAIT: Duration = Duration::from_secs(20);

/// Many timers set with shuffled deadlines arrive sorted by deadline.
/// The deadlines are fixed instants after the loop that sets them, so a
/// slow loop (a loaded machine) cannot reorder them; should the loop
/// still outlast the margin, the round is cancelled and tried again with
/// a wider one.
#[test]
fn timers_fire_in_deadline_order() {
    let me = Agent::current();
    // A fixed permutation of 0..50 (multiplying by a unit mod 50).
    let order: Vec<i64> = (0..50i64).map(|i| (i * 17) % 50).collect();
    let mut margin = Duration::from_millis(50);
    for round in 0i64.. {
        assert!(round < 8, "the timers could never be set within {margin:?}");
        let base = Instant::now() + margin;
        let timers: Vec<_> = order
            .iter()
            .map(|&d| {
                let deadline = base + Duration::from_millis(2 * d as u64);
                let delay = deadline.saturating_duration_since(Instant::now());
                timer::send_after(
                    delay,
                    Term::list(vec![Term::from(round), Term::from(d)]),
                    &me,
                )
            })
            .collect();
        if Instant::now() >= base {
            // The first deadline passed while setting: not a fair round.
            for t in &timers {
                timer::cancel(t);
            }
            margin *= 2;
            continue;
        }
        let mut got = Vec::new();
        while got.len() < order.len() {
            let m = receive_timeout(WAIT).expect("every timer fires");
            match m.as_list() {
                Some([Term::Int(r), Term::Int(d)]) if *r == round => got.push(*d),
                // A message of a cancelled round that fired first.
                Some([Term::Int(_), Term::Int(_)]) => {}
                _ => panic!("unexpected message {m}"),
            }
        }
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(got, sorted);
        // Never early: the last one came no earlier than its deadline.
        assert!(Instant::now() >= base + Duration::from_millis(2 * 49));
        return;
    }
}

/// A cancelled timer never fires: a later timer's message comes, and the
/// cancelled one's did not come before it.
#[test]
fn cancelled_timers_never_fire_and_cancel_says_so() {
    let me = Agent::current();
    let doomed = timer::send_after(Duration::from_millis(20), Term::keyword("doomed"), &me);
    let later = timer::send_after(Duration::from_millis(60), Term::keyword("later"), &me);
    assert!(timer::cancel(&doomed), "cancelled before firing");
    assert!(!timer::cancel(&doomed), "a second cancel finds nothing");
    assert_eq!(receive_timeout(WAIT), Ok(Term::keyword("later")));
    assert!(!timer::cancel(&later), "it fired already");
    assert_eq!(receive_timeout(Duration::ZERO), Err(erlangen::Timeout));
}

/// exit_after kills the agent no earlier than its delay; a cancelled one
/// leaves it alone.
#[test]
fn exit_after_kills_and_can_be_cancelled() {
    let monitor = SpawnOptions::new().attach(Attach::Monitor);
    let spared = spawn_with_receive(&monitor);
    let victim = spawn_with_receive(&monitor);
    let start = Instant::now();
    let t = timer::exit_after(Duration::from_millis(10), Term::keyword("spared"), &spared);
    assert!(timer::cancel(&t));
    timer::exit_after(
        Duration::from_millis(30),
        Term::keyword("timed-out"),
        &victim,
    );
    let notice = receive_timeout(WAIT).unwrap();
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert_eq!(
        notice,
        Term::dotted(
            vec![victim.to_term(), Term::keyword("exit")],
            Term::keyword("timed-out")
        )
    );
    assert!(spared.is_alive());
    erlangen::exit(Term::keyword("done"), &spared).unwrap();
    let notice = receive_timeout(WAIT).unwrap();
    assert!(notice.to_string().ends_with(":EXIT . :DONE)"), "{notice}");
}

fn spawn_with_receive(options: &SpawnOptions) -> Agent {
    erlangen::spawn_with(options, || {
        let _ = receive_timeout(WAIT);
    })
    .unwrap()
}

fn threads() -> usize {
    let sample = erlangen::management::process_sample(None).expect("/proc/self");
    usize::try_from(sample.threads).expect("a thread count")
}

/// 10,000 timers are heap entries of one service thread, not threads.
#[test]
fn ten_thousand_timers_start_no_thread_each() {
    // Start the service first, so its own thread is not counted.
    timer::cancel(&timer::send_after(Duration::from_secs(3600), 0, "nobody"));
    // Room for all: the timers may fire faster than the collector reads.
    let options = SpawnOptions::new()
        .attach(Attach::Monitor)
        .mailbox_size(10_000);
    let collector = erlangen::spawn_with(&options, || {
        let mut n = 0;
        while n < 10_000 {
            if receive_timeout(WAIT).is_err() {
                break;
            }
            n += 1;
        }
        n
    });
    let collector = collector.unwrap();
    let before = threads();
    let mut refs = Vec::new();
    for i in 0..10_000u64 {
        refs.push(timer::send_after(
            Duration::from_millis(100 + i % 100),
            Term::from(i as i64),
            &collector,
        ));
    }
    let after = threads();
    // Other tests of this binary run in parallel and start a few threads;
    // a thread per timer would be thousands.
    assert!(after < before + 100, "threads {before} -> {after}");
    assert_eq!(
        receive_timeout(WAIT),
        Ok(Term::list(vec![
            collector.to_term(),
            Term::keyword("ok"),
            Term::from(10_000)
        ]))
    );
    assert!(refs.iter().all(|r| !timer::cancel(r)));
}
