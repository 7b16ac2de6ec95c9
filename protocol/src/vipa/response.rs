//! Terminal → host messages: `[data] SW1 SW2` (§2) and views over the templates of §4.
//!
//! Views borrow the message payload and never reject unknown tags: anything not named here is
//! still reachable through [`Template::tlv`] / [`Response::tlvs`].

use core::fmt;

use super::error::VipaError;
use super::status::StatusWord;
use super::tags::{
    TAG_DF836F_ENCRYPTED_BLOCK, TAG_DF837E_KCV, TAG_DF837F_TOKEN, TAG_DFCC45_PIN_ENTRY_STATUS,
    TAG_DFDB0F_SRED_STATUS,
};
use crate::tlv::{self, Tag, Tlv, TlvIter};

/// A response or unsolicited message: data bytes and the trailing status word.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Response<'a> {
    data: &'a [u8],
    sw: StatusWord,
}

impl fmt::Debug for Response<'_> {
    /// The data may hold cardholder data: only its length is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("sw", &self.sw)
            .field("data_len", &self.data.len())
            .finish()
    }
}

impl<'a> Response<'a> {
    /// Splits a (reassembled) message payload into data and SW1 SW2 (the last two bytes, §2).
    ///
    /// # Errors
    /// [`VipaError::ResponseTooShort`] for fewer than 2 bytes.
    pub fn parse(payload: &'a [u8]) -> Result<Self, VipaError> {
        let (data, &[sw1, sw2]) = payload
            .split_last_chunk::<2>()
            .ok_or(VipaError::ResponseTooShort { len: payload.len() })?;
        Ok(Response {
            data,
            sw: StatusWord::from_bytes(sw1, sw2),
        })
    }

    /// The status word.
    pub fn sw(&self) -> StatusWord {
        self.sw
    }

    /// The data before the status word (BER-TLV, possibly empty).
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The top-level data objects.
    pub fn tlvs(&self) -> TlvIter<'a> {
        tlv::parse(self.data)
    }

    /// Depth-first search of the data for `tag`.
    pub fn find(&self, tag: Tag) -> Option<Tlv<'a>> {
        tlv::find(self.data, tag)
    }

    /// The first top-level constructed object (the template: `E2`, `E6`, `EE`...), skipping
    /// primitive objects such as the Reset response's leading `9F1C`.
    pub fn template(&self) -> Option<Template<'a>> {
        self.templates().next()
    }

    /// Every well-formed top-level constructed object, in order (e.g. the `EE`s and `EF`s).
    pub fn templates(&self) -> impl Iterator<Item = Template<'a>> + 'a {
        self.tlvs()
            .map_while(Result::ok)
            .filter(|t| t.is_constructed())
            .map(Template::new)
    }

    /// The SRED container (`FF7F`) anywhere in the data.
    pub fn sred(&self) -> Option<Sred<'a>> {
        self.find(Tag::VIPA_SRED).map(Sred)
    }

    /// The token container (`FF7C`) anywhere in the data.
    pub fn token(&self) -> Option<Token<'a>> {
        self.find(Tag::VIPA_TOKEN).map(Token)
    }
}

/// What a template tag means (§4.1). Unknown templates are kept as `Unknown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TemplateKind {
    /// `E0`: data objects / host response / unsolicited card status.
    Data,
    /// `E1`: data needed.
    DataNeeded,
    /// `E2`: decision required.
    DecisionRequired,
    /// `E3`: transaction approved (final).
    Approved,
    /// `E4`: online action required (ARQC).
    OnlineRequired,
    /// `E5`: transaction declined (final).
    Declined,
    /// `E6`: status / wait notification (also power-on).
    Status,
    /// `E7`: contactless MSD result.
    ContactlessMsd,
    /// `E8`: contactless non-EMV card result.
    ContactlessNonEmv,
    /// `EE`: device info.
    DeviceInfo,
    /// `EF`: software component.
    SoftwareComponent,
    /// `F0`: seen in the Reset response, meaning \[GAP\].
    F0,
    /// Anything else.
    Unknown(Tag),
}

impl TemplateKind {
    /// The kind of a tag.
    pub const fn of(tag: Tag) -> TemplateKind {
        match tag.0 {
            0xE0 => TemplateKind::Data,
            0xE1 => TemplateKind::DataNeeded,
            0xE2 => TemplateKind::DecisionRequired,
            0xE3 => TemplateKind::Approved,
            0xE4 => TemplateKind::OnlineRequired,
            0xE5 => TemplateKind::Declined,
            0xE6 => TemplateKind::Status,
            0xE7 => TemplateKind::ContactlessMsd,
            0xE8 => TemplateKind::ContactlessNonEmv,
            0xEE => TemplateKind::DeviceInfo,
            0xEF => TemplateKind::SoftwareComponent,
            0xF0 => TemplateKind::F0,
            _ => TemplateKind::Unknown(tag),
        }
    }
}

/// A view of one template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Template<'a> {
    tlv: Tlv<'a>,
}

impl<'a> Template<'a> {
    /// Wraps a parsed object.
    pub fn new(tlv: Tlv<'a>) -> Self {
        Template { tlv }
    }

    /// The template's meaning.
    pub fn kind(&self) -> TemplateKind {
        TemplateKind::of(self.tlv.tag())
    }

    /// The underlying object (tag, raw bytes, children).
    pub fn tlv(&self) -> Tlv<'a> {
        self.tlv
    }

    /// The direct children.
    pub fn children(&self) -> TlvIter<'a> {
        self.tlv.children()
    }

    /// Depth-first search inside the template.
    pub fn find(&self, tag: Tag) -> Option<Tlv<'a>> {
        self.tlv.find(tag)
    }

    /// The value of `tag` inside the template.
    pub fn value(&self, tag: Tag) -> Option<&'a [u8]> {
        self.find(tag).map(|t| t.value())
    }

    /// The SRED container inside.
    pub fn sred(&self) -> Option<Sred<'a>> {
        self.find(Tag::VIPA_SRED).map(Sred)
    }

    /// The token container inside.
    pub fn token(&self) -> Option<Token<'a>> {
        self.find(Tag::VIPA_TOKEN).map(Token)
    }

    /// The `E6` status view, if this is an `E6`.
    pub fn status(&self) -> Option<StatusNotification<'a>> {
        (self.kind() == TemplateKind::Status).then_some(StatusNotification(*self))
    }

    /// The card event view, if this is an `E0` carrying tag `48` (unsolicited card status).
    pub fn card_event(&self) -> Option<CardEvent<'a>> {
        (self.kind() == TemplateKind::Data && self.find(Tag::VIPA_CARD_STATUS).is_some())
            .then_some(CardEvent(*self))
    }
}

/// SRED (P2PE) container `FF7F` (§4.4).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sred<'a>(Tlv<'a>);

impl<'a> Sred<'a> {
    /// The container itself.
    pub fn tlv(&self) -> Tlv<'a> {
        self.0
    }
    fn get(&self, tag: Tag) -> Option<&'a [u8]> {
        self.0.find(tag).map(|t| t.value())
    }
    /// `DFDF10` ciphertext.
    pub fn data(&self) -> Option<&'a [u8]> {
        self.get(Tag::VIPA_SRED_DATA)
    }
    /// `DFDF11` KSN (10 bytes).
    pub fn ksn(&self) -> Option<&'a [u8]> {
        self.get(Tag::VIPA_SRED_KSN)
    }
    /// `DFDF12` IV (8 bytes).
    pub fn iv(&self) -> Option<&'a [u8]> {
        self.get(Tag::VIPA_SRED_IV)
    }
    /// `DFDB0F` encryption status.
    pub fn status(&self) -> Option<&'a [u8]> {
        self.get(TAG_DFDB0F_SRED_STATUS)
    }
}

impl fmt::Debug for Sred<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sred")
            .field("data_len", &self.data().map(<[u8]>::len))
            .field("ksn", &self.ksn().map(hex::encode_upper))
            .field("status", &self.status().map(hex::encode_upper))
            .finish()
    }
}

/// Token container `FF7C` (§4.4).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Token<'a>(Tlv<'a>);

impl<'a> Token<'a> {
    /// The container itself.
    pub fn tlv(&self) -> Tlv<'a> {
        self.0
    }
    /// `DF837F` token (32 bytes).
    pub fn token(&self) -> Option<&'a [u8]> {
        self.0.find(TAG_DF837F_TOKEN).map(|t| t.value())
    }
    /// `DF837E` key check value (3 bytes).
    pub fn kcv(&self) -> Option<&'a [u8]> {
        self.0.find(TAG_DF837E_KCV).map(|t| t.value())
    }
    /// `DF836F` encrypted block.
    pub fn encrypted_block(&self) -> Option<&'a [u8]> {
        self.0.find(TAG_DF836F_ENCRYPTED_BLOCK).map(|t| t.value())
    }
}

impl fmt::Debug for Token<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("token_len", &self.token().map(<[u8]>::len))
            .field("kcv", &self.kcv().map(hex::encode_upper))
            .finish()
    }
}

/// `C3` transaction status in `E6` (§4.2). Unknown codes are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct TransactionStatus(pub u8);

impl TransactionStatus {
    /// `02`: PIN entry hand-off.
    pub const PIN_ENTRY_HANDOFF: TransactionStatus = TransactionStatus(0x02);
    /// `0C`: PIN entry requested.
    pub const PIN_ENTRY_REQUESTED: TransactionStatus = TransactionStatus(0x0C);
    /// `0E`: PIN-bypass confirmation; the host must answer it to allow the 2nd GEN AC.
    pub const PIN_BYPASS_CONFIRMATION: TransactionStatus = TransactionStatus(0x0E);

    /// The §4.2 label, if known.
    pub const fn name(self) -> Option<&'static str> {
        match self.0 {
            0x02 => Some("pin entry hand-off"),
            0x0C => Some("pin entry requested"),
            0x0E => Some("pin bypass confirmation"),
            _ => None,
        }
    }
}

/// The `E6` status / wait notification (§4.2), including the power-on notification (§1.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusNotification<'a>(Template<'a>);

impl<'a> StatusNotification<'a> {
    /// The template.
    pub fn template(&self) -> Template<'a> {
        self.0
    }
    /// `C3` transaction status (first byte).
    pub fn transaction_status(&self) -> Option<TransactionStatus> {
        self.0
            .value(Tag::VIPA_TRANSACTION_STATUS)
            .and_then(|v| v.first())
            .map(|b| TransactionStatus(*b))
    }
    /// `C4` status message (ASCII).
    pub fn message(&self) -> Option<&'a [u8]> {
        self.0.value(Tag::VIPA_STATUS_MESSAGE)
    }
    /// `C4` as text, lossy.
    pub fn message_text(&self) -> Option<String> {
        self.message()
            .map(|m| String::from_utf8_lossy(m).into_owned())
    }
    /// `C5` PIN digit count.
    pub fn pin_digits(&self) -> Option<u8> {
        self.0
            .value(Tag::VIPA_PIN_DIGIT_COUNT)
            .and_then(|v| v.first().copied())
    }
    /// `DFCC45` PIN entry status (raw).
    pub fn pin_entry_status(&self) -> Option<&'a [u8]> {
        self.0.value(TAG_DFCC45_PIN_ENTRY_STATUS)
    }
    /// `9F1C` terminal id (in the power-on notification).
    pub fn terminal_id(&self) -> Option<&'a [u8]> {
        self.0.value(Tag::TERMINAL_IDENTIFICATION)
    }
}

/// Tag `48`, two bytes. Bit meanings are \[GAP\] for VIPA; the helpers follow the Miura MPI
/// decoding \[S6\] (byte 1 insert status, byte 2 swipe status) and are best effort \[I\].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct CardStatus(pub [u8; 2]);

impl CardStatus {
    /// Byte 1 bit 0: a card is in the slot (§0: `03` inserted, `00` none; the UX301 log shows
    /// `02` before `03`, read as "not yet").
    pub const fn card_present(self) -> bool {
        self.0[0] & 0x01 != 0
    }
    /// Byte 1 bit 1: the inserted card has a chip (EMV compatible) \[I\].
    pub const fn emv_compatible(self) -> bool {
        self.0[0] & 0x02 != 0
    }
    /// Byte 2 bit 0: swipe data available \[I\].
    pub const fn msr_data_available(self) -> bool {
        self.0[1] & 0x01 != 0
    }
    /// Byte 2 beyond `01`: a swipe with track data (§0: byte 2 `00` none, `01` no tracks,
    /// else tracks present; the logged swipe event carries `00 05`).
    pub const fn swiped(self) -> bool {
        self.0[1] > 0x01
    }
    /// Byte 2 bits 1..3: track 1/2/3 data available \[I\].
    pub const fn track_available(self, track: u8) -> bool {
        matches!(track, 1..=3) && self.0[1] & (1 << track) != 0
    }
}

/// An unsolicited card event: `E0 { 48 status, … }` (§3 Card Status, §4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CardEvent<'a>(Template<'a>);

impl<'a> CardEvent<'a> {
    /// The template (other tags, e.g. masked track data, are reachable here).
    pub fn template(&self) -> Template<'a> {
        self.0
    }
    /// The raw value of tag `48`.
    pub fn raw_status(&self) -> Option<&'a [u8]> {
        self.0.value(Tag::VIPA_CARD_STATUS)
    }
    /// Tag `48` when it has the expected two bytes.
    pub fn status(&self) -> Option<CardStatus> {
        self.raw_status()
            .and_then(|v| <[u8; 2]>::try_from(v).ok())
            .map(CardStatus)
    }
}
