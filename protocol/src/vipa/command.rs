//! Host → terminal commands (vipa-protocol.md §3): typed builders and a tolerant view.
//!
//! A command payload is `CLA INS P1 P2 [Lc data] [Le]` (§1). Payloads longer than one frame are
//! chained by [`crate::frame::emit_message`]; their Lc is `FF` ("capped at 0xFF", \[S2\]).

use bytes::{BufMut, Bytes, BytesMut};

use super::error::VipaError;
use super::tags::{TAG_DFA214_SUPPRESS_DISPLAY, TAG_DFA218_PIN_ENTRY_STYLE};
use crate::emv::numeric;
use crate::tlv::{self, Tag, TlvBuilder, TlvIter};

/// The name of a command code from the §3 table, e.g. `DE D1` → `"Start Transaction"`.
pub const fn command_name(cla: u8, ins: u8) -> Option<&'static str> {
    Some(match (cla, ins) {
        (0xD0, 0x00) => "Reset Device",
        (0xD0, 0x0A) => "Extended Software Reset",
        (0xD0, 0x01) => "Config File Versions",
        (0xD0, 0x03) => "Disconnect",
        (0xD0, 0x60) => "Card Status",
        (0xD0, 0x61) => "Keyboard Status",
        (0xD0, 0x62) => "Battery Status",
        (0xD0, 0x63) => "Power Management",
        (0xD0, 0x5F) => "ICC Slot",
        (0xD0, 0xFF) => "Abort",
        (0xDD, 0x10) => "Get/Set Date Time",
        (0xD2, 0x01) => "Display",
        (0xD2, 0x02) => "Display Text",
        (0xD2, 0x03) => "Request Choice",
        (0xD2, 0x04) => "Request Numeric Entry",
        (0xD2, 0xF1) => "Request Alphanumeric Entry",
        (0xD2, 0xF3) => "Request Password",
        (0xD2, 0xE0) => "Display HTML",
        (0xD2, 0x14) => "Manual PAN Entry",
        (0xD2, 0xA1..=0xA5) => "Print",
        (0xDE, 0xD1) => "Start Transaction",
        (0xDE, 0xD2) => "Continue Transaction",
        (0xDE, 0xD5) => "Verify PIN",
        (0xDE, 0xD7) => "Atomic Verify PIN",
        (0xDE, 0xD6) => "Online PIN",
        (0xDE, 0x01) => "Get EMV Hash Values",
        (0xC0, 0x00) => "Contactless Status",
        (0xC0, 0x01) => "Contactless Open",
        (0xC0, 0x02) => "Contactless Close",
        (0xC0, 0x10) => "Contactless UI",
        (0xC0, 0xA0) => "Start Contactless Transaction",
        (0xC0, 0xA1) => "Continue Contactless Transaction",
        (0xC0, 0xC0) => "Cancel Contactless Transaction",
        (0xC4, 0x0A) => "Update Key",
        (0xC4, 0x10) => "Set Security Configuration",
        (0xC4, 0x11) => "Get Security Configuration",
        (0xC4, 0x20 | 0x21) => "MAC",
        (0xC4, 0x22) => "HMAC",
        (0xC4, 0x25) => "Encrypt Data",
        (0xC4, 0x26) => "Decrypt Data",
        (0x00, 0xA4) => "Select File",
        (0x00, 0xB0) => "Read Binary",
        (0x00, 0xD6) => "Update Binary",
        (0x00, 0xA5) => "Stream Upload",
        (0x00, 0xC0) => "Binary Status",
        (0x00, 0xC3) => "Find First",
        (0x00, 0xC4) => "Find Next",
        (0x00, 0xDA) => "Put Data",
        (0x00, 0xCA) => "Get Data",
        _ => return None,
    })
}

/// `CLA INS` of the commands this module builds.
pub mod code {
    /// Reset Device.
    pub const RESET_DEVICE: [u8; 2] = [0xD0, 0x00];
    /// Card Status.
    pub const CARD_STATUS: [u8; 2] = [0xD0, 0x60];
    /// Abort.
    pub const ABORT: [u8; 2] = [0xD0, 0xFF];
    /// Display (predefined message or custom text).
    pub const DISPLAY: [u8; 2] = [0xD2, 0x01];
    /// Display Text.
    pub const DISPLAY_TEXT: [u8; 2] = [0xD2, 0x02];
    /// Start Transaction (contact EMV).
    pub const START_TRANSACTION: [u8; 2] = [0xDE, 0xD1];
    /// Continue Transaction.
    pub const CONTINUE_TRANSACTION: [u8; 2] = [0xDE, 0xD2];
    /// Verify PIN (offline).
    pub const VERIFY_PIN: [u8; 2] = [0xDE, 0xD5];
    /// Online PIN.
    pub const ONLINE_PIN: [u8; 2] = [0xDE, 0xD6];
    /// Start contactless transaction.
    pub const START_CONTACTLESS: [u8; 2] = [0xC0, 0xA0];
    /// Continue contactless transaction.
    pub const CONTINUE_CONTACTLESS: [u8; 2] = [0xC0, 0xA1];
    /// Cancel contactless transaction.
    pub const CANCEL_CONTACTLESS: [u8; 2] = [0xC0, 0xC0];
    /// Contactless status (`C0 00`): answers a raw count byte, not TLV (§0).
    pub const CONTACTLESS_STATUS: [u8; 2] = [0xC0, 0x00];
    /// Open the contactless reader (`C0 01`).
    pub const OPEN_CONTACTLESS: [u8; 2] = [0xC0, 0x01];
}

/// Predefined Display messages (`D2 01` P1, §3).
pub mod display {
    /// Custom text (the data field).
    pub const CUSTOM: u8 = 0x00;
    /// Idle screen.
    pub const IDLE: u8 = 0x01;
    /// Processing transaction.
    pub const PROCESSING_TRANSACTION: u8 = 0x02;
    /// Authorising.
    pub const AUTHORISING: u8 = 0x03;
    /// Request rejected.
    pub const REQUEST_REJECTED: u8 = 0x04;
    /// Insert card, with beeps.
    pub const INSERT_CARD: u8 = 0x0D;
    /// Remove card, with beeps.
    pub const REMOVE_CARD: u8 = 0x0E;
    /// Processing.
    pub const PROCESSING: u8 = 0x0F;
}

/// Reset Device P2 flag bits (§3).
pub mod reset_flags {
    /// b0: return serial / PTID.
    pub const RETURN_SERIAL: u8 = 0x01;
    /// b1: clear the screen to idle.
    pub const CLEAR_SCREEN: u8 = 0x02;
    /// b2: slideshow as soon as possible.
    pub const SLIDESHOW: u8 = 0x04;
    /// b3: beep.
    pub const BEEP: u8 = 0x08;
    /// b4: delay the reset until the card is removed.
    pub const WAIT_CARD_REMOVAL: u8 = 0x10;
    /// b5: no info except the serial.
    pub const SERIAL_ONLY: u8 = 0x20;
    /// b6: return the PIN-pad configuration.
    pub const PINPAD_CONFIG: u8 = 0x40;
    /// b7: add V/OS component info.
    pub const VOS_COMPONENTS: u8 = 0x80;
}

/// P1 bits of Continue Transaction `DE D2` (§0).
pub mod continue_flags {
    /// Bit 0: stop after cardholder verification and answer `E0` (post-CVM data) before the
    /// first GENERATE AC; the host then sends `DE D2 01 00` again to get `E4`.
    pub const STOP_AFTER_CVM: u8 = 0x01;
}

/// P1 bits of Start Contactless Transaction `C0 A0` (§0: b0 payment, b1 MIFARE, b5 VAS).
pub mod ctls_kinds {
    /// Bit 0: EMV / MSD payment cards.
    pub const PAYMENT: u8 = 0x01;
    /// Bit 1: MIFARE cards.
    pub const MIFARE: u8 = 0x02;
    /// Bit 5: value-added services (wallet passes).
    pub const VAS: u8 = 0x20;
}

/// P1 bits of Card Status `D0 60` (§0).
pub mod card_status_flags {
    /// P1 bit 0: report card changes as unsolicited `E0 { 48 }`.
    pub const REPORT_CHANGES: u8 = 0x01;
    /// P1 bit 1: include the ATR.
    pub const ATR: u8 = 0x02;
    /// P1 bits 2-4: include tracks 1-3.
    pub const TRACKS: u8 = 0x1C;
    /// P1 bit 5: include `DFDF6E`.
    pub const DFDF6E: u8 = 0x20;
}

/// Whether Continue Transaction data is wrapped in `E0`. \[GAP\] §5.3 / §7 item 2: \[S3\] says
/// `E0` carries host responses, \[S5\] sends bare TLVs; a sender picks one (default `E0`, the
/// \[I\] preference), a receiver accepts both ([`CommandView::continue_data`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ContinueForm {
    /// `E0 { tlvs }`.
    #[default]
    WrappedE0,
    /// The TLVs as they are.
    Bare,
}

/// Why a command could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// An amount beyond n12 (999 999 999 999 minor units).
    #[error("amount {0} does not fit n12")]
    AmountTooLarge(u64),
    /// A date or time beyond six digits.
    #[error("date or time {0} does not fit n6")]
    BadDateTime(u32),
    /// A currency or country code beyond three digits.
    #[error("numeric code {0} does not fit n3")]
    BadNumericCode(u16),
}

/// The transaction data of Start Transaction (`E0` in `DE D1`, §3, §5.1). Money is integer
/// minor units; dates and times are decimal `YYMMDD` / `hhmmss` (BCD on the wire, not
/// calendar-checked here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionData {
    /// `9C` transaction type (00 purchase, 20 refund...).
    pub transaction_type: u8,
    /// `9F02` amount authorised, minor units.
    pub amount: u64,
    /// `9F03` amount other (cashback), minor units.
    pub amount_other: u64,
    /// `9A` date, `YYMMDD` as a decimal number (e.g. 210303).
    pub date: u32,
    /// `9F21` time, `hhmmss` as a decimal number (e.g. 195724).
    pub time: u32,
    /// `5F2A` ISO 4217 numeric currency (e.g. 840).
    pub currency_code: u16,
    /// `9F1A` ISO 3166 numeric terminal country (e.g. 840).
    pub country_code: u16,
    /// Further TLVs appended inside `E0` in order (e.g. `DFA214`, `DFA218`).
    pub extra: Vec<(Tag, Vec<u8>)>,
}

impl TransactionData {
    /// A purchase with the usual proprietary extras of the capture in §5.1:
    /// `DFA214` (suppress display) = 01 and `DFA218` (PIN entry style) = 00.
    pub fn purchase(
        amount: u64,
        currency_code: u16,
        country_code: u16,
        date: u32,
        time: u32,
    ) -> Self {
        TransactionData {
            transaction_type: 0x00,
            amount,
            amount_other: 0,
            date,
            time,
            currency_code,
            country_code,
            extra: vec![
                (TAG_DFA214_SUPPRESS_DISPLAY, vec![0x01]),
                (TAG_DFA218_PIN_ENTRY_STYLE, vec![0x00]),
            ],
        }
    }

    fn check(&self) -> Result<(), CommandError> {
        for a in [self.amount, self.amount_other] {
            if a > 999_999_999_999 {
                return Err(CommandError::AmountTooLarge(a));
            }
        }
        for d in [self.date, self.time] {
            if d > 999_999 {
                return Err(CommandError::BadDateTime(d));
            }
        }
        for c in [self.currency_code, self.country_code] {
            if c > 999 {
                return Err(CommandError::BadNumericCode(c));
            }
        }
        Ok(())
    }

    /// Writes `E0 { 9C 9F02 9F03 9A 9F21 9F1A 5F2A extra… }`, the order of the §5.1 capture.
    fn write(&self, b: &mut TlvBuilder) {
        b.constructed(Tag::VIPA_E0, |b| {
            b.primitive(Tag::TRANSACTION_TYPE, &[self.transaction_type]);
            b.primitive(Tag::AMOUNT_AUTHORISED, &bcd::<6>(self.amount));
            b.primitive(Tag::AMOUNT_OTHER, &bcd::<6>(self.amount_other));
            b.primitive(Tag::TRANSACTION_DATE, &bcd::<3>(u64::from(self.date)));
            b.primitive(Tag::TRANSACTION_TIME, &bcd::<3>(u64::from(self.time)));
            b.primitive(
                Tag::TERMINAL_COUNTRY_CODE,
                &bcd::<2>(u64::from(self.country_code)),
            );
            b.primitive(
                Tag::TRANSACTION_CURRENCY_CODE,
                &bcd::<2>(u64::from(self.currency_code)),
            );
            for (tag, value) in &self.extra {
                b.primitive(*tag, value);
            }
        });
    }

    /// Reads transaction data back from a Start Transaction data field (`E0`-wrapped or
    /// bare): the simulator's side. Unknown tags go to `extra`, in order.
    ///
    /// # Errors
    /// [`VipaError::Tlv`] for malformed TLV, [`VipaError::MissingTag`] without `9F02` or
    /// `5F2A`, [`VipaError::BadBcd`] for a non-decimal amount, date, time or code.
    pub fn parse(data: &[u8]) -> Result<Self, VipaError> {
        let inner = unwrap_e0(data)?;
        let mut t = TransactionData {
            transaction_type: 0,
            amount: 0,
            amount_other: 0,
            date: 0,
            time: 0,
            currency_code: 0,
            country_code: 0,
            extra: Vec::new(),
        };
        let (mut amount, mut currency) = (false, false);
        for item in tlv::parse(inner) {
            let item = item?;
            let v = item.value();
            let num = |max_len: usize| -> Result<u64, VipaError> {
                if v.len() > max_len {
                    return Err(VipaError::BadBcd { tag: item.tag() });
                }
                numeric::bcd_to_u64(v).map_err(|_| VipaError::BadBcd { tag: item.tag() })
            };
            match item.tag() {
                Tag::TRANSACTION_TYPE => t.transaction_type = v.first().copied().unwrap_or(0),
                Tag::AMOUNT_AUTHORISED => {
                    t.amount = num(6)?;
                    amount = true;
                }
                Tag::AMOUNT_OTHER => t.amount_other = num(6)?,
                Tag::TRANSACTION_DATE => t.date = num(3)? as u32,
                Tag::TRANSACTION_TIME => t.time = num(3)? as u32,
                Tag::TRANSACTION_CURRENCY_CODE => {
                    t.currency_code = num(2)? as u16;
                    currency = true;
                }
                Tag::TERMINAL_COUNTRY_CODE => t.country_code = num(2)? as u16,
                other => t.extra.push((other, v.to_vec())),
            }
        }
        if !amount {
            return Err(VipaError::MissingTag {
                tag: Tag::AMOUNT_AUTHORISED,
            });
        }
        if !currency {
            return Err(VipaError::MissingTag {
                tag: Tag::TRANSACTION_CURRENCY_CODE,
            });
        }
        Ok(t)
    }
}

/// `value` as `N` bytes of format `n` ([`numeric::u64_to_bcd`]). [`TransactionData::check`]
/// bounded the digits first; were there more, the low ones would be kept.
fn bcd<const N: usize>(value: u64) -> [u8; N] {
    let mut out = [0u8; N];
    let _ = numeric::u64_to_bcd(value, &mut out);
    out
}

/// The content of a single top-level `E0`, or `data` itself when it is not exactly that.
/// Tolerant of both Continue forms (\[GAP\] §7 item 2).
fn unwrap_e0(data: &[u8]) -> Result<&[u8], VipaError> {
    let mut it = tlv::parse(data);
    match (it.next(), it.next()) {
        (Some(Ok(first)), None) if first.tag() == Tag::VIPA_E0 => Ok(first.value()),
        (Some(Err(e)), _) => Err(e.into()),
        _ => Ok(data),
    }
}

/// A typed command. Build with the variants, then [`Command::to_payload`] / [`Command::emit`],
/// and frame with [`crate::frame::emit_message`].
///
/// ```
/// use emvbridge_protocol::vipa::Command;
/// let p = Command::CardStatus { p1: 0x01, p2: 0x01 }.to_payload().unwrap();
/// assert_eq!(&p[..], &[0xD0, 0x60, 0x01, 0x01]);
/// let view = emvbridge_protocol::vipa::CommandView::parse(&p).unwrap();
/// assert_eq!(view.name(), Some("Card Status"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// `D0 00`: P1 mode (00 reset VIPA, 01 reboot, 02 restart), P2 [`reset_flags`].
    ResetDevice {
        /// P1.
        mode: u8,
        /// P2 flag bits.
        flags: u8,
    },
    /// `D0 60`: `01 01` enables card detection (\[S5\]); bit meanings \[GAP\].
    CardStatus {
        /// P1.
        p1: u8,
        /// P2.
        p2: u8,
    },
    /// `D0 FF 00 00`.
    Abort,
    /// `D2 01`: a predefined message ([`display`]) or custom ASCII text (P1 00).
    Display {
        /// P1 message index.
        message: u8,
        /// P2 01: backlight on.
        backlight: bool,
        /// Custom text (the data field).
        text: Option<&'a str>,
    },
    /// `D2 02 00 01` with `E0 { DF8104 text }` (\[S2\]/\[S5\]).
    DisplayText {
        /// The text.
        text: &'a str,
    },
    /// `DE D1 00 00` with `E0 { transaction data }` (§5.1).
    StartTransaction(&'a TransactionData),
    /// `DE D2 P1 00` with the host's TLVs, `E0`-wrapped or bare. P1 bit 0
    /// ([`continue_flags::STOP_AFTER_CVM`]) asks the reader to stop again after cardholder
    /// verification and answer `E0` (§0, the UX301 log).
    ContinueTransaction {
        /// P1 flags ([`continue_flags`]).
        p1: u8,
        /// Encoded TLVs.
        tlvs: &'a [u8],
        /// Wrapping (\[GAP\]).
        form: ContinueForm,
    },
    /// `DE D5 P1 P2` with the given data; `DE D5 FF 01` with no data bypasses the PIN (§0).
    VerifyPin {
        /// P1 (`FF` with P2 `01`: PIN bypass).
        p1: u8,
        /// P2.
        p2: u8,
        /// Data field.
        data: &'a [u8],
    },
    /// `DE D6 host-id key-slot` with `E0 { DFED0D flags }` (§0); the reader answers the PIN
    /// block (`DFED6C`) and its KSN (`DFED03`), or `DFDF30` when cancelled.
    OnlinePin {
        /// P1: the host id the PIN key belongs to.
        host_id: u8,
        /// P2: the key slot.
        key_slot: u8,
        /// Data field.
        data: &'a [u8],
    },
    /// `C0 A0 P1 00` with `E0 { transaction data }` (\[I\]: same template as `DE D1`). P1 is a
    /// bit mask of what to accept ([`ctls_kinds`]); `00` arms nothing (§0).
    StartContactless {
        /// P1 ([`ctls_kinds`]).
        kinds: u8,
        /// The transaction.
        data: &'a TransactionData,
    },
    /// `C0 A1 00 00` with the host's TLVs.
    ContinueContactless {
        /// Encoded TLVs.
        tlvs: &'a [u8],
        /// Wrapping (\[GAP\]).
        form: ContinueForm,
    },
    /// `C0 C0 00 00`.
    CancelContactless,
    /// Any other command.
    Raw {
        /// CLA.
        cla: u8,
        /// INS.
        ins: u8,
        /// P1.
        p1: u8,
        /// P2.
        p2: u8,
        /// Data field (may be empty).
        data: &'a [u8],
        /// Le.
        le: Option<u8>,
    },
}

impl Command<'_> {
    /// `CLA INS P1 P2`.
    pub fn header(&self) -> [u8; 4] {
        let c = |code: [u8; 2], p1: u8, p2: u8| [code[0], code[1], p1, p2];
        match *self {
            Command::ResetDevice { mode, flags } => c(code::RESET_DEVICE, mode, flags),
            Command::CardStatus { p1, p2 } => c(code::CARD_STATUS, p1, p2),
            Command::Abort => c(code::ABORT, 0, 0),
            Command::Display {
                message, backlight, ..
            } => c(code::DISPLAY, message, u8::from(backlight)),
            Command::DisplayText { .. } => c(code::DISPLAY_TEXT, 0x00, 0x01),
            Command::StartTransaction(_) => c(code::START_TRANSACTION, 0, 0),
            Command::ContinueTransaction { p1, .. } => c(code::CONTINUE_TRANSACTION, p1, 0),
            Command::VerifyPin { p1, p2, .. } => c(code::VERIFY_PIN, p1, p2),
            Command::OnlinePin {
                host_id, key_slot, ..
            } => c(code::ONLINE_PIN, host_id, key_slot),
            Command::StartContactless { kinds, .. } => c(code::START_CONTACTLESS, kinds, 0),
            Command::ContinueContactless { .. } => c(code::CONTINUE_CONTACTLESS, 0, 0),
            Command::CancelContactless => c(code::CANCEL_CONTACTLESS, 0, 0),
            Command::Raw {
                cla, ins, p1, p2, ..
            } => [cla, ins, p1, p2],
        }
    }

    /// The §3 name of the command, if known.
    pub fn name(&self) -> Option<&'static str> {
        let h = self.header();
        command_name(h[0], h[1])
    }

    /// Appends the command payload (`CLA INS P1 P2 [Lc data] [Le]`) to `out`.
    ///
    /// # Errors
    /// [`CommandError`] for transaction data that does not fit its EMV format.
    pub fn emit(&self, out: &mut BytesMut) -> Result<(), CommandError> {
        if let Command::StartTransaction(t) | Command::StartContactless { data: t, .. } = self {
            t.check()?;
        }
        let start = out.len();
        out.put_slice(&self.header());
        let lc_at = out.len();
        out.put_u8(0);
        let mut b = TlvBuilder::from_buf(core::mem::take(out));
        let mut le = None;
        match *self {
            Command::ResetDevice { .. }
            | Command::CardStatus { .. }
            | Command::Abort
            | Command::CancelContactless => {}
            Command::Display { text, .. } => {
                b.raw(text.unwrap_or_default().as_bytes());
            }
            Command::DisplayText { text } => {
                b.constructed(Tag::VIPA_E0, |b| {
                    b.primitive(Tag::VIPA_DISPLAY_TEXT, text.as_bytes());
                });
            }
            Command::StartTransaction(t) | Command::StartContactless { data: t, .. } => {
                t.write(&mut b)
            }
            Command::ContinueTransaction { tlvs, form, .. }
            | Command::ContinueContactless { tlvs, form } => match form {
                ContinueForm::WrappedE0 => {
                    b.constructed(Tag::VIPA_E0, |b| {
                        b.raw(tlvs);
                    });
                }
                ContinueForm::Bare => {
                    b.raw(tlvs);
                }
            },
            Command::VerifyPin { data, .. } | Command::OnlinePin { data, .. } => {
                b.raw(data);
            }
            Command::Raw { data, le: l, .. } => {
                b.raw(data);
                le = l;
            }
        }
        *out = b.into_inner();
        let data_len = out.len() - lc_at - 1;
        if data_len == 0 {
            out.truncate(lc_at);
        } else {
            // §1: for data beyond one byte of Lc (a chained command), Lc is capped at FF.
            out[lc_at] = data_len.min(0xFF) as u8;
        }
        if let Some(le) = le {
            out.put_u8(le);
        }
        debug_assert!(out.len() >= start + 4);
        Ok(())
    }

    /// The command payload as `Bytes`.
    ///
    /// # Errors
    /// As [`Command::emit`].
    pub fn to_payload(&self) -> Result<Bytes, CommandError> {
        let mut out = BytesMut::new();
        self.emit(&mut out)?;
        Ok(out.freeze())
    }
}

/// A view of a received command payload (the simulator's side), tolerant of Lc quirks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandView<'a> {
    /// CLA.
    pub cla: u8,
    /// INS.
    pub ins: u8,
    /// P1.
    pub p1: u8,
    /// P2.
    pub p2: u8,
    /// The Lc byte, if any.
    pub lc: Option<u8>,
    /// The data field.
    pub data: &'a [u8],
    /// Le, if present.
    pub le: Option<u8>,
}

impl<'a> CommandView<'a> {
    /// Splits a command payload. After the header: nothing (no data); one byte (Le only);
    /// otherwise Lc, then `Lc` data bytes and an optional Le. When Lc is `FF` (chained, \[S2\])
    /// or disagrees with the length, the data is everything after Lc (\[I\]: Lc is not a
    /// reliable length, §1; the chain's reassembled length is).
    ///
    /// # Errors
    /// [`VipaError::CommandTooShort`] for fewer than 4 bytes.
    pub fn parse(payload: &'a [u8]) -> Result<Self, VipaError> {
        let (&[cla, ins, p1, p2], rest) = payload
            .split_first_chunk::<4>()
            .ok_or(VipaError::CommandTooShort { len: payload.len() })?;
        let mut v = CommandView {
            cla,
            ins,
            p1,
            p2,
            lc: None,
            data: &[],
            le: None,
        };
        match rest {
            [] => {}
            [le] => v.le = Some(*le),
            [lc, tail @ ..] => {
                v.lc = Some(*lc);
                let n = usize::from(*lc);
                if *lc != 0xFF && tail.len() == n + 1 {
                    let (data, le) = tail.split_at(n);
                    v.data = data;
                    v.le = le.first().copied();
                } else {
                    v.data = tail;
                }
            }
        }
        Ok(v)
    }

    /// `[CLA, INS]`.
    pub fn code(&self) -> [u8; 2] {
        [self.cla, self.ins]
    }

    /// The §3 name, if known.
    pub fn name(&self) -> Option<&'static str> {
        command_name(self.cla, self.ins)
    }

    /// The data field walked as TLVs.
    pub fn tlvs(&self) -> TlvIter<'a> {
        tlv::parse(self.data)
    }

    /// The TLVs of a Continue Transaction, whether wrapped in `E0` or bare (\[GAP\] §7 item 2).
    ///
    /// # Errors
    /// [`VipaError::Tlv`] if the data does not start with a well-formed TLV.
    pub fn continue_data(&self) -> Result<&'a [u8], VipaError> {
        unwrap_e0(self.data)
    }

    /// The text of Display Text (`E0 { DF8104 }`) or of a custom Display (raw data), lossy.
    pub fn display_text(&self) -> Option<String> {
        match self.code() {
            code::DISPLAY_TEXT => tlv::find(self.data, Tag::VIPA_DISPLAY_TEXT)
                .map(|t| String::from_utf8_lossy(t.value()).into_owned()),
            code::DISPLAY if !self.data.is_empty() => {
                Some(String::from_utf8_lossy(self.data).into_owned())
            }
            _ => None,
        }
    }
}
