//! Device information from a Reset Device response (vipa-protocol.md §3 `D0 00`, §4.1
//! `EE`/`EF`): [`parse_reset_response`] on the whole answer, [`DeviceInfo::parse`] on its data.

use super::error::VipaError;
use super::response::Response;
use super::status::StatusWord;
use crate::tlv::{self, Tag, Tlv, TlvError};

/// Why a Reset Device answer gave no [`DeviceInfo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResetResponseError {
    /// The reader answered with an error status word (§2), e.g. `9F 24`.
    #[error("reader answered {0}")]
    Status(StatusWord),
    /// Not a response (no SW1 SW2), or malformed TLV data.
    #[error("malformed response: {0}")]
    Malformed(#[from] VipaError),
}

/// Parses the answer to Reset Device: the reassembled message payload, `data SW1 SW2`, however
/// many chained frames it came in (the UX300 capture `reset-response-ux300-chained.hex` in
/// `tests/data/vipa/` takes three). The status word must be a success (`90 00` / `90 15`).
///
/// # Errors
/// [`ResetResponseError::Malformed`] without a status word or for malformed TLV data;
/// [`ResetResponseError::Status`] for any other status word.
pub fn parse_reset_response(payload: &[u8]) -> Result<DeviceInfo, ResetResponseError> {
    let r = Response::parse(payload)?;
    if !r.sw().is_success() {
        return Err(ResetResponseError::Status(r.sw()));
    }
    DeviceInfo::parse(r.data()).map_err(|e| ResetResponseError::Malformed(VipaError::Tlv(e)))
}

/// A data object kept as hex, for tags this module does not name.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RawField {
    /// The tag, e.g. `"DF8101"`.
    pub tag: String,
    /// The value in upper-case hex.
    pub value: String,
}

impl RawField {
    fn of(t: &Tlv<'_>) -> Self {
        RawField {
            tag: t.tag().to_string(),
            value: hex::encode_upper(t.value()),
        }
    }
}

/// A library name / version pair (`DF8106` followed by `DF8107`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LibVersion {
    /// `DF8106`.
    pub name: String,
    /// `DF8107` (empty if the pair is incomplete).
    pub version: String,
}

/// One `EE` block: a device (the reader, or an attached PIN pad).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Device {
    /// `9F1E` serial number.
    pub serial: Option<String>,
    /// `DF0D` model.
    pub model: Option<String>,
    /// `DF7F` version.
    pub version: Option<String>,
    /// `DF8106`/`DF8107` pairs.
    pub libs: Vec<LibVersion>,
    /// Everything else (`DF8101` tamper, `DF8102` ARS, `DF8108`, `DF8109`, `DFEC1F`...), raw.
    pub other: Vec<RawField>,
}

/// One `EF` block: a software component.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SoftwareComponent {
    /// `DF0D` name.
    pub name: Option<String>,
    /// `DF7F` version.
    pub version: Option<String>,
    /// `DF8106`/`DF8107` pairs.
    pub libs: Vec<LibVersion>,
    /// Everything else (`DFDB08`, `DFDB09` whitelist hash...), raw.
    pub other: Vec<RawField>,
}

/// What a Reset Device response says about the terminal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct DeviceInfo {
    /// Top-level `9F1C` terminal id (PTID).
    pub terminal_id: Option<String>,
    /// One entry per `EE`.
    pub devices: Vec<Device>,
    /// One entry per `EF`.
    pub components: Vec<SoftwareComponent>,
    /// Other top-level objects (`DFA242`, `F0`...), raw.
    pub other: Vec<RawField>,
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

/// Collects `DF8106`/`DF8107` pairs; a `DF8107` without a preceding name gets an empty name.
fn push_lib(libs: &mut Vec<LibVersion>, t: &Tlv<'_>) {
    if t.tag() == Tag::VIPA_LIB_NAME {
        libs.push(LibVersion {
            name: text(t.value()),
            version: String::new(),
        });
    } else {
        match libs.last_mut() {
            Some(last) if last.version.is_empty() => last.version = text(t.value()),
            _ => libs.push(LibVersion {
                name: String::new(),
                version: text(t.value()),
            }),
        }
    }
}

impl DeviceInfo {
    /// Parses the data of a Reset Device response (the payload without SW1 SW2, e.g.
    /// [`super::Response::data`]). Works on the reassembled message, whatever the number of
    /// frames it arrived in.
    ///
    /// # Errors
    /// [`TlvError`] if the top level or an `EE`/`EF` block is malformed.
    pub fn parse(data: &[u8]) -> Result<DeviceInfo, TlvError> {
        let mut info = DeviceInfo::default();
        for t in tlv::parse(data) {
            let t = t?;
            match t.tag() {
                Tag::TERMINAL_IDENTIFICATION => info.terminal_id = Some(text(t.value())),
                Tag::VIPA_DEVICE_INFO => {
                    let mut d = Device::default();
                    for c in t.children() {
                        let c = c?;
                        match c.tag() {
                            Tag::IFD_SERIAL_NUMBER => d.serial = Some(text(c.value())),
                            Tag::VIPA_NAME => d.model = Some(text(c.value())),
                            Tag::VIPA_VERSION => d.version = Some(text(c.value())),
                            Tag::VIPA_LIB_NAME | Tag::VIPA_LIB_VERSION => push_lib(&mut d.libs, &c),
                            _ => d.other.push(RawField::of(&c)),
                        }
                    }
                    info.devices.push(d);
                }
                Tag::VIPA_SOFTWARE_COMPONENT => {
                    let mut s = SoftwareComponent::default();
                    for c in t.children() {
                        let c = c?;
                        match c.tag() {
                            Tag::VIPA_NAME => s.name = Some(text(c.value())),
                            Tag::VIPA_VERSION => s.version = Some(text(c.value())),
                            Tag::VIPA_LIB_NAME | Tag::VIPA_LIB_VERSION => push_lib(&mut s.libs, &c),
                            _ => s.other.push(RawField::of(&c)),
                        }
                    }
                    info.components.push(s);
                }
                _ => info.other.push(RawField::of(&t)),
            }
        }
        Ok(info)
    }

    /// The version of the component named `name` (e.g. `"VIPA"` among the libs of `MAPP`, or
    /// a component `DF0D`), searching component names first, then library names.
    pub fn component_version(&self, name: &str) -> Option<&str> {
        self.components
            .iter()
            .find(|c| c.name.as_deref() == Some(name))
            .and_then(|c| c.version.as_deref())
            .or_else(|| {
                self.components
                    .iter()
                    .flat_map(|c| &c.libs)
                    .find(|l| l.name == name)
                    .map(|l| l.version.as_str())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Deframer, Inbound};
    use proptest::prelude::*;

    const RESET_CHAINED: &str =
        include_str!("../../../tests/data/vipa/reset-response-ux300-chained.hex");

    /// The capture's frames, reassembled by the deframer into one message payload.
    fn captured_payload() -> Vec<u8> {
        let frames: Vec<Vec<u8>> = RESET_CHAINED
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| hex::decode(l.trim()).unwrap())
            .collect();
        assert_eq!(frames.len(), 3);
        let mut d = Deframer::new();
        for f in &frames {
            d.push(f);
        }
        let Some(Inbound::Message(m)) = d.poll() else {
            panic!("no message")
        };
        m.payload.to_vec()
    }

    #[test]
    fn parses_the_captured_chained_reset_response() {
        let info = parse_reset_response(&captured_payload()).unwrap();
        assert_eq!(info.terminal_id.as_deref(), Some("32434278"));
        let models: Vec<_> = info.devices.iter().map(|d| d.model.as_deref()).collect();
        assert_eq!(models, [Some("UX300"), Some("UX100")]);
        assert_eq!(info.devices[0].serial.as_deref(), Some("986227287"));
        assert_eq!(info.component_version("VIPA"), Some("6.8.2.24"));
    }

    #[test]
    fn status_words_and_malformed_data_are_errors() {
        assert_eq!(
            parse_reset_response(&[0x90, 0x15]),
            Ok(DeviceInfo::default())
        );
        assert_eq!(
            parse_reset_response(&[0x9F, 0x24]),
            Err(ResetResponseError::Status(StatusWord::OUT_OF_ORDER))
        );
        assert_eq!(
            parse_reset_response(&[0x90]),
            Err(ResetResponseError::Malformed(VipaError::ResponseTooShort {
                len: 1
            }))
        );
        assert!(matches!(
            parse_reset_response(&[0xEE, 0x05, 0x01, 0x90, 0x00]),
            Err(ResetResponseError::Malformed(VipaError::Tlv(_)))
        ));
        // The error names the status word, never the data.
        assert_eq!(
            ResetResponseError::Status(StatusWord::OUT_OF_ORDER).to_string(),
            format!("reader answered {}", StatusWord::OUT_OF_ORDER)
        );
    }

    proptest! {
        #[test]
        fn reset_responses_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_reset_response(&b);
        }

        #[test]
        fn truncated_captures_never_panic(cut in 0usize..800) {
            let p = captured_payload();
            let _ = parse_reset_response(p.get(..cut.min(p.len())).unwrap_or_default());
        }
    }
}
