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
/// `C0` in a Continue Transaction: the host's decision for the card, `01` ask for a TC, `00` for
/// an AAC (§0, VIPA 6.8.2.11 manual as quoted by Verifone's harness). Left out when the
/// acquirer could not be reached: the reader then runs its default action analysis.
pub const TAG_C0_HOST_DECISION: Tag = Tag(0xC0);
/// `C0` value: request a TC (approve).
pub const HOST_DECISION_TC: u8 = 0x01;
/// `C0` value: request an AAC (decline).
pub const HOST_DECISION_AAC: u8 = 0x00;
/// `C2` in a Continue Transaction. Sent by Verifone's harness in the amount confirmation and the
/// final Continue (value `"65"` in the UX301 log); meaning \[GAP\], sent as logged.
pub const TAG_C2: Tag = Tag(0xC2);
/// The `C2` value of the UX301 log.
pub const C2_AS_LOGGED: &[u8] = b"65";
/// `DFCC79` in the amount confirmation after `E2` (`01` in the UX301 log); meaning \[GAP\],
/// sent as logged.
pub const TAG_DFCC79: Tag = Tag(0xDFCC79);
/// `DFDF30`: the unsolicited status that follows Cancel Contactless (`C0 C0`) and ends a
/// cancelled online PIN entry (§0).
pub const TAG_DFDF30: Tag = Tag(0xDFDF30);
/// `DFED03`: the KSN of an online PIN block (answer to `DE D6`, §0).
pub const TAG_DFED03_PIN_KSN: Tag = Tag(0xDFED03);
