//! `docs/test-cards.md` is generated from what the sandbox and the simulator actually do:
//! the simulator's card profiles and the sandbox's decision function
//! (`emvbridge_sandbox::outcome::resolve`) probed over amounts. The test fails when the
//! document drifts from them; `UPDATE_TEST_CARDS=1 cargo test --test test_cards_doc`
//! rewrites it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use emvbridge_core::gateway::Dialect;
use emvbridge_sandbox::outcome::{resolve, EmvExtra, Outcome, ResolveInput};

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/test-cards.md");
const DIALECTS: [(Dialect, &str); 3] = [
    (Dialect::Number, "Number"),
    (Dialect::PaymentsAi, "PaymentsAI"),
    (Dialect::Pay1st, "Pay1st"),
];

/// The amounts probed: every amount up to 20.00 and the large magic ones.
fn amounts() -> Vec<i64> {
    let mut v: Vec<i64> = (1..=2000).collect();
    v.extend([61_264, 116_910, 1_234_567, 1_234_568]);
    v
}

fn major(minor: i64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

/// The outcome in words, as the POS sees it.
fn describe(o: &Outcome, amount: i64) -> String {
    match o {
        Outcome::Approved {
            approved_minor,
            code,
            emv,
        } => {
            let mut s = if *approved_minor == amount {
                "approved".to_owned()
            } else {
                format!(
                    "partially approved for {} (code `{}`)",
                    major(*approved_minor),
                    code.as_str()
                )
            };
            match emv {
                EmvExtra::None => {}
                EmvExtra::BadArpc => s.push_str(
                    ", with a wrong ARPC: the chip card declines it and the bridge reverses",
                ),
                EmvExtra::Script(t) => {
                    let _ = write!(s, ", with an issuer script (template {t:02X})");
                }
            }
            s
        }
        Outcome::Declined { code } if code.is_nsf() => {
            format!("declined `{}`: insufficient funds", code.as_str())
        }
        Outcome::Declined { code } => format!("declined `{}`", code.as_str()),
        Outcome::GatewayError { err_code } => format!("gateway error {err_code}"),
        Outcome::ThreeDs(t) => format!("3-D Secure: {t:?}"),
    }
}

fn outcome(dialect: Dialect, pan: Option<&str>, amount: i64) -> String {
    describe(
        &resolve(&ResolveInput {
            dialect: Some(dialect),
            pan,
            cvv: None,
            expiry: None,
            amount_minor: amount,
            emv: true,
            forced: None,
        }),
        amount,
    )
}

/// Rows keyed by what they say, with the dialects that say it.
type Rows = BTreeMap<(String, String), Vec<&'static str>>;

fn dialects_of(names: &[&str]) -> String {
    if names.len() == DIALECTS.len() {
        "all".into()
    } else {
        names.join(", ")
    }
}

fn generate() -> String {
    let amounts = amounts();
    // Rules by the cents of the amount: the same non-plain outcome at several amounts.
    let mut cents: Rows = BTreeMap::new();
    let mut exact: BTreeMap<(i64, String), Vec<&'static str>> = BTreeMap::new();
    let mut cards: BTreeMap<((String, i64), String), Vec<&'static str>> = BTreeMap::new();
    for (d, dname) in DIALECTS {
        let mut cents_rule = BTreeMap::new();
        for c in 0..100i64 {
            let probes: Vec<String> = [300, 700, 1300, 1700]
                .iter()
                .map(|b| outcome(d, None, b + c))
                .collect();
            if probes.iter().all(|p| p == &probes[0]) && probes[0] != "approved" {
                cents_rule.insert(c, probes[0].clone());
                cents
                    .entry((format!("any amount ending in .{c:02}"), probes[0].clone()))
                    .or_default()
                    .push(dname);
            }
        }
        for &a in &amounts {
            let o = outcome(d, None, a);
            let expected = cents_rule
                .get(&(a % 100))
                .cloned()
                .unwrap_or_else(|| "approved".into());
            if o != expected {
                exact.entry((a, o)).or_default().push(dname);
            }
        }
        for (name, _) in emvbridge_sim::card::PROFILE_FILES {
            let Some(p) = emvbridge_sim::card::profile(name) else {
                continue;
            };
            let pan = p.pan.reveal().to_owned();
            let with: Vec<String> = amounts.iter().map(|&a| outcome(d, Some(&pan), a)).collect();
            if with.iter().all(|o| o == &with[0]) && with[0] != "approved" {
                // A card rule: the same answer whatever the amount.
                cards
                    .entry(((name.to_string(), -1), with[0].clone()))
                    .or_default()
                    .push(dname);
                continue;
            }
            for (&a, o) in amounts.iter().zip(with) {
                if o != outcome(d, None, a) {
                    cards
                        .entry(((name.to_string(), a), o))
                        .or_default()
                        .push(dname);
                }
            }
        }
    }
    let mut s = String::new();
    s.push_str(
        "# Test cards and magic amounts\n\n\
         <!-- Generated by `UPDATE_TEST_CARDS=1 cargo test --test test_cards_doc`; do not edit. -->\n\n\
         What the simulated reader's cards are and what the sandbox gateway answers, generated \
         from the simulator's card profiles and the sandbox's own decision function \
         (`emvbridge_sandbox::outcome::resolve`, probed over every amount up to 20.00 and the \
         large magic amounts), so this page cannot drift from them: a test regenerates it and \
         fails on any difference. Amounts are in major units of a two-decimal currency (send \
         minor units to the API: 10.51 is `1051`). Pick the card per sale with \
         `PUT /v1/simulator/card {\"profile\": \"…\"}` and the outcome with the amount.\n\n\
         ## Cards of the simulated reader\n\n\
         | Profile | PAN | What it is |\n|---|---|---|\n",
    );
    for (name, _) in emvbridge_sim::card::PROFILE_FILES {
        if let Some(p) = emvbridge_sim::card::profile(name) {
            let pan = p.pan.reveal();
            let masked = if pan.len() > 10 {
                format!("{}…{}", &pan[..6], &pan[pan.len() - 4..])
            } else {
                "—".into()
            };
            let _ = writeln!(
                s,
                "| `{name}` | {masked} | {} |",
                p.description.replace('|', "/")
            );
        }
    }
    s.push_str(
        "\nAn outcome the card decides (an offline decline, a wrong PIN, an expired card) \
         comes from the card itself, whatever the amount.\n\n\
         ## Amounts, any card\n\n| Amount | Outcome | Dialects |\n|---|---|---|\n",
    );
    for ((what, o), d) in &cents {
        let _ = writeln!(s, "| {what} | {o} | {} |", dialects_of(d));
    }
    for ((a, o), d) in &exact {
        let _ = writeln!(s, "| {} | {o} | {} |", major(*a), dialects_of(d));
    }
    s.push_str(
        "\nAny other amount is approved in full.\n\n\
         ## A card and an amount together\n\n| Card and amount | Outcome | Dialects |\n|---|---|---|\n",
    );
    for (((name, a), o), d) in &cards {
        let what = if *a < 0 {
            format!("`{name}`, any amount")
        } else {
            format!("`{name}` at {}", major(*a))
        };
        let _ = writeln!(s, "| {what} | {o} | {} |", dialects_of(d));
    }
    s.push_str(
        "\nThe sandbox also knows gateway test PANs no simulated card carries (keyed or \
         vaulted payments) and forced outcomes and faults through its `/_sim` control \
         routes; see `docs/gateways.md`.\n",
    );
    s
}

#[test]
fn test_cards_doc_matches_the_sandbox_and_the_simulator() {
    let want = generate();
    // Not empty by construction: the NSF rule and at least one card are always there.
    assert!(want.contains("insufficient funds") && want.contains("`visa-cvn18`"));
    if std::env::var_os("UPDATE_TEST_CARDS").is_some() {
        std::fs::write(DOC, &want).expect("write docs/test-cards.md");
        return;
    }
    let have = std::fs::read_to_string(DOC).unwrap_or_default();
    assert!(
        have == want,
        "docs/test-cards.md is out of date: run UPDATE_TEST_CARDS=1 cargo test --test test_cards_doc"
    );
}
