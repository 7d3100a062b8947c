//! The waker an async agent is polled with, borrowed from the agent's
//! handle for the poll instead of made from a clone of it: a clone and its
//! drop are two locked operations on the agent's reference count on every
//! poll (8% of a ping-pong hand-off in a profile). Clones of the borrowed
//! waker (a mailbox keeping it to wake the agent later) own a count as a
//! `Waker::from(Arc<Cell>)` does, and waking one does what `Cell`'s
//! `Wake` implementation (in `scheduler.rs`) does.
//!
//! The one `unsafe` of the agent layer; each block says why it holds.
#![allow(unsafe_code)]

use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::task::{RawWaker, RawWakerVTable, Wake, Waker};

use super::Cell;

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop_waker);

/// Runs `f` with a waker for the agent `cell` without changing its
/// reference count. `cell` outlives `f`, and so the waker.
pub(super) fn with_waker<R>(cell: &Arc<Cell>, f: impl FnOnce(&Waker) -> R) -> R {
    let raw = RawWaker::new(Arc::as_ptr(cell).cast::<()>(), &VTABLE);
    // SAFETY: the data pointer is a live `Arc<Cell>`'s (`cell`, borrowed
    // for as long as the waker exists), and VTABLE's functions treat it as
    // one. The waker is never dropped (`ManuallyDrop`), so it gives back no
    // count it did not take; clones take their own.
    let waker = ManuallyDrop::new(unsafe { Waker::from_raw(raw) });
    f(&waker)
}

/// # Safety
/// `data` is a live `Arc<Cell>`'s pointer (this module's wakers only).
unsafe fn clone(data: *const ()) -> RawWaker {
    // SAFETY: `data` points into a live `Arc<Cell>` (see above); the new
    // waker owns the count taken here and gives it back when dropped or
    // woken.
    unsafe { Arc::increment_strong_count(data.cast::<Cell>()) };
    RawWaker::new(data, &VTABLE)
}

/// # Safety
/// `data` is the pointer of a waker made by `clone`, which owns a count.
unsafe fn wake(data: *const ()) {
    // SAFETY: this waker owns one count (taken in `clone`); it is
    // consumed here, as `Waker::wake` consumes the waker.
    let cell = unsafe { Arc::from_raw(data.cast::<Cell>()) };
    Wake::wake(cell);
}

/// # Safety
/// `data` is a live `Arc<Cell>`'s pointer.
unsafe fn wake_by_ref(data: *const ()) {
    // SAFETY: `data` is a live `Arc<Cell>`'s; the `Arc` made here is not
    // dropped (`ManuallyDrop`), so no count is given back.
    let cell = ManuallyDrop::new(unsafe { Arc::from_raw(data.cast::<Cell>()) });
    Wake::wake_by_ref(&*cell);
}

/// # Safety
/// `data` is the pointer of a waker made by `clone`, which owns a count.
unsafe fn drop_waker(data: *const ()) {
    // SAFETY: gives back the count this waker took in `clone`.
    unsafe { Arc::decrement_strong_count(data.cast::<Cell>()) };
}
