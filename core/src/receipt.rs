//! EMV receipts: the fields card schemes require, as text (merchant and customer copies) or
//! JSON. Built from an [`Outcome`]; never holds more than the masked PAN.

use std::fmt::Write as _;

use crate::txn::{EntryMode, Outcome, OutcomeStatus, ReversalResult};

/// Receipt text for one copy (`"MERCHANT COPY"` / `"CUSTOMER COPY"`).
pub fn text(o: &Outcome, copy: &str) -> String {
    text_with_reference(o, copy, None)
}

/// Receipt text for one copy with the point of sale's own reference (its order or ticket
/// number) on a `POS REF` line (`REF` is the bridge's own id), so the paper slip and the
/// till's record can be matched.
pub fn text_with_reference(o: &Outcome, copy: &str, reference: Option<&str>) -> String {
    let mut s = String::new();
    let line = |s: &mut String, k: &str, v: &str| {
        let _ = writeln!(s, "{k:<14}{v:>26}");
    };
    let _ = writeln!(s, "{:^40}", copy);
    let _ = writeln!(s, "{}", "-".repeat(40));
    let kind = match o.kind {
        crate::txn::AuthKind::Sale => "SALE",
        crate::txn::AuthKind::PreAuth => "PRE-AUTHORIZATION",
        crate::txn::AuthKind::Refund => "REFUND",
    };
    let _ = writeln!(s, "{kind}");
    if let Some(r) = reference {
        line(&mut s, "POS REF", r);
    }
    let c = &o.card;
    if let Some(label) = &c.app_label {
        line(&mut s, "APP", label);
    }
    if let Some(aid) = &c.aid {
        line(&mut s, "AID", aid);
    }
    if let Some(pan) = &c.masked_pan {
        line(&mut s, "CARD", pan);
    }
    let entry = match c.entry_mode {
        Some(EntryMode::Chip) => "CHIP",
        Some(EntryMode::Contactless) => "CONTACTLESS",
        Some(EntryMode::Swipe) => "SWIPE",
        None => "CHIP",
    };
    line(&mut s, "ENTRY", entry);
    line(&mut s, "AMOUNT", &o.amount.to_string());
    if let Some(a) = &o.approved_amount {
        if a != &o.amount {
            line(&mut s, "APPROVED AMT", &a.to_string());
        }
    }
    if let Some(t) = &c.tvr {
        line(&mut s, "TVR", t);
    }
    if let Some(t) = &c.tsi {
        line(&mut s, "TSI", t);
    }
    if let (Some(kind), Some(ac)) = (&c.cryptogram_type, &c.cryptogram) {
        line(&mut s, kind, ac);
    }
    if let Some(arc) = &c.arc {
        line(&mut s, "ARC", &String::from_utf8_lossy(arc));
    }
    if let Some(code) = &o.auth_code {
        line(&mut s, "AUTH CODE", code);
    }
    if let Some(id) = &o.gateway_id {
        line(&mut s, "TXN ID", id);
    }
    line(&mut s, "REF", &o.reference.0);
    let verdict = match o.status {
        OutcomeStatus::Approved => "APPROVED",
        OutcomeStatus::PartiallyApproved => "PARTIALLY APPROVED",
        // Approved by the merchant's policy (or the card offline), stored to be forwarded:
        // never worded as an issuer approval (issue: "approved by merchant (stored)").
        OutcomeStatus::ApprovedOffline => "APPROVED BY MERCHANT - STORED",
        OutcomeStatus::Declined => "DECLINED",
        OutcomeStatus::Cancelled => "CANCELLED",
        OutcomeStatus::Reversed => "REVERSED - NOT CHARGED",
        OutcomeStatus::Unresolved => "NOT COMPLETED - BEING RESOLVED",
        OutcomeStatus::Failed => "FAILED - NOT CHARGED",
    };
    let _ = writeln!(s, "{}", "-".repeat(40));
    let _ = writeln!(s, "{verdict:^40}");
    if o.status == OutcomeStatus::ApprovedOffline {
        let _ = writeln!(s, "{:^40}", "NOT AN ISSUER APPROVAL");
    }
    if let Some(code) = &o.decline_code {
        let _ = writeln!(s, "{:^40}", format!("CODE {code}"));
    }
    if o.status.is_approved() {
        match c.cvm.as_deref() {
            Some(cvm @ ("PIN VERIFIED" | "ONLINE PIN")) => {
                let _ = writeln!(s, "{cvm:^40}");
            }
            Some("SIGNATURE") | Some("PIN VERIFIED + SIGNATURE")
                if copy.starts_with("MERCHANT") =>
            {
                let _ = writeln!(s, "\nX{}", "_".repeat(39));
                let _ = writeln!(s, "{:^40}", "CARDHOLDER SIGNATURE");
            }
            Some(other) => {
                let _ = writeln!(s, "{other:^40}");
            }
            None => {}
        }
    }
    s
}

/// The receipt data as JSON: the outcome's fields plus the card facts.
pub fn json(o: &Outcome) -> serde_json::Value {
    serde_json::json!({
        "reference": o.reference,
        "kind": o.kind,
        "status": o.status,
        "amount": o.amount,
        "approved_amount": o.approved_amount,
        "gateway_id": o.gateway_id,
        "auth_code": o.auth_code,
        "decline_code": o.decline_code,
        "reason": o.reason,
        "reversal": o.reversal.as_ref().map(|r| {
            let (result, failure) = match &r.result {
                None => (None, None),
                Some(ReversalResult::Reversed) => (Some("reversed"), None),
                Some(ReversalResult::NotFound) => (Some("not_found"), None),
                Some(ReversalResult::Failed { reason }) => (Some("failed"), Some(reason)),
            };
            serde_json::json!({ "reason": r.reason, "result": result, "failure": failure })
        }),
        "card": o.card,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Money;
    use crate::txn::{AuthKind, CardFacts, Reference};

    fn outcome(status: OutcomeStatus) -> Outcome {
        let usd = Money::from_minor(1234, "USD").unwrap();
        Outcome {
            reference: Reference("emvb-1".into()),
            pos_reference: None,
            kind: AuthKind::Sale,
            status,
            amount: usd,
            approved_amount: status.is_approved().then_some(usd),
            gateway_id: None,
            auth_code: None,
            decline_code: None,
            reason: None,
            reversal: None,
            card: CardFacts {
                masked_pan: Some("401200******5439".into()),
                ..CardFacts::default()
            },
            final_data: None,
        }
    }

    #[test]
    fn offline_approval_is_worded_as_the_merchant_s() {
        let t = text(&outcome(OutcomeStatus::ApprovedOffline), "CUSTOMER COPY");
        assert!(t.contains("APPROVED BY MERCHANT - STORED"), "{t}");
        assert!(t.contains("NOT AN ISSUER APPROVAL"), "{t}");
        // No line says a bare "APPROVED" for it.
        assert!(!t.lines().any(|l| l.trim() == "APPROVED"), "{t}");
        let t = text(&outcome(OutcomeStatus::Approved), "CUSTOMER COPY");
        assert!(t.lines().any(|l| l.trim() == "APPROVED"), "{t}");
        assert!(!t.contains("MERCHANT - STORED") && !t.contains("NOT AN ISSUER"));
        assert!(t.contains("401200******5439"));
    }

    #[test]
    fn auth_code_and_pos_reference_lines() {
        let mut o = outcome(OutcomeStatus::Approved);
        o.auth_code = Some("A1B2C3".into());
        let t = text_with_reference(&o, "CUSTOMER COPY", Some("T7 #1001"));
        let line = |k: &str| t.lines().find(|l| l.starts_with(k)).map(str::to_owned);
        assert!(
            line("AUTH CODE").is_some_and(|l| l.ends_with("A1B2C3")),
            "{t}"
        );
        assert!(
            line("POS REF").is_some_and(|l| l.ends_with("T7 #1001")),
            "{t}"
        );
        o.auth_code = None;
        let t = text(&o, "CUSTOMER COPY");
        assert!(!t.contains("AUTH CODE") && !t.contains("POS REF"), "{t}");
    }

    #[test]
    fn reversal_results_are_words_with_the_failure_apart() {
        use crate::txn::{ReversalOutcome, ReversalReason};
        let mut o = outcome(OutcomeStatus::Reversed);
        let mut with = |result| {
            o.reversal = Some(ReversalOutcome {
                reason: ReversalReason::CardRemoved,
                result,
            });
            json(&o)["reversal"].clone()
        };
        let v = with(Some(ReversalResult::Reversed));
        assert_eq!(
            (&v["result"], &v["failure"]),
            (&"reversed".into(), &serde_json::Value::Null)
        );
        assert_eq!(with(Some(ReversalResult::NotFound))["result"], "not_found");
        let v = with(Some(ReversalResult::Failed {
            reason: "timeout".into(),
        }));
        assert_eq!(
            (&v["result"], &v["failure"]),
            (&"failed".into(), &"timeout".into())
        );
        assert_eq!(with(None)["result"], serde_json::Value::Null);
    }
}
