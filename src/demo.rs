//! `emvbridge demo`: the README's first command. With no flags it starts the simulated reader
//! and the sandbox gateway in-process and runs a few scripted sales through the real stack
//! (reader link over TCP, transaction engine, gateway adapter over HTTP), showing the prompts
//! as they happen and each receipt, then a summary table.
//!
//! The script switches cards and faults between sales through the simulator's control
//! handle; the outcomes follow the sandbox's deterministic rules (gateways.md §4.5): amounts
//! ending `.51` decline with `51` (insufficient funds), `x.91` approve with a bad ARPC the
//! card rejects (the bridge must reverse). Exit 0 when every sale ended as scripted.

use std::process::ExitCode;

use anyhow::Context as _;
use emvbridge_sim::scenario::Control;

use crate::gateway::Dialect;
use crate::terminal::{Terminal, TerminalOptions};
use emvbridge_core::money::Money;
use emvbridge_core::prompt::text as prompt_text;
use emvbridge_core::txn::{AppChoice, AuthKind, OutcomeStatus, Prompt, TxnConfig, TxnRequest};

/// Arguments of `emvbridge demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Gateway dialect the sandbox speaks.
    #[arg(long, default_value = "paymentsai")]
    pub dialect: Dialect,
}

/// One scripted sale.
#[derive(Debug, Clone)]
pub struct Step {
    /// What it shows.
    pub title: &'static str,
    /// The simulated card.
    pub card: &'static str,
    /// How the simulated cardholder presents it once the reader is armed: `insert`, `tap`
    /// or `swipe` (a swiped chip card is refused with "use chip" and then inserted).
    pub how: &'static str,
    /// Amount in minor units (USD).
    pub amount: u64,
    /// Simulator faults for this sale (`--faults` syntax), cleared afterwards.
    pub faults: &'static str,
    /// The outcome it must end with.
    pub expect: OutcomeStatus,
    /// The decline code it must carry, if any.
    pub expect_code: Option<&'static str>,
    /// A prompt that must have been shown, if any.
    pub expect_prompt: Option<Prompt>,
}

/// The script.
pub fn script() -> Vec<Step> {
    vec![
        Step {
            title: "approved online",
            card: "visa-cvn18",
            how: "insert",
            amount: 1234,
            faults: "",
            expect: OutcomeStatus::Approved,
            expect_code: None,
            expect_prompt: Some(Prompt::Authorizing),
        },
        Step {
            title: "approved by a tap",
            card: "visa-cvn18",
            how: "tap",
            amount: 1890,
            faults: "",
            expect: OutcomeStatus::Approved,
            expect_code: None,
            expect_prompt: Some(Prompt::Authorizing),
        },
        Step {
            title: "chip card swiped: use chip, then inserted",
            card: "mc-cvn16",
            how: "swipe",
            amount: 2500,
            faults: "",
            expect: OutcomeStatus::Approved,
            expect_code: None,
            expect_prompt: Some(Prompt::UseChip),
        },
        Step {
            title: "declined by the card",
            card: "offline-decline",
            how: "insert",
            amount: 2000,
            faults: "",
            expect: OutcomeStatus::Declined,
            expect_code: None,
            expect_prompt: None,
        },
        Step {
            title: "insufficient funds",
            card: "visa-cvn18",
            how: "insert",
            amount: 1051,
            faults: "",
            expect: OutcomeStatus::Declined,
            expect_code: Some("51"),
            expect_prompt: None,
        },
        Step {
            title: "offline PIN",
            card: "offline-pin",
            how: "insert",
            amount: 500,
            faults: "",
            expect: OutcomeStatus::Approved,
            expect_code: None,
            expect_prompt: Some(Prompt::EnterPin),
        },
        Step {
            title: "card removed while the host decides",
            card: "visa-cvn18",
            how: "insert",
            amount: 1500,
            faults: "remove-at=e4",
            expect: OutcomeStatus::Reversed,
            expect_code: None,
            expect_prompt: Some(Prompt::Reversing),
        },
        Step {
            title: "card rejects the issuer (bad ARPC)",
            card: "visa-cvn18",
            how: "insert",
            amount: 1291,
            faults: "",
            expect: OutcomeStatus::Reversed,
            expect_code: None,
            expect_prompt: Some(Prompt::Reversing),
        },
    ]
}

/// How one scripted sale went.
#[derive(Debug, Clone)]
pub struct StepResult {
    /// The step.
    pub step: Step,
    /// The outcome status, or the error that stopped the sale.
    pub got: Result<OutcomeStatus, String>,
    /// The decline code.
    pub code: Option<String>,
    /// Whether it matched the script.
    pub ok: bool,
}

fn status_text(s: OutcomeStatus) -> &'static str {
    match s {
        OutcomeStatus::Approved => "approved",
        OutcomeStatus::PartiallyApproved => "partially approved",
        OutcomeStatus::ApprovedOffline => "approved offline",
        OutcomeStatus::Declined => "declined",
        OutcomeStatus::Cancelled => "cancelled",
        OutcomeStatus::Reversed => "reversed",
        OutcomeStatus::Unresolved => "unresolved",
        OutcomeStatus::Failed => "failed",
    }
}

/// Runs `emvbridge demo`: exit 0 when every sale ended as scripted, 1 when one did not. An
/// error is a setup error (exit 2).
///
/// # Errors
/// The simulated reader or the sandbox gateway cannot be started.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let results = demo(args).await?;
    Ok(if results.iter().all(|r| r.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn demo(args: DemoArgs) -> anyhow::Result<Vec<StepResult>> {
    println!("emvbridge demo: scripted card-present sales through the real stack");
    let terminal = Terminal::open(&TerminalOptions {
        dialect: args.dialect,
        ..TerminalOptions::default()
    })
    .await?;
    for note in &terminal.notes {
        println!("note: {note}");
    }
    println!(
        "reader: {} (terminal {})",
        terminal.model(),
        terminal.info.terminal_id.as_deref().unwrap_or("?")
    );
    let sim = terminal
        .sim
        .as_ref()
        .map(|s| s.handle.clone())
        .context("the demo needs the simulated reader")?;
    let link = terminal.link.clone();
    let gateway = terminal.gateway.clone();
    let mut events = terminal.events;
    let steps = script();
    let mut results = Vec::with_capacity(steps.len());
    for (i, step) in steps.into_iter().enumerate() {
        let amount = Money::from_minor(step.amount, "USD")?;
        println!();
        println!(
            "== {}/{}: {} ({} by {}, {amount})",
            i + 1,
            script().len(),
            step.title,
            step.card,
            step.how
        );
        sim.control(Control::Present {
            how: step.how.into(),
        })
        .await
        .map_err(|e| anyhow::anyhow!("simulator: {e}"))?;
        sim.control(Control::Card {
            profile: step.card.into(),
        })
        .await
        .map_err(|e| anyhow::anyhow!("simulator: {e}"))?;
        sim.control(Control::Faults {
            spec: step.faults.into(),
        })
        .await
        .map_err(|e| anyhow::anyhow!("simulator: {e}"))?;
        let (date, time) = crate::engine::utc_date_time(std::time::SystemTime::now());
        let req = TxnRequest {
            reference: crate::terminal::new_reference(),
            kind: AuthKind::Sale,
            amount,
            amount_other: 0,
            date,
            time,
            app_choice: AppChoice::CardPriority,
            original_gateway_id: None,
            pos_reference: None,
        };
        let mut seen = Vec::new();
        let outcome = crate::engine::run_transaction(
            &link,
            &mut events,
            gateway.clone(),
            req,
            TxnConfig::default(),
            |p| {
                println!("  [{}]", prompt_text(p));
                seen.push(p.clone());
            },
        )
        .await;
        let _ = sim
            .control(Control::Faults {
                spec: String::new(),
            })
            .await;
        let result = match outcome {
            Ok(o) => {
                for line in emvbridge_core::receipt::text(&o, "CUSTOMER COPY").lines() {
                    println!("  {line}");
                }
                if let Some(r) = &o.reason {
                    println!("  reason: {r}");
                }
                let ok = o.status == step.expect
                    && step
                        .expect_code
                        .is_none_or(|c| o.decline_code.as_deref() == Some(c))
                    && step.expect_prompt.as_ref().is_none_or(|p| seen.contains(p));
                StepResult {
                    got: Ok(o.status),
                    code: o.decline_code.clone(),
                    ok,
                    step,
                }
            }
            Err(e) => {
                println!("  error: {e}");
                StepResult {
                    got: Err(e.to_string()),
                    code: None,
                    ok: false,
                    step,
                }
            }
        };
        println!(
            "  => {} (expected {}){}",
            match &result.got {
                Ok(s) => status_text(*s).to_owned(),
                Err(e) => format!("error: {e}"),
            },
            status_text(result.step.expect),
            if result.ok { "" } else { "  MISMATCH" }
        );
        results.push(result);
    }
    link.shutdown().await;
    if let Some(s) = terminal.sandbox {
        s.shutdown().await;
    }
    println!();
    print!("{}", summary(&results));
    Ok(results)
}

/// The summary table.
pub fn summary(results: &[StepResult]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<3} {:<42} {:<16} {:>10}  {:<20} as scripted",
        "#", "scenario", "card", "amount", "outcome"
    );
    for (i, r) in results.iter().enumerate() {
        let amount = Money::from_minor(r.step.amount, "USD")
            .map(|m| m.to_string())
            .unwrap_or_default();
        let got = match &r.got {
            Ok(st) => match &r.code {
                Some(c) => format!("{} ({c})", status_text(*st)),
                None => status_text(*st).to_owned(),
            },
            Err(_) => "error".to_owned(),
        };
        let _ = writeln!(
            s,
            "{:<3} {:<42} {:<16} {:>10}  {:<20} {}",
            i + 1,
            r.step.title,
            r.step.card,
            amount,
            got,
            if r.ok { "yes" } else { "NO" }
        );
    }
    let ok = results.iter().filter(|r| r.ok).count();
    let _ = writeln!(s, "{ok}/{} sales ended as scripted", results.len());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_uses_shipped_cards_and_valid_faults() {
        for step in script() {
            assert!(
                emvbridge_sim::card::profile(step.card).is_some(),
                "{}",
                step.card
            );
            assert!(
                step.faults
                    .parse::<emvbridge_sim::faults::FaultPlan>()
                    .is_ok(),
                "{}",
                step.faults
            );
        }
    }

    #[test]
    fn summary_marks_mismatches() {
        let steps = script();
        let results = vec![
            StepResult {
                step: steps[0].clone(),
                got: Ok(OutcomeStatus::Approved),
                code: None,
                ok: true,
            },
            StepResult {
                step: steps
                    .iter()
                    .find(|s| s.title == "insufficient funds")
                    .unwrap()
                    .clone(),
                got: Ok(OutcomeStatus::Approved),
                code: None,
                ok: false,
            },
        ];
        let s = summary(&results);
        assert!(s.contains("approved online") && s.contains("yes"), "{s}");
        assert!(s.contains("insufficient funds") && s.contains("NO"), "{s}");
        assert!(s.ends_with("1/2 sales ended as scripted\n"), "{s}");
    }
}
