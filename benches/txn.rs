//! The bridge's own time per sale, apart from the reader and the host.
//!
//! - `txn/bridge_share`: one recorded chip sale (Start → E4 → host answer → Continue → E3)
//!   replayed into a fresh transaction: framing the commands, deframing the reader's bytes,
//!   the state machine and its outputs. No simulator, no cryptography, no I/O: the bridge's
//!   own added time per sale.
//! - `txn/in_process_sale`: the whole sale in one thread — the simulated reader's EMV kernel
//!   and card cryptography (3DES), the issuer's ARQC check and ARPC, and the bridge — for scale.
//!
//! Memory: printed once at start (size of the state machine, allocations per replayed sale).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use emvbridge::pair::{replay, request, Pair};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarding the caller's layout to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the pointer came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn bench(c: &mut Criterion) {
    let mut pair = Pair::new("visa-cvn18", 1234, "", 1);
    let outcome = pair.run();
    assert!(outcome.status.is_approved());
    let recorded = pair.recorded.clone();
    let now = Instant::now();

    let (a0, b0) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    let o = replay(request(1234), &recorded, now);
    let (a1, b1) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    assert!(o.status.is_approved());
    eprintln!(
        "bridge share per sale: {} allocations, {} bytes allocated; Transaction is {} bytes",
        a1 - a0,
        b1 - b0,
        std::mem::size_of::<emvbridge_core::txn::Transaction>()
    );

    let mut g = c.benchmark_group("txn");
    g.bench_function("bridge_share", |b| {
        b.iter(|| replay(request(1234), &recorded, now))
    });
    g.sample_size(30);
    g.bench_function("in_process_sale", |b| {
        b.iter(|| {
            let mut p = Pair::new("visa-cvn18", 1234, "", 1);
            p.run()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
