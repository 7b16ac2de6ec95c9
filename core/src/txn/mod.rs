//! The chip-card transaction state machine: one payment from "amount entered" to a definite
//! [`Outcome`], without I/O.
//!
//! Shaped like quinn-proto: inputs arrive through `handle_*(now, …)`, outputs are drained with
//! `poll_*`, time is passed in and timers live in a small table ([`Transaction::poll_timeout`]).
//! The bridge's engine (`emvbridge::engine`) owns the reader link, the gateway client and the clock.
//!
//! Drain outputs after every input, in this order: [`Transaction::poll_command`] (VIPA
//! command payloads for the reader), [`Transaction::poll_host`] (authorization or reversal
//! for the gateway), [`Transaction::poll_event`] (prompts for the POS), then
//! [`Transaction::poll_outcome`] (once, at the end), and re-arm [`Transaction::poll_timeout`].
//!
//! Money safety is the invariant this module exists for: an outcome says *approved* only when
//! the host approved **and** the card produced a TC. Whenever the host may have approved and
//! the card did not complete (declined with an AAC, removed, reader lost, POS cancel, host
//! answer unknown), the machine emits a reversal and the outcome says what became of it.

pub mod host;
mod outcome;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use emvbridge_protocol::emv::bits::{Cid, CryptogramType};
use emvbridge_protocol::emv::numeric;
use emvbridge_protocol::tlv::{self, Tag, TlvBuilder};
use emvbridge_protocol::vipa::command::{card_status_flags, continue_flags, ctls_kinds};
use emvbridge_protocol::vipa::{
    Command, ContinueForm, Response, StatusWord, Template, TemplateKind, TransactionData,
    TransactionStatus, C2_AS_LOGGED, HOST_DECISION_AAC, HOST_DECISION_TC, TAG_C0_HOST_DECISION,
    TAG_C2, TAG_DFCC79,
};

use crate::money::Money;
pub use host::{
    AuthKind, AuthorizationRequest, AuthorizationResult, EntryMode, IssuerResponse, OnlinePin,
    PosReference, PosReferenceError, Reference, ReversalReason, ReversalRequest, ReversalResult,
};
pub use outcome::{CardFacts, Outcome, OutcomeStatus, ReversalOutcome};

/// Timeouts and policy for one transaction. Defaults suit an attended UX300-class reader.
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// Longest wait for the reader's answer to Start/Continue Transaction while the customer
    /// inserts the card and enters a PIN; every status from the reader restarts it.
    pub card_timeout: Duration,
    /// Longest wait for the card's final answer (second GENERATE AC) after the host replied.
    pub final_timeout: Duration,
    /// Longest wait for the gateway's answer before it is treated as unknown.
    pub host_timeout: Duration,
    /// Longest wait for the reader to confirm an Abort.
    pub abort_timeout: Duration,
    /// Longest wait for a reversal's answer before it is left to the resolver.
    pub reversal_timeout: Duration,
    /// Whether an offline approval may be accepted: store-and-forward is on and this sale is
    /// within its limits (floor, count, total, age — the relay decides before the sale).
    /// `true`: when the host cannot be reached the final Continue sends `Y3` and a card TC is
    /// an approval to store and forward, as is a `Y1` TC from the first GENERATE AC.
    /// `false`: `Z3` is sent and any offline TC is refused (the outcome is a decline, nothing
    /// is stored). The default refuses.
    pub offline_fallback: bool,
    /// How Continue Transaction data is sent (\[GAP\] in the VIPA notes: `E0` or bare).
    pub continue_form: ContinueForm,
    /// Terminal country (9F1A), ISO 3166 numeric.
    pub country_code: u16,
    /// How many times a swipe answered "use chip" (9F34), or a Start answered "no card"
    /// (9F23) / "not ready" (9F22), goes back to waiting for the card.
    pub max_fallback_retries: u8,
    /// Card Status `D0 60` P1 that arms the reader: bit 0 (report changes) is always set, as
    /// every logged host does (UX301: `01 00`; M400: `3F 03`).
    pub card_status_p1: u8,
    /// Card Status P2 (key-press reporting, §0).
    pub card_status_p2: u8,
    /// Also accept a tap: `C0 A0` with the payment bit is armed next to the chip slot and
    /// cancelled (`C0 C0`) when a card is inserted or swiped.
    pub contactless: bool,
    /// Continue Transaction P1 bit 0 after `E2`: the reader stops again after cardholder
    /// verification and answers `E0` (as in the UX301 log); the machine accepts both answers.
    pub stop_after_cvm: bool,
    /// Online PIN `DE D6` P1: the host id whose key enciphers the PIN (\[GAP\]: site
    /// configuration on the reader; 00 by default).
    pub pin_host_id: u8,
    /// Online PIN `DE D6` P2: the key slot (\[GAP\]; 00 by default).
    pub pin_key_slot: u8,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            card_timeout: Duration::from_secs(90),
            final_timeout: Duration::from_secs(30),
            host_timeout: Duration::from_secs(45),
            abort_timeout: Duration::from_secs(5),
            reversal_timeout: Duration::from_secs(45),
            offline_fallback: false,
            continue_form: ContinueForm::WrappedE0,
            country_code: 840,
            max_fallback_retries: 2,
            card_status_p1: card_status_flags::REPORT_CHANGES,
            card_status_p2: 0x00,
            contactless: true,
            stop_after_cvm: true,
            pin_host_id: 0x00,
            pin_key_slot: 0x00,
        }
    }
}

/// How the application is chosen when the card has several. The logged reader selects the
/// application itself and reports it in `E2`; when an `E2` lists several candidates
/// (\[GAP\]: not in any log), the choice goes back as `84 AID` inside the amount confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AppChoice {
    /// The card's priority order (87): the first candidate.
    #[default]
    CardPriority,
    /// This AID, when the card offers it (else the card's first).
    Aid(Vec<u8>),
}

/// One card-present payment as the POS asked for it.
#[derive(Debug, Clone)]
pub struct TxnRequest {
    /// The bridge's reference (idempotency key towards the gateway).
    pub reference: Reference,
    /// Sale, pre-authorization or refund.
    pub kind: AuthKind,
    /// Amount authorised.
    pub amount: Money,
    /// Cashback / amount other, in minor units of the same currency (0 when none).
    pub amount_other: u64,
    /// Local date `YYMMDD` and time `hhmmss` for 9A / 9F21 (the caller reads the clock).
    pub date: u32,
    /// See `date`.
    pub time: u32,
    /// Application selection policy.
    pub app_choice: AppChoice,
    /// For a refund: the gateway id of the original sale.
    pub original_gateway_id: Option<String>,
    /// The point of sale's own reference (order or ticket number), carried to the gateway's
    /// free-text field and into the outcome.
    pub pos_reference: Option<PosReference>,
}

/// What the POS should show or know while the transaction runs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "prompt", rename_all = "snake_case")]
pub enum Prompt {
    /// Insert, tap or swipe the card.
    PresentCard,
    /// A card is in the reader.
    CardInserted,
    /// A card was tapped and read (contactless).
    CardTapped,
    /// A card was swiped.
    CardSwiped,
    /// The swipe was refused: the card has a chip.
    UseChip,
    /// The chip could not be read: swipe the card instead (fallback).
    SwipeCard,
    /// The customer is choosing the application (or the bridge chose for them).
    ApplicationSelected {
        /// The chosen application's label, when the reader gave one.
        label: Option<String>,
    },
    /// Enter PIN on the PIN pad.
    EnterPin,
    /// The PIN entry finished.
    PinEntered,
    /// The reader's own status text (E6 C4), when it is not one of the above.
    Status {
        /// The text.
        text: String,
    },
    /// The authorization went to the host.
    Authorizing,
    /// Waiting for the card to finish.
    Completing,
    /// Take the card out.
    RemoveCard,
    /// The card left the reader.
    CardRemoved,
    /// Money that may have moved is being sent back.
    Reversing,
}

/// Requests for the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRequest {
    /// Ask for an online authorization.
    Authorize(AuthorizationRequest),
    /// Reverse what may have been approved.
    Reverse(ReversalRequest),
}

/// What the reader link reports.
#[derive(Debug, Clone)]
pub enum ReaderInput {
    /// A solicited message payload (data + SW).
    Response(Bytes),
    /// An unsolicited message payload (E6 status, E0{48} card event).
    Unsolicited(Bytes),
    /// The link is gone (read error, EOF, device unplugged).
    Lost,
}

/// Timers, one slot each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    Reader = 0,
    Host = 1,
    Abort = 2,
    Reversal = 3,
    /// A Start Transaction answered "not ready" (9F22) is sent again when this fires.
    Retry = 4,
}
const TIMERS: usize = 5;
/// Wait before re-sending a Start Transaction the reader answered "not ready" (9F22).
const NOT_READY_RETRY: Duration = Duration::from_millis(300);
/// Most `E2` / `E0` stops the reader may make before `E4`/`E3`/`E5` (the log shows two).
const MAX_CARD_STOPS: u8 = 4;

/// What follows the online PIN entry.
#[derive(Debug)]
enum AfterPin {
    /// Ask the reader for the ARQC (`DE D2 01 00`), as after any post-CVM `E0`.
    Continue,
    /// Go online with this `E4` answer (the reader did not stop after CVM).
    Online(Bytes),
}

/// How the card reached the reader, as the card events said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CardIn {
    /// Inserted in the chip slot (`48` byte 1 = `03`).
    Chip,
    /// Swiped (`48` byte 2 beyond `01`: tracks read).
    Swipe,
}

/// What the host has said about the money, the heart of the safety rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostState {
    /// No authorization request has left.
    NotSent,
    /// Sent, no answer yet.
    InFlight,
    /// Approved (possibly partially).
    Approved {
        gateway_id: String,
        approved: Money,
        auth_code: Option<String>,
    },
    /// Declined: nothing moved.
    Declined {
        gateway_id: Option<String>,
        code: Option<String>,
        reason: String,
    },
    /// Certainly not processed.
    Unavailable { reason: String },
    /// May have been processed: must be reversed.
    Unknown { reason: String },
}

/// Where the transaction is. Each state holds what it needs and nothing else.
#[derive(Debug)]
enum State {
    /// Card Status (and then, with contactless, `C0 A0`) sent to arm the reader; waiting for
    /// the answer. A card event that arrives meanwhile (or as the answer, like the M400's
    /// unsolicited-only `E0{48}`) is kept in `card`.
    Arming {
        contactless_next: bool,
        card: Option<CardIn>,
    },
    /// Armed; waiting for the card-in event, a swipe, or (contactless) an unsolicited result.
    AwaitCardIn,
    /// `C0 C0` sent because the card came by the slot or the stripe; then Start Transaction.
    CancellingContactless,
    /// Start Transaction sent; waiting for E2/E4/E3/E5 or an error status word.
    AwaitCard,
    /// Continue sent after `E2` (amount confirmation) or `E0` (post-CVM); waiting for
    /// E0/E4/E3/E5.
    AwaitAfterSelection,
    /// Online PIN `DE D6` sent because the card's CVM is an enciphered online PIN; then
    /// `then`.
    AwaitPin { then: AfterPin },
    /// The ARQC went to the host; the reader holds the card until Continue Transaction.
    /// `card_gone` is set when the card path ended meanwhile (cancel, removal, reader lost):
    /// the host's answer then only decides whether to reverse.
    AwaitHost { card_gone: Option<Ending> },
    /// The issuer's answer went to the card; waiting for the final E3/E5.
    AwaitFinal,
    /// Abort sent; waiting for the reader to confirm, then `then`.
    Aborting { then: Ending, responses_due: u8 },
    /// A reversal is out; waiting for its answer, then finish with `then`.
    Reversing { then: Ending },
    /// The outcome has been produced.
    Done,
}

/// Why the card path ended without a final approval, and what the outcome says if no
/// money moved.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
    /// Cancelled (by the POS, the customer, or the reader) before anything was approved.
    Cancelled(String),
    /// The card left early.
    CardRemoved,
    /// The reader vanished or stopped answering.
    ReaderLost(String),
    /// The card declined (E5).
    CardDeclined,
    /// The card produced no usable final answer.
    NoCardResponse,
    /// The reader refused the transaction with this status word.
    ReaderError(StatusWord),
    /// The reader sent something that cannot be a valid answer.
    Protocol(String),
}

/// One chip-card transaction.
#[derive(Debug)]
pub struct Transaction {
    req: TxnRequest,
    config: TxnConfig,
    state: State,
    money: HostState,
    timers: [Option<Instant>; TIMERS],
    commands: VecDeque<Bytes>,
    host: VecDeque<HostRequest>,
    events: VecDeque<Prompt>,
    outcome: Option<Outcome>,
    card: CardFacts,
    /// Commands sent whose response has not come (Start/Continue and Abort).
    pending_responses: u8,
    fallback_retries: u8,
    card_present: Option<bool>,
    reversal: Option<ReversalOutcome>,
    cancel_requested: bool,
    final_data: Option<Bytes>,
    /// `C0 A0` was accepted: a tap may answer unsolicited, and must be cancelled before a
    /// contact start.
    contactless_armed: bool,
    /// The card path is contactless (final Continue is `C0 A1`).
    contactless_path: bool,
    /// `E2` / `E0` stops seen in this card session.
    card_stops: u8,
    /// The online PIN the reader returned (or `Some(None)` once entry ended without one:
    /// bypassed).
    online_pin: Option<Option<OnlinePin>>,
}

impl Transaction {
    /// Starts a transaction: queues Start Transaction and the "present card" prompt.
    ///
    /// # Errors
    /// An amount or date the reader cannot carry (n12 / n6).
    pub fn start(
        now: Instant,
        req: TxnRequest,
        config: TxnConfig,
    ) -> Result<Transaction, TxnError> {
        let mut t = Transaction {
            card: CardFacts::default(),
            req,
            config,
            state: State::AwaitCard,
            money: HostState::NotSent,
            timers: [None; TIMERS],
            commands: VecDeque::new(),
            host: VecDeque::new(),
            events: VecDeque::new(),
            outcome: None,
            pending_responses: 0,
            fallback_retries: 0,
            card_present: None,
            reversal: None,
            cancel_requested: false,
            final_data: None,
            contactless_armed: false,
            contactless_path: false,
            card_stops: 0,
            online_pin: None,
        };
        // The amount must fit the reader's fields before the reader is armed.
        Command::StartTransaction(&t.transaction_data())
            .to_payload()
            .map_err(|_| TxnError::BadRequest)?;
        t.arm_reader(now);
        t.events.push_back(Prompt::PresentCard);
        Ok(t)
    }

    /// The reference of this transaction.
    pub fn reference(&self) -> &Reference {
        &self.req.reference
    }

    /// Whether the outcome has been produced (it may still be waiting in `poll_outcome`).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Test probe: (host approved, host answer unknown).
    #[cfg(test)]
    fn host_view(&self) -> (bool, bool) {
        (
            matches!(self.money, HostState::Approved { .. }),
            matches!(self.money, HostState::Unknown { .. }),
        )
    }

    fn transaction_data(&self) -> TransactionData {
        let transaction_type = match self.req.kind {
            AuthKind::Sale | AuthKind::PreAuth => 0x00,
            AuthKind::Refund => 0x20,
        };
        let mut data = TransactionData::purchase(
            self.req.amount.minor(),
            self.req.amount.currency().numeric,
            self.config.country_code,
            self.req.date,
            self.req.time,
        );
        data.transaction_type = transaction_type;
        data.amount_other = self.req.amount_other;
        data
    }

    /// Card Status with P1 bit 0, so that card events arrive unsolicited (§0: every logged
    /// host arms the reader and waits for the card before Start Transaction).
    fn arm_reader(&mut self, now: Instant) {
        let cmd = Command::CardStatus {
            p1: self.config.card_status_p1 | card_status_flags::REPORT_CHANGES,
            p2: self.config.card_status_p2,
        };
        self.send(cmd.to_payload().unwrap_or_default());
        self.state = State::Arming {
            contactless_next: self.config.contactless
                && !self.contactless_armed
                && self.req.kind != AuthKind::Refund,
            card: None,
        };
        self.arm(Timer::Reader, now + self.config.card_timeout);
    }

    /// `C0 A0` with the payment bit (P1 = 00 would arm nothing, §0).
    fn arm_contactless(&mut self) {
        let data = self.transaction_data();
        let cmd = Command::StartContactless {
            kinds: ctls_kinds::PAYMENT,
            data: &data,
        };
        if let Ok(p) = cmd.to_payload() {
            self.send(p);
        }
    }

    /// A card came by the slot or the stripe: cancel the contactless side first (as the logged
    /// host does), then Start Transaction.
    fn card_in(&mut self, now: Instant, card: CardIn) {
        self.card.entry_mode = Some(match card {
            CardIn::Chip => EntryMode::Chip,
            CardIn::Swipe => EntryMode::Swipe,
        });
        if self.contactless_armed {
            self.contactless_armed = false;
            self.send(Command::CancelContactless.to_payload().unwrap_or_default());
            self.state = State::CancellingContactless;
            self.arm(Timer::Reader, now + self.config.card_timeout);
            return;
        }
        self.start_card(now);
    }

    fn start_card(&mut self, now: Instant) {
        self.state = State::AwaitCard;
        if self.send_start(now).is_err() {
            self.finish_card(now, Ending::Protocol("transaction data rejected".into()));
        }
    }

    fn send_start(&mut self, now: Instant) -> Result<(), TxnError> {
        let data = self.transaction_data();
        let payload = Command::StartTransaction(&data)
            .to_payload()
            .map_err(|_| TxnError::BadRequest)?;
        self.send(payload);
        self.arm(Timer::Reader, now + self.config.card_timeout);
        Ok(())
    }

    fn send(&mut self, payload: Bytes) {
        self.pending_responses = self.pending_responses.saturating_add(1);
        self.commands.push_back(payload);
    }

    fn send_continue(&mut self, p1: u8, tlvs: &[u8]) {
        // An empty Continue goes without data (`DE D2 01 00`, as logged after `E0`).
        let form = if tlvs.is_empty() {
            ContinueForm::Bare
        } else {
            self.config.continue_form
        };
        let payload = if self.contactless_path {
            Command::ContinueContactless { tlvs, form }.to_payload()
        } else {
            Command::ContinueTransaction { p1, tlvs, form }.to_payload()
        };
        // Continue carries no numeric field that can overflow.
        if let Ok(p) = payload {
            self.send(p);
        }
    }

    fn arm(&mut self, timer: Timer, at: Instant) {
        self.timers[timer as usize] = Some(at);
    }

    fn disarm(&mut self, timer: Timer) {
        self.timers[timer as usize] = None;
    }

    /// The earliest armed timer: call [`Transaction::handle_timeout`] then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.iter().flatten().min().copied()
    }

    /// A VIPA command payload to send to the reader (the link frames it).
    #[must_use]
    pub fn poll_command(&mut self) -> Option<Bytes> {
        self.commands.pop_front()
    }

    /// A request for the gateway.
    #[must_use]
    pub fn poll_host(&mut self) -> Option<HostRequest> {
        self.host.pop_front()
    }

    /// A prompt for the POS.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Prompt> {
        self.events.pop_front()
    }

    /// The outcome, once.
    #[must_use]
    pub fn poll_outcome(&mut self) -> Option<Outcome> {
        self.outcome.take()
    }

    // --- inputs -------------------------------------------------------------------------------

    /// Something from the reader link.
    pub fn handle_reader(&mut self, now: Instant, input: ReaderInput) {
        match input {
            ReaderInput::Response(payload) => self.handle_response(now, payload),
            ReaderInput::Unsolicited(payload) => self.handle_unsolicited(now, &payload),
            ReaderInput::Lost => self.handle_lost(now),
        }
    }

    /// The POS cancels. Before the authorization went out this aborts cleanly; after, the
    /// card is stopped and any approval is reversed.
    pub fn handle_cancel(&mut self, now: Instant) {
        self.cancel_requested = true;
        match self.state {
            State::Arming { .. }
            | State::AwaitCardIn
            | State::CancellingContactless
            | State::AwaitCard
            | State::AwaitAfterSelection
            | State::AwaitPin { .. }
            | State::AwaitFinal => {
                self.abort(now, Ending::Cancelled("cancelled by the POS".into()));
            }
            State::AwaitHost { card_gone: None } => {
                self.state = State::AwaitHost {
                    card_gone: Some(Ending::Cancelled("cancelled by the POS".into())),
                };
                self.send(Command::Abort.to_payload().unwrap_or_default());
            }
            _ => {}
        }
    }

    /// A timer may have expired.
    pub fn handle_timeout(&mut self, now: Instant) {
        for i in 0..TIMERS {
            let Some(at) = self.timers[i] else { continue };
            if at > now {
                continue;
            }
            self.timers[i] = None;
            match i {
                x if x == Timer::Reader as usize => self.reader_timeout(now),
                x if x == Timer::Host as usize => self.handle_host(
                    now,
                    AuthorizationResult::Unknown {
                        reason: "no answer from the host in time".into(),
                    },
                ),
                x if x == Timer::Abort as usize => self.abort_finished(now),
                x if x == Timer::Retry as usize => {
                    if matches!(self.state, State::AwaitCardIn) {
                        self.start_card(now);
                    }
                }
                _ => self.handle_reversal(
                    now,
                    ReversalResult::Failed {
                        reason: "no answer to the reversal in time".into(),
                    },
                ),
            }
        }
    }

    fn reader_timeout(&mut self, now: Instant) {
        match self.state {
            State::Arming { .. }
            | State::AwaitCardIn
            | State::CancellingContactless
            | State::AwaitCard
            | State::AwaitAfterSelection
            | State::AwaitPin { .. } => {
                self.abort(
                    now,
                    Ending::Cancelled("timed out waiting for the card".into()),
                );
            }
            State::AwaitFinal => self.abort(now, Ending::NoCardResponse),
            _ => {}
        }
    }

    fn handle_lost(&mut self, now: Instant) {
        self.pending_responses = 0;
        self.disarm(Timer::Reader);
        self.disarm(Timer::Abort);
        let lost = Ending::ReaderLost("reader link lost".into());
        match std::mem::replace(&mut self.state, State::Done) {
            State::AwaitHost { card_gone } => {
                self.state = State::AwaitHost {
                    card_gone: card_gone.or(Some(lost)),
                }
            }
            State::Aborting { then, .. } => self.finish_card(now, then),
            State::Reversing { then } => self.state = State::Reversing { then },
            State::Done => {}
            State::Arming { .. }
            | State::AwaitCardIn
            | State::CancellingContactless
            | State::AwaitCard
            | State::AwaitAfterSelection
            | State::AwaitPin { .. }
            | State::AwaitFinal => self.finish_card(now, lost),
        }
    }

    fn handle_unsolicited(&mut self, now: Instant, payload: &[u8]) {
        // Unsolicited messages may come with or without a trailing SW; try both.
        let template = Response::parse(payload)
            .ok()
            .and_then(|r| r.template())
            .or_else(|| {
                tlv::parse(payload)
                    .next()
                    .and_then(Result::ok)
                    .map(Template::new)
            });
        let Some(template) = template else { return };
        if matches!(
            template.kind(),
            TemplateKind::Approved
                | TemplateKind::Declined
                | TemplateKind::OnlineRequired
                | TemplateKind::ContactlessMsd
        ) {
            // Contactless results arrive unsolicited (§0); anything else of the kind is stray.
            return self.contactless_result(now, template);
        }
        if let Some(status) = template.status() {
            // Activity: the customer is doing something; give them time.
            if matches!(self.state, State::AwaitCard | State::AwaitAfterSelection) {
                self.arm(Timer::Reader, now + self.config.card_timeout);
            }
            // A digit count (C5) means the entry finished; C3 0C / 02 without it mean the PIN
            // pad is waiting for the customer (§4.2).
            match (status.transaction_status(), status.pin_digits()) {
                (_, Some(_)) => self.events.push_back(Prompt::PinEntered),
                (
                    Some(
                        TransactionStatus::PIN_ENTRY_REQUESTED
                        | TransactionStatus::PIN_ENTRY_HANDOFF,
                    ),
                    None,
                ) => {
                    // While `DE D6` runs, the prompt was already given.
                    if !matches!(self.state, State::AwaitPin { .. }) {
                        self.events.push_back(Prompt::EnterPin)
                    }
                }
                (Some(TransactionStatus::PIN_BYPASS_CONFIRMATION), _) => {
                    // `E6{C3 0E}`: the reader reports a PIN bypass (§0, §4.2).
                    self.events.push_back(Prompt::Status {
                        text: "PIN BYPASSED".into(),
                    })
                }
                _ => match status.message_text() {
                    Some(text) if !text.is_empty() => {
                        self.events.push_back(Prompt::Status { text })
                    }
                    _ => {}
                },
            }
        } else if template.card_event().is_some() {
            self.card_event(now, template);
        }
        // Anything else (a bare `DFDF30` after `C0 C0`, a `6F` upload result) needs no action.
    }

    /// A card event `E0{48 …}`, unsolicited or as the answer to Card Status.
    fn card_event(&mut self, now: Instant, template: Template<'_>) {
        let Some(status) = template.card_event().and_then(|e| e.status()) else {
            return;
        };
        let card = if status.card_present() {
            if self.card_present != Some(true) {
                self.card_present = Some(true);
                self.events.push_back(Prompt::CardInserted);
            }
            Some(CardIn::Chip)
        } else {
            if self.card_present == Some(true) {
                self.events.push_back(Prompt::CardRemoved);
            }
            self.card_present = Some(false);
            let swiped = status.swiped();
            if swiped {
                self.events.push_back(Prompt::CardSwiped);
            }
            swiped.then_some(CardIn::Swipe)
        };
        let Some(card) = card else { return };
        match &mut self.state {
            State::Arming { card: seen, .. } => *seen = Some(card),
            State::AwaitCardIn => {
                self.disarm(Timer::Retry);
                self.card_in(now, card)
            }
            _ => {}
        }
    }

    /// An unsolicited `E3`/`E4`/`E5`/`E7`: the result of a tap.
    fn contactless_result(&mut self, now: Instant, t: Template<'_>) {
        let waiting = matches!(
            self.state,
            State::Arming { .. } | State::AwaitCardIn | State::CancellingContactless
        );
        if !waiting || !self.contactless_armed {
            return;
        }
        self.contactless_armed = false;
        self.contactless_path = true;
        self.disarm(Timer::Retry);
        self.card.entry_mode = Some(EntryMode::Contactless);
        self.events.push_back(Prompt::CardTapped);
        match t.kind() {
            TemplateKind::Approved | TemplateKind::Declined => {
                self.card.absorb(t);
                self.final_data = Some(Bytes::copy_from_slice(t.tlv().value()));
                // A tap's `E3` is only the reader's word: the card's own `9F27` must say TC.
                let approved = t.kind() == TemplateKind::Approved && says_tc(&t);
                self.offline_final(now, approved)
            }
            _ => self.go_online(now, t),
        }
    }

    fn handle_response(&mut self, now: Instant, payload: Bytes) {
        self.pending_responses = self.pending_responses.saturating_sub(1);
        let Ok(resp) = Response::parse(&payload) else {
            return self.protocol_error(now, "response shorter than a status word");
        };
        let sw = resp.sw();
        if !well_formed(tlv::parse(resp.data())) {
            // A response damaged on the line that still framed (e.g. a duplicated frame in a
            // chain) must not be acted on: treat it like no answer.
            return self.protocol_error(now, "malformed data in the reader's answer");
        }
        match self.state {
            State::Aborting { .. } => {
                if let State::Aborting { responses_due, .. } = &mut self.state {
                    *responses_due = responses_due.saturating_sub(1);
                    if *responses_due == 0 {
                        self.abort_finished(now);
                    }
                }
            }
            State::Arming {
                contactless_next,
                card,
            } => {
                // The answer may itself be the card event: the M400 answers Card Status only
                // with an unsolicited `E0{48}`, which the link hands over as the answer.
                if let Some(t) = resp.template().filter(|t| t.card_event().is_some()) {
                    self.card_event(now, t);
                }
                let card = match self.state {
                    State::Arming { card: c, .. } => c.or(card),
                    _ => return,
                };
                if !sw.is_success() {
                    // [GAP] which P1/P2 bits or which `C0 A0` a reader refuses: carry on
                    // with what works (a reader without contactless answers 9F11).
                    if !contactless_next {
                        self.contactless_armed = false;
                    }
                }
                if contactless_next && card.is_none() {
                    self.state = State::Arming {
                        contactless_next: false,
                        card,
                    };
                    self.arm_contactless();
                    self.contactless_armed = true;
                    return;
                }
                self.state = State::AwaitCardIn;
                if let Some(card) = card {
                    self.card_in(now, card);
                }
            }
            State::AwaitPin { .. } => {
                self.disarm(Timer::Reader);
                if let State::AwaitPin { then } = std::mem::replace(&mut self.state, State::Done) {
                    self.pin_answered(now, &resp, then);
                }
            }
            State::CancellingContactless => {
                // Any answer ends the cancel (the reader follows it with a bare `DFDF30`).
                self.start_card(now);
            }
            State::AwaitCardIn => {
                // A late answer (e.g. a Card Status answered twice): nothing to do.
            }
            State::AwaitCard | State::AwaitAfterSelection => {
                self.disarm(Timer::Reader);
                if !sw.is_success() {
                    return self.card_step_failed(now, sw);
                }
                match resp.template().map(|t| (t.kind(), t)) {
                    Some((TemplateKind::DecisionRequired, t)) => self.confirm_amount(now, t),
                    Some((TemplateKind::Data, t)) => self.after_cvm(now, t),
                    Some((TemplateKind::OnlineRequired, t))
                        if self.online_pin.is_none() && needs_online_pin(t) =>
                    {
                        self.card.absorb(t);
                        self.ask_pin(now, AfterPin::Online(payload.clone()))
                    }
                    Some((TemplateKind::OnlineRequired, t)) => self.go_online(now, t),
                    Some((TemplateKind::Approved, t)) => {
                        self.card.absorb(t);
                        self.final_data = Some(Bytes::copy_from_slice(t.tlv().value()));
                        self.offline_final(now, true)
                    }
                    Some((TemplateKind::Declined, t)) => {
                        self.card.absorb(t);
                        self.final_data = Some(Bytes::copy_from_slice(t.tlv().value()));
                        self.offline_final(now, false)
                    }
                    _ => self.protocol_error(now, "unexpected answer to start or continue"),
                }
            }
            State::AwaitFinal => {
                self.disarm(Timer::Reader);
                if !sw.is_success() {
                    let ending = if sw == StatusWord::CARD_REMOVED {
                        Ending::CardRemoved
                    } else {
                        Ending::ReaderError(sw)
                    };
                    return self.finish_card(now, ending);
                }
                match resp.template().map(|t| (t.kind(), t)) {
                    Some((TemplateKind::Approved, t)) => {
                        self.card.absorb(t);
                        self.final_data = Some(Bytes::copy_from_slice(t.tlv().value()));
                        self.online_final(now, true)
                    }
                    Some((TemplateKind::Declined, t)) => {
                        self.card.absorb(t);
                        self.final_data = Some(Bytes::copy_from_slice(t.tlv().value()));
                        self.online_final(now, false)
                    }
                    _ => self.finish_card(now, Ending::NoCardResponse),
                }
            }
            // A late answer (e.g. to an Abort sent while waiting for the host): nothing to do.
            State::AwaitHost { .. } | State::Reversing { .. } | State::Done => {}
        }
    }

    fn protocol_error(&mut self, now: Instant, what: &str) {
        match self.state {
            State::AwaitCard | State::AwaitAfterSelection => {
                self.abort(now, Ending::Protocol(what.into()))
            }
            State::AwaitFinal => self.abort(now, Ending::NoCardResponse),
            _ => {}
        }
    }

    fn card_step_failed(&mut self, now: Instant, sw: StatusWord) {
        let retry = self.fallback_retries < self.config.max_fallback_retries
            && matches!(self.state, State::AwaitCard);
        if retry {
            // Named handling (§0 status words): each goes back to waiting for the card, which
            // stays armed; the reader reports the next insertion or swipe unsolicited.
            let again = match sw {
                // The customer swiped a chip card: ask for the chip.
                StatusWord::USE_CHIP => {
                    self.events.push_back(Prompt::UseChip);
                    true
                }
                // The chip could not be read: the stripe may be used (fallback, entry mode 80);
                // the reader decides whether it accepts the swipe.
                StatusWord::BAD_CARD if self.card.entry_mode == Some(EntryMode::Chip) => {
                    self.events.push_back(Prompt::SwipeCard);
                    true
                }
                // No card (the card event was stale, or the card left): wait for one.
                StatusWord::CARD_REMOVED => {
                    self.card_present = Some(false);
                    self.events.push_back(Prompt::PresentCard);
                    true
                }
                // Not ready: send the Start again shortly.
                StatusWord::NOT_READY => {
                    self.arm(Timer::Retry, now + NOT_READY_RETRY);
                    true
                }
                _ => false,
            };
            if again {
                self.fallback_retries += 1;
                self.card_stops = 0;
                self.state = State::AwaitCardIn;
                self.arm(Timer::Reader, now + self.config.card_timeout);
                return;
            }
        }
        let ending = match sw {
            StatusWord::CARD_REMOVED => Ending::CardRemoved,
            StatusWord::COMMAND_CANCELLED => Ending::Cancelled("cancelled at the reader".into()),
            StatusWord::USER_CANCELLED => Ending::Cancelled("cancelled by the customer".into()),
            other => Ending::ReaderError(other),
        };
        self.finish_card(now, ending);
    }

    /// `E2` "decision required": the reader read the card and selected the application. The
    /// logged host answers `DE D2 01 00` with `E0{9F02 5F2A 89 8A C0 C2 DFCC79}` (UX301 log,
    /// §0); the values of `89`/`8A`/`C0`/`C2`/`DFCC79` at this point are sent as logged
    /// (their meaning here is \[GAP\]). P1 bit 0 asks for the post-CVM `E0` stop.
    fn confirm_amount(&mut self, now: Instant, e2: Template<'_>) {
        self.card_stops += 1;
        if self.card_stops > MAX_CARD_STOPS {
            return self.protocol_error(now, "reader keeps asking for decisions");
        }
        self.card.absorb(e2);
        let (chosen, label) = self.choose_application(e2);
        let mut b = TlvBuilder::new();
        self.amount_tags(&mut b);
        b.primitive(Tag::AUTHORISATION_CODE, &[0x00]);
        b.primitive(Tag::AUTHORISATION_RESPONSE_CODE, b"Z3");
        b.primitive(TAG_C0_HOST_DECISION, &[HOST_DECISION_AAC]);
        b.primitive(TAG_C2, C2_AS_LOGGED);
        b.primitive(TAG_DFCC79, &[0x01]);
        if let Some(aid) = &chosen {
            // [GAP] only when the E2 offers several applications (not in any log).
            b.primitive(Tag::DF_NAME, aid);
        }
        // The bridge chose among several; a reader that selected by itself (the logged `E2`)
        // needs no prompt.
        if chosen.is_some() {
            self.events.push_back(Prompt::ApplicationSelected {
                label: label.or_else(|| self.card.app_label.clone()),
            });
        }
        let p1 = if self.config.stop_after_cvm {
            continue_flags::STOP_AFTER_CVM
        } else {
            0
        };
        let tlvs = b.freeze();
        self.send_continue(p1, &tlvs);
        self.state = State::AwaitAfterSelection;
        self.arm(Timer::Reader, now + self.config.card_timeout);
    }

    /// `E0` after cardholder verification (Continue P1 bit 0): ask for the ARQC with an
    /// empty `DE D2 01 00`, as logged.
    fn after_cvm(&mut self, now: Instant, e0: Template<'_>) {
        self.card_stops += 1;
        if self.card_stops > MAX_CARD_STOPS {
            return self.protocol_error(now, "reader keeps stopping before the cryptogram");
        }
        self.card.absorb(e0);
        if self.online_pin.is_none() && needs_online_pin(e0) {
            return self.ask_pin(now, AfterPin::Continue);
        }
        self.send_continue(continue_flags::STOP_AFTER_CVM, &[]);
        self.state = State::AwaitAfterSelection;
        self.arm(Timer::Reader, now + self.config.card_timeout);
    }

    /// Online PIN: `DE D6 host-id key-slot E0{DFED0D}` (§0). \[GAP\] the `DFED0D` flags
    /// are not in any log; `00 00` asks for the default entry.
    fn ask_pin(&mut self, now: Instant, then: AfterPin) {
        let mut b = TlvBuilder::new();
        b.constructed(Tag::VIPA_E0, |b| {
            b.primitive(emvbridge_protocol::vipa::TAG_DFED0D, &[0x00, 0x00]);
        });
        let data = b.freeze();
        let cmd = Command::OnlinePin {
            host_id: self.config.pin_host_id,
            key_slot: self.config.pin_key_slot,
            data: &data,
        };
        self.send(cmd.to_payload().unwrap_or_default());
        self.events.push_back(Prompt::EnterPin);
        self.state = State::AwaitPin { then };
        self.arm(Timer::Reader, now + self.config.card_timeout);
    }

    /// The answer to `DE D6`: the PIN block and KSN, a bypass (`9015`), or the end.
    fn pin_answered(&mut self, now: Instant, resp: &Response<'_>, then: AfterPin) {
        let sw = resp.sw();
        if sw == StatusWord::PIN_BYPASSED {
            self.online_pin = Some(None);
            self.events.push_back(Prompt::Status {
                text: "PIN BYPASSED".into(),
            });
        } else if sw.is_success() {
            let t = resp.template();
            let block = t.and_then(|t| t.value(Tag::VIPA_PIN_BLOCK));
            let ksn = t.and_then(|t| t.value(emvbridge_protocol::vipa::TAG_DFED03_PIN_KSN));
            let Some(block) = block else {
                // `DFDF30` instead of a block: the entry was cancelled at the PIN pad.
                return self.abort(now, Ending::Cancelled("PIN entry cancelled".into()));
            };
            self.online_pin = Some(Some(OnlinePin {
                block: emvbridge_protocol::emv::SecretBytes::from_slice(block),
                ksn: ksn.unwrap_or_default().to_vec(),
            }));
            self.events.push_back(Prompt::PinEntered);
        } else {
            let ending = match sw {
                StatusWord::USER_CANCELLED | StatusWord::COMMAND_CANCELLED => {
                    Ending::Cancelled("PIN entry cancelled".into())
                }
                StatusWord::CARD_REMOVED => Ending::CardRemoved,
                other => Ending::ReaderError(other),
            };
            return self.abort(now, ending);
        }
        match then {
            AfterPin::Continue => {
                self.send_continue(continue_flags::STOP_AFTER_CVM, &[]);
                self.state = State::AwaitAfterSelection;
                self.arm(Timer::Reader, now + self.config.card_timeout);
            }
            AfterPin::Online(payload) => {
                match Response::parse(&payload).ok().and_then(|r| r.template()) {
                    Some(e4) => self.go_online(now, e4),
                    None => self.protocol_error(now, "online answer lost"),
                }
            }
        }
    }

    /// `9F02` and `5F2A` as the reader expects them back (n12, n3).
    fn amount_tags(&self, b: &mut TlvBuilder) {
        // Checked to fit when the transaction started.
        if let Ok(v) = numeric::encode_amount(self.req.amount.minor()) {
            b.primitive(Tag::AMOUNT_AUTHORISED, &v);
        }
        if let Ok(v) = numeric::encode_n3(self.req.amount.currency().numeric) {
            b.primitive(Tag::TRANSACTION_CURRENCY_CODE, &v);
        }
    }

    /// The application to name back when an `E2` lists several, and its label.
    fn choose_application(&self, e2: Template<'_>) -> (Option<Vec<u8>>, Option<String>) {
        // Candidates: the AIDs (4F / 9F06 / 84) offered in E2, in the order given (the
        // reader lists them by the card's priority, 87).
        let mut candidates: Vec<(Vec<u8>, Option<String>)> = Vec::new();
        let mut label: Option<String> = None;
        for item in e2.children().flatten() {
            match item.tag() {
                Tag::AID | Tag::AID_TERMINAL | Tag::DF_NAME => {
                    candidates.push((item.value().to_vec(), None))
                }
                Tag::APPLICATION_LABEL | Tag::APPLICATION_PREFERRED_NAME => {
                    let text = String::from_utf8_lossy(item.value()).into_owned();
                    if let Some(last) = candidates.last_mut() {
                        last.1.get_or_insert(text);
                    } else {
                        label.get_or_insert(text);
                    }
                }
                _ if item.is_constructed()
                    && item.tag() != Tag::VIPA_SRED
                    && item.tag() != Tag::VIPA_TOKEN =>
                {
                    // One template per candidate (e.g. 61 application templates).
                    let aid = item
                        .find(Tag::AID)
                        .or_else(|| item.find(Tag::AID_TERMINAL))
                        .or_else(|| item.find(Tag::DF_NAME));
                    if let Some(aid) = aid {
                        let l = item
                            .find(Tag::APPLICATION_LABEL)
                            .map(|l| String::from_utf8_lossy(l.value()).into_owned());
                        candidates.push((aid.value().to_vec(), l));
                    }
                }
                _ => {}
            }
        }
        // The same AID may come twice (`9F06` and `4F` of one application).
        let mut seen: Vec<Vec<u8>> = Vec::new();
        candidates.retain(|(aid, _)| {
            let new = !seen.contains(aid);
            if new {
                seen.push(aid.clone());
            }
            new
        });
        if candidates.len() < 2 {
            return (None, label);
        }
        let chosen = match &self.req.app_choice {
            AppChoice::Aid(want) => candidates
                .iter()
                .find(|(aid, _)| aid == want)
                .or(candidates.first()),
            AppChoice::CardPriority => candidates.first(),
        };
        match chosen {
            Some((aid, l)) => (Some(aid.clone()), l.clone().or(label)),
            None => (None, label),
        }
    }

    fn go_online(&mut self, now: Instant, e4: Template<'_>) {
        self.card.absorb(e4);
        let icc_data = Bytes::copy_from_slice(e4.tlv().value());
        let amount_other = self
            .req
            .amount
            .with_minor(self.req.amount_other)
            .unwrap_or(self.req.amount);
        let entry_mode = match e4.value(Tag::POS_ENTRY_MODE) {
            Some([0x07]) | Some([0x91]) => EntryMode::Contactless,
            Some([0x90]) | Some([0x80]) | Some([0x02]) => EntryMode::Swipe,
            Some([0x05]) => EntryMode::Chip,
            // The logged E4 carries no 9F39: the card event said how the card came.
            _ => self.card.entry_mode.unwrap_or(EntryMode::Chip),
        };
        self.card.entry_mode = Some(entry_mode);
        let request = AuthorizationRequest {
            reference: self.req.reference.clone(),
            pos_reference: self.req.pos_reference.clone(),
            kind: self.req.kind,
            amount: self.req.amount,
            amount_other,
            entry_mode,
            icc_data,
            masked_pan: self.card.masked_pan.clone().unwrap_or_default(),
            last4: self.card.last4.clone(),
            brand: self.card.brand.clone(),
            original_gateway_id: self.req.original_gateway_id.clone(),
            online_pin: self.online_pin.clone().flatten(),
        };
        self.money = HostState::InFlight;
        self.host.push_back(HostRequest::Authorize(request));
        self.events.push_back(Prompt::Authorizing);
        self.state = State::AwaitHost { card_gone: None };
        self.arm(Timer::Host, now + self.config.host_timeout);
    }

    /// The gateway's answer to the authorization.
    pub fn handle_host(&mut self, now: Instant, result: AuthorizationResult) {
        if !matches!(self.state, State::AwaitHost { .. }) {
            // Not waiting (a late answer after the host timer fired): the decision was
            // already made on "unknown" and a reversal covers an approval that arrives late.
            return;
        }
        let State::AwaitHost { card_gone } = std::mem::replace(&mut self.state, State::Done) else {
            return;
        };
        self.disarm(Timer::Host);
        let (money, issuer) = match result {
            AuthorizationResult::Approved {
                gateway_id,
                approved_amount,
                issuer,
            } => (
                HostState::Approved {
                    gateway_id,
                    approved: approved_amount,
                    auth_code: issuer.auth_code.clone(),
                },
                Some(issuer),
            ),
            AuthorizationResult::Declined {
                gateway_id,
                code,
                reason,
                issuer,
            } => (
                HostState::Declined {
                    gateway_id,
                    code,
                    reason,
                },
                Some(issuer),
            ),
            AuthorizationResult::Unavailable { reason } => {
                (HostState::Unavailable { reason }, None)
            }
            AuthorizationResult::Unknown { reason } => (HostState::Unknown { reason }, None),
        };
        self.money = money;
        if let Some(ending) = card_gone {
            // The card path already ended: only the money decides what is left to do.
            return self.finish_card(now, ending);
        }
        // Tell the card what the host said (§0, final Continue after `E4`):
        // `E0{9F02 5F2A 9F1A C2 8A C0 91? 89? 71?/72?}`. `C0` is the host's decision (01 TC,
        // 00 AAC). When the host could not be reached, `C0` is left out and `8A` = Z3 (or Y3
        // with offline fallback), so that the reader runs its default action analysis. An
        // unknown answer (the host may have approved) asks for an AAC outright: that money is
        // reversed, the card must not approve.
        let mut b = TlvBuilder::new();
        self.amount_tags(&mut b);
        if let Ok(v) = numeric::encode_n3(self.config.country_code) {
            b.primitive(Tag::TERMINAL_COUNTRY_CODE, &v);
        }
        b.primitive(TAG_C2, C2_AS_LOGGED);
        match (&self.money, issuer) {
            (HostState::Approved { .. } | HostState::Declined { .. }, Some(issuer)) => {
                b.primitive(Tag::AUTHORISATION_RESPONSE_CODE, &issuer.arc);
                let decision = if matches!(self.money, HostState::Approved { .. }) {
                    HOST_DECISION_TC
                } else {
                    HOST_DECISION_AAC
                };
                b.primitive(TAG_C0_HOST_DECISION, &[decision]);
                if let Some(iad) = &issuer.issuer_auth_data {
                    b.primitive(Tag::ISSUER_AUTHENTICATION_DATA, iad);
                }
                if let Some(code) = &issuer.auth_code {
                    b.primitive(Tag::AUTHORISATION_CODE, code.as_bytes());
                }
                b.raw(&issuer.scripts);
                self.card.arc = Some(issuer.arc);
            }
            (HostState::Unavailable { .. }, _) => {
                let arc = if self.config.offline_fallback {
                    *b"Y3"
                } else {
                    *b"Z3"
                };
                b.primitive(Tag::AUTHORISATION_RESPONSE_CODE, &arc);
                self.card.arc = Some(arc);
            }
            _ => {
                b.primitive(Tag::AUTHORISATION_RESPONSE_CODE, b"Z3");
                b.primitive(TAG_C0_HOST_DECISION, &[HOST_DECISION_AAC]);
                self.card.arc = Some(*b"Z3");
            }
        }
        let tlvs = b.freeze();
        // [GAP] P1 of the final Continue: no log shows it; 00.
        self.send_continue(0x00, &tlvs);
        self.events.push_back(Prompt::Completing);
        self.state = State::AwaitFinal;
        self.arm(Timer::Reader, now + self.config.final_timeout);
    }

    /// The gateway's answer to a reversal.
    pub fn handle_reversal(&mut self, now: Instant, result: ReversalResult) {
        if !matches!(self.state, State::Reversing { .. }) {
            return;
        }
        let State::Reversing { then } = std::mem::replace(&mut self.state, State::Done) else {
            return;
        };
        self.disarm(Timer::Reversal);
        if let Some(r) = &mut self.reversal {
            r.result = Some(result);
        }
        self.conclude(now, then);
    }

    fn abort(&mut self, now: Instant, then: Ending) {
        let responses_due = self.pending_responses.saturating_add(1);
        self.send(Command::Abort.to_payload().unwrap_or_default());
        self.disarm(Timer::Reader);
        self.state = State::Aborting {
            then,
            responses_due,
        };
        self.arm(Timer::Abort, now + self.config.abort_timeout);
    }

    fn abort_finished(&mut self, now: Instant) {
        self.disarm(Timer::Abort);
        if matches!(self.state, State::Aborting { .. }) {
            if let State::Aborting { then, .. } = std::mem::replace(&mut self.state, State::Done) {
                self.finish_card(now, then);
            }
        }
    }

    /// The card finished without going online (`Y1`/`Z1`). Its TC is accepted only when an
    /// offline approval is allowed ([`TxnConfig::offline_fallback`]); otherwise the sale is
    /// declined and the TC is never stored or forwarded.
    fn offline_final(&mut self, now: Instant, card_approved: bool) {
        // Offline: no request left, so nothing can need reversing.
        self.card
            .arc
            .get_or_insert(if card_approved { *b"Y1" } else { *b"Z1" });
        self.state = State::Done;
        let (status, reason) = match (card_approved, self.config.offline_fallback) {
            (true, true) => (OutcomeStatus::ApprovedOffline, None),
            (true, false) => {
                self.card.arc = Some(*b"Z1");
                (
                    OutcomeStatus::Declined,
                    Some("offline approval not allowed by store-and-forward limits".to_owned()),
                )
            }
            (false, _) => (
                OutcomeStatus::Declined,
                Some("declined offline by the card".to_owned()),
            ),
        };
        self.emit_outcome(now, status, reason);
    }

    fn online_final(&mut self, now: Instant, card_approved: bool) {
        match (&self.money, card_approved) {
            (HostState::Approved { .. }, true) => {
                self.state = State::Done;
                let partial = matches!(&self.money, HostState::Approved { approved, .. } if approved.minor() < self.req.amount.minor());
                let status = if partial {
                    OutcomeStatus::PartiallyApproved
                } else {
                    OutcomeStatus::Approved
                };
                self.emit_outcome(now, status, None)
            }
            (HostState::Unavailable { .. }, true) if !self.config.offline_fallback => {
                // The final Continue said Z3 (no offline approval allowed): a TC now is the
                // card ignoring it, never an approval. No request left, nothing to reverse.
                self.card.arc = Some(*b"Z3");
                self.state = State::Done;
                self.emit_outcome(
                    now,
                    OutcomeStatus::Declined,
                    Some("host unreachable; offline approval not allowed (Z3)".into()),
                )
            }
            (HostState::Unavailable { .. }, true) => {
                // Y3: approved by the card offline because the host was unreachable.
                self.state = State::Done;
                self.emit_outcome(
                    now,
                    OutcomeStatus::ApprovedOffline,
                    Some("host unreachable; approved offline (Y3), to be forwarded".into()),
                )
            }
            _ => self.finish_card(
                now,
                if card_approved {
                    Ending::NoCardResponse
                } else {
                    Ending::CardDeclined
                },
            ),
        }
    }

    /// The card path ended without a final approval: reverse if money may have moved,
    /// otherwise conclude.
    fn finish_card(&mut self, now: Instant, ending: Ending) {
        self.disarm(Timer::Reader);
        self.disarm(Timer::Abort);
        match &self.money {
            HostState::InFlight => {
                // The host has not answered yet: wait for it, then decide.
                self.state = State::AwaitHost {
                    card_gone: Some(ending),
                };
            }
            HostState::Approved {
                gateway_id,
                approved,
                ..
            } => {
                let reason = reversal_reason(&ending, self.cancel_requested);
                self.start_reversal(now, Some(gateway_id.clone()), *approved, reason, ending);
            }
            HostState::Unknown { .. } => {
                let amount = self.req.amount;
                self.start_reversal(now, None, amount, ReversalReason::NoHostResponse, ending);
            }
            HostState::NotSent | HostState::Declined { .. } | HostState::Unavailable { .. } => {
                self.conclude(now, ending)
            }
        }
    }

    fn start_reversal(
        &mut self,
        now: Instant,
        gateway_id: Option<String>,
        amount: Money,
        reason: ReversalReason,
        then: Ending,
    ) {
        self.reversal = Some(ReversalOutcome {
            reason,
            result: None,
        });
        self.host.push_back(HostRequest::Reverse(ReversalRequest {
            reference: self.req.reference.clone(),
            gateway_id,
            amount,
            reason,
        }));
        self.events.push_back(Prompt::Reversing);
        self.state = State::Reversing { then };
        self.arm(Timer::Reversal, now + self.config.reversal_timeout);
    }

    /// Produces the outcome for an ending without a final approval.
    fn conclude(&mut self, now: Instant, ending: Ending) {
        self.state = State::Done;
        let reversal = self.reversal.as_ref().map(|r| r.result.clone());
        let (status, reason) = match reversal {
            Some(Some(ReversalResult::Reversed | ReversalResult::NotFound)) => {
                (OutcomeStatus::Reversed, Some(ending_text(&ending)))
            }
            Some(_) => (
                OutcomeStatus::Unresolved,
                Some(format!("{}; reversal not confirmed", ending_text(&ending))),
            ),
            None => match (&self.money, &ending) {
                (HostState::Declined { reason, .. }, _) => {
                    (OutcomeStatus::Declined, Some(reason.clone()))
                }
                (HostState::Unavailable { reason }, _) => (
                    OutcomeStatus::Declined,
                    Some(format!("unable to go online: {reason}")),
                ),
                (_, Ending::CardDeclined) => {
                    (OutcomeStatus::Declined, Some("declined by the card".into()))
                }
                (_, Ending::Cancelled(why)) => (OutcomeStatus::Cancelled, Some(why.clone())),
                (_, Ending::CardRemoved) => (OutcomeStatus::Cancelled, Some("card removed".into())),
                (_, e) => (OutcomeStatus::Failed, Some(ending_text(e))),
            },
        };
        self.emit_outcome(now, status, reason);
    }

    fn emit_outcome(&mut self, _now: Instant, status: OutcomeStatus, reason: Option<String>) {
        self.timers = [None; TIMERS];
        if self.card_present != Some(false) && self.card.masked_pan.is_some() {
            self.events.push_back(Prompt::RemoveCard);
        }
        let (gateway_id, approved_amount, auth_code, decline_code) = match &self.money {
            HostState::Approved {
                gateway_id,
                approved,
                auth_code,
            } => (
                Some(gateway_id.clone()),
                Some(*approved),
                auth_code.clone(),
                None,
            ),
            HostState::Declined {
                gateway_id, code, ..
            } => (gateway_id.clone(), None, None, code.clone()),
            _ => (None, None, None, None),
        };
        let approved_amount = match status {
            OutcomeStatus::Approved | OutcomeStatus::PartiallyApproved => approved_amount,
            OutcomeStatus::ApprovedOffline => Some(self.req.amount),
            _ => None,
        };
        self.outcome = Some(Outcome {
            reference: self.req.reference.clone(),
            pos_reference: self.req.pos_reference.clone(),
            kind: self.req.kind,
            status,
            amount: self.req.amount,
            approved_amount,
            gateway_id,
            auth_code,
            decline_code,
            reason,
            reversal: self.reversal.clone(),
            card: self.card.clone(),
            final_data: self.final_data.clone(),
        });
    }
}

/// Whether the card's CVM results (`9F34`) ask for an enciphered PIN verified online
/// (EMV Book 3, Annex C3: CVM code `02`, ignoring the "apply next" bit).
fn needs_online_pin(t: Template<'_>) -> bool {
    t.value(Tag::CVM_RESULTS)
        .and_then(|v| v.first())
        .is_some_and(|b| b & 0x3F == 0x02)
}

/// Whether a TLV tree walks cleanly to the end at every level.
fn well_formed(iter: tlv::TlvIter<'_>) -> bool {
    for item in iter {
        match item {
            Ok(t) if t.is_constructed() && t.tag() != Tag(0x63) => {
                if !well_formed(t.children()) {
                    return false;
                }
            }
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    true
}

fn reversal_reason(ending: &Ending, cancel_requested: bool) -> ReversalReason {
    match ending {
        Ending::CardDeclined => ReversalReason::CardDeclinedAfterApproval,
        Ending::CardRemoved => ReversalReason::CardRemoved,
        Ending::ReaderLost(_) => ReversalReason::ReaderLost,
        Ending::Cancelled(_) if cancel_requested => ReversalReason::Cancelled,
        Ending::Cancelled(_) => ReversalReason::Cancelled,
        Ending::NoCardResponse | Ending::ReaderError(_) | Ending::Protocol(_) => {
            ReversalReason::NoCardResponse
        }
    }
}

fn ending_text(e: &Ending) -> String {
    match e {
        Ending::Cancelled(why) => why.clone(),
        Ending::CardRemoved => "card removed before the transaction completed".into(),
        Ending::ReaderLost(why) => why.clone(),
        Ending::CardDeclined => "declined by the card after the host approved".into(),
        Ending::NoCardResponse => "no final answer from the card".into(),
        Ending::ReaderError(sw) => format!("reader refused the transaction: {sw}"),
        Ending::Protocol(what) => format!("reader protocol error: {what}"),
    }
}

/// Why a transaction could not even start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    /// The amount or date does not fit the reader's fields.
    #[error("amount, date or time cannot be sent to the reader")]
    BadRequest,
}

/// Encodes a command for tests and tools.
#[doc(hidden)]
pub fn encode(cmd: &Command<'_>) -> Bytes {
    let mut b = BytesMut::new();
    let _ = cmd.emit(&mut b);
    b.freeze()
}

/// Whether the template's Cryptogram Information Data (`9F27`) says TC: b8–b7 = `01`
/// (EMV Book 3 §6.5.5.4). Absent or unreadable is not a TC.
fn says_tc(t: &Template<'_>) -> bool {
    t.value(Tag::CRYPTOGRAM_INFORMATION_DATA)
        .and_then(|v| Cid::parse(v).ok())
        .is_some_and(|cid| cid.cryptogram_type() == CryptogramType::Tc)
}
