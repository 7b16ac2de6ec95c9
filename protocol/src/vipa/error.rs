//! Why a VIPA payload could not be viewed.

use crate::tlv::{Tag, TlvError};

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
