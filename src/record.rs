//! Session recording: a [`MessageTap`] for the reader link that writes every command and
//! every reader message as a JSON line (`{"t_ms":…,"dir":"host|terminal","unsolicited":…,
//! "hex":"…"}`, the format `vipa-sim --replay` plays back, see
//! [`emvbridge_sim::replay`]), so a problem seen in a store can be reproduced in the lab.
//!
//! Card data never reaches the file: before a message is written, every BER-TLV data object
//! with a sensitive tag ([`Tag::is_sensitive`]: PAN, tracks, names, PIN blocks, manual entry)
//! is masked in place and the TLV is rebuilt, so the recording still parses and replays. PANs
//! keep the digits [`emvbridge_protocol::emv::mask_pan_digits`] shows (first 6 / last 4; only the last 4 of 12 digits or
//! fewer) with the rest as nibble `A` (the reader's own masking convention, which the bridge
//! already understands); track 2 keeps expiry and service code
//! and loses its discretionary data; text becomes `*`; binary values become zeros. Encrypted
//! SRED containers are not sensitive in that sense and stay as they are (the lab's issuer can
//! still decrypt them, so a replayed ARQC still verifies). A payload that does not parse as
//! TLV cannot be inspected, so its data is zeroed whole.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use emvbridge_protocol::emv::mask_bcd_pan;
use emvbridge_protocol::recording::{Dir, RecordLine};
use emvbridge_protocol::tlv::{self, Tag, TlvBuilder};
use emvbridge_protocol::vipa::CommandView;

use crate::driver::{MessageTap, Tap, TapDir};

/// [`crate::terminal::Terminal::open`] with the reader link recorded to `path` (used by
/// `emvbridge sale --record FILE`; `serve` can do the same). The embedded simulator and the
/// gateway are set up exactly as `Terminal::open` does; only the link gets the tap, so the
/// recording starts with the reset that re-synchronises the reader.
///
/// # Errors
/// The recording file cannot be created, and the errors of `Terminal::open`.
pub async fn open_terminal(
    opts: &crate::terminal::TerminalOptions,
    path: &Path,
) -> anyhow::Result<crate::terminal::Terminal> {
    use anyhow::Context;
    let tap = Recorder::create(path)
        .with_context(|| format!("cannot create the recording {}", path.display()))?
        .into_tap();
    let mut notes = Vec::new();
    let mut sim = None;
    let addr: crate::driver::DeviceAddr = match &opts.device {
        Some(d) => d.parse().map_err(|e| anyhow::anyhow!("{e}"))?,
        None => {
            let dev = crate::embedded::SimDevice::start(&opts.card).await?;
            notes.push(format!(
                "no --device given: using the simulated reader (card {}) on {}",
                opts.card, dev.addr
            ));
            let a = dev.addr.clone();
            sim = Some(dev);
            a
        }
    };
    let (gateway, sandbox) = crate::terminal::open_gateway_configured(
        &opts.gateway,
        opts.dialect,
        opts.config.as_deref(),
        &mut notes,
    )
    .await?;
    notes.push(format!(
        "recording the reader session to {} (card data masked)",
        path.display()
    ));
    let connector = crate::driver::AddrConnector::new(
        addr,
        crate::driver::LineSettings {
            baud: opts.baud,
            ..Default::default()
        },
    );
    let config = crate::driver::LinkConfig {
        max_connect_attempts: Some(5),
        tap: Some(tap),
        ..Default::default()
    };
    let (link, events) = crate::driver::ReaderLink::spawn(connector, config);
    let info = link
        .wait_ready(std::time::Duration::from_secs(15))
        .await
        .context("the reader did not become ready")?;
    Ok(crate::terminal::Terminal {
        link,
        events,
        info,
        gateway,
        sim,
        sandbox,
        notes,
    })
}

/// How deep constructed objects are walked before the rest is zeroed.
const MAX_DEPTH: usize = 8;

/// Writes a recording. Errors after creation are counted, not raised: a full disk must not
/// stop a sale.
pub struct Recorder {
    start: Instant,
    out: Mutex<BufWriter<File>>,
    write_errors: std::sync::atomic::AtomicU64,
}

impl Recorder {
    /// Creates (truncates) `path`, mode 0600.
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn create(path: &Path) -> std::io::Result<Recorder> {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        let f = o.open(path)?;
        Ok(Recorder {
            start: Instant::now(),
            out: Mutex::new(BufWriter::new(f)),
            write_errors: Default::default(),
        })
    }

    /// This recorder as a link tap (`LinkConfig::tap`).
    pub fn into_tap(self) -> Tap {
        Tap(std::sync::Arc::new(self))
    }

    /// Lines that could not be written.
    pub fn write_errors(&self) -> u64 {
        self.write_errors.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl MessageTap for Recorder {
    fn message(&self, dir: TapDir, unsolicited: bool, payload: &[u8]) {
        let dir = match dir {
            TapDir::Host => Dir::Host,
            TapDir::Terminal => Dir::Terminal,
        };
        let line = RecordLine {
            t_ms: u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX),
            dir,
            unsolicited,
            hex: hex::encode_upper(mask_message(dir, unsolicited, payload)),
        };
        let Ok(text) = serde_json::to_string(&line) else {
            return;
        };
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        // Flushed per line: a crash (the case worth recording) keeps what came before it.
        if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
            self.write_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// A message payload with its sensitive clear fields masked (see the module doc).
/// Commands: `CLA INS P1 P2 [Lc data] [Le]`, the data masked; responses and unsolicited
/// messages: `[data] SW1 SW2`, the data masked (unsolicited ones: TLV without a status word).
pub fn mask_message(dir: Dir, unsolicited: bool, payload: &[u8]) -> Vec<u8> {
    match dir {
        Dir::Host => {
            let Ok(v) = CommandView::parse(payload) else {
                return payload.to_vec(); // < 4 bytes: no data field
            };
            let mut out = payload.get(..4).unwrap_or_default().to_vec();
            match v.lc {
                None => out.extend(v.le),
                Some(lc) => {
                    let data = mask_data(v.data);
                    let lc = if lc == 0xFF || data.len() > 0xFE {
                        0xFF
                    } else {
                        data.len() as u8
                    };
                    out.push(lc);
                    out.extend_from_slice(&data);
                    out.extend(v.le);
                }
            }
            out
        }
        // Unsolicited messages (`E6`, `E0{48}`) carry no status word; tried whole first.
        Dir::Terminal if unsolicited => match mask_tlv(payload, 0) {
            Some(m) => m,
            None => mask_message(Dir::Terminal, false, payload),
        },
        Dir::Terminal => match payload.len().checked_sub(2) {
            Some(n) if n > 0 => {
                let (data, sw) = payload.split_at(n);
                match mask_tlv(data, 0) {
                    Some(mut out) => {
                        out.extend_from_slice(sw);
                        out
                    }
                    None => mask_tlv(payload, 0).unwrap_or_else(|| {
                        let mut out = vec![0; n];
                        out.extend_from_slice(sw);
                        out
                    }),
                }
            }
            _ => payload.to_vec(),
        },
    }
}

/// A data field with sensitive TLV values masked; zeroed whole when it is not TLV.
fn mask_data(data: &[u8]) -> Vec<u8> {
    mask_tlv(data, 0).unwrap_or_else(|| vec![0; data.len()])
}

fn mask_tlv(input: &[u8], depth: usize) -> Option<Vec<u8>> {
    let mut b = TlvBuilder::with_capacity(input.len());
    for item in tlv::parse(input) {
        let t = item.ok()?;
        if t.is_constructed() {
            if depth >= MAX_DEPTH {
                return None;
            }
            let inner = mask_tlv(t.value(), depth + 1)?;
            b.constructed(t.tag(), |c| {
                c.raw(&inner);
            });
        } else if t.tag().is_sensitive() {
            b.primitive(t.tag(), &mask_value(t.tag(), t.value()));
        } else {
            b.primitive(t.tag(), t.value());
        }
    }
    Some(b.freeze().to_vec())
}

/// The masked form of one sensitive value, same length.
pub fn mask_value(tag: Tag, value: &[u8]) -> Vec<u8> {
    let bcd = matches!(
        tag,
        Tag::PAN | Tag::TRACK2_EQUIVALENT | Tag::TRACK2_DATA | Tag::VIPA_MANUAL_PAN
    );
    if bcd && !value.iter().all(|b| (0x20..0x7F).contains(b)) || matches!(tag, Tag::PAN) {
        return mask_bcd_pan(value);
    }
    if !value.is_empty() && value.iter().all(|b| (0x20..0x7F).contains(b)) {
        return value
            .iter()
            .map(|&c| if c.is_ascii_alphanumeric() { b'*' } else { c })
            .collect();
    }
    vec![0; value.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_pan_track2_and_name_and_keeps_the_rest() {
        let mut b = TlvBuilder::new();
        b.constructed(Tag(0xE4), |c| {
            c.primitive(Tag::PAN, &[0x47, 0x61, 0x73, 0x90, 0x01, 0x01, 0x00, 0x10]);
            c.primitive(
                Tag::TRACK2_EQUIVALENT,
                &hex::decode("4761739001010010D2812201123456789F").unwrap_or_default(),
            );
            c.primitive(Tag::CARDHOLDER_NAME, b"DOE/JOHN");
            c.primitive(Tag(0x9F02), &[0, 0, 0, 0, 0x12, 0x34]);
            c.constructed(Tag(0xFF7F), |s| {
                s.primitive(Tag(0xDFDF10), &[0xDE, 0xAD]);
            });
        });
        let mut payload = b.freeze().to_vec();
        payload.extend_from_slice(&[0x90, 0x00]);
        let m = mask_message(Dir::Terminal, false, &payload);
        assert_eq!(m.len(), payload.len());
        let body = &m[..m.len() - 2];
        assert_eq!(&m[m.len() - 2..], [0x90, 0x00]);
        let pan = tlv::find(body, Tag::PAN).unwrap();
        assert_eq!(hex::encode_upper(pan.value()), "476173AAAAAA0010");
        let t2 = tlv::find(body, Tag::TRACK2_EQUIVALENT).unwrap();
        assert_eq!(
            hex::encode_upper(t2.value()),
            "476173AAAAAA0010D2812201AAAAAAAAAF"
        );
        assert_eq!(
            tlv::find(body, Tag::CARDHOLDER_NAME).unwrap().value(),
            b"***/****"
        );
        assert_eq!(
            tlv::find(body, Tag(0x9F02)).unwrap().value(),
            [0, 0, 0, 0, 0x12, 0x34]
        );
        assert_eq!(
            tlv::find(body, Tag(0xDFDF10)).unwrap().value(),
            [0xDE, 0xAD]
        );
        // The clear digits are gone from the whole message.
        assert!(!hex::encode_upper(&m).contains("9001010010"));
    }

    #[test]
    fn commands_keep_header_and_fix_lc() {
        let mut data = TlvBuilder::new();
        data.primitive(Tag::PAN, &[0x41, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11]);
        let data = data.freeze();
        let mut cmd = vec![0xDE, 0xD1, 0x00, 0x00, data.len() as u8];
        cmd.extend_from_slice(&data);
        cmd.push(0x00);
        let m = mask_message(Dir::Host, false, &cmd);
        assert_eq!(m.len(), cmd.len());
        assert_eq!(&m[..5], &cmd[..5]);
        assert_eq!(m.last(), Some(&0x00));
        assert_eq!(hex::encode_upper(&m[7..15]), "411111AAAAAA1111");
        assert_eq!(
            mask_message(Dir::Host, false, &[0xD0, 0x00, 0x00, 0x01]),
            [0xD0, 0, 0, 1]
        );
    }

    #[test]
    fn unparseable_data_is_zeroed() {
        let m = mask_message(Dir::Terminal, false, &[0x5A, 0x09, 0x41, 0x11, 0x90, 0x00]);
        assert_eq!(m, [0, 0, 0, 0, 0x90, 0x00]);
        // An unsolicited E6 (no SW) is TLV whole.
        let e6 = [0xE6, 0x05, 0xC3, 0x01, 0x00, 0x5A, 0x00];
        assert_eq!(mask_message(Dir::Terminal, true, &e6), e6);
        // A short PAN (8 digits) shows its last 4 only.
        let e6 = [0xE6, 0x06, 0x5A, 0x04, 0x41, 0x11, 0x11, 0x11];
        assert_eq!(
            mask_message(Dir::Terminal, true, &e6),
            [0xE6, 0x06, 0x5A, 0x04, 0xAA, 0xAA, 0x11, 0x11]
        );
        assert_eq!(
            mask_message(Dir::Terminal, false, &[0x90, 0x00]),
            [0x90, 0x00]
        );
        assert_eq!(mask_message(Dir::Terminal, false, &[0x90]), [0x90]);
    }

    #[test]
    #[cfg(feature = "sim")]
    fn recorder_writes_masked_json_lines_mode_0600() {
        let dir = std::env::temp_dir().join(format!("emvb-rec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("session.jsonl");
        let r = Recorder::create(&path).unwrap();
        r.message(TapDir::Host, false, &[0xD0, 0x00, 0x00, 0x01]);
        r.message(
            TapDir::Terminal,
            false,
            &[
                0x5A, 0x08, 0x47, 0x61, 0x73, 0x90, 0x01, 0x01, 0x00, 0x10, 0x90, 0x00,
            ],
        );
        let text = std::fs::read_to_string(&path).unwrap();
        // The simulator's replay reads what the recorder wrote.
        let rec = emvbridge_sim::replay::Recording::parse(&text).unwrap();
        let e = rec.entries();
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].dir, e[1].dir), (Dir::Host, Dir::Terminal));
        assert_eq!(hex::encode_upper(&e[1].payload), "5A08476173AAAAAA00109000");
        assert!(!text.contains("9001010010"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    proptest::proptest! {
        #[test]
        fn masking_never_panics_and_keeps_sw(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let m = mask_message(Dir::Terminal, false, &bytes);
            // The status word is kept, unless the bytes before it are not TLV while the whole
            // message is (an unsolicited message without a status word, masked whole).
            let whole_tlv = bytes.len() > 2
                && super::mask_tlv(&bytes[..bytes.len() - 2], 0).is_none()
                && super::mask_tlv(&bytes, 0).is_some();
            if bytes.len() >= 2 && !whole_tlv {
                proptest::prop_assert_eq!(&m[m.len() - 2..], &bytes[bytes.len() - 2..]);
            }
            let _ = mask_message(Dir::Host, false, &bytes);
            let _ = mask_message(Dir::Terminal, true, &bytes);
        }
    }
}
