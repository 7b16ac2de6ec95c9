//! Status words SW1 SW2 (vipa-protocol.md §2).

use core::fmt;

/// SW1 SW2 as one big-endian `u16`. Unknown values are kept as they are, never rejected.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct StatusWord(pub u16);

macro_rules! status_words {
    ($($(#[$doc:meta])* $name:ident = $value:literal, $label:literal;)*) => {
        impl StatusWord {
            $($(#[$doc])* pub const $name: StatusWord = StatusWord($value);)*

            /// The §2 label, or `None` for a code not in the table.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some($label),)*
                    _ => None,
                }
            }
        }
    };
}

status_words! {
    /// `90 00` success.
    SUCCESS = 0x9000, "success";
    /// `90 15` PIN bypassed.
    PIN_BYPASSED = 0x9015, "pin bypassed";
    /// `9F 01` invalid LRC (Verifone's status table, §0).
    INVALID_LRC = 0x9F01, "invalid lrc";
    /// `9F 02` invalid NAD.
    INVALID_NAD = 0x9F02, "invalid nad";
    /// `9F 08` chaining not allowed.
    CHAINING_NOT_ALLOWED = 0x9F08, "chaining not allowed";
    /// `9F 0D` internal error.
    INTERNAL_ERROR = 0x9F0D, "internal error";
    /// `9F 11` not supported.
    NOT_SUPPORTED = 0x9F11, "not supported";
    /// `9F 14` command incorrectly formatted.
    MALFORMED_COMMAND = 0x9F14, "command incorrectly formatted";
    /// `9F 22` not ready.
    NOT_READY = 0x9F22, "not ready";
    /// `9F 13` file not found or not accessible.
    FILE_NOT_FOUND = 0x9F13, "file not found";
    /// `9F 21` invalid data.
    INVALID_DATA = 0x9F21, "invalid data";
    /// `9F 23` no card / card removed.
    CARD_REMOVED = 0x9F23, "card removed";
    /// `9F 24` invalid order: command out of sequence (Verifone's table, §0); seen as a bare
    /// answer to Reset right before the reset answer itself.
    OUT_OF_ORDER = 0x9F24, "command out of sequence";
    /// `9F 25` bad card.
    BAD_CARD = 0x9F25, "bad card";
    /// `9F 27` data missing.
    DATA_MISSING = 0x9F27, "data missing";
    /// `9F 28` unsupported card.
    UNSUPPORTED_CARD = 0x9F28, "unsupported card";
    /// `9F 31` contactless collision detected.
    CTLS_COLLISION = 0x9F31, "contactless collision";
    /// `9F 33` contactless transaction failed: use another interface.
    CTLS_FAILED = 0x9F33, "contactless failed, use another interface";
    /// `9F 34` use chip: swipe not allowed.
    USE_CHIP = 0x9F34, "use chip";
    /// `9F 35` consumer CVM (contactless).
    CONSUMER_CVM = 0x9F35, "consumer cvm";
    /// `9F 36` contactless card in field.
    CTLS_CARD_IN_FIELD = 0x9F36, "contactless card in field";
    /// `9F 37` re-tap card.
    RETAP = 0x9F37, "re-tap card";
    /// `9F 60` incorrect PIN.
    INCORRECT_PIN = 0x9F60, "incorrect pin";
    /// `9F FF` NAD or command unavailable.
    UNAVAILABLE = 0x9FFF, "nad or command unavailable";
    /// `9F 41` command cancelled (e.g. by Abort).
    COMMAND_CANCELLED = 0x9F41, "command cancelled";
    /// `9F 42` cashback not supported.
    CASHBACK_NOT_SUPPORTED = 0x9F42, "cashback not supported";
    /// `9F 43` user entry cancelled (cancel key).
    USER_CANCELLED = 0x9F43, "user cancelled";
    /// `9F 45` correction key pressed.
    CORRECTION = 0x9F45, "correction key pressed";
}

impl StatusWord {
    /// From the two trailing bytes.
    pub const fn from_bytes(sw1: u8, sw2: u8) -> StatusWord {
        StatusWord(u16::from_be_bytes([sw1, sw2]))
    }

    /// The two bytes, SW1 first.
    pub const fn to_bytes(self) -> [u8; 2] {
        self.0.to_be_bytes()
    }

    /// `90 00` or `90 15` (the command completed; PIN bypass is a normal outcome).
    pub const fn is_success(self) -> bool {
        matches!(self.0, 0x9000 | 0x9015)
    }
}

impl fmt::Display for StatusWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{:04X} ({n})", self.0),
            None => write!(f, "{:04X}", self.0),
        }
    }
}

impl fmt::Debug for StatusWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StatusWord({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_bytes() {
        assert_eq!(StatusWord::from_bytes(0x90, 0x00), StatusWord::SUCCESS);
        assert_eq!(StatusWord::SUCCESS.name(), Some("success"));
        assert_eq!(StatusWord(0x9F41).name(), Some("command cancelled"));
        assert_eq!(StatusWord(0x9F24), StatusWord::OUT_OF_ORDER);
        assert_eq!(StatusWord(0x6400).name(), None);
        assert_eq!(StatusWord(0x6400).to_string(), "6400");
        assert_eq!(StatusWord::CARD_REMOVED.to_string(), "9F23 (card removed)");
        assert_eq!(StatusWord::RETAP.to_bytes(), [0x9F, 0x37]);
        assert!(StatusWord::PIN_BYPASSED.is_success());
        assert!(!StatusWord::USER_CANCELLED.is_success());
    }
}
