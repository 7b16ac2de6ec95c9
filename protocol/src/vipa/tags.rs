//! VIPA's own tags that the templates and commands use (vipa-protocol.md §4.4).

use crate::tlv::Tag;

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
