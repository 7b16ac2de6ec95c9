//! Card data and secrets never leave the bridge: runs the scenario binaries the way a store
//! would (`emvbridge demo` per dialect, `emvbridge sale` per dialect and outcome with
//! `--record` and `--journal`, a sale through a separate `vipa-sim` over TCP, `emvbridge
//! report`, `emvbridge decode` of captured and recorded frames without `--reveal`), all with
//! `RUST_LOG=debug` (the demos and a faulty lab run also with JSON logs to a file, where
//! every span and event field is written out), then scans every byte they wrote (stdout, stderr, recordings, the journal
//! database with its `-wal`/`-shm`) with [`emvbridge::leakscan`]: full PANs (text, BCD hex,
//! track 2), the simulator's card PANs in any form, and the sandbox's default credentials.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use emvbridge::leakscan::{self, Finding};

/// Everything the runs wrote, by name.
#[derive(Default)]
struct Artifacts {
    items: Vec<(String, Vec<u8>)>,
}

impl Artifacts {
    fn add(&mut self, name: impl Into<String>, bytes: Vec<u8>) {
        self.items.push((name.into(), bytes));
    }

    /// Every regular file under `dir`.
    fn add_dir(&mut self, dir: &Path) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("read artifact dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        entries.sort();
        for p in entries {
            let bytes = std::fs::read(&p).expect("read artifact");
            self.add(p.file_name().unwrap_or_default().to_string_lossy(), bytes);
        }
    }
}

/// Runs a command with a hard bound and `RUST_LOG=debug`; returns (exit code, stdout, stderr).
fn run(program: &Path, args: &[&str]) -> (i32, Vec<u8>, Vec<u8>) {
    let mut child = Command::new(program)
        .args(args)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{} {args:?} did not finish in 90 s", program.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.code().unwrap_or(-1),
        t_out.join().unwrap_or_default(),
        t_err.join().unwrap_or_default(),
    )
}

fn emvbridge() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_emvbridge"))
}

fn scratch_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "emvbridge-leakscan-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// A sale through a separate `vipa-sim` (TCP, debug logs) and the in-process sandbox.
fn sale_via_vipa_sim(art: &mut Artifacts, dir: &Path) {
    let mut sim = Command::new(common::vipa_sim())
        .args(["--tcp", "127.0.0.1:0", "--card", "visa-cvn10"])
        .env("RUST_LOG", "debug")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vipa-sim");
    let stdout = sim.stdout.take().expect("stdout");
    let mut stderr = sim.stderr.take().expect("stderr");
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    let (tx, rx) = mpsc::channel();
    let t_out = std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut first = String::new();
        let _ = r.read_line(&mut first);
        let _ = tx.send(first.clone());
        let mut rest = Vec::new();
        let _ = r.read_to_end(&mut rest);
        let mut all = first.into_bytes();
        all.extend(rest);
        all
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("vipa-sim announced its address");
    let v: serde_json::Value = serde_json::from_str(line.trim()).expect("json line");
    let addr = format!("tcp://{}", v["tcp"].as_str().expect("tcp address"));
    let rec = dir.join("sim-sale.rec.jsonl");
    let journal = dir.join("sim-sale.db");
    let (code, out, err) = run(
        &emvbridge(),
        &[
            "sale",
            "--amount",
            "12.34",
            "--device",
            &addr,
            "--record",
            rec.to_str().expect("utf-8 path"),
            "--journal",
            journal.to_str().expect("utf-8 path"),
            "--json",
        ],
    );
    assert_eq!(
        code,
        0,
        "sale via vipa-sim: {}",
        String::from_utf8_lossy(&err)
    );
    art.add("sale via vipa-sim: stdout", out);
    art.add("sale via vipa-sim: stderr", err);
    drop(sim.stdin.take()); // the simulator stops when its standard input closes
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = sim.kill();
    let _ = sim.wait();
    art.add("vipa-sim: stdout", t_out.join().unwrap_or_default());
    let err = t_err.join().unwrap_or_default();
    assert!(!err.is_empty(), "vipa-sim wrote no debug log");
    art.add("vipa-sim: stderr (RUST_LOG=debug)", err);
}

/// Frames of one recording, as hex, for `emvbridge decode`.
fn recorded_frames(rec: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(rec).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        // Whatever field holds hex bytes: decode tries them all.
        if let Some(obj) = v.as_object() {
            for val in obj.values() {
                if let Some(s) = val.as_str() {
                    if s.len() >= 8 && s.len() % 2 == 0 && s.bytes().all(|b| b.is_ascii_hexdigit())
                    {
                        out.push(s.to_owned());
                    }
                }
            }
        }
    }
    out
}

#[test]
fn no_card_data_or_secret_in_anything_the_bridge_writes() {
    let dir = scratch_dir();
    let mut art = Artifacts::default();
    let bin = emvbridge();

    // The demo, per dialect.
    for dialect in ["paymentsai", "number", "pay1st"] {
        let (code, out, err) = run(&bin, &["demo", "--dialect", dialect]);
        // Exit 1 is a scripted outcome that did not happen (another test's business); a
        // crash or usage error would leave nothing worth scanning.
        assert!(
            code == 0 || code == 1,
            "demo {dialect}: {code} {}",
            String::from_utf8_lossy(&err)
        );
        if code != 0 {
            eprintln!("note: demo {dialect} exited {code} (not every sale ended as scripted)");
        }
        art.add(format!("demo {dialect}: stdout"), out);
        art.add(format!("demo {dialect}: stderr"), err);
    }

    // The logs as an operator keeps them: JSON lines at debug in a log file (every field of
    // every event and span), for the demo's scenarios per dialect and for a lab run with
    // reader faults (approvals, declines, reversals, corrupt frames, re-synchronisations).
    // The files land in the scratch dir and are scanned with everything else below; they must
    // hold the transactions' events, or a clean scan would prove nothing.
    for dialect in ["paymentsai", "number", "pay1st"] {
        let log = dir.join(format!("demo-{dialect}.log.jsonl"));
        let log_arg = log.display().to_string();
        let (code, _, err) = run(
            &bin,
            &[
                "--log-format",
                "json",
                "--log-file",
                &log_arg,
                "demo",
                "--dialect",
                dialect,
            ],
        );
        assert!(code == 0 || code == 1, "{}", String::from_utf8_lossy(&err));
        let text = std::fs::read_to_string(&log).expect("the log file");
        let events = text.lines().filter(|l| l.starts_with('{')).count();
        assert!(
            events > 20 && text.contains("\"name\":\"transaction\"") && text.contains("DEBUG"),
            "demo {dialect}: the JSON debug log lacks the transactions ({events} lines)"
        );
    }
    let lab_log = dir.join("lab.log.jsonl");
    let lab_log_arg = lab_log.display().to_string();
    let (code, out, err) = run(
        &bin,
        &[
            "--log-format",
            "json",
            "--log-file",
            &lab_log_arg,
            "lab",
            "--lanes",
            "2",
            "--sales",
            "12",
            "--faults",
            "corrupt-lrc=0.02",
        ],
    );
    assert!(
        code == 0 || code == 1,
        "lab: {}",
        String::from_utf8_lossy(&err)
    );
    art.add("lab: stdout", out);
    art.add("lab: stderr", err);
    let lab_text = std::fs::read_to_string(&lab_log).expect("the lab's log file");
    assert!(
        lab_text.contains("\"lane\"") && lab_text.contains("transaction finished"),
        "the lab's JSON log lacks its lanes' transactions"
    );

    // Sales per dialect: approved, declined (x.51), reversed after the card refused the
    // issuer (x.91), on several cards; each recorded and journaled.
    let sales: [(&str, &str, i32); 4] = [
        ("12.34", "visa-cvn18", 0),
        ("0.51", "mc-cvn16", 1),
        ("12.91", "amex", 1),
        ("5.00", "offline-pin", 0),
    ];
    for dialect in ["paymentsai", "number", "pay1st"] {
        for (i, (amount, card, want)) in sales.iter().enumerate() {
            let rec = dir.join(format!("{dialect}-{i}.rec.jsonl"));
            let journal = dir.join(format!("{dialect}.db"));
            let (code, out, err) = run(
                &bin,
                &[
                    "sale",
                    "--amount",
                    amount,
                    "--card",
                    card,
                    "--dialect",
                    dialect,
                    "--record",
                    rec.to_str().expect("utf-8 path"),
                    "--journal",
                    journal.to_str().expect("utf-8 path"),
                ],
            );
            assert!(
                code == 0 || code == 1,
                "sale {dialect} {amount} {card}: {code}\n{}\n{}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            );
            if code != *want {
                eprintln!("note: sale {dialect} {amount} {card} exited {code}, expected {want}");
            }
            art.add(format!("sale {dialect} {amount} {card}: stdout"), out);
            art.add(format!("sale {dialect} {amount} {card}: stderr"), err);
        }
        // What the journal reports.
        let journal = dir.join(format!("{dialect}.db"));
        let (_, out, err) = run(
            &bin,
            &[
                "report",
                "--journal",
                journal.to_str().expect("utf-8 path"),
                "--from",
                "2000-01-01",
                "--to",
                "2100-01-01",
                "--json",
            ],
        );
        art.add(format!("report {dialect}: stdout"), out);
        art.add(format!("report {dialect}: stderr"), err);
    }

    sale_via_vipa_sim(&mut art, &dir);

    // Decode without --reveal: the public captures, and every hex field of the recordings.
    let captures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/vipa");
    let mut to_decode: Vec<(String, Vec<&str>)> = Vec::new();
    for (file, from) in [
        ("start-transaction-command.hex", "host"),
        ("start-transaction-e2-response.hex", "terminal"),
        ("reset-response-ux300-chained.hex", "terminal"),
    ] {
        let hex = std::fs::read_to_string(captures.join(file)).expect("captured frames");
        to_decode.push((hex, vec!["decode", "--frame", "--from", from]));
    }
    // A clear (non-SRED) online data set as a reader without SRED would send it: decode must
    // mask 5A, 57 and 9F6B itself.
    to_decode.push((
        concat!(
            "E43B5A08476173900101001057134761739001010010D22122011143804400000F",
            "9F6B134761739001010010D22122011143804400000F5F2403221231"
        )
        .into(),
        vec!["decode"],
    ));
    let mut recorded = 0;
    for entry in std::fs::read_dir(&dir).expect("dir").flatten() {
        let p = entry.path();
        if p.to_string_lossy().ends_with(".rec.jsonl") {
            for hex in recorded_frames(&p) {
                recorded += 1;
                to_decode.push((hex, vec!["decode"]));
            }
        }
    }
    for (i, (hex, args)) in to_decode.iter().enumerate() {
        let mut a = args.clone();
        a.push(hex);
        let (_, out, err) = run(&bin, &a);
        art.add(format!("decode #{i}: stdout"), out);
        art.add(format!("decode #{i}: stderr"), err);
    }

    // Control: the same clear data set decoded *with* --reveal must be found, so a clean
    // result means clean output, not a blind scanner.
    let (_, revealed, _) = run(
        &bin,
        &[
            "decode",
            "--reveal",
            &to_decode[to_decode.len() - recorded - 1].0,
        ],
    );
    let control = leakscan::scan(&revealed);
    assert!(
        control.iter().any(|f| f.masked == "476173******0010"),
        "the scanner missed the revealed PAN: {control:?}"
    );

    // Every file the runs left: recordings, journals with -wal/-shm.
    art.add_dir(&dir);

    let mut total = 0usize;
    let mut findings: Vec<(String, Finding)> = Vec::new();
    for (name, bytes) in &art.items {
        total += bytes.len();
        for f in leakscan::scan(bytes) {
            findings.push((name.clone(), f));
        }
    }
    eprintln!(
        "leak scan: {} artifacts, {total} bytes, {recorded} recorded frames decoded, {} findings",
        art.items.len(),
        findings.len()
    );
    for (name, bytes) in &art.items {
        eprintln!("  {:>9} bytes  {name}", bytes.len());
    }
    for (name, f) in &findings {
        eprintln!("  LEAK in {name}: {f}");
    }
    assert!(
        total > 10_000,
        "the runs wrote almost nothing ({total} bytes)"
    );
    assert!(findings.is_empty(), "{} leaks (see above)", findings.len());
    let _ = std::fs::remove_dir_all(&dir);
}
