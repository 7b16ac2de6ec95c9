//! `emvbridge decode`: BER-TLV and VIPA frames from hex to an annotated tree.

use std::process::ExitCode;

/// Arguments of `emvbridge decode`.
#[derive(clap::Args, Debug)]
pub struct DecodeArgs {
    /// Hex to decode; standard input when absent.
    pub hex: Vec<String>,
}

/// Runs `emvbridge decode`.
pub fn run(_args: DecodeArgs) -> ExitCode {
    ExitCode::from(2)
}
