//! BER-TLV hot path: emvbridge's parser against crates.io BER-TLV parsers on the same bytes.
//!
//! ```text
//! cargo bench --bench tlv                # full run (about two minutes on 2 cores)
//! cargo bench --bench tlv -- --measurement-time 5   # steadier figures on a quiet machine
//! cargo bench --bench tlv -- --quick     # rough figures in well under a minute
//! cargo bench --bench tlv -- walk_full   # one group
//! cargo test  --bench tlv                # each benchmark once + the cross-checks below
//! BENCH_README=1 cargo bench --bench tlv  # also rewrites the README's table from this run
//! ```
//!
//! Every run writes its comparison table, from criterion's own estimates of this run, to
//! `target/criterion/summary.md`, next to criterion's HTML report with plots
//! (`target/criterion/report/index.html`).
//!
//! Before measuring, `main` checks that every parser finds the same nodes (count and a
//! checksum over tag and value length) and the same `9F26` value on every input, so no
//! comparison can silently measure different work; it also prints which EMV-legal inputs
//! outside the common corpus each parser rejects. After measuring, it prints the ratios the
//! performance goals are stated in (from criterion's saved estimates).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use emvbridge_protocol::tlv;

#[path = "support/corpus.rs"]
mod corpus;
#[path = "support/frames.rs"]
mod frames;
#[path = "support/parsers.rs"]
mod parsers;

use corpus::{Message, ABSENT, NEEDLE};
use parsers::{Contender, Tally};

struct Fixture {
    messages: Vec<Message>,
    stream: Vec<u8>,
    stream_tally: Tally,
    wire: frames::Wire,
}

/// Builds the corpus and cross-checks every parser on it; panics on any disagreement.
fn fixture() -> Fixture {
    let messages = corpus::messages();
    let stream = corpus::stream();
    let mut stream_tally = None;
    for (name, bytes) in messages
        .iter()
        .map(|m| (m.name, &m.bytes[..]))
        .chain([("stream", &stream[..])])
    {
        let ours = Contender::Emvbridge
            .walk(bytes)
            .unwrap_or_else(|| panic!("emvbridge rejects corpus member {name}"));
        for p in Contender::ALL {
            assert_eq!(
                p.walk(bytes),
                Some(ours),
                "{} walks {name} differently from emvbridge",
                p.name()
            );
            assert_eq!(
                p.find_owned(bytes, NEEDLE),
                tlv::find(bytes, NEEDLE).map(|t| t.value().to_vec()),
                "{} finds a different 9F26 in {name}",
                p.name()
            );
            assert_eq!(
                p.find_owned(bytes, ABSENT),
                None,
                "{} finds {ABSENT} in {name}",
                p.name()
            );
        }
        let mut floor = Tally::default();
        assert!(
            parsers::floor_walk(bytes, &mut floor) && floor == ours,
            "floor walk of {name}"
        );
        let mut recursive = Tally::default();
        assert!(
            parsers::ours_walk(tlv::parse(bytes), &mut recursive) && recursive == ours,
            "recursive walk of {name}"
        );
        if name == "stream" {
            stream_tally = Some(ours);
        }
    }
    let stream_tally = stream_tally.unwrap_or_default();
    let at = tlv::find(&stream, NEEDLE).map(|t| t.offset()).unwrap_or(0);
    eprintln!(
        "corpus: {} messages ({} bytes); stream {} bytes, {} data objects, first 9F26 at byte {at}; \
         all {} parsers agree on nodes, checksum and 9F26",
        messages.len(),
        messages.iter().map(|m| m.bytes.len()).sum::<usize>(),
        stream.len(),
        stream_tally.nodes,
        Contender::ALL.len(),
    );
    let sizes: Vec<String> = messages
        .iter()
        .map(|m| format!("{}={}", m.name, m.bytes.len()))
        .collect();
    eprintln!("message sizes: {}", sizes.join(" "));
    report_edge_cases();
    let wire = frames::wire(&messages, corpus::STREAM_LEN);
    let mut got = Vec::new();
    let (n, corrupt) = frames::deframe(&wire.bytes, |p| got.push(p.to_vec()));
    assert_eq!(
        (n, corrupt),
        (wire.payloads.len(), 0),
        "deframer message count"
    );
    assert!(
        got == wire.payloads,
        "deframer payloads differ from those emitted"
    );
    eprintln!(
        "wire: {} bytes, {} messages ({} chained), fed in reads of {:?} bytes",
        wire.bytes.len(),
        wire.payloads.len(),
        wire.chained,
        frames::CHUNKS
    );
    Fixture {
        messages,
        stream,
        stream_tally,
        wire,
    }
}

/// Prints which parsers accept the EMV inputs outside the common corpus.
fn report_edge_cases() {
    eprintln!("inputs outside the common corpus (ok = parsed and consumed everything, with the nodes emvbridge sees when it accepts):");
    for (what, bytes, emv_ok) in corpus::edge_cases() {
        let ours = Contender::Emvbridge.walk(&bytes);
        assert_eq!(ours.is_some(), emv_ok, "emvbridge verdict on {what}");
        let verdicts: Vec<String> = Contender::ALL
            .iter()
            .map(|p| {
                let v = match (p.walk(&bytes), ours) {
                    (None, _) => "REJECT",
                    (Some(t), Some(o)) if t == o => "ok",
                    (Some(_), Some(_)) => "WRONG",
                    (Some(_), None) => "accepts",
                };
                format!("{}={v}", p.name())
            })
            .collect();
        eprintln!("  {what:<48} {}", verdicts.join(" "));
    }
}

fn bench_walk_full(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("walk_full");
    g.throughput(Throughput::Bytes(f.stream.len() as u64));
    for p in Contender::ALL {
        g.bench_function(BenchmarkId::new(p.name(), "stream64k"), |b| {
            b.iter(|| p.walk(black_box(&f.stream)))
        });
    }
    g.bench_function(BenchmarkId::new("emvbridge_recursive", "stream64k"), |b| {
        b.iter(|| {
            let mut t = Tally::default();
            parsers::ours_walk(tlv::parse(black_box(&f.stream)), &mut t).then_some(t)
        })
    });
    g.bench_function(BenchmarkId::new("byte_sum", "stream64k"), |b| {
        b.iter(|| parsers::byte_sum(black_box(&f.stream)))
    });
    g.bench_function(BenchmarkId::new("handrolled_floor", "stream64k"), |b| {
        b.iter(|| {
            let mut t = Tally::default();
            parsers::floor_walk(black_box(&f.stream), &mut t).then_some(t)
        })
    });
    g.finish();
}

fn bench_walk_flat(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("walk_flat");
    g.throughput(Throughput::Bytes(f.stream.len() as u64));
    g.bench_function(BenchmarkId::new("emvbridge", "stream64k"), |b| {
        b.iter(|| parsers::ours_walk_flat(black_box(&f.stream)))
    });
    g.finish();
}

fn bench_find(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("find_9f26");
    g.throughput(Throughput::Bytes(f.stream.len() as u64));
    for (case, tag) in [("present_deep", NEEDLE), ("absent", ABSENT)] {
        g.bench_function(BenchmarkId::new("emvbridge", case), |b| {
            b.iter(|| tlv::find(black_box(&f.stream), black_box(tag)).map(|t| t.value().len()))
        });
        for p in [Contender::Asn1Rs, Contender::DerParser] {
            g.bench_function(BenchmarkId::new(p.name(), case), |b| {
                b.iter(|| {
                    p.find(black_box(&f.stream), black_box(tag))
                        .map(<[u8]>::len)
                })
            });
        }
        for p in [Contender::Iso7816Tlv, Contender::TlvParser] {
            g.bench_function(BenchmarkId::new(p.name(), case), |b| {
                b.iter(|| p.find_owned(black_box(&f.stream), black_box(tag)))
            });
        }
    }
    g.finish();
}

fn bench_frame(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Bytes(f.wire.bytes.len() as u64));
    g.bench_function(BenchmarkId::new("deframe_chunked", "wire64k"), |b| {
        b.iter(|| {
            frames::deframe(black_box(&f.wire.bytes), |p| {
                black_box(p.len());
            })
        })
    });
    g.bench_function(
        BenchmarkId::new("deframe_chunked_and_walk", "wire64k"),
        |b| {
            b.iter(|| {
                let mut t = Tally::default();
                frames::deframe(black_box(&f.wire.bytes), |p| {
                    let data = p.get(..p.len().saturating_sub(2)).unwrap_or_default();
                    parsers::ours_walk(tlv::parse(data), &mut t);
                });
                t
            })
        },
    );
    g.bench_function(BenchmarkId::new("emit", "wire64k"), |b| {
        let mut out = bytes::BytesMut::with_capacity(f.wire.bytes.len());
        b.iter(|| {
            out.clear();
            frames::emit_all(black_box(&f.wire.payloads), &mut out)
        })
    });
    g.finish();
}

/// Per message kind (emvbridge full walk), plus the whole corpus once through each parser.
fn bench_messages(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("messages");
    for m in &f.messages {
        g.throughput(Throughput::Bytes(m.bytes.len() as u64));
        g.bench_function(BenchmarkId::new("emvbridge", m.name), |b| {
            b.iter(|| Contender::Emvbridge.walk(black_box(&m.bytes)))
        });
    }
    let total: usize = f.messages.iter().map(|m| m.bytes.len()).sum();
    g.throughput(Throughput::Bytes(total as u64));
    for p in Contender::ALL {
        g.bench_function(BenchmarkId::new(p.name(), "all_messages"), |b| {
            b.iter(|| {
                f.messages
                    .iter()
                    .map(|m| p.walk(black_box(&m.bytes)).map_or(0, |t| t.nodes))
                    .sum::<usize>()
            })
        });
    }
    g.finish();
}

fn target_dir() -> Option<PathBuf> {
    if let Ok(d) = std::env::var("CARGO_TARGET_DIR") {
        return Some(PathBuf::from(d));
    }
    // target/<profile>/deps/tlv-<hash>
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.to_path_buf())
}

static STARTED: std::sync::OnceLock<std::time::SystemTime> = std::sync::OnceLock::new();

/// Mean time in ns of one benchmark from the estimates criterion saved in this run.
fn mean_ns(group: &str, function: &str, param: &str) -> Option<f64> {
    let path = target_dir()?
        .join("criterion")
        .join(group)
        .join(function)
        .join(param)
        .join("new/estimates.json");
    let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
    if modified < *STARTED.get()? {
        return None; // left by an earlier run: not comparable
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

/// Prints the goal ratios from this run's estimates (skipped for benchmarks not run).
fn report_goals(f: &Fixture) {
    let gbps = |ns: f64| f.stream.len() as f64 / ns;
    let Some(ours) = mean_ns("walk_full", "emvbridge", "stream64k") else {
        return;
    };
    eprintln!(
        "\n=== goals (this run; {} bytes, {} nodes) ===",
        f.stream.len(),
        f.stream_tally.nodes
    );
    eprintln!(
        "emvbridge full walk: {:.1} us, {:.2} GB/s, {:.2} ns/node",
        ours / 1e3,
        gbps(ours),
        ours / f.stream_tally.nodes as f64
    );
    let fastest = Contender::ALL[1..]
        .iter()
        .filter_map(|p| mean_ns("walk_full", p.name(), "stream64k").map(|t| (p.name(), t)))
        .inspect(|(n, t)| {
            eprintln!(
                "  {n:<12} full walk {:>9.1} us  {:>6.3} GB/s  emvbridge is {:>6.1}x faster",
                t / 1e3,
                gbps(*t),
                t / ours
            )
        })
        .min_by(|a, b| a.1.total_cmp(&b.1));
    if let Some((name, t)) = fastest {
        let r = t / ours;
        eprintln!(
            "goal >= 20x faster than the fastest crates.io parser ({name}): {r:.1}x  {}",
            if r >= 20.0 { "MET" } else { "NOT MET" }
        );
    }
    if let Some(sum) = mean_ns("walk_full", "byte_sum", "stream64k") {
        let r = ours / sum;
        eprintln!(
            "goal full walk <= 1.5x byte-sum time (byte-sum {:.1} us, {:.2} GB/s): {r:.2}x  {}",
            sum / 1e3,
            gbps(sum),
            if r <= 1.5 { "MET" } else { "NOT MET" }
        );
    }
    if let Some(floor) = mean_ns("walk_full", "handrolled_floor", "stream64k") {
        eprintln!(
            "hand-rolled floor walk (same grammar, no nom): {:.1} us, {:.2} GB/s; emvbridge takes {:.2}x its time",
            floor / 1e3,
            gbps(floor),
            ours / floor
        );
    }
    for case in ["present_deep", "absent"] {
        if let (Some(o), Some(a)) = (
            mean_ns("find_9f26", "emvbridge", case),
            mean_ns("find_9f26", "asn1-rs", case),
        ) {
            eprintln!(
                "goal find(9F26) {case} faster than asn1-rs streaming search: {:.1} us vs {:.1} us = {:.1}x  {}",
                o / 1e3,
                a / 1e3,
                a / o,
                if o < a { "MET" } else { "NOT MET" }
            );
        }
    }
    for p in Contender::ALL {
        if let Some(t) = mean_ns("messages", p.name(), "all_messages") {
            eprintln!(
                "  {:<12} corpus messages one by one: {:>7.1} ns/message",
                p.name(),
                t / f.messages.len() as f64
            );
        }
    }
    eprintln!("goal zero allocations on walk and find: see tests/alloc_free.rs (cargo test --test alloc_free)");
}

fn main() {
    STARTED.get_or_init(std::time::SystemTime::now);
    let f = fixture();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20)
        .configure_from_args();
    bench_walk_full(&mut c, &f);
    bench_walk_flat(&mut c, &f);
    bench_find(&mut c, &f);
    bench_messages(&mut c, &f);
    bench_frame(&mut c, &f);
    c.final_summary();
    report_goals(&f);
    write_summary(&f);
}

/// One row of the summary table: label, group, function, parameter, bytes processed.
type Row = (&'static str, &'static str, &'static str, &'static str);

/// Writes this run's comparison table as markdown to `target/criterion/summary.md`, and with
/// `BENCH_README=1` into the README between its `bench:tlv` markers.
fn write_summary(f: &Fixture) {
    let stream = f.stream.len() as f64;
    let Some(ours) = mean_ns("walk_full", "emvbridge", "stream64k") else {
        return;
    };
    let rows: &[Row] = &[
        (
            "emvbridge full walk, depth-first (`tlv::walk`)",
            "walk_full",
            "emvbridge",
            "stream64k",
        ),
        (
            "emvbridge full walk, recursive (`children()`)",
            "walk_full",
            "emvbridge_recursive",
            "stream64k",
        ),
        (
            "emvbridge flat walk (top level)",
            "walk_flat",
            "emvbridge",
            "stream64k",
        ),
        (
            "emvbridge `find(9F26)` (deep, last 1/16 of the stream)",
            "find_9f26",
            "emvbridge",
            "present_deep",
        ),
        (
            "emvbridge `find` of an absent tag",
            "find_9f26",
            "emvbridge",
            "absent",
        ),
        ("asn1-rs full walk", "walk_full", "asn1-rs", "stream64k"),
        (
            "der-parser (BER) full walk",
            "walk_full",
            "der-parser",
            "stream64k",
        ),
        (
            "iso7816-tlv full walk",
            "walk_full",
            "iso7816-tlv",
            "stream64k",
        ),
        (
            "tlv_parser full walk",
            "walk_full",
            "tlv_parser",
            "stream64k",
        ),
        (
            "asn1-rs `find(9F26)`",
            "find_9f26",
            "asn1-rs",
            "present_deep",
        ),
        (
            "byte-sum loop (memory yardstick)",
            "walk_full",
            "byte_sum",
            "stream64k",
        ),
        (
            "minimal hand-rolled walker (floor)",
            "walk_full",
            "handrolled_floor",
            "stream64k",
        ),
    ];
    let mut md = String::new();
    md.push_str(&format!(
        "| {} KiB stream, {} data objects | time | throughput | vs emvbridge full walk |\n|---|---|---|---|\n",
        f.stream.len() / 1024 + 1,
        f.stream_tally.nodes
    ));
    for (label, g, func, param) in rows {
        let Some(t) = mean_ns(g, func, param) else {
            continue;
        };
        let vs = if *func == "emvbridge" && *g == "walk_full" {
            "1×".to_owned()
        } else {
            format!("{:.2}×", t / ours)
        };
        md.push_str(&format!(
            "| {label} | {} | {:.2} GiB/s | {vs} |\n",
            human(t),
            stream / t * 1e9 / (1u64 << 30) as f64
        ));
    }
    let wire = f.wire.bytes.len() as f64;
    for (label, func) in [
        (
            "VIPA deframing, chained, odd-sized reads",
            "deframe_chunked",
        ),
        (
            "deframing + full walk of every payload",
            "deframe_chunked_and_walk",
        ),
        ("framing (emit) of the same messages", "emit"),
    ] {
        if let Some(t) = mean_ns("frame", func, "wire64k") {
            md.push_str(&format!(
                "| {label} ({} KiB wire) | {} | {:.2} GiB/s | |\n",
                f.wire.bytes.len() / 1024,
                human(t),
                wire / t * 1e9 / (1u64 << 30) as f64
            ));
        }
    }
    md.push('\n');
    if let Some(sum) = mean_ns("walk_full", "byte_sum", "stream64k") {
        md.push_str(&format!(
            "- full walk / byte-sum time: **{:.2}×** (goal ≤ 1.5×)\n",
            ours / sum
        ));
    }
    if let Some(iso) = mean_ns("walk_full", "iso7816-tlv", "stream64k") {
        md.push_str(&format!(
            "- iso7816-tlv full walk / emvbridge full walk: **{:.1}×** (goal ≥ 20×)\n",
            iso / ours
        ));
    }
    if let (Some(o), Some(a)) = (
        mean_ns("find_9f26", "emvbridge", "present_deep"),
        mean_ns("find_9f26", "asn1-rs", "present_deep"),
    ) {
        md.push_str(&format!(
            "- asn1-rs `find` / emvbridge `find`: **{:.1}×**\n",
            a / o
        ));
    }
    let Some(dir) = target_dir().map(|d| d.join("criterion")) else {
        return;
    };
    let _ = std::fs::create_dir_all(&dir);
    if std::fs::write(dir.join("summary.md"), &md).is_ok() {
        eprintln!(
            "\nsummary table written to {}",
            dir.join("summary.md").display()
        );
    }
    if std::env::var_os("BENCH_README").is_some() {
        let readme = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md");
        let (start, end) = ("<!-- bench:tlv:start -->\n", "<!-- bench:tlv:end -->");
        if let Ok(text) = std::fs::read_to_string(&readme) {
            if let (Some(a), Some(b)) = (text.find(start), text.find(end)) {
                let new = format!("{}{start}{md}{}", &text[..a], &text[b..]);
                if std::fs::write(&readme, new).is_ok() {
                    eprintln!("README.md table rewritten from this run");
                }
            }
        }
    }
}

fn human(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}
