//! `emvbridge sale` end to end against the simulated reader with line faults on, by every way a
//! card comes: inserted, tapped (the result arrives unsolicited), swiped (a chip card: "use
//! chip", then inserted), in each device profile of a captured reader (UX300, UX301, M400 with
//! its unsolicited-only Card Status, P400 Plus). Real TCP between bridge and simulator, the
//! sandbox gateway over loopback HTTP.

use std::process::Command;

/// Line faults every sale runs with: writes cut at random and held back. (Duplicated frames
/// are in the heavier test: VIPA has no sequence numbers, so a duplicated answer can be taken
/// for the next command's, and the sale then fails definitely.)
const FAULTS: &str = "split,slow=1ms";

fn sale(how: &str, device: &str, card: &str, seed: u64, faults: &str) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_emvbridge"))
        .args(["sale", "--json", "--amount", "12.00", "--card", card])
        .args(["--present", how, "--sim-device", device])
        .args(["--sim-faults", faults, "--sim-seed", &seed.to_string()])
        .args(["--card-timeout-secs", "10", "--final-timeout-secs", "10"])
        .output()
        .expect("run emvbridge sale");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{how}/{device}: not json ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn contact_tap_and_swipe_sales_in_every_device_profile() {
    for device in ["ux300", "ux301", "m400", "p400"] {
        for (how, entry) in [
            ("insert", "chip"),
            ("tap", "contactless"),
            ("swipe", "chip"),
        ] {
            let v = sale(how, device, "visa-cvn18", 2, FAULTS);
            assert_eq!(v["status"], "approved", "{how}/{device}: {v}");
            assert_eq!(v["card"]["entry_mode"], entry, "{how}/{device}: {v}");
            assert_eq!(
                v["card"]["masked_pan"], "401200******5439",
                "{how}/{device}: {v}"
            );
            assert!(v["card"]["cryptogram"].is_string(), "{how}/{device}: {v}");
        }
    }
}

#[test]
fn heavier_faults_never_leave_money_in_doubt() {
    // Bit flips, duplicated and corrupt frames: a sale may fail, but it ends definitely, and
    // an approval is never reported without the card's TC (contact) or the issuer's approval
    // of the ARQC (tap).
    for how in ["insert", "tap", "swipe"] {
        let mut approved = 0;
        for seed in 1..=4 {
            let v = sale(
                how,
                "generic",
                "mc-cvn16",
                seed,
                "split,flip=0.0005,dup=0.02,corrupt-lrc=0.01",
            );
            let status = v["status"].as_str().unwrap_or_default().to_owned();
            assert!(
                ["approved", "declined", "reversed", "cancelled", "failed"]
                    .contains(&status.as_str()),
                "{how}/{seed}: {v}"
            );
            if status == "approved" {
                approved += 1;
                // A contact card ends with a TC; a tapped card has left the field after its
                // ARQC, which the issuer approved (EMV contactless: no second GENERATE AC).
                let want = if how == "tap" { "ARQC" } else { "TC" };
                assert_eq!(v["card"]["cryptogram_type"], want, "{how}/{seed}: {v}");
                assert_eq!(v["card"]["arc"], "00", "{how}/{seed}: {v}");
            }
        }
        assert!(
            approved >= 2,
            "{how}: only {approved} of 4 approved under light faults"
        );
    }
}

/// As [`sale`], in `dialect`, with extra arguments and the process's whole output kept.
fn sale_in(dialect: &str, how: &str, card: &str, extra: &[&str]) -> (serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_emvbridge"))
        .args(["sale", "--json", "--amount", "12.00", "--card", card])
        .args([
            "--present",
            how,
            "--dialect",
            dialect,
            "--sim-device",
            "ux301",
        ])
        .args(["--card-timeout-secs", "10", "--final-timeout-secs", "10"])
        .args(extra)
        .output()
        .expect("run emvbridge sale");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{dialect}/{how}/{card}: not json ({e}): {stdout}\n{stderr}"));
    (v, format!("{stdout}\n{stderr}"))
}

const DIALECTS: [&str; 3] = ["number", "paymentsai", "pay1st"];

#[test]
fn chip_failure_falls_back_to_the_stripe() {
    // The chip does not answer (9F25): the bridge asks for a swipe, the reader accepts the
    // stripe of that card as a fallback (entry mode 80), and the sale goes to the gateway with
    // the masked track and the reader's enciphered track, which the gateway authorizes
    // without an ARQC.
    let v = sale(
        "insert",
        "ux301",
        "visa-cvn18",
        3,
        "split,chip-fail-at=start",
    );
    assert_eq!(v["card"]["entry_mode"], "swipe", "{v}");
    assert_eq!(v["card"]["masked_pan"], "401200******5439", "{v}");
    assert_eq!(v["status"], "approved", "{v}");
    for dialect in DIALECTS {
        let (v, _) = sale_in(
            dialect,
            "insert",
            "visa-cvn18",
            &["--sim-faults", "chip-fail-at=start"],
        );
        assert_eq!(v["card"]["entry_mode"], "swipe", "{dialect}: {v}");
        assert_eq!(v["status"], "approved", "{dialect}: {v}");
    }
}

#[test]
fn a_magstripe_only_card_is_swiped_and_approved_in_every_dialect() {
    // Service code 101: no chip, so the reader takes the stripe at once (entry mode 90).
    for dialect in DIALECTS {
        let (v, _) = sale_in(dialect, "swipe", "magstripe", &[]);
        assert_eq!(v["status"], "approved", "{dialect}: {v}");
        assert_eq!(v["card"]["entry_mode"], "swipe", "{dialect}: {v}");
        assert_eq!(
            v["card"]["masked_pan"], "478825******8291",
            "{dialect}: {v}"
        );
        assert!(
            v["card"]["cryptogram"].is_null(),
            "{dialect}: no ARQC on a stripe: {v}"
        );
        // A magstripe-mode tap (E7, entry mode 91) of a chip card: authorized on its track too.
        let (v, _) = sale_in(dialect, "tap-msd", "visa-cvn18", &[]);
        assert_eq!(v["status"], "approved", "{dialect} msd: {v}");
        assert_eq!(
            v["card"]["masked_pan"], "401200******5439",
            "{dialect} msd: {v}"
        );
    }
}

/// The sandbox gateway's ledger rows for `reference`.
async fn ledger(gw: &emvbridge_sandbox::SandboxHandle, reference: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        reqwest::get(format!("{}/_sim/ledger?client_ref={reference}", gw.url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    v["transactions"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_pin_and_stripe_reach_the_sandbox_in_every_dialect() {
    // The card's CVM result (9F34 42 03) announces an enciphered online PIN, so the sandbox
    // declines 55 unless the request carries a PIN block that deciphers to the card's PIN
    // (`emv::pin_check`): an approval proves the block and its KSN arrived intact.
    let gw = emvbridge_sandbox::spawn(emvbridge_sandbox::SandboxConfig::default())
        .await
        .unwrap();
    let url = gw.url();
    for (i, dialect) in DIALECTS.into_iter().enumerate() {
        for (card, how, entry) in [
            ("online-pin", "insert", "emv"),
            ("magstripe", "swipe", "swipe"),
        ] {
            let reference = format!("chan-{card}-{i}");
            let args = ["--gateway", url.as_str(), "--reference", reference.as_str()];
            let (v, _) = tokio::task::spawn_blocking({
                let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
                move || {
                    let a: Vec<&str> = args.iter().map(String::as_str).collect();
                    sale_in(dialect, how, card, &a)
                }
            })
            .await
            .unwrap();
            assert_eq!(v["status"], "approved", "{dialect}/{card}: {v}");
            if card == "online-pin" {
                assert_eq!(v["card"]["cvm"], "ONLINE PIN", "{dialect}: {v}");
            }
            let rows = ledger(&gw, &reference).await;
            let row = rows
                .first()
                .unwrap_or_else(|| panic!("{dialect}/{card}: no ledger row"));
            assert_eq!(row["state"], "approved", "{dialect}/{card}: {row}");
            assert_eq!(row["entry"], entry, "{dialect}/{card}: {row}");
            assert_eq!(row["resp_code"], "00", "{dialect}/{card}: {row}");
        }
    }
}

#[test]
fn track_and_pin_block_never_reach_logs_or_the_journal() {
    // What must never appear: the magstripe card's clear PAN and track 2 (either separator),
    // the online-PIN card's PAN, and every PIN block the simulated reader's DUKPT engine can
    // have produced in these sales (its first 64 transaction counters), in either case.
    let mut secrets = vec![
        "4788250000028291".to_owned(),
        "4788250000028291=3012101".to_owned(),
        "4788250000028291D3012101".to_owned(),
        "4005520000000939".to_owned(),
    ];
    let pan = emvbridge_protocol::emv::Pan::parse("4005520000000939").unwrap();
    let mut reader = emvbridge_sim::sred::SredEncryptor::ansi_test();
    for _ in 0..64 {
        let (block, _) = reader.pin_block("1234", &pan).unwrap();
        secrets.push(hex::encode_upper(block));
        secrets.push(hex::encode(block));
    }
    for dialect in DIALECTS {
        for (card, how) in [("magstripe", "swipe"), ("online-pin", "insert")] {
            let journal = std::env::temp_dir().join(format!(
                "emvb-leak-{dialect}-{card}-{}.db",
                std::process::id()
            ));
            let out = Command::new(env!("CARGO_BIN_EXE_emvbridge"))
                .env("RUST_LOG", "debug")
                .args(["sale", "--json", "--amount", "12.00", "--card", card])
                .args(["--present", how, "--dialect", dialect])
                .args(["--card-timeout-secs", "10", "--final-timeout-secs", "10"])
                .arg("--journal")
                .arg(&journal)
                .output()
                .expect("run emvbridge sale");
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            assert!(text.contains("\"approved\""), "{dialect}/{card}: {text}");
            assert!(
                text.contains("DEBUG"),
                "{dialect}/{card}: not at debug level: {text}"
            );
            let mut stored = Vec::new();
            for ext in ["", "-wal", "-shm"] {
                let p = format!("{}{ext}", journal.display());
                if let Ok(b) = std::fs::read(&p) {
                    stored.extend_from_slice(&b);
                }
                let _ = std::fs::remove_file(&p);
            }
            assert!(!stored.is_empty(), "{dialect}/{card}: no journal written");
            let stored = String::from_utf8_lossy(&stored);
            for s in &secrets {
                assert!(
                    !text.contains(s.as_str()),
                    "{dialect}/{card}: output leaks card data"
                );
                assert!(
                    !stored.contains(s.as_str()),
                    "{dialect}/{card}: journal leaks card data"
                );
            }
        }
    }
}
