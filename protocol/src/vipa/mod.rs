//! VIPA commands, status words and response templates (vipa-protocol.md §2–§4).
//!
//! Everything here works on message payloads (the reassembled INF of [`crate::frame`]):
//! - [`command`]: typed [`Command`] builders (`CLA INS P1 P2 [Lc data] [Le]`) and a tolerant
//!   [`CommandView`] for the simulator, plus [`command_name`] for every §3 code;
//! - [`StatusWord`] with the §2 table;
//! - [`Response`] (data + SW) and template views ([`Template`], [`Sred`], [`Token`],
//!   [`StatusNotification`], [`CardEvent`]);
//! - [`DeviceInfo`] from a Reset Device response ([`parse_reset_response`]).
//!
//! Unknown codes, tags and templates are preserved, never rejected.

pub mod command;
mod device_info;
mod response;
mod status;

pub use command::{
    command_name, Command, CommandError, CommandView, ContinueForm, TransactionData,
};
pub use device_info::{
    parse_reset_response, Device, DeviceInfo, LibVersion, RawField, ResetResponseError,
    SoftwareComponent,
};
pub use response::{
    CardEvent, CardStatus, Response, Sred, StatusNotification, Template, TemplateKind, Token,
    TransactionStatus,
};
pub use status::StatusWord;

use crate::tlv::{Tag, TlvError};

/// `DFA214` "suppress display" (§4.4; sent as 01 in the §5.1 capture).
pub const TAG_DFA214_SUPPRESS_DISPLAY: Tag = Tag(0xDFA214);
/// `DFA218` PIN entry style (§4.4; sent as 00 in the §5.1 capture).
pub const TAG_DFA218_PIN_ENTRY_STYLE: Tag = Tag(0xDFA218);
/// `DFDB0F` SRED encryption status.
pub const TAG_DFDB0F_SRED_STATUS: Tag = Tag(0xDFDB0F);
/// `DFDB0E`: next to `DFDB0F`, meaning \[GAP\].
pub const TAG_DFDB0E: Tag = Tag(0xDFDB0E);
/// `DF837F` token, inside `FF7C`.
pub const TAG_DF837F_TOKEN: Tag = Tag(0xDF837F);
/// `DF837E` token key check value, inside `FF7C`.
pub const TAG_DF837E_KCV: Tag = Tag(0xDF837E);
/// `DF836F` encrypted block, inside `FF7C`.
pub const TAG_DF836F_ENCRYPTED_BLOCK: Tag = Tag(0xDF836F);
/// `DFCC45` PIN entry status, in `E6`.
pub const TAG_DFCC45_PIN_ENTRY_STATUS: Tag = Tag(0xDFCC45);
/// `DFED0D` Reset Device extended flags (also online-PIN-block KSN, §4.4).
pub const TAG_DFED0D: Tag = Tag(0xDFED0D);

/// Why a VIPA payload could not be viewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VipaError {
    /// A response needs at least SW1 SW2.
    #[error("response of {len} bytes has no status word")]
    ResponseTooShort {
        /// Payload length.
        len: usize,
    },
    /// A command needs at least CLA INS P1 P2.
    #[error("command of {len} bytes has no header")]
    CommandTooShort {
        /// Payload length.
        len: usize,
    },
    /// Malformed TLV data.
    #[error(transparent)]
    Tlv(#[from] TlvError),
    /// A required tag is absent.
    #[error("missing tag {tag}")]
    MissingTag {
        /// The tag.
        tag: Tag,
    },
    /// A numeric (BCD) value with a non-decimal nibble or too many digits.
    #[error("bad bcd value in tag {tag}")]
    BadBcd {
        /// The tag.
        tag: Tag,
    },
}

#[cfg(test)]
mod tests;
