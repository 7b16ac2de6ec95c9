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
mod error;
mod response;
mod status;
mod tags;

pub use command::{
    command_name, Command, CommandError, CommandView, ContinueForm, TransactionData,
};
pub use device_info::{
    parse_reset_response, Device, DeviceInfo, LibVersion, RawField, ResetResponseError,
    SoftwareComponent,
};
pub use error::VipaError;
pub use response::{
    CardEvent, CardStatus, Response, Sred, StatusNotification, Template, TemplateKind, Token,
    TransactionStatus,
};
pub use status::StatusWord;
pub use tags::*;

#[cfg(test)]
mod tests;
