//! `emvbridge lab` in CI: a few lanes, a few sales, figures printed, nothing unresolved.

use std::process::Command;

fn lab(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_emvbridge"))
        .arg("lab")
        .args(args)
        .output()
        .expect("run emvbridge lab");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_few_lanes_give_figures_and_nothing_unresolved() {
    let (code, out, err) = lab(&["--lanes", "3", "--sales", "8", "--seed", "5", "--json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let f: serde_json::Value = serde_json::from_str(&out).expect("figures are json");
    assert_eq!(f["lanes"], 3);
    assert_eq!(f["sales"], 24, "{f}");
    assert_eq!(f["unresolved"], 0);
    assert_eq!(f["no_orphans"], true);
    assert_eq!(f["errors"], 0);
    assert!(f["setup_failures"].as_array().unwrap().is_empty());
    let sum: u64 = f["outcomes"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(sum, 24, "{f}");
    // With a clean line every sale reaches the outcome its amount plans.
    assert_eq!(f["unexpected"], 0, "{f}");
    let planned = f["planned"].as_object().unwrap();
    let n = |k: &str| planned.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    assert_eq!(
        f["outcomes"]["approved"].as_u64().unwrap_or(0),
        n("approve")
    );
    assert_eq!(
        f["outcomes"]["reversed"].as_u64().unwrap_or(0),
        n("reversal")
    );
    assert_eq!(f["reversals"].as_u64().unwrap(), n("reversal"));
    assert_eq!(f["reversals_confirmed"], f["reversals"]);
    for k in ["end_to_end", "bridge_share", "reader_wait", "gateway_wait"] {
        let l = &f[k];
        let p50 = l["p50_ms"].as_f64().unwrap();
        let p99 = l["p99_ms"].as_f64().unwrap();
        assert!(
            p50 >= 0.0 && p50 <= p99 && p99 <= l["max_ms"].as_f64().unwrap(),
            "{k}: {l}"
        );
    }
    assert!(
        f["bridge_share"]["p50_ms"].as_f64().unwrap()
            <= f["end_to_end"]["p50_ms"].as_f64().unwrap()
    );
    assert!(f["sales_per_s"].as_f64().unwrap() > 0.0);
    assert!(f["peak_memory_kib"].as_u64().unwrap() > 0);
    // The same seed plans the same sales.
    let (_, out2, _) = lab(&["--lanes", "3", "--sales", "8", "--seed", "5", "--json"]);
    let g: serde_json::Value = serde_json::from_str(&out2).unwrap();
    assert_eq!(f["planned"], g["planned"]);
    assert_eq!(f["outcomes"], g["outcomes"]);
}

#[test]
fn text_figures_and_a_noisy_line() {
    let (code, out, err) = lab(&[
        "--lanes",
        "2",
        "--sales",
        "6",
        "--faults",
        "split,corrupt-lrc=0.01",
        "--seed",
        "3",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    for k in [
        "sales/s",
        "end to end",
        "bridge share",
        "outcomes",
        "corrupt",
        "reversals",
        "unresolved     0 (no_orphans: ok)",
        "peak memory",
    ] {
        assert!(out.contains(k), "{k} missing: {out}");
    }
    // Not a terminal: no progress bar on standard error.
    assert!(!err.contains("sales ("), "{err}");
}

#[test]
fn bad_faults_are_a_usage_error() {
    let (code, _, err) = lab(&["--lanes", "1", "--sales", "1", "--faults", "bogus=1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--faults"), "{err}");
}

/// Per-lane metrics and the latency plot: the lanes' transactions are counted under
/// `lane="N"` (the same registry `--metrics-listen` serves) and add up to the sales; the plot
/// is an SVG with the histogram's bars.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lanes_have_their_own_metrics_and_the_run_plots() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        lab: emvbridge::lab::LabArgs,
    }
    let svg = std::env::temp_dir().join(format!("emvb-lab-plot-{}.svg", std::process::id()));
    let svg_arg = svg.display().to_string();
    let cli = Cli::parse_from([
        "lab", "--lanes", "2", "--sales", "10", "--seed", "9", "--plot", &svg_arg,
    ]);
    let f = emvbridge::lab::lab(cli.lab).await.expect("lab runs");
    assert!(f.passed(), "{}", f.text());
    let text = emvbridge::telemetry::metrics::encode_text();
    let per_lane = |lane: &str| -> u64 {
        text.lines()
            .filter(|l| {
                l.starts_with("emvbridge_transactions_total{")
                    && l.contains(&format!("lane=\"{lane}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    assert_eq!((per_lane("0"), per_lane("1")), (10, 10), "{text}");
    assert!(
        text.contains("emvbridge_reader_frames_received_total{lane=\"1\"}"),
        "{text}"
    );
    let plot = std::fs::read_to_string(&svg).expect("the plot is written");
    let _ = std::fs::remove_file(&svg);
    assert!(
        plot.starts_with("<svg") || plot.contains("<svg"),
        "not an svg"
    );
    assert!(plot.contains("milliseconds") && plot.matches("<rect").count() > 3);
}
