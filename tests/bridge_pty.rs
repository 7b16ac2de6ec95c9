//! The bridge end to end: `vipa-sim` as a child process on a real pseudo-terminal (opened
//! with tokio-serial exactly like a USB-serial reader), the sandbox gateway over HTTP on
//! loopback, and the transaction engine between them. The simulator's control channel
//! (JSON lines on its standard input) switches cards and pulls them between sales.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use emvbridge::driver::{
    AddrConnector, DeviceAddr, LineSettings, LinkConfig, LinkEvent, ReaderLink,
};
use emvbridge::gateway::http::HttpSettings;
use emvbridge::gateway::{Dialect, Gateway};
use emvbridge_core::money::Money;
use emvbridge_core::txn::{
    AppChoice, AuthKind, Outcome, OutcomeStatus, Prompt, Reference, TxnConfig, TxnRequest,
};
use emvbridge_sandbox::{self as sandbox, SandboxConfig, SandboxHandle};
use tokio::sync::mpsc;

struct Sim {
    child: Child,
    stdin: ChildStdin,
    acks: std::sync::mpsc::Receiver<String>,
    pty: String,
}

impl Sim {
    fn start(args: &[&str]) -> Sim {
        let mut child = Command::new(common::vipa_sim())
            .arg("--pty")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn vipa-sim");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("vipa-sim announces its pty");
        let v: serde_json::Value = serde_json::from_str(&first).expect("json line");
        let pty = v["pty"].as_str().expect("pty path").to_owned();
        Sim {
            child,
            stdin,
            acks: rx,
            pty,
        }
    }

    fn control(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write control");
        self.stdin.flush().expect("flush");
        let ack = self
            .acks
            .recv_timeout(Duration::from_secs(10))
            .expect("control acknowledged");
        assert!(!ack.contains("\"error\""), "{line} → {ack}");
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Bridge {
    link: ReaderLink,
    events: mpsc::Receiver<LinkEvent>,
    gateway: Arc<dyn Gateway>,
    _sandbox: SandboxHandle,
    sandbox_url: String,
    seq: u32,
}

impl Bridge {
    async fn open(pty: &str) -> Bridge {
        let sandbox = sandbox::spawn(SandboxConfig::default())
            .await
            .expect("sandbox");
        let url = sandbox.url();
        let http = HttpSettings {
            request_timeout: Duration::from_secs(5),
            ..HttpSettings::default()
        };
        let gateway =
            emvbridge::embedded::sandbox_gateway(Dialect::PaymentsAi, &url, http).expect("gateway");
        let connector =
            AddrConnector::new(DeviceAddr::Serial(pty.to_owned()), LineSettings::default());
        let config = LinkConfig {
            backoff_max: Duration::from_millis(300),
            ..LinkConfig::default()
        };
        let (link, events) = ReaderLink::spawn(connector, config);
        link.wait_ready(Duration::from_secs(20))
            .await
            .expect("reader ready over the pty");
        Bridge {
            link,
            events,
            gateway,
            _sandbox: sandbox,
            sandbox_url: url,
            seq: 0,
        }
    }

    async fn sale(&mut self, minor: u64) -> (Outcome, Vec<Prompt>) {
        self.seq += 1;
        let req = TxnRequest {
            reference: Reference(format!("pty-{}-{minor}", self.seq)),
            kind: AuthKind::Sale,
            amount: Money::from_minor(minor, "USD").unwrap(),
            amount_other: 0,
            date: 261121,
            time: 120000,
            app_choice: AppChoice::CardPriority,
            original_gateway_id: None,
            pos_reference: None,
        };
        let config = TxnConfig {
            card_timeout: Duration::from_secs(20),
            final_timeout: Duration::from_secs(10),
            host_timeout: Duration::from_secs(10),
            abort_timeout: Duration::from_secs(3),
            // Offline approvals allowed (the relay's store-and-forward limits would decide).
            offline_fallback: true,
            ..TxnConfig::default()
        };
        let mut prompts = Vec::new();
        let outcome = tokio::time::timeout(
            Duration::from_secs(60),
            emvbridge::engine::run_transaction(
                &self.link,
                &mut self.events,
                self.gateway.clone(),
                req,
                config,
                |p| prompts.push(p.clone()),
            ),
        )
        .await
        .expect("the sale ends in bounded time")
        .expect("the sale starts");
        (outcome, prompts)
    }

    async fn no_orphans(&self) -> bool {
        let r = reqwest::Client::new()
            .post(format!("{}/_sim/assert/no_orphans", self.sandbox_url))
            .send()
            .await
            .expect("control plane");
        r.status().is_success()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sales_over_a_real_pty() {
    let mut sim = Sim::start(&["--card", "visa-cvn18", "--seed", "3"]);
    let mut bridge = Bridge::open(&sim.pty).await;

    // Approved online, with real cryptograms both ways.
    let (o, prompts) = bridge.sale(1234).await;
    assert_eq!(o.status, OutcomeStatus::Approved, "{o:?}");
    assert_eq!(o.card.cryptogram_type.as_deref(), Some("TC"));
    assert!(
        prompts.contains(&Prompt::Authorizing) && prompts.contains(&Prompt::PresentCard),
        "{prompts:?}"
    );

    // Insufficient funds (x.51).
    let (o, _) = bridge.sale(2051).await;
    assert_eq!(o.status, OutcomeStatus::Declined, "{o:?}");

    // Issuer approves, ARPC wrong (x.91): the card declines, the approval is reversed.
    let (o, _) = bridge.sale(1291).await;
    assert_eq!(o.status, OutcomeStatus::Reversed, "{o:?}");

    // The decline test card (Rebilly's 4000000000000002) is declined by the issuer rules.
    // Offline decline by the card (never reaches the host).
    sim.control(r#"{"cmd":"card","profile":"offline-decline"}"#);
    let (o, _) = bridge.sale(1000).await;
    assert_eq!(o.status, OutcomeStatus::Declined, "{o:?}");
    assert_eq!(o.card.cryptogram_type.as_deref(), Some("AAC"));
    assert!(o.gateway_id.is_none());

    // Offline approval below the card's floor limit (Y1, never reaches the host).
    sim.control(r#"{"cmd":"card","profile":"offline-approve"}"#);
    let (o, _) = bridge.sale(1000).await;
    assert_eq!(o.status, OutcomeStatus::ApprovedOffline, "{o:?}");
    assert!(o.gateway_id.is_none());

    // PIN entered (offline PIN card).
    sim.control(r#"{"cmd":"card","profile":"offline-pin"}"#);
    let (o, prompts) = bridge.sale(1500).await;
    assert_eq!(o.status, OutcomeStatus::Approved, "{o:?}");
    assert!(
        prompts.contains(&Prompt::EnterPin) && prompts.contains(&Prompt::PinEntered),
        "{prompts:?}"
    );
    assert_eq!(o.card.cvm.as_deref(), Some("PIN VERIFIED"));

    // PIN cancelled by the customer.
    sim.control(r#"{"cmd":"faults","spec":"cancel-at=pin"}"#);
    let (o, _) = bridge.sale(1500).await;
    assert_eq!(o.status, OutcomeStatus::Cancelled, "{o:?}");
    sim.control(r#"{"cmd":"faults","spec":""}"#);
    // The cancelled card is still in the slot: take it out.
    sim.control(r#"{"cmd":"remove"}"#);

    // Two applications: the bridge chooses by the card's priority.
    sim.control(r#"{"cmd":"card","profile":"two-app"}"#);
    let (o, prompts) = bridge.sale(2500).await;
    assert_eq!(o.status, OutcomeStatus::Approved, "{o:?}");
    assert!(
        prompts
            .iter()
            .any(|p| matches!(p, Prompt::ApplicationSelected { .. })),
        "{prompts:?}"
    );

    // Issuer authentication failure (the card always rejects the ARPC) → reversal.
    sim.control(r#"{"cmd":"card","profile":"issuer-auth-fail"}"#);
    let (o, _) = bridge.sale(1000).await;
    assert_eq!(o.status, OutcomeStatus::Reversed, "{o:?}");

    // Card removed after the host approved, before completion → reversal.
    sim.control(r#"{"cmd":"card","profile":"visa-cvn18"}"#);
    sim.control(r#"{"cmd":"faults","spec":"remove-at=e4"}"#);
    let (o, _) = bridge.sale(1000).await;
    assert!(
        matches!(o.status, OutcomeStatus::Reversed | OutcomeStatus::Cancelled),
        "{o:?}"
    );
    sim.control(r#"{"cmd":"faults","spec":""}"#);

    // Line noise on the reader's output: every sale ends definitely; approvals stand only
    // when completed (checked by the sandbox's orphan assertion below).
    sim.control(r#"{"cmd":"faults","spec":"corrupt-lrc=0.05,dup=0.02,split"}"#);
    let mut seen = std::collections::BTreeMap::<String, u32>::new();
    for i in 0..8 {
        let (o, _) = bridge.sale(3000 + i).await;
        *seen.entry(format!("{:?}", o.status)).or_default() += 1;
        // Let the link settle between sales (a corrupted answer makes it re-synchronise).
        let _ = bridge.link.wait_ready(Duration::from_secs(20)).await;
    }
    eprintln!("line noise over the pty: {seen:?}");
    sim.control(r#"{"cmd":"faults","spec":""}"#);

    assert!(
        bridge.no_orphans().await,
        "an approval was left standing without its sale"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_unplugged_mid_transaction_and_back() {
    let mut sim = Sim::start(&["--card", "visa-cvn18", "--seed", "9", "--no-auto-insert"]);
    let mut bridge = Bridge::open(&sim.pty).await;
    let pty = sim.pty.clone();
    // Start a sale that waits for a card, then kill the simulator under it.
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        let _ = sim.child.kill();
        let _ = sim.child.wait();
        sim
    });
    let (o, _) = bridge.sale(1000).await;
    assert!(
        matches!(o.status, OutcomeStatus::Failed | OutcomeStatus::Cancelled),
        "{o:?}"
    );
    assert!(o.reversal.is_none(), "nothing was authorized");
    drop(killer.join());
    // A new simulator (on a new pty): the bridge opens it and sells again.
    let sim2 = Sim::start(&["--card", "visa-cvn18", "--seed", "10"]);
    let _ = pty;
    let mut bridge2 = Bridge::open(&sim2.pty).await;
    let (o, _) = bridge2.sale(1000).await;
    assert_eq!(o.status, OutcomeStatus::Approved, "{o:?}");
    drop(bridge);
}
