//! What decoding hostile input allocates, observed: this test binary (and
//! only it) counts every allocation per thread with its own global
//! allocator, and each test compares the peak of live bytes during one
//! `decode` with the size of the input.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use erlangen::term::{decode, DecodeError, Limits};
use erlangen::Term;

/// The system allocator, counting live bytes and their peak per thread
/// (tests run in parallel threads; each measures only its own).
struct Counting;

thread_local! {
    // Const-initialised cells without destructors: using them allocates
    // nothing, so the allocator cannot recurse into itself.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded unchanged to `System`; the counting on
// the side neither allocates nor touches the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Counted as if the old block lived until the new one existed,
            // the worst case of a copying realloc.
            count(new_size as isize);
            count(-(layout.size() as isize));
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most bytes live at once during `f`, beyond those live before it.
fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let r = f();
    let peak = PEAK.with(Cell::get);
    (r, (peak - base).max(0) as usize)
}

const MIB: usize = 1 << 20;

/// 127 nested list headers, each claiming a million elements, padded with
/// zeros to 1 MiB. Reserving what each claims would take gigabytes.
fn nested_claims() -> Vec<u8> {
    let mut b = vec![1u8];
    for _ in 0..127 {
        b.push(0x0B);
        b.extend_from_slice(&1_000_000u32.to_be_bytes());
    }
    b.resize(MIB, 0);
    b
}

#[test]
fn refused_hostile_input_allocates_at_most_twice_its_size() {
    let mut cases = vec![("nested claims", nested_claims())];
    // One claim over the bytes left, for each sized tag.
    for tag in [0x06u8, 0x07, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E] {
        let mut b = vec![1, tag];
        b.extend_from_slice(&(MIB as u32).to_be_bytes());
        b.resize(MIB, 0);
        cases.push(("a claim over the bytes left", b));
    }
    let limits = Limits::default();
    for (what, input) in cases {
        let (result, peak) = peak_during(|| decode(&input, &limits));
        assert!(result.is_err(), "{what}");
        assert!(
            peak <= 2 * input.len(),
            "{what}: {peak} bytes allocated for a {} byte input",
            input.len()
        );
    }
}

#[test]
fn the_nested_claims_are_refused_by_the_pending_elements_check() {
    let (result, _) = peak_during(|| decode(&nested_claims(), &Limits::default()));
    assert!(matches!(result, Err(DecodeError::Overcommitted(..))));
}

#[test]
fn accepted_input_allocates_in_proportion_to_the_term_it_holds() {
    // The largest legitimate term per byte: a vector of NILs, one byte
    // each, filling 1 MiB. The result needs a Term per element; the
    // decoder may use a few times that while the vector grows, never more.
    let n = MIB - 6;
    let mut input = vec![1u8, 0x0D];
    input.extend_from_slice(&(n as u32).to_be_bytes());
    input.resize(MIB, 0);
    let (result, peak) = peak_during(|| decode(&input, &Limits::default()));
    let term = result.unwrap();
    assert!(matches!(&term, Term::Vector(v) if v.len() == n));
    let per_element = std::mem::size_of::<Term>();
    assert!(
        peak <= 3 * per_element * n,
        "{peak} bytes allocated for {n} elements of {per_element} bytes"
    );
}
