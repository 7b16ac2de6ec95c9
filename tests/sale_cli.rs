//! `emvbridge sale` end to end: the real binary, the simulated reader over a TCP socket on
//! loopback and the sandbox gateway over HTTP on loopback, for each dialect and outcome.

use std::process::Command;

fn sale(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_emvbridge"))
        .arg("sale")
        .args(args)
        .output()
        .expect("run emvbridge sale");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn approved_declined_and_reversed_in_every_dialect() {
    for dialect in ["paymentsai", "number", "pay1st"] {
        let (code, out, err) = sale(&["--amount", "12.34", "--dialect", dialect]);
        assert_eq!(code, 0, "{dialect}: {out}\n{err}");
        assert!(out.contains("APPROVED"), "{dialect}: {out}");
        assert!(out.contains("MERCHANT COPY") && out.contains("CUSTOMER COPY"));
        assert!(out.contains("401200******5439"), "{out}");
        assert!(
            err.contains("[INSERT, TAP OR SWIPE CARD]") && err.contains("[AUTHORIZING...]"),
            "{err}"
        );
        assert!(
            err.contains("simulated reader") && err.contains("sandbox gateway"),
            "{err}"
        );
        // No full PAN anywhere.
        assert!(!out.contains("4012000098765439") && !err.contains("4012000098765439"));
    }
    // Insufficient funds (x.51): declined, exit 1.
    let (code, out, _) = sale(&["--amount", "0.51"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("DECLINED"), "{out}");
    // Issuer approves, the card rejects the ARPC (x.91): reversed, exit 1.
    let (code, out, _) = sale(&["--amount", "12.91", "--json"]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json outcome");
    assert_eq!(v["status"], "reversed");
    assert_eq!(v["reversal"]["reason"], "card_declined_after_approval");
    assert_eq!(v["card"]["cryptogram_type"], "AAC");
    // An offline-PIN card asks for the PIN.
    let (code, out, err) = sale(&["--amount", "5.00", "--card", "offline-pin"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("[ENTER PIN]"), "{err}");
    assert!(out.contains("PIN VERIFIED"), "{out}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let (code, _, err) = sale(&["--amount", "12.345"]);
    assert_eq!(code, 2);
    assert!(err.starts_with("error: bad amount"), "{err}");
    let (code, _, err) = sale(&["--amount", "1", "--card", "no-such-card"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown card profile"), "{err}");
}
