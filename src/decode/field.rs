//! `emvbridge decode --field NAME HEX`: one value decoded on its own, without a tag around it
//! (what emv-decode's `--tvr`, `--cvmlist`, `--iad`… options do).

use emvbridge_protocol::emv::{self, fields, iad, iso7816};
use emvbridge_protocol::tlv::Tag;
use emvbridge_protocol::vipa::StatusWord;
use serde::Serialize;

/// A `--field` value that does not decode: the field, what is wrong (never the value) and the
/// offset in the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {what} at byte offset {offset}")]
pub struct FieldError {
    /// The field's name.
    pub field: &'static str,
    /// Short description.
    pub what: String,
    /// Offset of the fault in the value.
    pub offset: usize,
}

/// The fields `--field` decodes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// `95` Terminal Verification Results.
    Tvr,
    /// `9B` Transaction Status Information.
    Tsi,
    /// `82` Application Interchange Profile.
    Aip,
    /// `9F07` Application Usage Control.
    Auc,
    /// `8E` CVM List.
    Cvmlist,
    /// `9F34` CVM Results.
    Cvmresults,
    /// `9F27` Cryptogram Information Data.
    Cid,
    /// `9F33` Terminal Capabilities.
    Termcaps,
    /// `9F40` Additional Terminal Capabilities.
    Addtermcaps,
    /// `9F10` Issuer Application Data.
    Iad,
    /// A Data Object List (PDOL, CDOL1/2, DDOL, TDOL, UDOL).
    Dol,
    /// `57` Track 2 Equivalent Data (masked unless `--reveal`).
    Track2,
    /// An ISO/IEC 7816-4 status word (and VIPA's name for it with `--vipa`).
    Sw,
    /// An ISO/IEC 7816-3 Answer To Reset.
    Atr,
}

impl Field {
    /// The name as given on the command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Field::Tvr => "tvr",
            Field::Tsi => "tsi",
            Field::Aip => "aip",
            Field::Auc => "auc",
            Field::Cvmlist => "cvmlist",
            Field::Cvmresults => "cvmresults",
            Field::Cid => "cid",
            Field::Termcaps => "termcaps",
            Field::Addtermcaps => "addtermcaps",
            Field::Iad => "iad",
            Field::Dol => "dol",
            Field::Track2 => "track2",
            Field::Sw => "sw",
            Field::Atr => "atr",
        }
    }

    /// The tag whose decoder serves, for the fields that have one.
    const fn tag(self) -> Option<Tag> {
        Some(match self {
            Field::Tvr => Tag::TVR,
            Field::Tsi => Tag(0x9B),
            Field::Aip => Tag::AIP,
            Field::Auc => Tag::APPLICATION_USAGE_CONTROL,
            Field::Cvmlist => Tag::CVM_LIST,
            Field::Cvmresults => Tag::CVM_RESULTS,
            Field::Cid => Tag::CRYPTOGRAM_INFORMATION_DATA,
            Field::Termcaps => Tag::TERMINAL_CAPABILITIES,
            Field::Addtermcaps => Tag::ADDITIONAL_TERMINAL_CAPABILITIES,
            Field::Dol => Tag::PDOL,
            _ => return None,
        })
    }
}

/// One decoded field. JSON: `{"field":"tvr","value":"0000008000","decoded":[…]}`.
#[derive(Debug, Serialize, PartialEq)]
pub struct FieldOut {
    /// The field's name.
    pub field: &'static str,
    /// The value, upper-case hex (masked for track 2 unless `--reveal`).
    pub value: String,
    /// What it means, one line per fact.
    pub decoded: Vec<String>,
}

impl FieldOut {
    pub(super) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default() + "\n"
    }

    pub(super) fn to_text(&self) -> String {
        let mut s = format!("{} {}\n", self.field, self.value);
        for d in &self.decoded {
            s.push_str("    - ");
            s.push_str(d);
            s.push('\n');
        }
        s
    }
}

fn invalid(field: Field, what: impl Into<String>, offset: usize) -> FieldError {
    let e = FieldError {
        field: field.as_str(),
        what: what.into(),
        offset,
    };
    tracing::debug!(error = %e, "field did not decode");
    e
}

/// Decodes `bytes` as `field`; `reveal` shows track 2 in the clear, `vipa` adds VIPA's names
/// of status words.
///
/// # Errors
/// [`FieldError`] when the value does not fit the field (its length, its layout).
pub fn decode(
    field: Field,
    bytes: &[u8],
    reveal: bool,
    vipa: bool,
) -> Result<FieldOut, FieldError> {
    let mut value = hex::encode_upper(bytes);
    let decoded = match field {
        Field::Iad => iad::describe(bytes, None)
            .ok_or_else(|| invalid(field, "no known issuer application data layout", 0))?,
        Field::Track2 => {
            if !reveal {
                value = emv::masked_value(Tag::TRACK2_EQUIVALENT, bytes).unwrap_or_default();
            }
            fields::track2(bytes, reveal).map_err(|e| invalid(field, e, 0))?
        }
        Field::Sw => {
            let [sw1, sw2] = bytes else {
                return Err(invalid(field, format!("bad length {}", bytes.len()), 0));
            };
            let mut out = vec![iso7816::status_word(*sw1, *sw2)];
            if vipa {
                if let Some(name) = StatusWord::from_bytes(*sw1, *sw2).name() {
                    out.push(format!("VIPA: {name}"));
                }
            }
            out
        }
        Field::Atr => iso7816::atr(bytes).map_err(|e| {
            let at = match e {
                iso7816::AtrError::Truncated { offset } => offset,
                iso7816::AtrError::TooLong => 32,
                iso7816::AtrError::BadTs => 0,
            };
            invalid(
                field,
                e.to_string().split(" at byte offset").next().unwrap_or(""),
                at,
            )
        })?,
        _ => {
            let tag = field.tag().unwrap_or(Tag::TVR);
            let lines = emv::describe(tag, bytes);
            if let Some(why) = lines.first().and_then(|l| l.strip_prefix("invalid: ")) {
                // Describe reports offsets inside the message; DOL errors carry them.
                let (what, at) = split_offset(why);
                return Err(invalid(field, what, at));
            }
            lines
        }
    };
    Ok(FieldOut {
        field: field.as_str(),
        value,
        decoded,
    })
}

/// Splits `"truncated dol at byte offset 3"` into its words and offset (0 when none).
fn split_offset(why: &str) -> (String, usize) {
    match why.rsplit_once(" at byte offset ") {
        Some((what, n)) => (what.to_owned(), n.parse().unwrap_or(0)),
        None => (why.to_owned(), 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: Field, hex: &str) -> Result<FieldOut, FieldError> {
        decode(f, &hex::decode(hex).unwrap(), false, false)
    }

    #[test]
    fn fields_decode_like_emv_decode() {
        assert_eq!(
            run(Field::Tvr, "0000008000").unwrap().decoded,
            ["Transaction exceeds floor limit"]
        );
        assert_eq!(run(Field::Cid, "C0").unwrap().decoded, ["RFU"]);
        assert_eq!(
            run(Field::Sw, "6A82").unwrap().decoded,
            ["Checking error: file or application not found"]
        );
        let t2 = run(Field::Track2, "4761739001010119D221220117589288895F").unwrap();
        assert!(!t2.to_json().contains("4761739001010119"), "{t2:?}");
        assert_eq!(t2.decoded[1], "Expiry: 2022-12");
        // Book 3 §5.4: one-byte DOL lengths, FF included.
        assert_eq!(
            run(Field::Dol, "9F33FF").unwrap().decoded,
            ["9F33 (255) Terminal Capabilities"]
        );
    }

    #[test]
    fn field_errors_carry_an_offset() {
        let e = run(Field::Tvr, "80").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid tvr: bad field length 1, expected 5 at byte offset 0"
        );
        let e = run(Field::Dol, "9F02069F").unwrap_err();
        assert_eq!(e.to_string(), "invalid dol: truncated dol at byte offset 3");
        assert_eq!(e.offset, 3);
        let e = run(Field::Atr, "3B95").unwrap_err();
        assert_eq!(e.offset, 2);
    }
}
