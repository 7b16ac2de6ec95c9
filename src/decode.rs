//! `emvbridge decode`: BER-TLV and VIPA frames, from hex to an annotated tree.
//!
//! The output is for people debugging EMV data (text) and for tools (`--json`, a stable
//! contract: see [`Node`] and [`MessageOut`]). Cardholder data is masked unless `--reveal`.
//! Any input, however malformed, ends in a one-line error on standard error and exit status
//! 2, never a panic; with `--json` standard output carries the same error as an object
//! ([`ErrorOut`]).
//!
//! Names and decoders follow the context of each data object ([`emv::Context`]): its
//! template, the scheme of the application (from the first AID in the input), and whether the
//! input is a VIPA message (`--frame`, `--vipa`): VIPA's names for private tags apply only
//! then. `--field NAME` decodes one value on its own.

mod field;

pub use field::Field;

use std::fmt::Write as _;
use std::io::Read;
use std::process::ExitCode;

use emvbridge_protocol::emv::{self, Context, Scheme};
use emvbridge_protocol::frame::{Frame, FrameError, Pcb, HEADER_LEN};
use emvbridge_protocol::tlv::{self, Tag, TlvError, TlvIter};
use emvbridge_protocol::vipa::{CommandView, Response};
use serde::Serialize;

/// Largest input read from standard input (hex text); more is refused, not buffered.
const MAX_INPUT: usize = 8 * 1024 * 1024;

/// Arguments of `emvbridge decode`.
#[derive(clap::Args, Debug)]
pub struct DecodeArgs {
    /// Print JSON (one object per message) instead of an indented tree.
    #[arg(long)]
    pub json: bool,
    /// Show cardholder data (PAN, track data) in the clear instead of masked.
    #[arg(long)]
    pub reveal: bool,
    /// The input is one or more concatenated VIPA frames (`NAD PCB LEN INF LRC`).
    #[arg(long, requires = "from")]
    pub frame: bool,
    /// Who sent the frames: `host` (commands) or `terminal` (responses, events).
    #[arg(long, value_enum, requires = "frame")]
    pub from: Option<Direction>,
    /// The TLV input is a VIPA message body: name VIPA's private tags (`E0`, `DFDF..`…) as VIPA
    /// does. Implied by `--frame`; without either, they are "Unknown" (another vendor's tags).
    #[arg(long)]
    pub vipa: bool,
    /// Decode the hex as one field value rather than as TLV: tvr, tsi, aip, auc, cvmlist,
    /// cvmresults, cid, termcaps, addtermcaps, iad, dol, track2, sw, atr.
    #[arg(long, value_enum, conflicts_with = "frame")]
    pub field: Option<Field>,
    /// Hex to decode (spaces, newlines and `0x` prefixes allowed); standard input when absent.
    pub hex: Vec<String>,
}

/// The sender of decoded frames.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// POS/bridge → reader: the payload is a command.
    Host,
    /// Reader → POS/bridge: the payload is data + status word.
    Terminal,
}

/// What went wrong, with the byte offset in the decoded input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A character that is not a hex digit.
    #[error("invalid hex character {ch:?} at byte offset {offset}")]
    BadHex {
        /// The character.
        ch: char,
        /// Offset (in decoded bytes) where it occurs.
        offset: usize,
    },
    /// An odd number of hex digits.
    #[error("odd number of hex digits at byte offset {offset}")]
    OddHex {
        /// Offset of the incomplete byte.
        offset: usize,
    },
    /// Nothing to decode.
    #[error("no input at byte offset 0")]
    Empty,
    /// Standard input larger than the input limit (`MAX_INPUT`).
    #[error("input larger than {MAX_INPUT} bytes at byte offset {MAX_INPUT}")]
    TooLarge,
    /// Reading standard input failed.
    #[error("cannot read standard input: {0} at byte offset 0")]
    Io(String),
    /// BER-TLV error (offsets already absolute).
    #[error("{0}")]
    Tlv(TlvError),
    /// A frame that cannot be read.
    #[error("{what} at byte offset {offset}")]
    Frame {
        /// Short description.
        what: String,
        /// Offset of the fault.
        offset: usize,
    },
    /// A `--field` value that does not decode.
    #[error("{0}")]
    Field(field::FieldError),
}

impl DecodeError {
    /// The byte offset the error refers to.
    pub fn offset(&self) -> usize {
        match self {
            DecodeError::BadHex { offset, .. }
            | DecodeError::OddHex { offset }
            | DecodeError::Frame { offset, .. } => *offset,
            DecodeError::Field(e) => e.offset,
            DecodeError::Empty | DecodeError::Io(_) => 0,
            DecodeError::TooLarge => MAX_INPUT,
            DecodeError::Tlv(e) => e.offset(),
        }
    }
}

/// The `--json` form of an error, the same for hex, TLV, frame and field errors:
/// `{"error":"… at byte offset N","offset":N,"partial":[…]}`. `partial` holds what was
/// decoded before the fault (nodes or messages; empty when nothing was).
#[derive(Debug, Serialize)]
pub struct ErrorOut<'a> {
    /// The message standard error shows after `error: `.
    pub error: String,
    /// The byte offset in the decoded input.
    pub offset: usize,
    /// The output decoded before the fault.
    pub partial: &'a serde_json::Value,
}

/// Runs `emvbridge decode`, printing to stdout/stderr. Exit 0 on success, 2 on bad input.
pub fn run(args: DecodeArgs) -> ExitCode {
    let json = args.json;
    let bytes = match read_input(&args.hex).and_then(|s| parse_hex(&s)) {
        Ok(b) => b,
        Err(e) => return fail(&e, json, None),
    };
    let opts = Options {
        reveal: args.reveal,
        vipa: args.vipa || args.frame,
    };
    if let Some(f) = args.field {
        return match field::decode(f, &bytes, opts.reveal, opts.vipa).map_err(DecodeError::Field) {
            Ok(out) => {
                print!("{}", if json { out.to_json() } else { out.to_text() });
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e, json, None),
        };
    }
    let result = match args.from.filter(|_| args.frame) {
        Some(direction) => decode_frames(&bytes, direction, opts),
        None => decode_tlv(&bytes, 0, opts).map(Decoded::Tlv),
    };
    match result {
        Ok(out) => {
            print!("{}", if json { out.to_json() } else { out.to_text() });
            ExitCode::SUCCESS
        }
        Err((partial, e)) => {
            if !json {
                if let Some(p) = &partial {
                    print!("{}", p.to_text());
                }
            }
            fail(&e, json, partial.as_ref())
        }
    }
}

/// Reports `e`: one line on standard error, and with `--json` an [`ErrorOut`] on standard
/// output. Exit status 2.
fn fail(e: &DecodeError, json: bool, partial: Option<&Decoded>) -> ExitCode {
    tracing::debug!(error = %e, "decode input rejected");
    eprintln!("error: {e}");
    if json {
        let partial = partial.map_or(serde_json::Value::Array(Vec::new()), Decoded::to_value);
        let out = ErrorOut {
            error: e.to_string(),
            offset: e.offset(),
            partial: &partial,
        };
        println!("{}", serde_json::to_string(&out).unwrap_or_default());
    }
    ExitCode::from(2)
}

fn read_input(args: &[String]) -> Result<String, DecodeError> {
    if !args.is_empty() {
        return Ok(args.join(" "));
    }
    let mut buf = Vec::new();
    std::io::stdin()
        .take(MAX_INPUT as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| DecodeError::Io(e.kind().to_string()))?;
    if buf.len() > MAX_INPUT {
        return Err(DecodeError::TooLarge);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Hex with any whitespace, `0x`/`0X` prefixes on each word, and `:`/`,` separators.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(text.len() / 2);
    let mut high: Option<u8> = None;
    for word in text.split(|c: char| c.is_whitespace() || c == ',' || c == ':') {
        let word = word
            .strip_prefix("0x")
            .or_else(|| word.strip_prefix("0X"))
            .unwrap_or(word);
        for ch in word.chars() {
            let nibble = ch.to_digit(16).ok_or(DecodeError::BadHex {
                ch,
                offset: out.len(),
            })? as u8;
            match high.take() {
                None => high = Some(nibble),
                Some(h) => out.push(h << 4 | nibble),
            }
        }
    }
    if high.is_some() {
        return Err(DecodeError::OddHex { offset: out.len() });
    }
    if out.is_empty() {
        return Err(DecodeError::Empty);
    }
    Ok(out)
}

#[derive(Clone, Copy)]
struct Options {
    reveal: bool,
    /// VIPA names apply (`--frame`, `--vipa`).
    vipa: bool,
}

/// One data object in the output. JSON: `{"tag","name","length","value"|"children","decoded"?}`.
#[derive(Debug, Serialize, PartialEq)]
pub struct Node {
    /// Tag, upper-case hex.
    pub tag: String,
    /// Dictionary name, or `"Unknown"`.
    pub name: &'static str,
    /// Value length in bytes.
    pub length: usize,
    /// Value, upper-case hex (masked for cardholder data unless `--reveal`); primitive only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Children of a constructed object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub children: Option<Vec<Node>>,
    /// Decoded meaning (bit names, codes, text), when a decoder knows the tag.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub decoded: Vec<String>,
}

/// The context of a whole input: the scheme of the first AID in it (`84` DF name, `4F`,
/// `9F06`), which decides the kernel-specific tags everywhere in the input.
fn root_context(bytes: &[u8], opts: Options) -> Context {
    let scheme = [Tag::DF_NAME, Tag::AID, Tag::AID_TERMINAL]
        .into_iter()
        .find_map(|t| tlv::find(bytes, t))
        .and_then(|aid| Scheme::from_aid(aid.value()))
        .or_else(|| Scheme::from_kernel_tags(|t| tlv::find(bytes, t).is_some()));
    Context {
        scheme,
        vipa: opts.vipa,
        ..Context::default()
    }
}

/// Builds the tree of one TLV level; on error returns what was decoded so far and the error.
fn tree(
    iter: TlvIter<'_>,
    ctx: Context,
    opts: Options,
) -> Result<Vec<Node>, (Vec<Node>, TlvError)> {
    let mut nodes = Vec::new();
    let mut ctx = ctx;
    for item in iter {
        let t = match item {
            Ok(t) => t,
            Err(e) => return Err((nodes, e)),
        };
        let tag = t.tag();
        if tag == Tag(0x9F11) {
            // Book 1 §12.2.4: the Issuer Code Table Index says how to show the Application
            // Preferred Name that follows it.
            ctx.code_table = emv::fields::code_table_number(t.value());
        }
        let mut node = Node {
            tag: tag.to_string(),
            name: ctx.name(tag, t.value()).unwrap_or("Unknown"),
            length: t.len(),
            value: None,
            children: None,
            decoded: Vec::new(),
        };
        if t.is_constructed() {
            match tree(t.children(), ctx.inside(tag), opts) {
                Ok(children) => node.children = Some(children),
                Err((children, e)) => {
                    node.children = Some(children);
                    nodes.push(node);
                    return Err((nodes, e));
                }
            }
        } else {
            let masked = if opts.reveal {
                None
            } else {
                emv::masked_value(tag, t.value())
            };
            node.value = Some(masked.unwrap_or_else(|| hex::encode_upper(t.value())));
            if tag.is_sensitive() {
                // Track 2's fields (PAN masked unless revealed), a PAN's Luhn check.
                node.decoded = emv::describe_card_data(tag, t.value(), opts.reveal);
            } else if let Some(text) =
                emv::text(tag, t.value()).filter(|_| !emv::has_text_decoder(tag))
            {
                node.decoded.push(format!("\"{text}\""));
            } else {
                node.decoded = emv::describe_in(&ctx, tag, t.value());
            }
        }
        nodes.push(node);
    }
    Ok(nodes)
}

#[allow(clippy::result_large_err)] // CLI only: the partial output travels with the error
fn decode_tlv(
    bytes: &[u8],
    base: usize,
    opts: Options,
) -> Result<Vec<Node>, (Option<Decoded>, DecodeError)> {
    tree(tlv::parse(bytes), root_context(bytes, opts), opts).map_err(|(partial, e)| {
        let e = shift(e, base);
        (Some(Decoded::Tlv(partial)), DecodeError::Tlv(e))
    })
}

/// Re-bases a TLV error found in a sub-slice onto the whole input.
fn shift(e: TlvError, base: usize) -> TlvError {
    match e {
        TlvError::Truncated { offset } => TlvError::Truncated {
            offset: offset + base,
        },
        TlvError::BadLength { offset } => TlvError::BadLength {
            offset: offset + base,
        },
        TlvError::IndefiniteLength { offset } => TlvError::IndefiniteLength {
            offset: offset + base,
        },
        TlvError::TagTooLong { offset } => TlvError::TagTooLong {
            offset: offset + base,
        },
        TlvError::DepthExceeded { offset } => TlvError::DepthExceeded {
            offset: offset + base,
        },
    }
}

/// One frame's header facts. JSON: `{"nad":"01","pcb":"00","len":59,"lrc_ok":true}`.
#[derive(Debug, Serialize, PartialEq)]
pub struct FrameOut {
    /// NAD, hex.
    pub nad: String,
    /// PCB, hex.
    pub pcb: String,
    /// LEN (INF bytes).
    pub len: u8,
    /// Whether the LRC matches.
    pub lrc_ok: bool,
}

/// The command header of a host message.
#[derive(Debug, Serialize, PartialEq)]
pub struct CommandOut {
    /// CLA, hex.
    pub cla: String,
    /// INS, hex.
    pub ins: String,
    /// P1, hex.
    pub p1: String,
    /// P2, hex.
    pub p2: String,
    /// VIPA name of the command, or `"Unknown"`.
    pub name: &'static str,
}

/// One reassembled message: its frames, the command or status word, and its TLV tree.
#[derive(Debug, Serialize, PartialEq)]
pub struct MessageOut {
    /// The frames that carried it.
    pub frames: Vec<FrameOut>,
    /// PCB bit 6 on its frames.
    pub unsolicited: bool,
    /// For host messages: the command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandOut>,
    /// For terminal messages: SW1 SW2, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sw: Option<String>,
    /// Name of the status word, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sw_name: Option<&'static str>,
    /// The data field as BER-TLV.
    pub tlv: Vec<Node>,
    /// The data field when it is not BER-TLV (a count byte, display text, a file name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<RawOut>,
}

/// A data field that is not BER-TLV. JSON: `{"hex":"01","text":".","why":"…"}`.
#[derive(Debug, Serialize, PartialEq)]
pub struct RawOut {
    /// The bytes, upper-case hex.
    pub hex: String,
    /// The bytes as text, `.` for non-printable ones.
    pub text: String,
    /// Why it is not read as TLV.
    pub why: String,
}

impl RawOut {
    fn new(data: &[u8], why: String) -> RawOut {
        RawOut {
            hex: hex::encode_upper(data),
            text: data
                .iter()
                .map(|b| {
                    if (0x20..0x7F).contains(b) {
                        *b as char
                    } else {
                        '.'
                    }
                })
                .collect(),
            why,
        }
    }
}

/// Commands whose data field is not TLV (vipa-protocol.md §3): Display's raw text, Select
/// File's and Stream Upload's file names.
fn raw_command(cla: u8, ins: u8) -> bool {
    matches!((cla, ins), (0xD2, 0x01) | (0x00, 0xA4))
}

enum Decoded {
    Tlv(Vec<Node>),
    Messages(Vec<MessageOut>),
}

#[allow(clippy::result_large_err)] // CLI only: the partial output travels with the error
fn decode_frames(
    bytes: &[u8],
    direction: Direction,
    opts: Options,
) -> Result<Decoded, (Option<Decoded>, DecodeError)> {
    let mut messages = Vec::new();
    let mut frames = Vec::new();
    let mut payload = Vec::new();
    let mut payload_start = 0usize;
    let mut pos = 0usize;
    let mut first_error: Option<DecodeError> = None;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let frame = match Frame::new_checked(rest) {
            Ok(f) => f,
            Err(e) => {
                let err = frame_error(e, pos, rest.len());
                return Err((Some(Decoded::Messages(messages)), err));
            }
        };
        let pcb: Pcb = frame.pcb();
        if frames.is_empty() {
            payload_start = pos + HEADER_LEN;
        }
        if !frame.lrc_ok() && first_error.is_none() {
            first_error = Some(DecodeError::Frame {
                what: format!(
                    "bad lrc (computed {:02X}, found {:02X})",
                    frame.compute_lrc(),
                    frame.lrc()
                ),
                offset: pos + frame.frame_len() - 1,
            });
        }
        frames.push(FrameOut {
            nad: format!("{:02X}", frame.nad()),
            pcb: format!("{:02X}", pcb.0),
            len: frame.len(),
            lrc_ok: frame.lrc_ok(),
        });
        payload.extend_from_slice(frame.inf());
        pos += frame.frame_len();
        if !pcb.is_chained() {
            let unsolicited = pcb.is_unsolicited();
            match message(
                std::mem::take(&mut frames),
                unsolicited,
                &payload,
                payload_start,
                direction,
                opts,
            ) {
                Ok(m) => messages.push(m),
                Err((m, e)) => {
                    messages.extend(m);
                    return Err((Some(Decoded::Messages(messages)), e));
                }
            }
            payload.clear();
        }
    }
    if !frames.is_empty() {
        let e = DecodeError::Frame {
            what: "chained message ends without its last frame".into(),
            offset: pos,
        };
        return Err((Some(Decoded::Messages(messages)), e));
    }
    match first_error {
        None => Ok(Decoded::Messages(messages)),
        Some(e) => Err((Some(Decoded::Messages(messages)), e)),
    }
}

fn frame_error(e: FrameError, pos: usize, available: usize) -> DecodeError {
    let (what, offset) = match e {
        FrameError::Truncated { have, need } => (
            format!("truncated frame ({have} of {need} bytes)"),
            pos + available.min(have),
        ),
        FrameError::BadLen { offset, len } => (format!("bad frame length {len:02X}"), pos + offset),
        FrameError::UnknownNad { offset, nad } => (format!("unknown nad {nad:02X}"), pos + offset),
        other => (other.to_string(), pos),
    };
    DecodeError::Frame { what, offset }
}

/// Decodes one reassembled payload. Offsets of TLV errors are approximate across frame
/// boundaries (they count payload bytes from the first INF byte of the message).
#[allow(clippy::result_large_err)] // CLI only: the partial output travels with the error
fn message(
    frames: Vec<FrameOut>,
    unsolicited: bool,
    payload: &[u8],
    start: usize,
    direction: Direction,
    opts: Options,
) -> Result<MessageOut, (Option<MessageOut>, DecodeError)> {
    let mut out = MessageOut {
        frames,
        unsolicited,
        command: None,
        sw: None,
        sw_name: None,
        tlv: Vec::new(),
        raw: None,
    };
    let raw_data;
    let (data, data_at) = match direction {
        Direction::Host => match CommandView::parse(payload) {
            Ok(cmd) => {
                out.command = Some(CommandOut {
                    cla: format!("{:02X}", cmd.cla),
                    ins: format!("{:02X}", cmd.ins),
                    p1: format!("{:02X}", cmd.p1),
                    p2: format!("{:02X}", cmd.p2),
                    name: cmd.name().unwrap_or("Unknown"),
                });
                raw_data = raw_command(cmd.cla, cmd.ins);
                let at = payload.len()
                    - cmd.data.len()
                    - usize::from(cmd.le.is_some() && !cmd.data.is_empty());
                (cmd.data, at)
            }
            Err(_) => {
                let e = DecodeError::Frame {
                    what: "command shorter than CLA INS P1 P2".into(),
                    offset: start,
                };
                return Err((Some(out), e));
            }
        },
        Direction::Terminal => match Response::parse(payload) {
            Ok(r) => {
                out.sw = Some(format!("{:04X}", r.sw().0));
                out.sw_name = r.sw().name();
                // A lone byte (the Contactless Status count, vipa-protocol.md §3) is no TLV.
                raw_data = r.data().len() == 1;
                (r.data(), 0)
            }
            Err(_) => {
                let e = DecodeError::Frame {
                    what: "response shorter than SW1 SW2".into(),
                    offset: start,
                };
                return Err((Some(out), e));
            }
        },
    };
    if raw_data {
        if !data.is_empty() {
            out.raw = Some(RawOut::new(data, "not a TLV data field".into()));
        }
        return Ok(out);
    }
    match tree(tlv::parse(data), root_context(data, opts), opts) {
        Ok(nodes) => {
            out.tlv = nodes;
            Ok(out)
        }
        // VIPA data fields are not all TLV; one that does not even start as TLV is shown raw.
        Err((partial, e)) if partial.is_empty() => {
            let e = shift(e, start + data_at);
            out.raw = Some(RawOut::new(data, format!("not BER-TLV: {e}")));
            Ok(out)
        }
        Err((partial, e)) => {
            out.tlv = partial;
            Err((Some(out), DecodeError::Tlv(shift(e, start + data_at))))
        }
    }
}

impl Decoded {
    fn to_value(&self) -> serde_json::Value {
        match self {
            Decoded::Tlv(nodes) => serde_json::to_value(nodes),
            Decoded::Messages(msgs) => serde_json::to_value(msgs),
        }
        .unwrap_or_default()
    }

    fn to_json(&self) -> String {
        let mut s = match self {
            Decoded::Tlv(nodes) => serde_json::to_string(nodes).unwrap_or_default(),
            Decoded::Messages(msgs) => msgs
                .iter()
                .filter_map(|m| serde_json::to_string(m).ok())
                .collect::<Vec<_>>()
                .join("\n"),
        };
        s.push('\n');
        s
    }

    fn to_text(&self) -> String {
        let mut s = String::new();
        match self {
            Decoded::Tlv(nodes) => text_nodes(&mut s, nodes, 0),
            Decoded::Messages(msgs) => {
                for (i, m) in msgs.iter().enumerate() {
                    if i > 0 {
                        s.push('\n');
                    }
                    text_message(&mut s, m);
                }
            }
        }
        s
    }
}

fn text_message(s: &mut String, m: &MessageOut) {
    for f in &m.frames {
        let _ = writeln!(
            s,
            "frame NAD {} PCB {} LEN {} LRC {}",
            f.nad,
            f.pcb,
            f.len,
            if f.lrc_ok { "ok" } else { "BAD" }
        );
    }
    let kind = if m.unsolicited {
        "unsolicited message"
    } else {
        "message"
    };
    let _ = write!(
        s,
        "{kind} ({} frame{})",
        m.frames.len(),
        if m.frames.len() == 1 { "" } else { "s" }
    );
    if let Some(c) = &m.command {
        let _ = write!(
            s,
            ": command {} {} {} {} {}",
            c.cla, c.ins, c.p1, c.p2, c.name
        );
    }
    if let Some(sw) = &m.sw {
        let _ = write!(s, ": SW {sw}");
        if let Some(name) = m.sw_name {
            let _ = write!(s, " {name}");
        }
    }
    s.push('\n');
    if let Some(raw) = &m.raw {
        let _ = writeln!(s, "  data {} \"{}\" ({})", raw.hex, raw.text, raw.why);
    }
    text_nodes(s, &m.tlv, 1);
}

fn text_nodes(s: &mut String, nodes: &[Node], depth: usize) {
    for n in nodes {
        let indent = "  ".repeat(depth);
        let _ = write!(s, "{indent}{} {} ({})", n.tag, n.name, n.length);
        if let Some(v) = &n.value {
            let _ = write!(s, ": {v}");
        }
        s.push('\n');
        for d in &n.decoded {
            let _ = writeln!(s, "{indent}    - {d}");
        }
        if let Some(children) = &n.children {
            text_nodes(s, children, depth + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START_TXN: &str = "0100 3BDED1000036E0349C01009F02060000000032509F03060000000000009A032103039F21031957249F1A0208405F2A020840DFA2140101DFA2180100BB";

    fn frames(hex: &str, dir: Direction) -> Result<Vec<MessageOut>, DecodeError> {
        match decode_frames(
            &parse_hex(hex).unwrap(),
            dir,
            Options {
                reveal: false,
                vipa: true,
            },
        ) {
            Ok(Decoded::Messages(m)) => Ok(m),
            Ok(Decoded::Tlv(_)) => unreachable!(),
            Err((_, e)) => Err(e),
        }
    }

    #[test]
    fn hex_input_forms() {
        assert_eq!(
            parse_hex("9F02 06\n0x00 0X01,02:03 0405").unwrap(),
            [0x9F, 0x02, 0x06, 0, 1, 2, 3, 4, 5]
        );
        assert_eq!(parse_hex("9f0"), Err(DecodeError::OddHex { offset: 1 }));
        assert_eq!(
            parse_hex("9F0G"),
            Err(DecodeError::BadHex { ch: 'G', offset: 1 })
        );
        assert_eq!(parse_hex("  \n"), Err(DecodeError::Empty));
        assert_eq!(
            DecodeError::OddHex { offset: 1 }.to_string(),
            "odd number of hex digits at byte offset 1"
        );
    }

    #[test]
    fn json_contract_for_tlv() {
        let bytes = parse_hex("E0 0C 9F02 06 000000001000 9C0100").unwrap();
        let nodes = match decode_tlv(
            &bytes,
            0,
            Options {
                reveal: false,
                vipa: true,
            },
        ) {
            Ok(n) => n,
            Err(_) => panic!("valid tlv"),
        };
        let json = serde_json::to_value(&nodes).unwrap();
        assert_eq!(json[0]["tag"], "E0");
        assert_eq!(json[0]["length"], 12);
        assert!(json[0].get("value").is_none());
        assert_eq!(
            json[0]["children"][0],
            serde_json::json!({"tag":"9F02","name":"Amount, Authorised (Numeric)","length":6,"value":"000000001000"})
                .as_object()
                .map(|o| {
                    let mut o = o.clone();
                    if let Some(d) = json[0]["children"][0].get("decoded") {
                        o.insert("decoded".into(), d.clone());
                    }
                    serde_json::Value::Object(o)
                })
                .unwrap()
        );
        assert_eq!(json[0]["children"][1]["tag"], "9C");
    }

    #[test]
    fn pan_is_masked_unless_revealed() {
        let bytes =
            parse_hex("5A08 4761739001010010 57 11 4761739001010010D22122011143804400").unwrap();
        let masked = Decoded::Tlv(
            decode_tlv(
                &bytes,
                0,
                Options {
                    reveal: false,
                    vipa: true,
                },
            )
            .ok()
            .unwrap(),
        );
        let text = masked.to_text() + &masked.to_json();
        assert!(!text.contains("4761739001010010"), "{text}");
        assert!(!text.contains("1143804400"), "{text}");
        assert!(text.contains("476173"));
        let clear = Decoded::Tlv(
            decode_tlv(
                &bytes,
                0,
                Options {
                    reveal: true,
                    vipa: true,
                },
            )
            .ok()
            .unwrap(),
        );
        assert!(clear.to_json().contains("4761739001010010"));
    }

    #[test]
    fn tlv_errors_keep_partial_output_and_offsets() {
        let bytes = parse_hex("5A0101 E004 9F0205 00").unwrap();
        let Err((Some(Decoded::Tlv(partial)), e)) = decode_tlv(
            &bytes,
            0,
            Options {
                reveal: false,
                vipa: true,
            },
        ) else {
            panic!("must fail")
        };
        assert_eq!(partial.len(), 2);
        assert_eq!(e, DecodeError::Tlv(TlvError::Truncated { offset: 5 }));
        assert_eq!(e.to_string(), "truncated tlv at byte offset 5");
    }

    #[test]
    fn captured_start_transaction_frame() {
        let msgs = frames(START_TXN, Direction::Host).unwrap();
        assert_eq!(msgs.len(), 1);
        let json = serde_json::to_value(&msgs[0]).unwrap();
        assert_eq!(
            json["frames"],
            serde_json::json!([{"nad":"01","pcb":"00","len":59,"lrc_ok":true}])
        );
        assert_eq!(json["unsolicited"], false);
        assert_eq!(
            json["command"],
            serde_json::json!({"cla":"DE","ins":"D1","p1":"00","p2":"00","name":"Start Transaction"})
        );
        assert!(json.get("sw").is_none());
        assert_eq!(json["tlv"][0]["tag"], "E0");
        assert_eq!(json["tlv"][0]["children"][1]["value"], "000000003250");
    }

    #[test]
    fn captured_chained_reset_response() {
        let hex = include_str!("../tests/data/vipa/reset-response-ux300-chained.hex");
        let msgs = frames(hex, Direction::Terminal).unwrap();
        assert_eq!(msgs.len(), 1);
        let m = &msgs[0];
        assert_eq!(m.frames.len(), 3);
        assert!(m.frames.iter().all(|f| f.lrc_ok));
        assert_eq!(m.sw.as_deref(), Some("9000"));
        assert_eq!(m.tlv[0].tag, "9F1C");
        assert!(m.tlv.iter().filter(|n| n.tag == "EE").count() == 2);
        assert!(m.to_owned_text().contains("VIPA"));
    }

    impl MessageOut {
        fn to_owned_text(&self) -> String {
            let mut s = String::new();
            text_message(&mut s, self);
            s
        }
    }

    #[test]
    fn frame_errors() {
        // Bad LRC: reported with the LRC's offset, the message still decoded.
        let bad = START_TXN
            .replace("0100BB", "0100BC")
            .replace("DFA2180100BB", "DFA2180100BC");
        let e = frames(&bad, Direction::Host).unwrap_err();
        assert!(e.to_string().starts_with("bad lrc"), "{e}");
        assert!(e.to_string().ends_with("at byte offset 62"), "{e}");
        // Truncated frame.
        let e = frames("01 00 05 90 00", Direction::Terminal).unwrap_err();
        assert!(e.to_string().contains("truncated frame"), "{e}");
        // Bad LEN.
        let e = frames("01 00 FF 90 00", Direction::Terminal).unwrap_err();
        assert_eq!(e.to_string(), "bad frame length FF at byte offset 2");
        // Chain without its end.
        let e = frames("01 01 02 90 00 92", Direction::Terminal).unwrap_err();
        assert!(e.to_string().contains("without its last frame"), "{e}");
        // Bare status word (captured 9F24).
        let m = frames("01 00 02 9F 24 B8", Direction::Terminal).unwrap();
        assert_eq!(m[0].sw.as_deref(), Some("9F24"));
        assert!(m[0].tlv.is_empty());
    }

    #[test]
    fn arbitrary_input_never_panics() {
        use proptest::prelude::*;
        proptest!(|(data in prop::collection::vec(any::<u8>(), 0..400))| {
            let _ = decode_tlv(&data, 0, Options { reveal: false, vipa: true });
            let _ = decode_frames(&data, Direction::Host, Options { reveal: false, vipa: true });
            let _ = decode_frames(&data, Direction::Terminal, Options { reveal: true, vipa: true });
        });
    }
}
