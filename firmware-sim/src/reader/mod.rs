//! The simulated reader's wire side: a sans-IO state machine in the style of quinn-proto.
//!
//! Inputs: [`SimReader::handle_input`] (bytes from the host), [`SimReader::handle_timeout`]
//! (when [`SimReader::poll_timeout`] says so) and control inputs (cards, PIN, reboot,
//! [`SimReader::control`]). Outputs, drained in this order after every input:
//! [`SimReader::poll_transmit`] (bytes for the host) and [`SimReader::poll_event`] (a log for
//! tests). `now` is always passed in; the only randomness is two ChaCha8 streams seeded from
//! [`SimConfig::seed`] (one for the EMV unpredictable numbers, one for faults).
//!
//! Protocol behaviour, as the logged devices behave (vipa-protocol.md §0; \[I\]/\[GAP\] choices
//! are marked where they are made):
//! - power-on and reboot send an unsolicited `E6 { C3, C4 "DEVICE POWERED ON", 9F1C }`;
//! - Reset Device answers the device info of the [`DeviceProfile`] (captured answers for the
//!   UX300, UX301, M400 and P400 Plus);
//! - Card Status with P1 bit 0 enables card events `E0 { 48 }` (PCB `40`); the M400 profile
//!   answers it only with that unsolicited frame, as the logged M400 does;
//! - no card is present until one is inserted, tapped or swiped (control channel, scenario,
//!   or [`SimConfig::auto_insert`], which presents the card once the reader is armed);
//! - Start Transaction (`DE D1`) without a card answers `9F23`; with one, the EMV [`Kernel`]
//!   reads it and the reader answers `E2` (selected application and masked card data);
//!   Continue `DE D2` then runs cardholder verification, stops with `E0` when P1 bit 0 asks,
//!   and answers `E4` / `E3` / `E5`; the final Continue honours `C0` (TC / AAC) and runs the
//!   default action analysis without it;
//! - `C0 A0` with the payment bit arms the contactless reader (answered at once); the result
//!   of a tap arrives unsolicited (`E3` / `E4` / `E5` / `E7`); `C0 A1` continues it; `C0 C0`
//!   cancels and is followed by an unsolicited `DFDF30`; `C0 00` answers a raw count byte;
//! - Abort (`D0 FF`) ends a pending command with `9F41`.

mod device_info;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use emvbridge_protocol::emv::{numeric, Track2};
use emvbridge_protocol::frame::{emit_message, Deframer, FrameError, Inbound, NAD_PED};
use emvbridge_protocol::tlv::{self, Tag, TlvBuilder};
use emvbridge_protocol::vipa::command::code;
use emvbridge_protocol::vipa::{
    CommandView, StatusWord, TransactionStatus, HOST_DECISION_TC, TAG_C0_HOST_DECISION, TAG_DFDF30,
    TAG_DFED03_PIN_KSN,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tracing::{debug, info, warn};
use zeroize::Zeroize;

pub use device_info::{reset_response, VIPA_VERSION};

use crate::card::{self, Card};
use crate::crypto;
use crate::faults::{ByteFault, FaultInjector, FaultPlan, FlowFault, Point};
use crate::kernel::{
    Candidate, FailReason, HostResponse, Kernel, PinInput, Step, TerminalConfig, TransactionData,
};
use crate::scenario::Step as ScenarioStep;
pub use crate::scenario::{Control, PinAction, Scenario};
use crate::sred::SredEncryptor;

/// How long a partial frame may sit in the input buffer before it is dropped as stale.
pub const INPUT_STALE_AFTER: Duration = Duration::from_millis(500);
/// Events kept for [`SimReader::poll_event`]; older ones are dropped.
pub const MAX_EVENTS: usize = 4096;
/// Outgoing writes kept while the host does not read; older ones are dropped.
pub const MAX_QUEUED_WRITES: usize = 4096;

/// `C1` in `E2`: the decision asked for. \[GAP\] the capture only shows `00` (card data for a
/// host decision); the simulator uses `01` for application selection.
pub const DECISION_APPLICATION_SELECTION: u8 = 0x01;
/// `48` status byte 1 bit 2 for a contactless card in the field. \[GAP\] the tag-48 bits are
/// unknown beyond \[S6\]'s best-effort decoding; chosen here, documented here.
pub const CARD_STATUS_CTLS: u8 = 0x04;

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Terminal data for the EMV kernel; `terminal_id` / `ifd_serial` also go into the Reset
    /// response and the power-on `E6`.
    pub terminal: TerminalConfig,
    /// The card auto-insert presents (a profile name, see [`card::profile_names`]).
    pub card: Option<String>,
    /// Present [`SimConfig::card`] by itself once the reader is armed (Card Status with P1 bit
    /// 0 for an insertion or a swipe, `C0 A0` with the payment bit for a tap), after
    /// [`SimConfig::insert_delay`]. A real reader waits for a person; the embedded simulator
    /// of `sale`/`serve`/`lab`/`demo` plays that person.
    pub auto_insert: bool,
    /// How [`SimConfig::auto_insert`] presents the card.
    pub auto_present: Presentation,
    /// From arming to the automatic presentation.
    pub insert_delay: Duration,
    /// Which logged reader to behave like.
    pub device: DeviceProfile,
    /// Pull the card after the final `E3`/`E5`.
    pub auto_remove: bool,
    /// Answer PIN prompts with the profile's PIN (`1234` when the profile has none).
    pub auto_pin: bool,
    /// How long the simulated cardholder takes to type a PIN.
    pub pin_delay: Duration,
    /// End a Start Transaction that waits for a card after this long, `None` = wait forever.
    pub card_timeout: Option<Duration>,
    /// SW for the card-wait timeout. \[GAP\] no documented code; default `9F41`.
    pub card_timeout_sw: StatusWord,
    /// From reboot to the power-on `E6`.
    pub boot_delay: Duration,
    /// Seed for the unpredictable numbers and the faults.
    pub seed: u64,
    /// Faults to inject.
    pub faults: FaultPlan,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            terminal: TerminalConfig::default(),
            card: None,
            auto_insert: true,
            auto_present: Presentation::Insert,
            insert_delay: Duration::ZERO,
            device: DeviceProfile::default(),
            auto_remove: true,
            auto_pin: true,
            pin_delay: Duration::from_millis(50),
            card_timeout: None,
            card_timeout_sw: StatusWord::COMMAND_CANCELLED,
            boot_delay: Duration::from_millis(100),
            seed: 0,
            faults: FaultPlan::default(),
        }
    }
}

/// A reader model whose captured behaviour the simulator follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceProfile {
    /// The simulator's own UX300-style device info (its terminal id and serial from the
    /// configuration).
    #[default]
    Generic,
    /// UX300 + UX100, VIPA 6.8.2.24: the captured three-frame reset answer.
    Ux300,
    /// UX301 + UX100, VIPA 6.8.2.24: the captured four-frame reset answer.
    Ux301,
    /// M400, VIPA 6.8.2.11: the captured reset answer; Card Status answered only by an
    /// unsolicited `E0{48}`.
    M400,
    /// P400 Plus, VIPA 6.8.2.11: the captured reset answer.
    P400Plus,
}

impl DeviceProfile {
    /// All profiles, by name.
    pub const ALL: [(&'static str, DeviceProfile); 5] = [
        ("generic", DeviceProfile::Generic),
        ("ux300", DeviceProfile::Ux300),
        ("ux301", DeviceProfile::Ux301),
        ("m400", DeviceProfile::M400),
        ("p400", DeviceProfile::P400Plus),
    ];

    /// The name of its captured reset answer, `None` for the generic profile.
    pub fn capture(self) -> Option<&'static str> {
        match self {
            DeviceProfile::Generic => None,
            DeviceProfile::Ux300 => Some("ux300"),
            DeviceProfile::Ux301 => Some("ux301"),
            DeviceProfile::M400 => Some("m400"),
            DeviceProfile::P400Plus => Some("p400plus"),
        }
    }

    /// Whether Card Status gets no solicited answer, only the unsolicited card event (M400).
    pub fn card_status_unsolicited_only(self) -> bool {
        self == DeviceProfile::M400
    }
}

impl std::str::FromStr for DeviceProfile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let l = s.to_ascii_lowercase();
        Self::ALL
            .iter()
            .find(|(n, _)| *n == l || (l == "p400plus" && *n == "p400"))
            .map(|(_, d)| *d)
            .ok_or_else(|| format!("unknown device {s:?} (generic, ux300, ux301, m400, p400)"))
    }
}

/// How a card is presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presentation {
    /// Inserted into the chip slot.
    Insert,
    /// Tapped (EMV contactless).
    Tap,
    /// Tapped, mag-stripe mode.
    TapMsd,
    /// Swiped.
    Swipe,
}

impl std::str::FromStr for Presentation {
    type Err = ControlError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "insert" => Ok(Presentation::Insert),
            "tap" => Ok(Presentation::Tap),
            "tap-msd" => Ok(Presentation::TapMsd),
            "swipe" => Ok(Presentation::Swipe),
            _ => Err(ControlError::BadPresentation),
        }
    }
}

/// What the reader did, for tests and logs. No card data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The power-on `E6` was queued.
    PoweredOn,
    /// A command arrived.
    Command {
        /// CLA INS.
        code: [u8; 2],
    },
    /// A response was queued.
    Response {
        /// CLA INS of the command answered.
        code: [u8; 2],
        /// Status word.
        sw: StatusWord,
        /// Leading template tag of the data, if any.
        template: Option<u8>,
    },
    /// An unsolicited message was queued.
    Unsolicited {
        /// Its template tag (`E0` card event, `E6` status).
        template: u8,
    },
    /// Display text.
    Display {
        /// The text (lossy UTF-8).
        text: String,
    },
    /// A card was presented.
    CardPresented {
        /// Profile name.
        profile: String,
        /// How.
        how: Presentation,
    },
    /// The card left.
    CardRemoved,
    /// A PIN prompt.
    PinPrompt {
        /// Online PIN.
        online: bool,
    },
    /// PIN entered (digit count only).
    PinEntered {
        /// Digits.
        digits: usize,
    },
    /// PIN cancelled.
    PinCancelled,
    /// PIN bypassed.
    PinBypassed,
    /// Input bytes dropped.
    Corrupt {
        /// Why.
        reason: FrameError,
    },
    /// A byte-level fault was applied.
    Fault(ByteFault),
    /// A flow fault fired.
    FlowFault(FlowFault),
    /// The device rebooted.
    Rebooted,
    /// The device stopped answering (`stall-after`).
    Stalled,
    /// A transaction reached a flow point.
    Point(Point),
}

/// Why a control input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No profile of that name.
    #[error("unknown card profile")]
    UnknownProfile,
    /// No card named and no current card.
    #[error("no card configured")]
    NoCard,
    /// A PIN command without valid digits, cancel or bypass.
    #[error("pin needs 4-12 digits, cancel or bypass")]
    BadPin,
    /// A bad fault spec.
    #[error("faults: {0}")]
    Faults(#[from] crate::faults::FaultSpecError),
    /// A device model other than generic, ux300, ux301, m400 or p400.
    #[error("device: generic, ux300, ux301, m400 or p400")]
    BadDevice,
    /// An `auto` presentation other than insert, tap, tap-msd or swipe.
    #[error("present: insert, tap, tap-msd or swipe")]
    BadPresentation,
    /// A scenario-only command on the control channel.
    #[error("only valid in a scenario")]
    ScenarioOnly,
}

/// A state summary (the `status` control command).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// Profile of the card in the slot / field.
    pub card_present: Option<String>,
    /// The auto-insert card.
    pub card: Option<String>,
    /// Transaction state name (`pin-entry` also while an online PIN entry, `DE D6`, waits
    /// for the PIN pad: what a test driving the cardholder waits for).
    pub txn: &'static str,
    /// Whether card events are enabled.
    pub card_detection: bool,
    /// Whether the device stalled.
    pub stalled: bool,
}

#[derive(Debug)]
struct Slot {
    profile: String,
    how: Presentation,
}

#[derive(Debug)]
enum Txn {
    Idle,
    WaitCard {
        data: TransactionData,
        contactless: bool,
        deadline: Option<Instant>,
    },
    Pin {
        kernel: Kernel,
        contactless: bool,
        due: Option<Instant>,
    },
    AwaitChoice {
        kernel: Kernel,
        candidates: Vec<Candidate>,
    },
    /// `E2` sent with the card data; the host's amount confirmation lets `next` run.
    AwaitDecision {
        kernel: Kernel,
        next: Step,
    },
    /// Post-CVM `E0` sent (Continue P1 bit 0); the next Continue lets `next` run.
    PostCvm {
        kernel: Kernel,
        next: Step,
    },
    AwaitHost {
        kernel: Kernel,
    },
    /// Contactless `E4` sent; the card has left the field, Continue just confirms.
    CtlsAwaitHost,
    /// Ended while no command was pending: the next Continue gets this SW.
    Ended(StatusWord),
}

impl Txn {
    fn name(&self) -> &'static str {
        match self {
            Txn::Idle => "idle",
            Txn::WaitCard { .. } => "waiting-for-card",
            Txn::Pin { .. } => "pin-entry",
            Txn::AwaitChoice { .. } => "awaiting-choice",
            Txn::AwaitDecision { .. } => "awaiting-decision",
            Txn::PostCvm { .. } => "after-cvm",
            Txn::AwaitHost { .. } | Txn::CtlsAwaitHost => "awaiting-host",
            Txn::Ended(_) => "ended",
        }
    }
}

#[derive(Debug)]
struct Outgoing {
    at: Instant,
    bytes: Bytes,
}

/// The simulated VIPA reader.
#[derive(Debug)]
pub struct SimReader {
    config: SimConfig,
    deframer: Deframer,
    last_input: Option<Instant>,
    out: VecDeque<Outgoing>,
    events: VecDeque<Event>,
    rng: ChaCha8Rng,
    faults: FaultInjector,
    stalled: bool,
    power_on_at: Option<Instant>,
    card_detection: bool,
    slot: Option<Slot>,
    cards: BTreeMap<String, Card>,
    sred: Option<SredEncryptor>,
    pending: Option<[u8; 2]>,
    txn: Txn,
    pin_queue: VecDeque<PinAction>,
    scenario: VecDeque<ScenarioStep>,
    scenario_wait: Option<Instant>,
    scenario_point: Option<Point>,
    in_scenario: bool,
    /// When the automatic presentation is due.
    present_at: Option<Instant>,
    /// The next contact step after card reading stops with `E2` first.
    decision_due: bool,
    /// The host asked (Continue P1 bit 0) for the post-CVM `E0` stop.
    stop_after_cvm: bool,
    /// A tap's results go out unsolicited (the arming `C0 A0` was already answered).
    ctls_unsolicited: bool,
    /// The next automatic presentation is an insertion (after "use chip").
    insert_next: bool,
    /// The next automatic presentation is a swipe (after a chip failure).
    swipe_next: bool,
    /// The card in the slot was presented automatically and no transaction has read it yet.
    auto_presented: bool,
    /// The chip failed: a swipe of a chip card is accepted as a fallback (entry mode 80).
    fallback_allowed: bool,
    /// An online PIN entry asked by `DE D6`: `Some(due)` while it runs (`due`: when the
    /// simulated cardholder has typed it; `None` waits for the control channel).
    pin_request: Option<Option<Instant>>,
}

fn sw_payload(data: &[u8], sw: StatusWord) -> Vec<u8> {
    let mut p = Vec::with_capacity(data.len() + 2);
    p.extend_from_slice(data);
    p.extend_from_slice(&sw.to_bytes());
    p
}

fn template(tag: Tag, content: &[u8]) -> Bytes {
    let mut b = TlvBuilder::with_capacity(content.len() + 4);
    b.constructed(tag, |b| {
        b.raw(content);
    });
    b.freeze()
}

fn fail_sw(reason: FailReason) -> StatusWord {
    match reason {
        FailReason::CardRemoved => StatusWord::CARD_REMOVED,
        FailReason::NoApplication | FailReason::ApplicationBlocked => StatusWord::UNSUPPORTED_CARD,
        FailReason::Card(_) | FailReason::Sred => StatusWord::BAD_CARD,
        FailReason::UnexpectedInput | FailReason::BadTransactionData => StatusWord::INVALID_DATA,
    }
}

impl SimReader {
    /// A reader that has just been powered on: the power-on `E6` is ready at `now`.
    pub fn new(config: SimConfig, now: Instant) -> SimReader {
        let faults = FaultInjector::new(config.faults.clone(), config.seed ^ 0xFA17);
        SimReader {
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            faults,
            config,
            deframer: Deframer::new(),
            last_input: None,
            out: VecDeque::new(),
            events: VecDeque::new(),
            stalled: false,
            power_on_at: Some(now),
            card_detection: false,
            slot: None,
            cards: BTreeMap::new(),
            sred: Some(SredEncryptor::ansi_test()),
            pending: None,
            txn: Txn::Idle,
            pin_queue: VecDeque::new(),
            scenario: VecDeque::new(),
            scenario_wait: None,
            scenario_point: None,
            in_scenario: false,
            present_at: None,
            decision_due: false,
            stop_after_cvm: false,
            ctls_unsolicited: false,
            insert_next: false,
            swipe_next: false,
            auto_presented: false,
            fallback_allowed: false,
            pin_request: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Bytes from the host.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        self.fire_power_on(now);
        if self.stalled {
            debug!(len = bytes.len(), "stalled: input ignored");
            return;
        }
        self.last_input = Some(now);
        self.deframer.push(bytes);
        while let Some(item) = self.deframer.poll() {
            match item {
                Inbound::Message(m) if m.unsolicited => {
                    warn!("unsolicited frame from the host ignored");
                }
                Inbound::Message(m) => self.handle_command(now, &m.payload),
                Inbound::Corrupt { reason, skipped } => {
                    // [GAP] §7 item 5: what a terminal does with a bad frame is unknown; the
                    // simulator drops it silently, as the host implementations do.
                    warn!(%reason, skipped, "corrupt input dropped");
                    self.event(Event::Corrupt { reason });
                }
            }
            if self.stalled {
                break;
            }
        }
        self.run_scenario(now);
    }

    /// The next chunk of bytes for the host, if one is due at `now`.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        self.fire_power_on(now);
        if self.out.front().is_some_and(|o| o.at <= now) {
            self.out.pop_front().map(|o| o.bytes)
        } else {
            None
        }
    }

    /// When [`SimReader::handle_timeout`] should next be called (or a delayed transmit is due).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let stale = (self.deframer.buffered() > 0 || self.deframer.in_chain())
            .then(|| self.last_input.map(|t| t + INPUT_STALE_AFTER))
            .flatten();
        let txn = match &self.txn {
            Txn::WaitCard { deadline, .. } => *deadline,
            Txn::Pin { due, .. } => *due,
            _ => None,
        };
        [
            self.power_on_at,
            self.out.front().map(|o| o.at),
            stale,
            txn,
            self.scenario_wait,
            self.present_at,
            self.pin_request.flatten(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs whatever timers are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.fire_power_on(now);
        if (self.deframer.buffered() > 0 || self.deframer.in_chain())
            && self
                .last_input
                .is_some_and(|t| now >= t + INPUT_STALE_AFTER)
        {
            while let Some(item) = self.deframer.discard_stalled() {
                if let Inbound::Corrupt { reason, .. } = item {
                    self.event(Event::Corrupt { reason });
                }
            }
            // A partial chain with no bytes behind it can only be dropped by a reset.
            if self.deframer.buffered() > 0 || self.deframer.in_chain() {
                self.deframer.reset();
            }
        }
        match &mut self.txn {
            Txn::WaitCard { deadline, .. } if deadline.is_some_and(|d| now >= d) => {
                info!("card wait timed out");
                self.txn = Txn::Idle;
                let sw = self.config.card_timeout_sw;
                self.respond(now, &[], sw);
            }
            Txn::Pin { due, .. } if due.is_some_and(|d| now >= d) => {
                *due = None;
                let action = self.pin_queue.pop_front().unwrap_or_else(|| {
                    PinAction::Digits(self.default_pin().unwrap_or_else(|| "1234".into()))
                });
                self.pin_input(now, action);
            }
            _ => {}
        }
        if self.pin_request.flatten().is_some_and(|t| now >= t) {
            self.pin_request = Some(None);
            let action = self.pin_queue.pop_front().unwrap_or_else(|| {
                PinAction::Digits(self.default_pin().unwrap_or_else(|| "1234".into()))
            });
            self.online_pin_entered(now, action);
        }
        if self.present_at.is_some_and(|t| now >= t) {
            self.present_at = None;
            if self.slot.is_none() {
                let how = if std::mem::take(&mut self.insert_next) {
                    Presentation::Insert
                } else if std::mem::take(&mut self.swipe_next) {
                    Presentation::Swipe
                } else {
                    self.config.auto_present
                };
                match self.present(now, None, how) {
                    Ok(()) => self.auto_presented = self.slot.is_some(),
                    Err(e) => warn!(%e, "automatic presentation failed"),
                }
            }
        }
        if self.scenario_wait.is_some_and(|t| now >= t) {
            self.scenario_wait = None;
        }
        self.run_scenario(now);
    }

    /// Schedules the automatic presentation when the reader was armed for its kind.
    fn armed(&mut self, now: Instant, contactless: bool) {
        let tap = matches!(
            self.config.auto_present,
            Presentation::Tap | Presentation::TapMsd
        );
        if self.config.auto_insert
            && self.config.card.is_some()
            && self.slot.is_none()
            && tap == contactless
            && self.present_at.is_none()
        {
            self.present_at = Some(now + self.config.insert_delay);
        }
    }

    /// The next logged event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// A state summary.
    pub fn status(&self) -> Status {
        Status {
            card_present: self.slot.as_ref().map(|s| s.profile.clone()),
            card: self.config.card.clone(),
            txn: if self.pin_request.is_some() {
                "pin-entry"
            } else {
                self.txn.name()
            },
            card_detection: self.card_detection,
            stalled: self.stalled,
        }
    }

    /// A new host connection: output not yet sent is dropped (it was meant for the previous
    /// peer) and the power-on `E6` is queued now. A TCP transport calls this for each
    /// connection: \[S5\] reads an `E6` first after connecting (§1.4).
    pub fn announce(&mut self, now: Instant) {
        self.out.clear();
        self.power_on_at = Some(now);
        self.fire_power_on(now);
    }

    // ----- control inputs -----

    /// Applies a control command (see [`crate::scenario`]).
    ///
    /// # Errors
    /// [`ControlError`] for unknown profiles, bad PINs, bad fault specs.
    pub fn control(&mut self, now: Instant, c: Control) -> Result<(), ControlError> {
        let r = self.apply_control(now, c);
        self.run_scenario(now);
        r
    }

    fn apply_control(&mut self, now: Instant, c: Control) -> Result<(), ControlError> {
        match c {
            Control::Card { profile } => self.set_card(now, &profile),
            Control::Insert { profile } => self.present(now, profile, Presentation::Insert),
            Control::Tap { profile, msd } => {
                let how = if msd {
                    Presentation::TapMsd
                } else {
                    Presentation::Tap
                };
                self.present(now, profile, how)
            }
            Control::Swipe { profile } => self.present(now, profile, Presentation::Swipe),
            Control::Remove => {
                self.remove_card(now);
                Ok(())
            }
            Control::Pin {
                digits,
                cancel,
                bypass,
            } => {
                let a = Control::pin_action(digits.as_deref(), cancel, bypass)
                    .ok_or(ControlError::BadPin)?;
                self.enter_pin(now, a);
                Ok(())
            }
            Control::Reboot => {
                self.reboot(now);
                Ok(())
            }
            Control::Faults { spec } => {
                self.set_faults(spec.parse()?);
                Ok(())
            }
            Control::Device { model } => {
                self.config.device = model.parse().map_err(|_| ControlError::BadDevice)?;
                Ok(())
            }
            Control::Present { how } => {
                self.config.auto_present = how.parse()?;
                Ok(())
            }
            Control::Auto {
                insert,
                remove,
                pin,
            } => {
                if let Some(v) = insert {
                    self.config.auto_insert = v;
                    if !v {
                        self.present_at = None;
                        // The simulated cardholder is gone: a card it presented by itself that
                        // no transaction has used yet goes with it.
                        if self.auto_presented && matches!(self.txn, Txn::Idle) {
                            self.remove_card(now);
                        }
                    }
                }
                if let Some(v) = remove {
                    self.config.auto_remove = v;
                }
                if let Some(v) = pin {
                    self.config.auto_pin = v;
                    if v {
                        // The simulated cardholder is back: it types at a prompt already
                        // showing, as at one that comes next.
                        let due = now + self.config.pin_delay;
                        if let Txn::Pin { due: d @ None, .. } = &mut self.txn {
                            *d = Some(due);
                        }
                        if self.pin_request == Some(None) {
                            self.pin_request = Some(Some(due));
                        }
                    }
                }
                Ok(())
            }
            Control::Status => Ok(()),
            Control::Wait { .. } | Control::WaitFor { .. } => Err(ControlError::ScenarioOnly),
        }
    }

    fn present(
        &mut self,
        now: Instant,
        profile: Option<String>,
        how: Presentation,
    ) -> Result<(), ControlError> {
        let p = profile
            .or_else(|| self.config.card.clone())
            .ok_or(ControlError::NoCard)?;
        match how {
            Presentation::Insert => self.insert_card(now, &p),
            Presentation::Tap => self.tap_card(now, &p, false),
            Presentation::TapMsd => self.tap_card(now, &p, true),
            Presentation::Swipe => self.swipe_card(now, &p),
        }
    }

    /// Sets the auto-insert card; inserts it now if a Start Transaction waits for a card.
    ///
    /// # Errors
    /// [`ControlError::UnknownProfile`].
    pub fn set_card(&mut self, now: Instant, profile: &str) -> Result<(), ControlError> {
        check_profile(profile)?;
        self.config.card = Some(profile.to_owned());
        if self.card_detection {
            self.armed(now, false);
        }
        if let Txn::WaitCard { contactless, .. } = self.txn {
            if contactless {
                self.tap_card(now, profile, false)?;
            } else {
                self.insert_card(now, profile)?;
            }
        }
        Ok(())
    }

    /// Inserts a chip card (pulling any card already there).
    ///
    /// # Errors
    /// [`ControlError::UnknownProfile`].
    pub fn insert_card(&mut self, now: Instant, profile: &str) -> Result<(), ControlError> {
        self.place(now, profile, Presentation::Insert)?;
        if let Txn::WaitCard {
            contactless: false, ..
        } = self.txn
        {
            let Txn::WaitCard { data, .. } = std::mem::replace(&mut self.txn, Txn::Idle) else {
                return Ok(());
            };
            self.run_kernel(now, data, false);
        }
        Ok(())
    }

    /// Taps a contactless card (`msd`: the card answers in mag-stripe mode).
    ///
    /// # Errors
    /// [`ControlError::UnknownProfile`].
    pub fn tap_card(&mut self, now: Instant, profile: &str, msd: bool) -> Result<(), ControlError> {
        let how = if msd {
            Presentation::TapMsd
        } else {
            Presentation::Tap
        };
        self.place(now, profile, how)?;
        if let Txn::WaitCard {
            contactless: true, ..
        } = self.txn
        {
            let Txn::WaitCard { data, .. } = std::mem::replace(&mut self.txn, Txn::Idle) else {
                return Ok(());
            };
            self.run_contactless(now, data);
        }
        Ok(())
    }

    /// Swipes a card. A chip card (service code 2xx/6xx) swiped for a Start Transaction gets
    /// `9F34` use chip.
    ///
    /// # Errors
    /// [`ControlError::UnknownProfile`].
    pub fn swipe_card(&mut self, now: Instant, profile: &str) -> Result<(), ControlError> {
        self.place(now, profile, Presentation::Swipe)?;
        if let Txn::WaitCard {
            contactless: false, ..
        } = self.txn
        {
            let Txn::WaitCard { data, .. } = std::mem::replace(&mut self.txn, Txn::Idle) else {
                return Ok(());
            };
            self.run_swipe(now, data);
        }
        Ok(())
    }

    fn place(
        &mut self,
        now: Instant,
        profile: &str,
        how: Presentation,
    ) -> Result<(), ControlError> {
        check_profile(profile)?;
        if self.slot.is_some() {
            self.remove_card(now);
        }
        info!(profile, ?how, "card presented");
        self.slot = Some(Slot {
            profile: profile.to_owned(),
            how,
        });
        self.event(Event::CardPresented {
            profile: profile.to_owned(),
            how,
        });
        let status = match how {
            Presentation::Insert => [0x03, 0x00],
            Presentation::Tap | Presentation::TapMsd => [CARD_STATUS_CTLS, 0x00],
            Presentation::Swipe => [0x00, 0x05],
        };
        self.card_event(now, status, how == Presentation::Swipe);
        Ok(())
    }

    fn card_event(&mut self, now: Instant, status: [u8; 2], with_track: bool) {
        if !self.card_detection {
            return;
        }
        let mut b = TlvBuilder::new();
        b.constructed(Tag::VIPA_E0, |b| {
            b.primitive(Tag::VIPA_CARD_STATUS, &status);
            if with_track {
                if let Some(t) = self.masked_track2() {
                    b.primitive(Tag::VIPA_MASKED_TRACK2, t.as_bytes());
                }
            }
        });
        // As logged, unsolicited messages end with SW 9000 (`E0 04 48 02 03 00 90 00`).
        self.send(now, true, &sw_payload(b.as_bytes(), StatusWord::SUCCESS));
        self.event(Event::Unsolicited { template: 0xE0 });
    }

    fn masked_track2(&self) -> Option<String> {
        let p = card::profile(&self.slot.as_ref()?.profile)?;
        Track2::from_bcd(&p.track2()).ok().map(|t| t.masked())
    }

    /// Pulls the card. Mid-transaction, the pending command ends with `9F23`.
    pub fn remove_card(&mut self, now: Instant) {
        let Some(slot) = self.slot.take() else {
            return;
        };
        info!(profile = %slot.profile, "card removed");
        self.event(Event::CardRemoved);
        let was_inserted = slot.how == Presentation::Insert;
        if was_inserted {
            self.card_event(now, [0x00, 0x00], false);
        }
        match std::mem::replace(&mut self.txn, Txn::Idle) {
            Txn::Pin { kernel, .. }
            | Txn::AwaitChoice { kernel, .. }
            | Txn::AwaitDecision { kernel, .. }
            | Txn::PostCvm { kernel, .. }
            | Txn::AwaitHost { kernel } => {
                let mut kernel = kernel;
                let _ = kernel.card_removed();
                self.finish(kernel);
                self.end(now, StatusWord::CARD_REMOVED);
            }
            other => self.txn = other,
        }
        // The PIN pad's entry ends with the card: an online PIN entry (`DE D6`) not answered
        // above (asked outside a transaction) gets the card-removed status too, and none
        // waits for the next PIN typed.
        if self.pin_request.take().is_some() && self.pending == Some(code::ONLINE_PIN) {
            self.respond(now, &[], StatusWord::CARD_REMOVED);
        }
    }

    /// A PIN for the current prompt, or for the next one if none is showing.
    pub fn enter_pin(&mut self, now: Instant, action: PinAction) {
        if self.pin_request.is_some() {
            self.online_pin_entered(now, action);
        } else if matches!(self.txn, Txn::Pin { .. }) {
            self.pin_input(now, action);
        } else if action == PinAction::Cancel {
            self.cancel(now);
        } else {
            self.pin_queue.push_back(action);
        }
    }

    /// The cardholder presses cancel.
    pub fn cancel_pin(&mut self, now: Instant) {
        self.enter_pin(now, PinAction::Cancel);
    }

    /// Replaces the fault plan.
    pub fn set_faults(&mut self, plan: FaultPlan) {
        info!(faults = %plan, "fault plan");
        self.faults.set_plan(plan);
        self.stalled = false;
    }

    /// Loads a scenario; its steps run as time passes and the flow reaches its points.
    pub fn load_scenario(&mut self, now: Instant, s: Scenario) {
        self.scenario = s.steps.into();
        self.scenario_wait = None;
        self.scenario_point = None;
        self.run_scenario(now);
    }

    /// Power-cycles the device: the transaction, pending command, card detection, input
    /// buffer and unsent output are lost; the card stays where it is; `E6` follows after
    /// [`SimConfig::boot_delay`].
    pub fn reboot(&mut self, now: Instant) {
        warn!("reboot");
        match std::mem::replace(&mut self.txn, Txn::Idle) {
            Txn::Pin { kernel, .. }
            | Txn::AwaitChoice { kernel, .. }
            | Txn::AwaitDecision { kernel, .. }
            | Txn::PostCvm { kernel, .. }
            | Txn::AwaitHost { kernel } => self.finish(kernel),
            _ => {}
        }
        self.pending = None;
        self.pin_request = None;
        self.card_detection = false;
        self.deframer.reset();
        self.out.clear();
        self.faults.rebooted();
        self.stalled = false;
        self.pin_queue.clear();
        self.power_on_at = Some(now + self.config.boot_delay);
        self.event(Event::Rebooted);
    }

    // ----- internals -----

    fn event(&mut self, e: Event) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    fn fire_power_on(&mut self, now: Instant) {
        if self.power_on_at.is_some_and(|t| now >= t) {
            self.power_on_at = None;
            let mut b = TlvBuilder::new();
            b.constructed(Tag::VIPA_E6, |b| {
                // [GAP] the C3 value of the power-on notification is not documented.
                b.primitive(Tag::VIPA_TRANSACTION_STATUS, &[0x00]);
                b.primitive(Tag::VIPA_STATUS_MESSAGE, b"DEVICE POWERED ON");
                b.primitive(
                    Tag::TERMINAL_IDENTIFICATION,
                    &self.config.terminal.terminal_id,
                );
            });
            info!("powered on");
            self.send(now, true, &b.freeze());
            self.event(Event::PoweredOn);
        }
    }

    fn default_pin(&self) -> Option<String> {
        let s = self.slot.as_ref()?;
        card::profile(&s.profile)?.pin.map(|(p, _)| p)
    }

    /// Frames `payload`, applies the faults and queues the writes.
    fn send(&mut self, now: Instant, unsolicited: bool, payload: &[u8]) {
        if self.stalled {
            return;
        }
        if self.faults.stalled() {
            warn!("stall: the device stops answering");
            self.stalled = true;
            self.event(Event::Stalled);
            return;
        }
        let mut wire = BytesMut::new();
        if let Err(e) = emit_message(NAD_PED, unsolicited, payload, &mut wire) {
            warn!(%e, "message not framed");
            return;
        }
        let mut applied = Vec::new();
        let chunks = self.faults.mangle(&wire, &mut applied);
        for f in applied {
            self.event(Event::Fault(f));
        }
        let at = now + self.faults.delay();
        for bytes in chunks {
            if self.out.len() >= MAX_QUEUED_WRITES {
                self.out.pop_front();
            }
            self.out.push_back(Outgoing { at, bytes });
        }
        self.faults.count_message();
    }

    fn unsolicited_status(&mut self, now: Instant, content: &[u8]) {
        // With SW 9000, as the logged `E6{C3 0E, C4 00}` (§0).
        self.send(
            now,
            true,
            &sw_payload(&template(Tag::VIPA_E6, content), StatusWord::SUCCESS),
        );
        self.event(Event::Unsolicited { template: 0xE6 });
    }

    /// Answers the pending command (no-op when none is pending).
    fn respond(&mut self, now: Instant, data: &[u8], sw: StatusWord) {
        let Some(code) = self.pending.take() else {
            if std::mem::take(&mut self.ctls_unsolicited) {
                // A tap's result: no command is pending, it goes out unsolicited (§0).
                info!(sw = %format!("{:04X}", sw.0), len = data.len(), "contactless result");
                self.send(now, true, &sw_payload(data, sw));
                self.event(Event::Unsolicited {
                    template: data.first().copied().unwrap_or(0),
                });
            }
            return;
        };
        self.reply(now, code, data, sw);
    }

    fn reply(&mut self, now: Instant, code: [u8; 2], data: &[u8], sw: StatusWord) {
        info!(cmd = %format!("{:02X}{:02X}", code[0], code[1]), sw = %format!("{:04X}", sw.0), len = data.len(), "response");
        self.send(now, false, &sw_payload(data, sw));
        self.event(Event::Response {
            code,
            sw,
            template: data.first().copied(),
        });
    }

    /// Returns the card and the SRED engine to the reader (counters persist).
    fn finish(&mut self, kernel: Kernel) {
        let (card, sred) = kernel.finish();
        self.sred = Some(sred);
        self.cards.insert(card.profile().name.clone(), card);
    }

    /// Ends the transaction with `sw`: the pending command gets it, or the next Continue.
    fn end(&mut self, now: Instant, sw: StatusWord) {
        if self.pending.is_some() {
            self.txn = Txn::Idle;
            self.respond(now, &[], sw);
        } else {
            self.txn = Txn::Ended(sw);
        }
    }

    /// Ends whatever is in progress without a response (a new transaction, a reset),
    /// an online PIN entry included.
    fn drop_txn(&mut self) {
        self.pin_request = None;
        match std::mem::replace(&mut self.txn, Txn::Idle) {
            Txn::Pin { kernel, .. }
            | Txn::AwaitChoice { kernel, .. }
            | Txn::AwaitDecision { kernel, .. }
            | Txn::PostCvm { kernel, .. }
            | Txn::AwaitHost { kernel } => self.finish(kernel),
            _ => {}
        }
    }

    fn cancel(&mut self, now: Instant) {
        match std::mem::replace(&mut self.txn, Txn::Idle) {
            Txn::Pin { kernel, .. }
            | Txn::AwaitChoice { kernel, .. }
            | Txn::AwaitDecision { kernel, .. }
            | Txn::PostCvm { kernel, .. }
            | Txn::AwaitHost { kernel } => {
                self.finish(kernel);
                self.end(now, StatusWord::USER_CANCELLED);
            }
            Txn::WaitCard { .. } => self.end(now, StatusWord::USER_CANCELLED),
            other => self.txn = other,
        }
    }

    /// A flow point: records it, wakes a scenario waiting for it, returns the faults that fire.
    fn point(&mut self, p: Point) -> Vec<FlowFault> {
        self.event(Event::Point(p));
        if self.scenario_point == Some(p) {
            self.scenario_point = None;
        }
        let faults = self.faults.at(p);
        for f in &faults {
            warn!(fault = ?f, point = p.name(), "flow fault");
            self.event(Event::FlowFault(*f));
        }
        faults
    }

    /// Applies remove/cancel flow faults (reboot is handled where it replaces a message).
    fn after_point(&mut self, now: Instant, faults: &[FlowFault]) {
        for f in faults {
            match f {
                FlowFault::Reboot => self.reboot(now),
                FlowFault::Remove => self.remove_card(now),
                FlowFault::Cancel => self.cancel(now),
                // Acted on where the chip is read (`start`).
                FlowFault::ChipFail => {}
            }
        }
    }

    fn handle_command(&mut self, now: Instant, payload: &[u8]) {
        let cmd = match CommandView::parse(payload) {
            Ok(c) => c,
            Err(e) => {
                warn!(%e, "malformed command");
                // [GAP] no documented SW for a malformed command; 9F21 invalid data.
                self.reply(now, [0, 0], &[], StatusWord::INVALID_DATA);
                return;
            }
        };
        let code = cmd.code();
        info!(
            cmd = cmd.name().unwrap_or("unknown"),
            p1 = cmd.p1,
            p2 = cmd.p2,
            lc = cmd.data.len(),
            "command"
        );
        self.event(Event::Command { code });
        match code {
            code::ABORT => {
                self.drop_txn();
                self.respond(now, &[], StatusWord::COMMAND_CANCELLED);
                self.reply(now, code, &[], StatusWord::SUCCESS);
            }
            code::DISPLAY | code::DISPLAY_TEXT => {
                // UI commands are answered without disturbing a pending command [I].
                let text = cmd.display_text().unwrap_or_else(|| match cmd.p1 {
                    0x01 => "IDLE".into(),
                    0x02 => "PROCESSING TRANSACTION".into(),
                    0x03 => "AUTHORISING".into(),
                    0x04 => "REQUEST REJECTED".into(),
                    0x0D => "INSERT CARD".into(),
                    0x0E => "REMOVE CARD".into(),
                    0x0F => "PROCESSING".into(),
                    p => format!("MESSAGE {p:02X}"),
                });
                info!(%text, "display");
                self.event(Event::Display { text });
                self.reply(now, code, &[], StatusWord::SUCCESS);
            }
            code::CARD_STATUS => {
                // §0: P1 bit 0 reports card changes; the other bits select extra data
                // (ATR, tracks, DFDF6E), not modelled.
                self.card_detection = cmd.p1 & 0x01 != 0;
                let inserted = self
                    .slot
                    .as_ref()
                    .is_some_and(|s| s.how == Presentation::Insert);
                if self.config.device.card_status_unsolicited_only() {
                    // The logged M400 answers `D0 60 3F 03` with an unsolicited `E0{48}`
                    // only, even when card events are off.
                    let status = if inserted { [0x03, 0x00] } else { [0x00, 0x00] };
                    let mut b = TlvBuilder::new();
                    b.constructed(Tag::VIPA_E0, |b| {
                        b.primitive(Tag::VIPA_CARD_STATUS, &status);
                    });
                    self.send(now, true, &sw_payload(b.as_bytes(), StatusWord::SUCCESS));
                    self.event(Event::Unsolicited { template: 0xE0 });
                } else {
                    self.reply(now, code, &[], StatusWord::SUCCESS);
                    if inserted {
                        self.card_event(now, [0x03, 0x00], false);
                    }
                }
                if self.card_detection {
                    self.armed(now, false);
                }
            }
            code::ONLINE_PIN => self.online_pin(now, &cmd),
            code::VERIFY_PIN if cmd.p1 == 0xFF && cmd.p2 == 0x01 => {
                // §0: `DE D5 FF 01` bypasses the PIN entry in progress.
                self.reply(now, code, &[], StatusWord::SUCCESS);
                if self.pin_request.is_some() || matches!(self.txn, Txn::Pin { .. }) {
                    self.enter_pin(now, PinAction::Bypass);
                }
            }
            code::CONTACTLESS_STATUS => {
                // §0: the answer is a raw count byte, not TLV [I: the count of readers].
                self.reply(now, code, &[0x01], StatusWord::SUCCESS);
            }
            code::OPEN_CONTACTLESS => {
                self.reply(now, code, &[], StatusWord::SUCCESS);
            }
            code::RESET_DEVICE => {
                self.drop_txn();
                self.respond(now, &[], StatusWord::COMMAND_CANCELLED);
                self.card_detection = false;
                let data = match self
                    .config
                    .device
                    .capture()
                    .and_then(device_info::captured_reset)
                {
                    Some(captured) => captured,
                    None => reset_response(
                        &self.config.terminal.terminal_id,
                        &self.config.terminal.ifd_serial,
                    ),
                };
                self.reply(now, code, &data, StatusWord::SUCCESS);
                if cmd.p1 == 0x01 {
                    self.reboot(now);
                }
            }
            code::START_TRANSACTION => {
                self.supersede(now);
                self.start(now, &cmd);
            }
            code::START_CONTACTLESS => {
                self.supersede(now);
                self.start_contactless(now, &cmd);
            }
            code::CONTINUE_TRANSACTION | code::CONTINUE_CONTACTLESS => {
                self.supersede(now);
                self.continue_txn(now, &cmd);
            }
            code::CANCEL_CONTACTLESS => {
                if matches!(
                    self.txn,
                    Txn::WaitCard {
                        contactless: true,
                        ..
                    }
                ) {
                    self.txn = Txn::Idle;
                }
                if matches!(
                    self.config.auto_present,
                    Presentation::Tap | Presentation::TapMsd
                ) {
                    self.present_at = None;
                }
                self.ctls_unsolicited = false;
                self.reply(now, code, &[], StatusWord::SUCCESS);
                // As logged: `DFDF30 01 FB` follows unsolicited ([GAP] the value's meaning).
                let mut b = TlvBuilder::new();
                b.primitive(TAG_DFDF30, &[0xFB]);
                self.send(now, true, &sw_payload(b.as_bytes(), StatusWord::SUCCESS));
                self.event(Event::Unsolicited { template: 0xDF });
            }
            _ => {
                // [GAP] the answer to an unsupported command is undocumented; 9F21.
                self.reply(now, code, &[], StatusWord::INVALID_DATA);
            }
        }
    }

    /// A transaction command while another is pending: the old one ends with `9F41` \[I\].
    fn supersede(&mut self, now: Instant) {
        if self.pending.is_some() {
            self.drop_txn();
            self.respond(now, &[], StatusWord::COMMAND_CANCELLED);
        }
    }

    fn start(&mut self, now: Instant, cmd: &CommandView<'_>) {
        let faults = self.point(Point::Start);
        if faults.contains(&FlowFault::Reboot) {
            self.reboot(now);
            return;
        }
        self.drop_txn();
        self.pending = Some(cmd.code());
        let Some(data) = self.transaction_data(now, cmd) else {
            return;
        };
        let inserted = self
            .slot
            .as_ref()
            .is_some_and(|s| s.how == Presentation::Insert);
        if inserted && faults.contains(&FlowFault::ChipFail) {
            // The chip does not answer: bad card; a swipe of this card is now a fallback.
            info!("chip failure: fallback to the stripe allowed");
            self.fallback_allowed = true;
            self.respond(now, &[], StatusWord::BAD_CARD);
            if self.config.auto_insert && self.card_detection {
                // The simulated cardholder pulls the card and swipes it.
                self.remove_card(now);
                self.swipe_next = true;
                self.present_at = Some(now + self.config.insert_delay);
            }
            return;
        }
        match self.slot.as_ref().map(|s| s.how) {
            Some(Presentation::Insert) => self.run_kernel(now, data, false),
            Some(Presentation::Swipe) => self.run_swipe(now, data),
            _ => {
                // §0: `9F23` means "no card"; the logged hosts wait for the card first.
                info!("start transaction without a card");
                self.respond(now, &[], StatusWord::CARD_REMOVED);
            }
        }
        self.after_point(now, &faults);
    }

    /// `C0 A0`: answered at once; P1 bit 0 arms payment cards, whose result comes unsolicited.
    fn start_contactless(&mut self, now: Instant, cmd: &CommandView<'_>) {
        // Not a `start` flow point: a host arms contactless before every contact start, and
        // the `start` faults (reboot, chip failure) aim at the card being read.
        self.drop_txn();
        self.pending = Some(cmd.code());
        let Some(data) = self.transaction_data(now, cmd) else {
            return;
        };
        self.respond(now, &[], StatusWord::SUCCESS);
        if cmd.p1 & 0x01 == 0 {
            // §0: P1 = 00 arms nothing (no payment bit).
            info!(
                p1 = cmd.p1,
                "contactless started without the payment bit: nothing armed"
            );
            return;
        }
        self.ctls_unsolicited = true;
        match self.slot.as_ref().map(|s| s.how) {
            Some(Presentation::Tap | Presentation::TapMsd) => self.run_contactless(now, data),
            _ => {
                self.txn = Txn::WaitCard {
                    data,
                    contactless: true,
                    deadline: self.config.card_timeout.map(|d| now + d),
                };
                self.armed(now, true);
            }
        }
    }

    /// The transaction data of a start command, or the error answer already sent.
    fn transaction_data(&mut self, now: Instant, cmd: &CommandView<'_>) -> Option<TransactionData> {
        match TransactionData::from_tlv(cmd.data) {
            Ok(d) => Some(d),
            Err(e) => {
                warn!(%e, "bad transaction data");
                let sw = match e {
                    crate::kernel::TxnDataError::Missing(_) => StatusWord::DATA_MISSING,
                    _ => StatusWord::INVALID_DATA,
                };
                self.respond(now, &[], sw);
                None
            }
        }
    }

    fn take_card(&mut self, profile: &str) -> Option<Card> {
        self.cards
            .remove(profile)
            .or_else(|| Card::from_profile(profile))
    }

    fn un(&mut self) -> [u8; 4] {
        self.rng.gen()
    }

    fn run_kernel(&mut self, now: Instant, data: TransactionData, contactless: bool) {
        self.auto_presented = false;
        let Some(profile) = self.slot.as_ref().map(|s| s.profile.clone()) else {
            return;
        };
        let Some(card) = self.take_card(&profile) else {
            self.respond(now, &[], StatusWord::UNSUPPORTED_CARD);
            return;
        };
        let sred = self.sred.take().unwrap_or_else(SredEncryptor::ansi_test);
        let un = self.un();
        let (kernel, step) = Kernel::start(card, sred, &self.config.terminal, data, un);
        // Contact: once the card is read, the reader stops with `E2` for the host (§0).
        self.decision_due = !contactless;
        self.stop_after_cvm = false;
        self.drive(now, kernel, step, contactless);
    }

    /// `DE D6 host-id key-slot E0{DFED0D}`: online PIN entry. \[I\] the host asks for it when
    /// the CVM results call for an enciphered online PIN; the answer is `E0{DFED6C block,
    /// DFED03 KSN}` (§0), `9F43` when cancelled, `9015` when bypassed.
    fn online_pin(&mut self, now: Instant, cmd: &CommandView<'_>) {
        if self.slot.is_none() {
            self.reply(now, cmd.code(), &[], StatusWord::CARD_REMOVED);
            return;
        }
        info!(host_id = cmd.p1, key_slot = cmd.p2, "online pin requested");
        self.pending = Some(cmd.code());
        self.event(Event::PinPrompt { online: true });
        let mut b = TlvBuilder::new();
        b.primitive(
            Tag::VIPA_TRANSACTION_STATUS,
            &[TransactionStatus::PIN_ENTRY_REQUESTED.0],
        );
        b.primitive(Tag::VIPA_STATUS_MESSAGE, b"ENTER PIN");
        self.unsolicited_status(now, b.as_bytes());
        let due = (self.config.auto_pin || !self.pin_queue.is_empty())
            .then(|| now + self.config.pin_delay);
        self.pin_request = Some(due);
    }

    fn online_pin_entered(&mut self, now: Instant, action: PinAction) {
        if self.pin_request.take().is_none() {
            return;
        }
        let pan = self
            .slot
            .as_ref()
            .and_then(|s| card::profile(&s.profile))
            .map(|p| p.pan);
        match (action, pan) {
            (PinAction::Digits(mut d), Some(pan)) => {
                self.event(Event::PinEntered { digits: d.len() });
                let mut engine = self.sred.take().unwrap_or_else(SredEncryptor::ansi_test);
                let r = engine.pin_block(&d, &pan);
                d.zeroize();
                self.sred = Some(engine);
                match r {
                    Ok((block, ksn)) => {
                        let mut b = TlvBuilder::new();
                        b.constructed(Tag::VIPA_E0, |b| {
                            b.primitive(Tag::VIPA_PIN_BLOCK, &block);
                            b.primitive(TAG_DFED03_PIN_KSN, &ksn);
                        });
                        self.respond(now, b.as_bytes(), StatusWord::SUCCESS);
                    }
                    Err(e) => {
                        warn!(%e, "no pin block");
                        self.respond(now, &[], StatusWord::INVALID_DATA);
                    }
                }
            }
            (PinAction::Bypass, _) => {
                self.event(Event::PinBypassed);
                // The unsolicited bypass notification as the harness quotes it (§0).
                let mut b = TlvBuilder::new();
                b.primitive(
                    Tag::VIPA_TRANSACTION_STATUS,
                    &[TransactionStatus::PIN_BYPASS_CONFIRMATION.0],
                );
                b.primitive(Tag::VIPA_STATUS_MESSAGE, &[0x00]);
                self.unsolicited_status(now, b.as_bytes());
                self.respond(now, &[], StatusWord::PIN_BYPASSED);
            }
            _ => {
                self.event(Event::PinCancelled);
                self.respond(now, &[], StatusWord::USER_CANCELLED);
            }
        }
    }

    /// Feeds kernel steps to the wire until the kernel waits for an input.
    fn drive(&mut self, now: Instant, mut kernel: Kernel, step: Step, contactless: bool) {
        if let (Step::PinEntry { online: true, .. }, false) = (&step, contactless) {
            if !self.decision_due {
                // [I] VIPA: the online PIN is entered when the host asks for it (`DE D6`),
                // not inside the card flow; the card only records the CVM.
                let next = kernel.pin_entered(PinInput::Digits(String::new()));
                return self.drive(now, kernel, next, contactless);
            }
        }
        let stop =
            !contactless && !matches!(step, Step::SelectApplication { .. } | Step::Failed(_));
        if stop && std::mem::take(&mut self.decision_due) {
            // `E2` "decision required" with the selected application and the masked card
            // data, as the UX301 log shows; the host's amount confirmation lets `step` run.
            let faults = self.point(Point::E2);
            if faults.contains(&FlowFault::Reboot) {
                self.finish(kernel);
                self.reboot(now);
                return;
            }
            let data = kernel.card_data();
            self.txn = Txn::AwaitDecision { kernel, next: step };
            self.respond(now, &template(Tag::VIPA_E2, &data), StatusWord::SUCCESS);
            self.after_point(now, &faults);
            return;
        }
        let cvm_done = matches!(
            step,
            Step::GoOnline { .. } | Step::Approved { .. } | Step::Declined { .. }
        );
        if stop && cvm_done && std::mem::take(&mut self.stop_after_cvm) {
            // Continue P1 bit 0: stop after cardholder verification with `E0` (§0).
            let data = kernel.post_cvm_data();
            self.txn = Txn::PostCvm { kernel, next: step };
            self.respond(now, &template(Tag::VIPA_E0, &data), StatusWord::SUCCESS);
            return;
        }
        match step {
            Step::SelectApplication { candidates } if contactless => {
                // Contactless: no cardholder selection; the highest priority wins.
                let _ = candidates;
                let next = kernel.select_application(0);
                self.drive(now, kernel, next, true)
            }
            Step::SelectApplication { candidates } => {
                let faults = self.point(Point::E2);
                if faults.contains(&FlowFault::Reboot) {
                    self.finish(kernel);
                    self.reboot(now);
                    return;
                }
                let mut b = TlvBuilder::new();
                b.constructed(Tag::VIPA_E2, |b| {
                    b.primitive(Tag::VIPA_C1, &[DECISION_APPLICATION_SELECTION]);
                    for c in &candidates {
                        b.primitive(Tag::AID, &c.aid);
                        b.primitive(Tag::APPLICATION_LABEL, c.label.as_bytes());
                        b.primitive(Tag::APPLICATION_PRIORITY_INDICATOR, &[c.priority]);
                    }
                });
                self.txn = Txn::AwaitChoice { kernel, candidates };
                self.respond(now, &b.freeze(), StatusWord::SUCCESS);
                self.after_point(now, &faults);
            }
            Step::PinEntry { online, tries_left } => {
                let retry = tries_left.is_some_and(|t| {
                    self.slot
                        .as_ref()
                        .and_then(|s| card::profile(&s.profile))
                        .and_then(|p| p.pin)
                        .is_some_and(|(_, limit)| t < limit)
                });
                info!(online, ?tries_left, "pin prompt");
                self.event(Event::PinPrompt { online });
                let mut b = TlvBuilder::new();
                b.primitive(
                    Tag::VIPA_TRANSACTION_STATUS,
                    &[TransactionStatus::PIN_ENTRY_REQUESTED.0],
                );
                let msg: &[u8] = if retry {
                    b"INCORRECT PIN"
                } else {
                    b"ENTER PIN"
                };
                b.primitive(Tag::VIPA_STATUS_MESSAGE, msg);
                if let Some(t) = tries_left {
                    b.primitive(Tag::PIN_TRY_COUNTER, &[t]);
                }
                self.unsolicited_status(now, b.as_bytes());
                let due = (self.config.auto_pin || !self.pin_queue.is_empty())
                    .then(|| now + self.config.pin_delay);
                self.txn = Txn::Pin {
                    kernel,
                    contactless,
                    due,
                };
                let faults = self.point(Point::Pin);
                if faults.contains(&FlowFault::Reboot) {
                    self.reboot(now);
                    return;
                }
                self.after_point(now, &faults);
            }
            Step::GoOnline { data } => {
                let faults = self.point(Point::E4);
                if faults.contains(&FlowFault::Reboot) {
                    self.finish(kernel);
                    self.reboot(now);
                    return;
                }
                let mut b = TlvBuilder::new();
                b.constructed(Tag::VIPA_E4, |b| {
                    b.raw(&data);
                    // POS entry mode: 05 chip, 07 contactless chip (not in the kernel's set).
                    b.primitive(
                        Tag::POS_ENTRY_MODE,
                        &[if contactless { 0x07 } else { 0x05 }],
                    );
                });
                if contactless {
                    // The card has left the field; the host's answer only confirms.
                    self.finish(kernel);
                    self.slot = None;
                    self.txn = Txn::CtlsAwaitHost;
                } else {
                    self.txn = Txn::AwaitHost { kernel };
                }
                self.respond(now, &b.freeze(), StatusWord::SUCCESS);
                self.after_point(now, &faults);
            }
            Step::Approved { data } | Step::Declined { data } => {
                let approved = tlv::find(&data, Tag::CRYPTOGRAM_INFORMATION_DATA)
                    .and_then(|t| t.value().first().copied())
                    .is_some_and(|cid| cid & 0xC0 == 0x40);
                let faults = self.point(Point::Final);
                self.finish(kernel);
                if faults.contains(&FlowFault::Reboot) {
                    self.reboot(now);
                    return;
                }
                let tag = if approved { Tag::VIPA_E3 } else { Tag::VIPA_E5 };
                self.txn = Txn::Idle;
                info!(approved, "final outcome");
                self.respond(now, &template(tag, &data), StatusWord::SUCCESS);
                if contactless {
                    self.slot = None;
                } else if self.config.auto_remove {
                    self.remove_card(now);
                }
                self.after_point(now, &faults);
            }
            Step::Failed(reason) => {
                warn!(%reason, "transaction failed");
                self.finish(kernel);
                self.txn = Txn::Idle;
                self.respond(now, &[], fail_sw(reason));
            }
        }
    }

    fn pin_input(&mut self, now: Instant, action: PinAction) {
        let Txn::Pin {
            mut kernel,
            contactless,
            ..
        } = std::mem::replace(&mut self.txn, Txn::Idle)
        else {
            return;
        };
        // [I] completion status: C3 02 (hand-off), C5 digit count, DFA20A result
        // (0 completed, 2 cancelled, 4 bypassed, §4.4).
        let mut b = TlvBuilder::new();
        let step = match action {
            PinAction::Digits(d) => {
                self.event(Event::PinEntered { digits: d.len() });
                b.primitive(
                    Tag::VIPA_TRANSACTION_STATUS,
                    &[TransactionStatus::PIN_ENTRY_HANDOFF.0],
                );
                b.primitive(Tag::VIPA_STATUS_MESSAGE, b"PIN ENTERED");
                b.primitive(Tag::VIPA_PIN_DIGIT_COUNT, &[d.len().min(12) as u8]);
                b.primitive(Tag::VIPA_PIN_ENTRY_RESULT, &[0x00]);
                self.unsolicited_status(now, b.as_bytes());
                kernel.pin_entered(PinInput::Digits(d))
            }
            PinAction::Bypass => {
                self.event(Event::PinBypassed);
                b.primitive(
                    Tag::VIPA_TRANSACTION_STATUS,
                    &[TransactionStatus::PIN_BYPASS_CONFIRMATION.0],
                );
                b.primitive(Tag::VIPA_STATUS_MESSAGE, b"PIN BYPASSED");
                b.primitive(Tag::VIPA_PIN_ENTRY_RESULT, &[0x04]);
                self.unsolicited_status(now, b.as_bytes());
                kernel.pin_entered(PinInput::Bypassed)
            }
            PinAction::Cancel => {
                self.event(Event::PinCancelled);
                b.primitive(
                    Tag::VIPA_TRANSACTION_STATUS,
                    &[TransactionStatus::PIN_ENTRY_HANDOFF.0],
                );
                b.primitive(Tag::VIPA_STATUS_MESSAGE, b"CANCELLED");
                b.primitive(Tag::VIPA_PIN_DIGIT_COUNT, &[0]);
                b.primitive(Tag::VIPA_PIN_ENTRY_RESULT, &[0x02]);
                self.unsolicited_status(now, b.as_bytes());
                info!("pin cancelled");
                self.finish(kernel);
                self.end(now, StatusWord::USER_CANCELLED);
                return;
            }
        };
        self.drive(now, kernel, step, contactless);
    }

    fn continue_txn(&mut self, now: Instant, cmd: &CommandView<'_>) {
        let faults = self.point(Point::Continue);
        if faults.contains(&FlowFault::Reboot) {
            self.reboot(now);
            return;
        }
        self.pending = Some(cmd.code());
        let data = match cmd.continue_data() {
            Ok(d) => d,
            Err(e) => {
                warn!(%e, "bad continue data");
                self.respond(now, &[], StatusWord::INVALID_DATA);
                return;
            }
        };
        match std::mem::replace(&mut self.txn, Txn::Idle) {
            Txn::AwaitDecision { kernel, next } => {
                // The amount confirmation (`9F02 5F2A 89 8A C0 C2 DFCC79` in the log): its
                // values at this point are not acted on [GAP]; P1 bit 0 asks for the E0 stop.
                self.stop_after_cvm = cmd.p1 & 0x01 != 0;
                info!(stop_after_cvm = self.stop_after_cvm, "amount confirmed");
                self.drive(now, kernel, next, false);
            }
            Txn::PostCvm { kernel, next } => self.drive(now, kernel, next, false),
            Txn::AwaitChoice {
                mut kernel,
                candidates,
            } => match choice(data, &candidates) {
                Some(i) => {
                    info!(index = i, "application chosen");
                    let step = kernel.select_application(i);
                    self.drive(now, kernel, step, false);
                }
                None => {
                    self.txn = Txn::AwaitChoice { kernel, candidates };
                    self.respond(now, &[], StatusWord::INVALID_DATA);
                }
            },
            Txn::AwaitHost { mut kernel } => match host_response(data) {
                Ok(None) => {
                    info!("unable to go online");
                    let step = kernel.unable_to_go_online();
                    self.drive(now, kernel, step, false);
                }
                Ok(Some(resp)) => {
                    info!(arc = %String::from_utf8_lossy(&resp.arc), iad = resp.issuer_auth_data.is_some(), scripts = resp.scripts.len(), "host response");
                    let step = kernel.host_response(resp);
                    self.drive(now, kernel, step, false);
                }
                Err(sw) => {
                    self.txn = Txn::AwaitHost { kernel };
                    self.respond(now, &[], sw);
                }
            },
            Txn::CtlsAwaitHost => {
                let arc = tlv::find(data, Tag::AUTHORISATION_RESPONSE_CODE)
                    .and_then(|t| <[u8; 2]>::try_from(t.value()).ok());
                let decision =
                    tlv::find(data, TAG_C0_HOST_DECISION).and_then(|t| t.value().first().copied());
                match arc {
                    Some(arc) => {
                        let mut b = TlvBuilder::new();
                        b.primitive(Tag::AUTHORISATION_RESPONSE_CODE, &arc);
                        // `C0` decides when present (§0); without it the response code does.
                        let approve = match decision {
                            Some(d) => d == HOST_DECISION_TC && crypto::arc_is_approval(arc),
                            None => crypto::arc_is_approval(arc),
                        };
                        let tag = if approve { Tag::VIPA_E3 } else { Tag::VIPA_E5 };
                        self.respond(now, &template(tag, b.as_bytes()), StatusWord::SUCCESS);
                    }
                    None => {
                        self.txn = Txn::CtlsAwaitHost;
                        self.respond(now, &[], StatusWord::DATA_MISSING);
                    }
                }
            }
            Txn::Ended(sw) => self.respond(now, &[], sw),
            other => {
                self.txn = other;
                // No transaction waits for a Continue. [GAP] SW; 9F21 invalid data.
                self.respond(now, &[], StatusWord::INVALID_DATA);
            }
        }
        self.after_point(now, &faults);
    }

    /// A swipe for Start Transaction: chip cards must be inserted (`9F34`); a magstripe-only
    /// card gives an `E4` with entry mode 90, masked track 2 and SRED data.
    fn run_swipe(&mut self, now: Instant, data: TransactionData) {
        self.auto_presented = false;
        let Some(profile) = self.slot.take().and_then(|s| card::profile(&s.profile)) else {
            self.respond(now, &[], StatusWord::BAD_CARD);
            return;
        };
        let chip = matches!(profile.service_code.as_bytes().first(), Some(b'2' | b'6'));
        let fallback = chip && std::mem::take(&mut self.fallback_allowed);
        if chip && !fallback {
            info!("chip card swiped: use chip");
            self.respond(now, &[], StatusWord::USE_CHIP);
            if self.config.auto_insert && self.card_detection {
                // The simulated cardholder follows the prompt and inserts the card.
                self.insert_next = true;
                self.present_at = Some(now + self.config.insert_delay);
            }
            return;
        }
        let mut b = TlvBuilder::new();
        // 80: fallback from a failed chip read; 90: a magnetic-stripe card.
        b.primitive(Tag::POS_ENTRY_MODE, &[if fallback { 0x80 } else { 0x90 }]);
        self.magstripe_data(&mut b, &profile);
        // The amount came from six BCD bytes, so it always fits n12.
        b.primitive(
            Tag::AMOUNT_AUTHORISED,
            &numeric::encode_amount(data.amount).unwrap_or_default(),
        );
        b.primitive(Tag::TRANSACTION_CURRENCY_CODE, &data.currency);
        // The host's answer only confirms, as for a contactless E4 (no card to finish).
        self.txn = Txn::CtlsAwaitHost;
        self.respond(
            now,
            &template(Tag::VIPA_E4, b.as_bytes()),
            StatusWord::SUCCESS,
        );
    }

    fn magstripe_data(&mut self, b: &mut TlvBuilder, profile: &card::CardProfile) {
        let track2 = profile.track2();
        if let Ok(t) = Track2::from_bcd(&track2) {
            b.primitive(Tag::VIPA_MASKED_TRACK2, t.masked().as_bytes());
        }
        if let Some(app) = profile.apps.first() {
            b.primitive(Tag::APPLICATION_LABEL, app.label.as_bytes());
        }
        b.primitive(Tag::APPLICATION_EXPIRATION_DATE, &profile.expiry);
        let u = self.un();
        let iv = [u[0], u[1], u[2], u[3], !u[0], !u[1], !u[2], !u[3]];
        let mut engine = self.sred.take().unwrap_or_else(SredEncryptor::ansi_test);
        if let Ok(ff7f) = engine.encrypt(&profile.pan, &track2, iv) {
            b.raw(&ff7f);
        }
        self.sred = Some(engine);
    }

    fn run_contactless(&mut self, now: Instant, data: TransactionData) {
        let Some(slot) = self.slot.as_ref() else {
            return;
        };
        if slot.how == Presentation::TapMsd {
            let Some(profile) = card::profile(&slot.profile) else {
                self.respond(now, &[], StatusWord::CTLS_FAILED);
                return;
            };
            info!(pan = %profile.pan, "contactless msd");
            let mut b = TlvBuilder::new();
            b.primitive(Tag::POS_ENTRY_MODE, &[0x91]);
            self.magstripe_data(&mut b, &profile);
            self.slot = None;
            // The host's answer (`C0 A1`) only confirms, as for a contactless E4.
            self.txn = Txn::CtlsAwaitHost;
            self.respond(
                now,
                &template(Tag::VIPA_E7, b.as_bytes()),
                StatusWord::SUCCESS,
            );
            return;
        }
        self.run_kernel(now, data, true);
    }

    fn run_scenario(&mut self, now: Instant) {
        if self.in_scenario {
            return;
        }
        self.in_scenario = true;
        while self.scenario_wait.is_none() && self.scenario_point.is_none() {
            let Some(step) = self.scenario.pop_front() else {
                break;
            };
            match step {
                ScenarioStep::Wait(d) => self.scenario_wait = Some(now + d),
                ScenarioStep::WaitFor(p) => self.scenario_point = Some(p),
                ScenarioStep::Do(c) => {
                    info!(cmd = c.name(), "scenario");
                    if let Err(e) = self.apply_control(now, c) {
                        warn!(%e, "scenario step failed");
                    }
                }
            }
        }
        self.in_scenario = false;
    }
}

fn check_profile(name: &str) -> Result<(), ControlError> {
    if card::profile_names().any(|n| n == name) {
        Ok(())
    } else {
        Err(ControlError::UnknownProfile)
    }
}

/// The application choice in a Continue after `E2`. Accepted encodings (\[GAP\] §7; the
/// simulator's choice, documented): an AID in `4F`, `9F06` or `84` matching a candidate
/// exactly; or `DFA204` holding either a candidate AID (5+ bytes) or a one-byte 0-based index
/// into the `E2` list.
fn choice(data: &[u8], candidates: &[Candidate]) -> Option<usize> {
    for tag in [Tag::AID, Tag::AID_TERMINAL, Tag::DF_NAME, Tag(0xDFA204)] {
        let Some(t) = tlv::find(data, tag) else {
            continue;
        };
        let v = t.value();
        if tag == Tag(0xDFA204) && v.len() == 1 {
            let i = usize::from(v[0]);
            return (i < candidates.len()).then_some(i);
        }
        if let Some(i) = candidates.iter().position(|c| c.aid == v) {
            return Some(i);
        }
    }
    None
}

/// The host's answer to `E4`. `Ok(None)` when the host sent no decision `C0`: per the VIPA
/// manual as Verifone's harness quotes it, `C0` is left out when the acquirer could not be
/// reached, and the reader runs its default action analysis (`8A` = `Z3`/`Y3`).
fn host_response(data: &[u8]) -> Result<Option<HostResponse>, StatusWord> {
    let arc = tlv::find(data, Tag::AUTHORISATION_RESPONSE_CODE).ok_or(StatusWord::DATA_MISSING)?;
    let arc: [u8; 2] = arc
        .value()
        .try_into()
        .map_err(|_| StatusWord::INVALID_DATA)?;
    let Some(decision) =
        tlv::find(data, TAG_C0_HOST_DECISION).and_then(|t| t.value().first().copied())
    else {
        return Ok(None);
    };
    let iad = tlv::find(data, Tag::ISSUER_AUTHENTICATION_DATA).map(|t| t.value().to_vec());
    let mut scripts = Vec::new();
    for t in tlv::parse(data).map_while(Result::ok) {
        if matches!(
            t.tag(),
            Tag::ISSUER_SCRIPT_TEMPLATE_1 | Tag::ISSUER_SCRIPT_TEMPLATE_2
        ) && scripts.len() + t.raw().len() <= 4096
        {
            scripts.extend_from_slice(t.raw());
        }
    }
    Ok(Some(HostResponse {
        arc,
        issuer_auth_data: iad,
        scripts,
        decision: Some(decision == HOST_DECISION_TC),
    }))
}
