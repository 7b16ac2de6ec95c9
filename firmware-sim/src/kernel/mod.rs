//! The reader's EMV kernel as a sans-IO step machine: no clock, no I/O, no randomness (the
//! unpredictable number and the transaction date come in with the inputs).
//!
//! Drive it with [`Kernel::start`], then feed the input the returned [`Step`] asks for
//! (`select_application`, `pin_entered`, `host_response` / `unable_to_go_online`) until a
//! final step ([`Step::Approved`], [`Step::Declined`], [`Step::Failed`]). `card_removed` may
//! come at any time. [`Kernel::finish`] hands back the card and the SRED engine, whose
//! counters persist across transactions.
//!
//! EMV Book 3 steps performed: application selection (§12, candidate list with priorities,
//! blocked applications excluded), read application data, processing restrictions (§10.4:
//! version, effective/expiry dates, AUC), offline data authentication is *not performed*
//! (TVR byte 1 bit 8; the AIP of our profiles offers none), cardholder verification (§10.5,
//! CVM list `8E` against 9F33), terminal risk management (floor limit only), terminal action
//! analysis (§10.7, TAC/IAC denial/online/default), first GENERATE AC, issuer authentication
//! via EXTERNAL AUTHENTICATE, issuer scripts (71 before, 72 after the final GENERATE AC),
//! second GENERATE AC.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use emvbridge_protocol::emv::{build_dol_vec, mask_bcd_pan, numeric, Pan};
use emvbridge_protocol::tlv::{self, Tag, TlvBuilder};
use zeroize::Zeroize;

use crate::card::{Card, CardError, CryptogramType, GacResponse, PinVerify, ScriptCommandResult};
use crate::crypto;
use crate::sred::SredEncryptor;

/// Terminal configuration (EMV terminal data elements).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalConfig {
    /// Terminal country code (9F1A), BCD.
    pub terminal_country: [u8; 2],
    /// Terminal capabilities (9F33).
    pub capabilities: [u8; 3],
    /// Additional terminal capabilities (9F40).
    pub additional_capabilities: [u8; 5],
    /// Terminal type (9F35).
    pub terminal_type: u8,
    /// Floor limit in minor units (9F1B); amounts at or above it set TVR byte 4 bit 8.
    pub floor_limit: u64,
    /// Terminal action codes: default, denial, online.
    pub tac_default: [u8; 5],
    /// TAC denial.
    pub tac_denial: [u8; 5],
    /// TAC online.
    pub tac_online: [u8; 5],
    /// Terminal identification (9F1C), 8 ASCII characters.
    pub terminal_id: [u8; 8],
    /// IFD serial number (9F1E), 8 ASCII characters.
    pub ifd_serial: [u8; 8],
    /// Encrypt clear card data into `FF7F` and mask 57/5A (a VIPA SRED reader).
    pub sred: bool,
    /// Application version number the terminal supports (9F09).
    pub app_version: [u8; 2],
    /// Supported AIDs (partial selection: a card AID starting with one of these matches).
    pub aids: Vec<Vec<u8>>,
    /// Random transaction selection (EMV Book 3 §10.6.2); `None`: off.
    pub random_selection: Option<RandomSelection>,
}

/// Random transaction selection parameters (EMV Book 3 §10.6.2): below the floor limit a
/// share of transactions goes online anyway (TVR byte 4 bit 5), so that an offline-capable
/// card still reaches the issuer now and then. As that bit is in the usual TAC-online but
/// not in TAC-default, such a sale is approved offline (`Y3`) when the host is unreachable —
/// the store-and-forward case of a real terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomSelection {
    /// Target percentage (0–99) below `threshold`.
    pub target_percent: u8,
    /// Maximum target percentage (0–99), reached at the floor limit.
    pub max_target_percent: u8,
    /// Threshold value for biased selection, minor units.
    pub threshold: u64,
}

impl RandomSelection {
    /// Whether a sale of `amount` under `floor_limit` is selected, given the terminal's random
    /// number `rand` in 1..=99 (Book 3 §10.6.2: the target percentage, rising linearly from
    /// `threshold` towards `max_target_percent` at the floor limit).
    pub fn selects(&self, amount: u64, floor_limit: u64, rand: u8) -> bool {
        if amount >= floor_limit {
            return false;
        }
        let target = if amount < self.threshold || floor_limit <= self.threshold {
            u64::from(self.target_percent)
        } else {
            let span = u64::from(self.max_target_percent.saturating_sub(self.target_percent));
            let above = amount - self.threshold;
            u64::from(self.target_percent) + span * above / (floor_limit - self.threshold)
        };
        u64::from(rand) <= target
    }
}

impl Default for TerminalConfig {
    /// A US attended UX300-class terminal: online with offline capability (type 22), plaintext
    /// and enciphered PIN, signature, no-CVM (9F33 E0F8C8), floor limit 0, the common US
    /// TACs (default DC4000A800, denial 0010000000, online DC4004F800), SRED on.
    fn default() -> Self {
        let aids: [&[u8]; 6] = [
            &[0xA0, 0, 0, 0, 0x03, 0x10, 0x10],
            &[0xA0, 0, 0, 0, 0x03, 0x20, 0x10],
            &[0xA0, 0, 0, 0, 0x04, 0x10, 0x10],
            &[0xA0, 0, 0, 0, 0x04, 0x30, 0x60],
            &[0xA0, 0, 0, 0, 0x25, 0x01],
            &[0xA0, 0, 0, 0x01, 0x52, 0x30, 0x10],
        ];
        TerminalConfig {
            terminal_country: [0x08, 0x40],
            capabilities: [0xE0, 0xF8, 0xC8],
            additional_capabilities: [0xF0, 0x00, 0xF0, 0xA0, 0x01],
            terminal_type: 0x22,
            floor_limit: 0,
            tac_default: [0xDC, 0x40, 0x00, 0xA8, 0x00],
            tac_denial: [0x00, 0x10, 0x00, 0x00, 0x00],
            tac_online: [0xDC, 0x40, 0x04, 0xF8, 0x00],
            terminal_id: *b"SIM00001",
            ifd_serial: *b"UX300SIM",
            sred: true,
            app_version: [0x00, 0x8C],
            aids: aids.iter().map(|a| a.to_vec()).collect(),
            random_selection: None,
        }
    }
}

/// Why `E0` transaction data was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxnDataError {
    /// Not BER-TLV.
    #[error("malformed transaction data")]
    Malformed,
    /// A mandatory tag is absent.
    #[error("missing tag {0}")]
    Missing(&'static str),
    /// A tag has a bad length or non-BCD value.
    #[error("bad value for tag {0}")]
    BadValue(&'static str),
}

/// Transaction data from the host's Start Transaction (`E0` contents, vipa-protocol.md §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionData {
    /// Transaction type (9C).
    pub txn_type: u8,
    /// Amount authorised in minor units (9F02).
    pub amount: u64,
    /// Amount other (9F03), 0 if absent.
    pub amount_other: u64,
    /// Transaction date YYMMDD BCD (9A).
    pub date: [u8; 3],
    /// Transaction time HHMMSS BCD (9F21), zeros if absent.
    pub time: [u8; 3],
    /// Transaction currency code (5F2A).
    pub currency: [u8; 2],
    /// Terminal country code from the host (9F1A), overriding the config when present.
    pub country: Option<[u8; 2]>,
}

impl TransactionData {
    /// Reads 9C 9F02 9F03 9A 9F21 5F2A 9F1A from `E0` contents (or a whole `E0`); unknown tags
    /// (`DFA214`, `DFA218`, ...) are ignored.
    ///
    /// # Errors
    /// [`TxnDataError`] for malformed TLV, a missing 9F02/9A/5F2A, or bad values.
    pub fn from_tlv(e0_contents: &[u8]) -> Result<TransactionData, TxnDataError> {
        let mut input = e0_contents;
        let mut it = tlv::parse(e0_contents);
        if let (Some(Ok(first)), None) = (it.next(), it.next()) {
            if first.tag() == Tag(0xE0) {
                input = first.value();
            }
        }
        let mut m: BTreeMap<u32, &[u8]> = BTreeMap::new();
        for item in tlv::parse(input) {
            let t = item.map_err(|_| TxnDataError::Malformed)?;
            m.entry(t.tag().0).or_insert(t.value());
        }
        fn fixed<const N: usize>(
            m: &BTreeMap<u32, &[u8]>,
            tag: u32,
            name: &'static str,
        ) -> Result<Option<[u8; N]>, TxnDataError> {
            match m.get(&tag) {
                None => Ok(None),
                Some(v) => <[u8; N]>::try_from(*v)
                    .map(Some)
                    .map_err(|_| TxnDataError::BadValue(name)),
            }
        }
        let amount_raw: [u8; 6] =
            fixed(&m, 0x9F02, "9F02")?.ok_or(TxnDataError::Missing("9F02"))?;
        let amount =
            numeric::parse_amount(&amount_raw).map_err(|_| TxnDataError::BadValue("9F02"))?;
        let amount_other = match fixed::<6>(&m, 0x9F03, "9F03")? {
            Some(v) => numeric::parse_amount(&v).map_err(|_| TxnDataError::BadValue("9F03"))?,
            None => 0,
        };
        let date: [u8; 3] = fixed(&m, 0x9A, "9A")?.ok_or(TxnDataError::Missing("9A"))?;
        if numeric::bcd_to_u64(&date).is_err() {
            return Err(TxnDataError::BadValue("9A"));
        }
        Ok(TransactionData {
            txn_type: fixed::<1>(&m, 0x9C, "9C")?.map_or(0, |v| v[0]),
            amount,
            amount_other,
            date,
            time: fixed(&m, 0x9F21, "9F21")?.unwrap_or([0; 3]),
            currency: fixed(&m, 0x5F2A, "5F2A")?.ok_or(TxnDataError::Missing("5F2A"))?,
            country: fixed(&m, 0x9F1A, "9F1A")?,
        })
    }
}

/// One mutually supported application offered for selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// AID.
    pub aid: Vec<u8>,
    /// Application label (50).
    pub label: String,
    /// Application priority indicator (87).
    pub priority: u8,
}

/// What the cardholder did at the PIN prompt.
#[derive(Clone, PartialEq, Eq)]
pub enum PinInput {
    /// The PIN digits (zeroized after use; masked in `Debug`).
    Digits(String),
    /// Cancelled.
    Cancelled,
    /// PIN bypass.
    Bypassed,
}

impl fmt::Debug for PinInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinInput::Digits(_) => f.write_str("Digits(****)"),
            PinInput::Cancelled => f.write_str("Cancelled"),
            PinInput::Bypassed => f.write_str("Bypassed"),
        }
    }
}

/// The host's answer to [`Step::GoOnline`] (Continue Transaction contents).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostResponse {
    /// Authorisation response code (8A), e.g. `*b"00"`.
    pub arc: [u8; 2],
    /// Issuer authentication data (value of tag 91), if any.
    pub issuer_auth_data: Option<Vec<u8>>,
    /// Issuer script templates as raw TLV (any number of `71`/`72` objects).
    pub scripts: Vec<u8>,
    /// The host's decision (VIPA `C0`): `Some(true)` ask for a TC, `Some(false)` for an AAC;
    /// `None` decides by the response code.
    pub decision: Option<bool>,
}

/// Why a transaction ended without an EMV outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FailReason {
    /// No mutually supported application.
    #[error("no supported application")]
    NoApplication,
    /// The only matching application(s) are blocked.
    #[error("application blocked")]
    ApplicationBlocked,
    /// The card answered a command with an error status word.
    #[error("card error {0:04X}")]
    Card(u16),
    /// The card was removed.
    #[error("card removed")]
    CardRemoved,
    /// An input that does not fit the current step (or an out-of-range selection index).
    #[error("unexpected input")]
    UnexpectedInput,
    /// The transaction data was invalid.
    #[error("bad transaction data")]
    BadTransactionData,
    /// The SRED engine failed (DUKPT counter exhausted).
    #[error("sred failure")]
    Sred,
}

/// What the kernel needs next, or how the transaction ended. `data` holds BER-TLV objects for
/// the reader to wrap in `E4` / `E3` / `E5`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Ask the cardholder/host to choose; answer with [`Kernel::select_application`] (index
    /// into `candidates`, which are in priority order).
    SelectApplication {
        /// The choices.
        candidates: Vec<Candidate>,
    },
    /// Prompt for a PIN; answer with [`Kernel::pin_entered`].
    PinEntry {
        /// Online (enciphered) PIN, else offline plaintext PIN.
        online: bool,
        /// Offline PIN tries left (9F17), `None` for online PIN.
        tries_left: Option<u8>,
    },
    /// Send an authorisation: `data` is the online data set (E4 contents).
    GoOnline {
        /// TLVs.
        data: Bytes,
    },
    /// Final: approved (E3 contents).
    Approved {
        /// TLVs.
        data: Bytes,
    },
    /// Final: declined (E5 contents).
    Declined {
        /// TLVs.
        data: Bytes,
    },
    /// Final: no EMV outcome.
    Failed(FailReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    SelectApp,
    Pin { online: bool },
    Online,
    Done,
}

/// The kernel for one transaction.
#[derive(Debug)]
pub struct Kernel {
    card: Card,
    sred: SredEncryptor,
    config: TerminalConfig,
    txn: TransactionData,
    un: [u8; 4],
    phase: Phase,
    candidates: Vec<Candidate>,
    data: BTreeMap<u32, Vec<u8>>,
    tvr: [u8; 5],
    tsi: [u8; 2],
    cvm_index: usize,
    ff7f: Option<Bytes>,
    gac1: Option<GacResponse>,
    script_results: Vec<u8>,
}

/// Tags of the online data set, in output order (57/5A masked when SRED is on).
const ONLINE_TAGS: &[u32] = &[
    0x9F26, 0x9F27, 0x9F10, 0x9F36, 0x9F37, 0x95, 0x9B, 0x82, 0x84, 0x4F, 0x9F06, 0x9F33, 0x9F34,
    0x9F35, 0x9F1A, 0x5F2A, 0x9A, 0x9C, 0x9F21, 0x9F02, 0x9F03, 0x50, 0x9F12, 0x5F34, 0x5F24,
    0x5F25, 0x5F28, 0x5F30, 0x9F07, 0x9F08, 0x9F09, 0x9F0D, 0x9F0E, 0x9F0F, 0x9F1E, 0x9F40, 0x8E,
    0x57, 0x5A,
];
/// Tags of the card data a VIPA reader reports in `E2` "decision required" once the records
/// are read (the UX301 log: `FF7F 50 57 5A 5F24 5F25 5F28 5F30 5F34 9F06 9F07 9F08 9F09`).
const CARD_TAGS: &[u32] = &[
    0x50, 0x57, 0x5A, 0x5F24, 0x5F25, 0x5F28, 0x5F30, 0x5F34, 0x9F06, 0x4F, 0x9F07, 0x9F08, 0x9F09,
];
/// Tags of the post-CVM `E0` (the UX301 log: the online set without the cryptogram).
const POST_CVM_TAGS: &[u32] = &[
    0x5A, 0x82, 0x95, 0x9B, 0x9C, 0x5F2A, 0x9F02, 0x9F0D, 0x9F0E, 0x9F0F, 0x9F33, 0x9F34, 0x9F35,
    0x9F37, 0x5F24, 0x5F25, 0x4F, 0x9F06,
];
/// Tags of the final (E3/E5) data set.
const FINAL_TAGS: &[u32] = &[
    0x9F26, 0x9F27, 0x8A, 0x9F10, 0x9F36, 0x9F37, 0x95, 0x9B, 0x82, 0x84, 0x9F34, 0x9F35, 0x9F0D,
    0x9F0E, 0x9F0F, 0x9F02, 0x9F03, 0x9A, 0x9C, 0x5F2A, 0x9F1A, 0x5F34, 0x9F5B, 0x57, 0x5A,
];

fn tag_of(t: u32) -> Tag {
    Tag(t)
}

fn date_to_num(d: &[u8]) -> Option<u64> {
    let n = numeric::bcd_to_u64(d).ok()?;
    // YY < 50 → 20YY (EMV Book 4 §6.7.3 convention).
    Some(if n / 10000 < 50 {
        20_000_000 + n
    } else {
        19_000_000 + n
    })
}

impl Kernel {
    /// Starts a transaction with the inserted `card`. `un` is the unpredictable number (9F37).
    pub fn start(
        card: Card,
        sred: SredEncryptor,
        config: &TerminalConfig,
        txn: TransactionData,
        un: [u8; 4],
    ) -> (Kernel, Step) {
        let mut k = Kernel {
            card,
            sred,
            config: config.clone(),
            txn,
            un,
            phase: Phase::SelectApp,
            candidates: Vec::new(),
            data: BTreeMap::new(),
            tvr: [0; 5],
            tsi: [0; 2],
            cvm_index: 0,
            ff7f: None,
            gac1: None,
            script_results: Vec::new(),
        };
        let step = k.build_candidates();
        (k, step)
    }

    /// Returns the card and the SRED engine (their counters persist).
    pub fn finish(self) -> (Card, SredEncryptor) {
        (self.card, self.sred)
    }

    /// The terminal verification results so far (95).
    pub fn tvr(&self) -> [u8; 5] {
        self.tvr
    }

    fn fail(&mut self, r: FailReason) -> Step {
        self.phase = Phase::Done;
        Step::Failed(r)
    }

    fn build_candidates(&mut self) -> Step {
        let mut blocked = false;
        let mut list = Vec::new();
        for (aid, label, priority) in self.card.directory() {
            if !self.config.aids.iter().any(|t| aid.starts_with(t)) {
                continue;
            }
            match self.card.select(&aid) {
                Ok(_) => list.push(Candidate {
                    aid,
                    label,
                    priority,
                }),
                Err(CardError::Blocked) => blocked = true,
                Err(_) => {}
            }
        }
        // Book 1 §12.4: order by priority (1 highest); 0 = no priority, last.
        list.sort_by_key(|c| match c.priority & 0x0F {
            0 => 16,
            p => p,
        });
        self.candidates = list;
        match self.candidates.len() {
            0 if blocked => self.fail(FailReason::ApplicationBlocked),
            0 => self.fail(FailReason::NoApplication),
            1 if self.candidates[0].priority & 0x80 == 0 => self.run_application(0),
            _ => Step::SelectApplication {
                candidates: self.candidates.clone(),
            },
        }
    }

    /// The cardholder/host chose `candidates[index]`.
    pub fn select_application(&mut self, index: usize) -> Step {
        if self.phase != Phase::SelectApp || index >= self.candidates.len() {
            return self.fail(FailReason::UnexpectedInput);
        }
        self.run_application(index)
    }

    fn put(&mut self, tag: u32, v: &[u8]) {
        self.data.insert(tag, v.to_vec());
    }

    fn run_application(&mut self, index: usize) -> Step {
        let aid = self.candidates[index].aid.clone();
        let fci = match self.card.select(&aid) {
            Ok(f) => f,
            Err(e) => return self.fail(FailReason::Card(e.sw())),
        };
        for t in [0x84u32, 0x50, 0x87, 0x9F12] {
            if let Some(v) = tlv::find(&fci, tag_of(t)) {
                self.put(t, v.value());
            }
        }
        self.put(0x4F, &aid);
        self.put(0x9F06, &aid);
        let (aip, _afl) = match self.card.get_processing_options() {
            Ok(x) => x,
            Err(e) => return self.fail(FailReason::Card(e.sw())),
        };
        self.put(0x82, &aip);
        let records = match self.card.read_records() {
            Ok(r) => r,
            Err(e) => return self.fail(FailReason::Card(e.sw())),
        };
        for t in tlv::parse(&records).map_while(Result::ok) {
            self.data.insert(t.tag().0, t.value().to_vec());
        }
        self.put_terminal_data();
        if self.config.sred {
            if let Err(r) = self.encrypt_card_data() {
                return self.fail(r);
            }
        }
        self.processing_restrictions();
        if self.card.profile().offline_capable {
            // Simulated DDA: performed and successful (TSI byte 1 bit 8; no TVR bit).
            self.tsi[0] |= 0x80;
        } else {
            // Offline data authentication not performed (Book 3 §10.3; TVR byte 1 bit 8).
            self.tvr[0] |= 0x80;
        }
        self.next_cvm()
    }

    fn put_terminal_data(&mut self) {
        let c = self.config.clone();
        let country = self.txn.country.unwrap_or(c.terminal_country);
        // Both came from six BCD bytes (`from_tlv`), so they always fit n12.
        self.put(
            0x9F02,
            &numeric::encode_amount(self.txn.amount).unwrap_or_default(),
        );
        self.put(
            0x9F03,
            &numeric::encode_amount(self.txn.amount_other).unwrap_or_default(),
        );
        self.put(0x9F1A, &country);
        self.put(0x5F2A, &self.txn.currency.clone());
        self.put(0x9A, &self.txn.date.clone());
        self.put(0x9F21, &self.txn.time.clone());
        self.put(0x9C, &[self.txn.txn_type]);
        self.put(0x9F37, &self.un.clone());
        self.put(0x9F33, &c.capabilities);
        self.put(0x9F40, &c.additional_capabilities);
        self.put(0x9F35, &[c.terminal_type]);
        self.put(0x9F1E, &c.ifd_serial);
        self.put(0x9F09, &c.app_version);
        self.put(0x9F34, &[0x3F, 0x00, 0x00]);
    }

    fn encrypt_card_data(&mut self) -> Result<(), FailReason> {
        let pan = self.data.get(&0x5A).and_then(|v| Pan::from_bcd(v).ok());
        let track2 = self.data.get(&0x57).cloned().unwrap_or_default();
        let Some(pan) = pan else { return Ok(()) };
        let u = self.un;
        let iv = [u[0], u[1], u[2], u[3], !u[0], !u[1], !u[2], !u[3]];
        self.ff7f = Some(
            self.sred
                .encrypt(&pan, &track2, iv)
                .map_err(|_| FailReason::Sred)?,
        );
        Ok(())
    }

    /// EMV Book 3 §10.4.
    fn processing_restrictions(&mut self) {
        if self
            .data
            .get(&0x9F08)
            .is_some_and(|v| v.as_slice() != self.config.app_version)
        {
            self.tvr[1] |= 0x80;
        }
        let today = date_to_num(&self.txn.date);
        if let (Some(t), Some(exp)) = (today, self.data.get(&0x5F24).and_then(|v| date_to_num(v))) {
            if t > exp {
                self.tvr[1] |= 0x40;
            }
        }
        if let (Some(t), Some(eff)) = (today, self.data.get(&0x5F25).and_then(|v| date_to_num(v))) {
            if t < eff {
                self.tvr[1] |= 0x20;
            }
        }
        if let Some(auc) = self.data.get(&0x9F07).cloned() {
            let domestic = self.data.get(&0x5F28).map(Vec::as_slice)
                == self.data.get(&0x9F1A).map(Vec::as_slice);
            let a = auc.first().copied().unwrap_or(0);
            let allowed = match self.txn.txn_type {
                0x01 | 0x17 => a & if domestic { 0x80 } else { 0x40 } != 0,
                _ => a & if domestic { 0x28 } else { 0x14 } != 0,
            };
            if !allowed {
                self.tvr[1] |= 0x10;
            }
        }
    }

    fn cvm_rules(&self) -> Vec<[u8; 2]> {
        let list = self.data.get(&0x8E).cloned().unwrap_or_default();
        list.get(8..)
            .unwrap_or(&[])
            .chunks_exact(2)
            .map(|c| [c[0], c[1]])
            .collect()
    }

    fn terminal_supports(&self, code: u8) -> bool {
        let caps = self.config.capabilities[1];
        match code {
            0x01 => caps & 0x80 != 0,
            0x02 => caps & 0x40 != 0,
            0x1E => caps & 0x20 != 0,
            0x1F => caps & 0x08 != 0,
            0x00 => true,
            _ => false,
        }
    }

    fn condition_met(&self, code: u8, cond: u8) -> bool {
        let x = self
            .data
            .get(&0x8E)
            .and_then(|v| v.get(0..4))
            .map_or(0, |v| {
                u64::from(u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
            });
        let y = self
            .data
            .get(&0x8E)
            .and_then(|v| v.get(4..8))
            .map_or(0, |v| {
                u64::from(u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
            });
        let same_currency = self.data.get(&0x9F42) == self.data.get(&0x5F2A);
        let amt = self.txn.amount;
        match cond {
            0x00 => true,
            0x03 => self.terminal_supports(code),
            0x06 => same_currency && amt < x,
            0x07 => same_currency && amt > x,
            0x08 => same_currency && amt < y,
            0x09 => same_currency && amt > y,
            _ => false,
        }
    }

    /// Walks the CVM list from `cvm_index` (Book 3 §10.5).
    fn next_cvm(&mut self) -> Step {
        if self.data.get(&0x82).is_some_and(|a| a[0] & 0x10 == 0) {
            return self.after_cvm();
        }
        let rules = self.cvm_rules();
        while let Some(&[code_byte, cond]) = rules.get(self.cvm_index) {
            let code = code_byte & 0x3F;
            if !self.condition_met(code, cond) {
                self.cvm_index += 1;
                continue;
            }
            if !self.terminal_supports(code) {
                if !matches!(code, 0x00..=0x05 | 0x1E | 0x1F) {
                    self.tvr[2] |= 0x40;
                }
                if self.cvm_failed(code_byte, cond) {
                    return self.after_cvm();
                }
                continue;
            }
            match code {
                0x01 => {
                    if self.card.profile().pin.is_none() {
                        if self.cvm_failed(code_byte, cond) {
                            return self.after_cvm();
                        }
                        continue;
                    }
                    let tries = self.card.pin_try_counter();
                    if tries == 0 {
                        self.tvr[2] |= 0x20;
                        if self.cvm_failed(code_byte, cond) {
                            return self.after_cvm();
                        }
                        continue;
                    }
                    self.phase = Phase::Pin { online: false };
                    return Step::PinEntry {
                        online: false,
                        tries_left: Some(tries),
                    };
                }
                0x02 => {
                    self.phase = Phase::Pin { online: true };
                    return Step::PinEntry {
                        online: true,
                        tries_left: None,
                    };
                }
                0x1E => return self.cvm_done([code_byte, cond, 0x00]),
                0x1F => return self.cvm_done([code_byte, cond, 0x02]),
                _ => {
                    if self.cvm_failed(code_byte, cond) {
                        return self.after_cvm();
                    }
                }
            }
        }
        // List exhausted without success.
        self.tvr[2] |= 0x80;
        if self.data.get(&0x9F34).is_some_and(|v| v[0] == 0x3F) {
            self.put(0x9F34, &[0x3F, 0x00, 0x01]);
        }
        self.after_cvm()
    }

    /// Records a failed CVM. Returns true when processing ends (no "apply succeeding" bit).
    fn cvm_failed(&mut self, code_byte: u8, cond: u8) -> bool {
        self.put(0x9F34, &[code_byte, cond, 0x01]);
        self.cvm_index += 1;
        if code_byte & 0x40 == 0 {
            self.tvr[2] |= 0x80;
            true
        } else {
            false
        }
    }

    fn cvm_done(&mut self, results: [u8; 3]) -> Step {
        self.put(0x9F34, &results);
        self.after_cvm()
    }

    /// The cardholder's PIN entry result.
    pub fn pin_entered(&mut self, pin: PinInput) -> Step {
        let Phase::Pin { online } = self.phase else {
            return self.fail(FailReason::UnexpectedInput);
        };
        let rules = self.cvm_rules();
        let Some(&[code_byte, cond]) = rules.get(self.cvm_index) else {
            return self.fail(FailReason::UnexpectedInput);
        };
        self.phase = Phase::SelectApp; // leave the PIN phase; re-entered if we prompt again
        match pin {
            PinInput::Cancelled | PinInput::Bypassed => {
                self.tvr[2] |= 0x08;
                if self.cvm_failed(code_byte, cond) {
                    return self.after_cvm();
                }
                self.next_cvm()
            }
            PinInput::Digits(mut digits) if online => {
                digits.zeroize();
                self.tvr[2] |= 0x04;
                self.cvm_done([code_byte, cond, 0x00])
            }
            PinInput::Digits(mut digits) => {
                let r = self.card.verify_pin(&digits);
                digits.zeroize();
                match r {
                    PinVerify::Ok => self.cvm_done([code_byte, cond, 0x02]),
                    PinVerify::Wrong { tries_left } if tries_left > 0 => {
                        self.phase = Phase::Pin { online: false };
                        Step::PinEntry {
                            online: false,
                            tries_left: Some(tries_left),
                        }
                    }
                    PinVerify::Wrong { .. } | PinVerify::Blocked => {
                        self.tvr[2] |= 0x20;
                        if self.cvm_failed(code_byte, cond) {
                            return self.after_cvm();
                        }
                        self.next_cvm()
                    }
                    PinVerify::NotSupported => {
                        if self.cvm_failed(code_byte, cond) {
                            return self.after_cvm();
                        }
                        self.next_cvm()
                    }
                }
            }
        }
    }

    fn iac(&self, tag: u32) -> [u8; 5] {
        self.data
            .get(&tag)
            .and_then(|v| <[u8; 5]>::try_from(v.as_slice()).ok())
            .unwrap_or(match tag {
                // Book 3 §10.7: absent IAC-denial = all zeros, absent default/online = all ones.
                0x9F0E => [0; 5],
                _ => [0xFF; 5],
            })
    }

    fn matches(&self, tac: [u8; 5], iac: [u8; 5]) -> bool {
        (0..5).any(|i| (tac[i] | iac[i]) & self.tvr[i] != 0)
    }

    /// Terminal risk management, terminal action analysis, first GENERATE AC.
    fn after_cvm(&mut self) -> Step {
        self.tsi[0] |= 0x40; // cardholder verification performed
        let floor_limit = self
            .card
            .profile()
            .floor_limit
            .unwrap_or(self.config.floor_limit);
        if self.txn.amount >= floor_limit {
            self.tvr[3] |= 0x80;
        }
        // The terminal's random number for §10.6.2, 1..=99, from the unpredictable number
        // (the kernel has no randomness of its own: the UN comes in with the inputs).
        let rand = u8::try_from(u32::from_be_bytes(self.un) % 99 + 1).unwrap_or(99);
        if let Some(rs) = self.config.random_selection {
            if rs.selects(self.txn.amount, floor_limit, rand) {
                self.tvr[3] |= 0x10;
            }
        }
        self.tsi[0] |= 0x08; // terminal risk management performed
        let requested = if self.matches(self.config.tac_denial, self.iac(0x9F0E)) {
            CryptogramType::Aac
        } else if self.matches(self.config.tac_online, self.iac(0x9F0F))
            // Book 4 Annex A1: an online-only terminal (type x1) always asks for an ARQC.
            || self.config.terminal_type & 0x0F == 0x01
        {
            CryptogramType::Arqc
        } else {
            CryptogramType::Tc
        };
        self.put(0x95, &self.tvr.clone());
        let cdol1 = self.data.get(&0x8C).cloned().unwrap_or_default();
        let cdol_data = self.cdol_data(&cdol1);
        let resp = match self.card.generate_ac(true, requested, &cdol_data) {
            Ok(r) => r,
            Err(e) => return self.fail(FailReason::Card(e.sw())),
        };
        self.tsi[0] |= 0x20; // card risk management performed
        self.record_gac(&resp);
        match resp.cryptogram_type {
            CryptogramType::Arqc => {
                self.gac1 = Some(resp);
                self.phase = Phase::Online;
                Step::GoOnline {
                    data: self.output(ONLINE_TAGS),
                }
            }
            CryptogramType::Tc => {
                self.put(0x8A, b"Y1");
                self.phase = Phase::Done;
                Step::Approved {
                    data: self.output(FINAL_TAGS),
                }
            }
            CryptogramType::Aac => {
                self.put(0x8A, b"Z1");
                self.phase = Phase::Done;
                Step::Declined {
                    data: self.output(FINAL_TAGS),
                }
            }
        }
    }

    /// The data for a CDOL from the card's records and the terminal data (EMV Book 3 §5.4).
    /// A CDOL that does not walk gives no data, which the card refuses (`6A80`).
    fn cdol_data(&self, cdol: &[u8]) -> Vec<u8> {
        build_dol_vec(cdol, &self.data).unwrap_or_default()
    }

    fn record_gac(&mut self, r: &GacResponse) {
        self.put(0x9F26, &r.cryptogram);
        self.put(0x9F27, &[r.cid()]);
        self.put(0x9F36, &r.atc.to_be_bytes());
        self.put(0x9F10, &r.iad.clone());
    }

    /// The host answered the authorisation (Book 3 §10.9–10.11).
    pub fn host_response(&mut self, resp: HostResponse) -> Step {
        if self.phase != Phase::Online {
            return self.fail(FailReason::UnexpectedInput);
        }
        if let Some(iad) = resp.issuer_auth_data.as_deref() {
            if self.data.get(&0x82).is_some_and(|a| a[0] & 0x04 != 0) {
                self.tsi[0] |= 0x10;
                if self.card.external_authenticate(iad, resp.arc).is_err() {
                    self.tvr[4] |= 0x40;
                }
            }
        }
        self.run_scripts(&resp.scripts, 0x71);
        let want = match resp.decision {
            Some(true) => CryptogramType::Tc,
            Some(false) => CryptogramType::Aac,
            None if crypto::arc_is_approval(resp.arc) => CryptogramType::Tc,
            None => CryptogramType::Aac,
        };
        self.second_gac(resp.arc, want, &resp.scripts)
    }

    /// The host could not be reached: terminal action analysis with TAC/IAC default decides
    /// Y3 (approve offline) or Z3 (decline) (Book 3 §10.7).
    pub fn unable_to_go_online(&mut self) -> Step {
        if self.phase != Phase::Online {
            return self.fail(FailReason::UnexpectedInput);
        }
        let decline = self.matches(self.config.tac_default, self.iac(0x9F0D));
        let (arc, want) = if decline {
            (*b"Z3", CryptogramType::Aac)
        } else {
            (*b"Y3", CryptogramType::Tc)
        };
        self.second_gac(arc, want, &[])
    }

    /// The card left the reader.
    pub fn card_removed(&mut self) -> Step {
        self.fail(FailReason::CardRemoved)
    }

    fn run_scripts(&mut self, scripts: &[u8], template: u32) {
        for t in tlv::parse(scripts).map_while(Result::ok) {
            if t.tag().0 != template {
                continue;
            }
            let id = tlv::find(t.value(), Tag(0x9F18))
                .map(|i| i.value().to_vec())
                .unwrap_or_default();
            let mut seq = 0u8;
            let mut result = 0x20u8; // "processed successfully" (Book 4 A5)
            for c in t
                .children()
                .map_while(Result::ok)
                .filter(|c| c.tag() == Tag(0x86))
            {
                seq = seq.saturating_add(1);
                if self.card.script_command(c.value()) == ScriptCommandResult::Failed {
                    result = 0x10 | seq.min(15);
                    self.tvr[4] |= if template == 0x71 { 0x20 } else { 0x10 };
                    break;
                }
            }
            self.tsi[0] |= 0x04;
            if self.script_results.len() < 5 * 16 {
                self.script_results.push(result);
                let mut id4 = [0u8; 4];
                let n = id.len().min(4);
                id4[..n].copy_from_slice(&id[..n]);
                self.script_results.extend_from_slice(&id4);
            }
        }
    }

    fn second_gac(&mut self, arc: [u8; 2], want: CryptogramType, scripts: &[u8]) -> Step {
        self.put(0x8A, &arc);
        self.put(0x95, &self.tvr.clone());
        let cdol2 = self.data.get(&0x8D).cloned().unwrap_or_default();
        let cdol_data = self.cdol_data(&cdol2);
        let resp = match self.card.generate_ac(false, want, &cdol_data) {
            Ok(r) => r,
            Err(e) => return self.fail(FailReason::Card(e.sw())),
        };
        self.record_gac(&resp);
        self.run_scripts(scripts, 0x72);
        if !self.script_results.is_empty() {
            let sr = self.script_results.clone();
            self.put(0x9F5B, &sr);
        }
        self.put(0x95, &self.tvr.clone());
        self.phase = Phase::Done;
        match resp.cryptogram_type {
            CryptogramType::Tc => Step::Approved {
                data: self.output(FINAL_TAGS),
            },
            _ => Step::Declined {
                data: self.output(FINAL_TAGS),
            },
        }
    }

    /// The card data for `E2` (masked as the reader masks it with SRED on).
    pub fn card_data(&mut self) -> Bytes {
        self.output(CARD_TAGS)
    }

    /// The data for the post-cardholder-verification `E0`.
    pub fn post_cvm_data(&mut self) -> Bytes {
        self.output(POST_CVM_TAGS)
    }

    fn output(&mut self, tags: &[u32]) -> Bytes {
        self.put(0x9B, &self.tsi.clone());
        let mut b = TlvBuilder::new();
        for &t in tags {
            let Some(v) = self.data.get(&t) else { continue };
            if self.config.sred && (t == 0x57 || t == 0x5A) {
                // As the reader sends them with SRED on (vipa-protocol.md §5.1).
                b.primitive(tag_of(t), &mask_bcd_pan(v));
            } else {
                b.primitive(tag_of(t), v);
            }
        }
        if let Some(ff7f) = &self.ff7f {
            b.raw(ff7f);
        }
        b.freeze()
    }
}

#[cfg(test)]
mod tests;
