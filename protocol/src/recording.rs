//! The recording format of a reader session: JSON lines, one per reassembled VIPA message, in
//! the order the host saw them (`{"t_ms":123,"dir":"host"|"terminal","unsolicited":false,
//! "hex":"…"}`). The bridge writes it (`emvbridge sale --record FILE`, clear card data masked);
//! the simulator plays it back (`vipa-sim --replay FILE`).

/// Which way a recorded message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dir {
    /// From the bridge to the reader.
    Host,
    /// From the reader to the bridge.
    Terminal,
}

/// One line of a recording, as written by the bridge's recorder.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordLine {
    /// Milliseconds since the recording started.
    pub t_ms: u64,
    /// Direction.
    pub dir: Dir,
    /// PCB bit6 (terminal messages sent on the reader's own initiative).
    #[serde(default)]
    pub unsolicited: bool,
    /// The message payload, hex (masked where it held clear card data).
    pub hex: String,
}
