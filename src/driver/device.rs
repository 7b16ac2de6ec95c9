//! [`Reader`]: typed out-of-transaction commands over a [`ReaderLink`] (Reset Device, Card
//! Status, Display, Abort), each bounded by a timeout and checked for a success status word.
//! The transaction driver talks to the link directly; this is for start-up, idle screens,
//! labs and the `emvbridge device` commands.

use std::time::Duration;

use bytes::Bytes;
use emvbridge_protocol::vipa::command::{display, reset_flags};
use emvbridge_protocol::vipa::{
    parse_reset_response, Command, CommandError, DeviceInfo, ResetResponseError, Response,
    StatusWord, VipaError,
};

use super::link::{LinkError, ReaderLink};

/// Why a reader command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReaderError {
    /// The link failed: timeout, lost, busy, not ready...
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The reader answered with an error status word (§2).
    #[error("reader answered {0}")]
    Status(StatusWord),
    /// The answer is not a valid response (no SW, malformed TLV).
    #[error("malformed response: {0}")]
    Malformed(#[from] VipaError),
    /// The command could not be built.
    #[error("bad command: {0}")]
    Command(#[from] CommandError),
}

impl From<ResetResponseError> for ReaderError {
    fn from(e: ResetResponseError) -> Self {
        match e {
            ResetResponseError::Status(sw) => ReaderError::Status(sw),
            ResetResponseError::Malformed(e) => ReaderError::Malformed(e),
        }
    }
}

impl ReaderError {
    /// Whether the reader did not answer in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, ReaderError::Link(LinkError::Timeout))
    }
}

/// Checks the SW of a response payload (§2) and returns the data before it.
///
/// # Errors
/// [`ReaderError::Malformed`] without a SW; [`ReaderError::Status`] unless `90 00`/`90 15`.
pub fn check_response(payload: &[u8]) -> Result<&[u8], ReaderError> {
    let r = Response::parse(payload)?;
    if r.sw().is_success() {
        Ok(r.data())
    } else {
        Err(ReaderError::Status(r.sw()))
    }
}

/// Out-of-transaction commands with timeouts. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Reader {
    link: ReaderLink,
    timeout: Duration,
}

impl Reader {
    /// Default time for an answer: the \[S2\] host's 15 s (§1.2).
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

    /// Commands over `link` with [`Reader::DEFAULT_TIMEOUT`].
    pub fn new(link: ReaderLink) -> Self {
        Reader {
            link,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// The same with another answer timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The link.
    pub fn link(&self) -> &ReaderLink {
        &self.link
    }

    /// Sends `cmd` and returns the full response payload (`[data] SW1 SW2`), whatever its SW.
    ///
    /// # Errors
    /// [`ReaderError::Command`], [`ReaderError::Link`].
    pub async fn raw(&self, cmd: &Command<'_>) -> Result<Bytes, ReaderError> {
        let payload = cmd.to_payload()?;
        Ok(self.link.request(payload, self.timeout).await?)
    }

    /// Sends `cmd` and returns the response payload if its SW is a success.
    ///
    /// # Errors
    /// As [`Reader::raw`], and [`ReaderError::Status`] / [`ReaderError::Malformed`].
    pub async fn command(&self, cmd: &Command<'_>) -> Result<Bytes, ReaderError> {
        let payload = self.raw(cmd).await?;
        check_response(&payload)?;
        Ok(payload)
    }

    /// Reset Device `D0 00 00 01` (return serial / PTID) and the device information, read by
    /// the protocol crate's [`parse_reset_response`].
    ///
    /// # Errors
    /// As [`Reader::command`].
    pub async fn reset(&self) -> Result<DeviceInfo, ReaderError> {
        let payload = self
            .raw(&Command::ResetDevice {
                mode: 0x00,
                flags: reset_flags::RETURN_SERIAL,
            })
            .await?;
        Ok(parse_reset_response(&payload)?)
    }

    /// Card Status `D0 60 01 01`: card insert/swipe events then arrive unsolicited (§3, \[S5\]).
    ///
    /// # Errors
    /// As [`Reader::command`].
    pub async fn enable_card_status(&self) -> Result<(), ReaderError> {
        self.command(&Command::CardStatus { p1: 0x01, p2: 0x01 })
            .await
            .map(drop)
    }

    /// Display `D2 01 00 01` with custom ASCII text, backlight on (§3).
    ///
    /// # Errors
    /// As [`Reader::command`].
    pub async fn display(&self, text: &str) -> Result<(), ReaderError> {
        self.command(&Command::Display {
            message: display::CUSTOM,
            backlight: true,
            text: Some(text),
        })
        .await
        .map(drop)
    }

    /// Display a predefined message (`D2 01` P1 = one of [`display`]), backlight on.
    ///
    /// # Errors
    /// As [`Reader::command`].
    pub async fn display_message(&self, message: u8) -> Result<(), ReaderError> {
        self.command(&Command::Display {
            message,
            backlight: true,
            text: None,
        })
        .await
        .map(drop)
    }

    /// Abort `D0 FF 00 00` (may be sent while a command is pending; that one then completes
    /// with `9F 41`). Returns the Abort's own status word.
    ///
    /// # Errors
    /// [`ReaderError::Link`], [`ReaderError::Malformed`].
    pub async fn abort(&self) -> Result<StatusWord, ReaderError> {
        let payload = self.raw(&Command::Abort).await?;
        Ok(Response::parse(&payload)?.sw())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_words_are_errors_unless_success() {
        assert_eq!(
            check_response(&[0xE0, 0x00, 0x90, 0x00]),
            Ok(&[0xE0, 0x00][..])
        );
        assert_eq!(check_response(&[0x90, 0x15]), Ok(&[][..]));
        assert_eq!(
            check_response(&[0x9F, 0x41]),
            Err(ReaderError::Status(StatusWord::COMMAND_CANCELLED))
        );
        assert!(matches!(
            check_response(&[0x90]),
            Err(ReaderError::Malformed(VipaError::ResponseTooShort {
                len: 1
            }))
        ));
        // What the protocol crate's reset-response parser refuses maps onto the same errors.
        assert!(matches!(
            parse_reset_response(&[0xEE, 0x05, 0x01, 0x90, 0x00]).map_err(ReaderError::from),
            Err(ReaderError::Malformed(VipaError::Tlv(_)))
        ));
        assert_eq!(
            parse_reset_response(&[0x9F, 0x24]).map_err(ReaderError::from),
            Err(ReaderError::Status(StatusWord::OUT_OF_ORDER))
        );
        assert!(ReaderError::Link(LinkError::Timeout).is_timeout());
    }
}
