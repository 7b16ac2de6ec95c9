//! Walking and searching BER-TLV never touches the heap.
//!
//! A counting global allocator wraps `System`; the corpus (the one `benches/tlv.rs`
//! measures) is built first, then the count must not move across a full recursive walk, a
//! top-level walk and `find` (present and absent) over every message and the 64 KiB stream.
//!
//! The counter is per thread, so the test harness's own threads cannot disturb it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;

use emvbridge_protocol::tlv::{self, Tag, TlvIter};

#[path = "../benches/support/corpus.rs"]
mod corpus;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: allocation during thread teardown must not panic.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call is forwarded unchanged to `System`; only a thread-local counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

/// Full recursive walk: node count and a checksum over tag and value length.
fn walk(iter: TlvIter<'_>, acc: &mut (usize, u64)) {
    for item in iter {
        let o = item.expect("corpus is well formed");
        acc.0 += 1;
        acc.1 = acc
            .1
            .wrapping_mul(31)
            .wrapping_add(u64::from(o.tag().0) ^ o.value().len() as u64);
        if o.is_constructed() {
            walk(o.children(), acc);
        }
    }
}

#[test]
fn counter_sees_heap_use() {
    // Guards against a test that passes because nothing is counted.
    let before = allocations();
    let v = black_box(vec![1u8; 64]);
    assert!(allocations() > before);
    drop(v);
}

#[test]
fn walk_and_find_allocate_nothing() {
    let messages = corpus::messages();
    let stream = corpus::stream();
    let inputs: Vec<&[u8]> = messages
        .iter()
        .map(|m| &m.bytes[..])
        .chain([&stream[..]])
        .collect();
    let mut results = Vec::with_capacity(inputs.len() * 4);

    let before = allocations();
    for input in &inputs {
        let mut acc = (0usize, 0u64);
        walk(tlv::parse(black_box(input)), &mut acc);
        let depth_first = tlv::walk(black_box(input)).map_while(Result::ok).count();
        assert_eq!(
            depth_first, acc.0,
            "depth-first and recursive walks see the same nodes"
        );
        let flat = tlv::parse(black_box(input)).count();
        let present = tlv::find(black_box(input), corpus::NEEDLE).map(|t| t.value());
        let absent = tlv::find(black_box(input), corpus::ABSENT).is_some();
        results.push((acc, flat, present, absent));
    }
    let after = allocations();
    assert_eq!(after - before, 0, "heap allocations during walk/find");

    // The work really happened: every input has nodes, the stream holds the 9F26 and the
    // absent tag is absent everywhere.
    assert_eq!(results.len(), inputs.len());
    assert!(results
        .iter()
        .all(|(acc, flat, _, absent)| acc.0 >= *flat && *flat > 0 && !absent));
    let (stream_acc, _, stream_needle, _) = results[results.len() - 1];
    assert!(
        stream_acc.0 > 1000,
        "64 KiB stream has {} nodes",
        stream_acc.0
    );
    assert_eq!(stream_needle.map(<[u8]>::len), Some(8));
    assert!(tlv::find(&stream, corpus::NEEDLE).is_some_and(|t| t.offset() > stream.len() / 2));
    assert_eq!(corpus::ABSENT, Tag(0x9F7F));
}
