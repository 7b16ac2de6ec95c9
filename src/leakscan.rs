//! Card-data and secret leak scanner: looks through bytes the bridge wrote (logs, journals,
//! recordings, command output) for full PANs, track data and configured secrets.
//!
//! Used by `tests/leak_scan.rs` after running the scenario binaries, and callable on any CI
//! artifact. What counts as a leak (the house rule: never a full PAN, track data or secret in
//! a log, file or output):
//! - a maximal run of 13–19 ASCII digits (optionally in groups split by single spaces or
//!   dashes) that is Luhn-valid and starts like a payment card (IIN 2221–2720, 3 [4–8], 4, 5
//!   [1–5], 6): timestamps, amounts and counters start otherwise or fail Luhn;
//! - track-2 style data: a Luhn-valid PAN right before a `D`/`=` separator and four digits
//!   (`4761739001010010D2512…`), also at the end of a longer hex run (`5713…` prefix);
//! - hex text of a BER-TLV PAN (`5A` + length + BCD, `F`-padded);
//! - the simulator's card-profile PANs in any form: ASCII digits anywhere (even inside a
//!   longer digit run), packed BCD bytes;
//! - the configured secrets, verbatim.
//!
//! Masked forms (`411111******1111`, the reader's `374245AAAAA1006F`) have no 13-digit run
//! and are not flagged.

use std::fmt;

/// What kind of sensitive data a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A Luhn-valid card number as text.
    Pan,
    /// Track-2 style data (PAN, separator, expiry).
    Track2,
    /// A PAN in (hex text of) BCD inside BER-TLV, or packed BCD bytes of a known PAN.
    BcdPan,
    /// One of the simulator's test PANs, in any form.
    KnownPan,
    /// A configured secret.
    Secret,
}

/// One leak: where, what kind, and a masked excerpt (the scanner never repeats what it found).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Kind of data.
    pub kind: Kind,
    /// Byte offset in the scanned buffer.
    pub offset: usize,
    /// A PAN masked as everywhere else ([`emvbridge_protocol::emv::mask_pan_digits`]: first 6 /
    /// last 4, only the last 4 of 12 digits or fewer), or the first 3 characters of a secret.
    pub masked: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} at byte {}: {}",
            self.kind, self.offset, self.masked
        )
    }
}

/// What to look for besides the generic card-number shapes.
#[derive(Clone, Default)]
pub struct Scanner {
    pans: Vec<String>,
    secrets: Vec<String>,
}

impl fmt::Debug for Scanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scanner")
            .field("pans", &self.pans.len())
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

impl Scanner {
    /// Generic shapes only.
    pub fn new() -> Scanner {
        Scanner::default()
    }

    /// Generic shapes, the simulator's card PANs and the sandbox's default credentials (the
    /// secrets a store run of the scenario suite is configured with).
    pub fn with_defaults() -> Scanner {
        let mut s = Scanner::new();
        for (_, text) in emvbridge_sim::card::profile::PROFILE_FILES {
            for line in text.lines() {
                if let Some(v) = line.trim().strip_prefix("pan") {
                    let v = v
                        .trim_start()
                        .trim_start_matches('=')
                        .trim()
                        .trim_matches('"');
                    s = s.pan(v);
                }
            }
        }
        let c = emvbridge_sandbox::config::SandboxConfig::default();
        for secret in [
            &c.number.token,
            &c.number.hmac_secret,
            &c.pai.api_key,
            &c.pai.temporal_api_key,
            &c.pai.webhook_secret,
            &c.pay1st.api_key,
            &c.pay1st.api_secret,
            &c.pay1st.signing_key,
            &c.pay1st.webhook_pass,
        ] {
            s = s.secret(secret);
        }
        s
    }

    /// Also flags this PAN in any form (digits only; others are ignored).
    pub fn pan(mut self, pan: &str) -> Scanner {
        if (12..=19).contains(&pan.len())
            && pan.bytes().all(|b| b.is_ascii_digit())
            && !self.pans.iter().any(|p| p == pan)
        {
            self.pans.push(pan.to_owned());
        }
        self
    }

    /// Also flags this secret verbatim (secrets shorter than 6 bytes are ignored: too
    /// common to mean anything).
    pub fn secret(mut self, secret: &str) -> Scanner {
        if secret.len() >= 6 && !self.secrets.iter().any(|s| s == secret) {
            self.secrets.push(secret.to_owned());
        }
        self
    }

    /// Scans `data`; findings are sorted by offset, at most one per offset and kind.
    pub fn scan(&self, data: &[u8]) -> Vec<Finding> {
        let mut out = Vec::new();
        digit_runs(data, &mut out);
        tlv_hex_pans(data, &mut out);
        for pan in &self.pans {
            for at in find_all(data, pan.as_bytes()) {
                out.push(finding(Kind::KnownPan, at, pan));
            }
            let bcd = pack_bcd(pan);
            for at in find_all(data, &bcd) {
                out.push(finding(Kind::KnownPan, at, pan));
            }
        }
        for secret in &self.secrets {
            for at in find_all(data, secret.as_bytes()) {
                out.push(Finding {
                    kind: Kind::Secret,
                    offset: at,
                    masked: format!("{}…", secret.chars().take(3).collect::<String>()),
                });
            }
        }
        out.sort_by_key(|f| (f.offset, f.kind as u8));
        out.dedup_by(|a, b| a.offset == b.offset && a.kind == b.kind);
        // A known PAN found as text is also a generic PAN/track finding: report it once.
        let mut seen: Vec<usize> = Vec::new();
        out.retain(|f| {
            if f.kind == Kind::KnownPan && seen.contains(&f.offset) {
                return false;
            }
            if matches!(f.kind, Kind::Pan | Kind::Track2 | Kind::BcdPan) {
                seen.push(f.offset);
            }
            true
        });
        out
    }
}

/// Scans with [`Scanner::with_defaults`].
pub fn scan(data: &[u8]) -> Vec<Finding> {
    Scanner::with_defaults().scan(data)
}

fn finding(kind: Kind, offset: usize, pan: &str) -> Finding {
    Finding {
        kind,
        offset,
        masked: emvbridge_protocol::emv::mask_pan_digits(pan),
    }
}

fn card_like(d: &[u8]) -> bool {
    emvbridge_protocol::emv::card_number_like(d)
}

/// Maximal digit runs (with single space/dash group separators), plain and track-2 shapes.
fn digit_runs(data: &[u8], out: &mut Vec<Finding>) {
    let mut i = 0;
    while i < data.len() {
        if !data[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        let mut digits: Vec<u8> = Vec::new();
        let mut group = 0;
        let mut j = i;
        while j < data.len() {
            let b = data[j];
            if b.is_ascii_digit() {
                digits.push(b);
                group += 1;
                j += 1;
            } else if (b == b' ' || b == b'-')
                && group == 4
                && digits.len() < 16
                && data.get(j + 1).is_some_and(u8::is_ascii_digit)
            {
                // "4111 1111 1111 1111": a separator only between groups of four.
                group = 0;
                j += 1;
            } else {
                break;
            }
            if digits.len() > 64 {
                // A long number (a hex dump, a hash): keep walking without collecting.
                while j < data.len() && data[j].is_ascii_digit() {
                    j += 1;
                }
                break;
            }
        }
        let text = String::from_utf8_lossy(&digits).into_owned();
        let after = data.get(j).copied();
        let track_sep = matches!(after, Some(b'D' | b'd' | b'='))
            && data
                .get(j + 1..j + 5)
                .is_some_and(|e| e.iter().all(u8::is_ascii_digit));
        if track_sep && digits.len() >= 13 {
            // The PAN is the tail of the run (a TLV tag/length may precede it in hex).
            let found = [16, 15, 19, 18, 17, 14, 13].into_iter().find_map(|n| {
                if n > digits.len() {
                    return None;
                }
                let tail = &digits[digits.len() - n..];
                card_like(tail).then_some((start + digits.len() - n, tail))
            });
            if let Some((at, tail)) = found {
                out.push(finding(Kind::Track2, at, &String::from_utf8_lossy(tail)));
            }
        } else if digits.len() <= 64 && card_like(&digits) && !hex_context(data, start, j) {
            out.push(finding(Kind::Pan, start, &text));
        }
        i = j.max(i + 1);
    }
}

/// Whether the digit run `data[start..end]` is part of a longer hex token (a hex dump of
/// TLV or of ASCII text, where `4D415354455243415244` — "MASTERCARD" — holds a Luhn-valid
/// 19-digit run by chance). There, only the structured rules (TLV `5A`, track 2, known PANs)
/// apply.
fn hex_context(data: &[u8], start: usize, end: usize) -> bool {
    let hex_letter = |b: Option<&u8>| b.is_some_and(|b| matches!(b, b'A'..=b'F' | b'a'..=b'f'));
    hex_letter(start.checked_sub(1).and_then(|i| data.get(i))) || hex_letter(data.get(end))
}

/// Hex text of a BER-TLV `5A` (Application PAN): `5A` + length (6–10) + BCD, `F`-padded.
fn tlv_hex_pans(data: &[u8], out: &mut Vec<Finding>) {
    for at in find_all_ci(data, b"5A") {
        // Only at an even offset of a hex run (a tag starts on a byte boundary).
        let run_start = data[..at]
            .iter()
            .rposition(|b| !b.is_ascii_hexdigit())
            .map_or(0, |p| p + 1);
        if (at - run_start) % 2 != 0 {
            continue;
        }
        let Some(len) = data
            .get(at + 2..at + 4)
            .and_then(|l| std::str::from_utf8(l).ok())
            .and_then(|l| u8::from_str_radix(l, 16).ok())
        else {
            continue;
        };
        if !(6..=10).contains(&len) {
            continue;
        }
        let Some(v) = data.get(at + 4..at + 4 + 2 * usize::from(len)) else {
            continue;
        };
        let digits: Vec<u8> = v
            .iter()
            .copied()
            .take_while(|b| !matches!(b, b'F' | b'f'))
            .collect();
        let padded_ok = v[digits.len()..].iter().all(|b| matches!(b, b'F' | b'f'));
        if padded_ok && card_like(&digits) {
            out.push(finding(
                Kind::BcdPan,
                at + 4,
                &String::from_utf8_lossy(&digits),
            ));
        }
    }
}

/// Packed BCD of a digit string, `F`-padded to whole bytes.
fn pack_bcd(pan: &str) -> Vec<u8> {
    let mut nibbles: Vec<u8> = pan.bytes().map(|b| b - b'0').collect();
    if nibbles.len() % 2 == 1 {
        nibbles.push(0x0F);
    }
    nibbles.chunks(2).map(|c| (c[0] << 4) | c[1]).collect()
}

fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return Vec::new();
    }
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

fn find_all_ci(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return Vec::new();
    }
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| w.eq_ignore_ascii_case(needle))
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(data: &[u8]) -> Vec<Kind> {
        Scanner::new()
            .scan(data)
            .into_iter()
            .map(|f| f.kind)
            .collect()
    }

    #[test]
    fn card_numbers_known_values() {
        assert!(card_like(b"4111111111111111"));
        assert!(card_like(b"378282246310005"));
        assert!(!card_like(b"4111111111111112"), "Luhn");
        assert!(!card_like(b"9111111111111110"), "no scheme's range");
        assert!(!card_like(b""));
    }

    #[test]
    fn finds_a_planted_pan_in_text() {
        let log = b"2026-11-21T20:04:55Z INFO sale card=4761739001010010 amount=1234";
        let f = Scanner::new().scan(log);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind, Kind::Pan);
        assert_eq!(f[0].offset, 36);
        assert_eq!(f[0].masked, "476173******0010");
        // Grouped as printed on a card.
        assert_eq!(kinds(b"pan 4111 1111 1111 1111."), vec![Kind::Pan]);
        assert_eq!(kinds(b"pan 4111-1111-1111-1111."), vec![Kind::Pan]);
        // Amex, 15 digits; Mastercard 2-series.
        assert_eq!(kinds(b"\"378282246310005\""), vec![Kind::Pan]);
        assert_eq!(kinds(b"x2223003122003222x"), vec![Kind::Pan]);
    }

    #[test]
    fn finds_a_pan_in_bcd_hex_tlv() {
        // 5A 08 4761739001010010 inside a hex dump of ICC data.
        let hex = b"icc=9F2608A1B2C3D4E5F607085A0847617390010100105F340101";
        let f = Scanner::new().scan(hex);
        assert!(
            f.iter()
                .any(|f| f.kind == Kind::BcdPan && f.masked == "476173******0010"),
            "{f:?}"
        );
        // Odd-length PAN, F-padded (Amex 15 digits), lower case.
        let amex = b"5a08378282246310005f";
        assert_eq!(kinds(amex), vec![Kind::BcdPan]);
    }

    #[test]
    fn finds_track2() {
        assert_eq!(
            kinds(b"t2=4761739001010010D22122011143804400000"),
            vec![Kind::Track2]
        );
        assert_eq!(
            kinds(b";4111111111111111=30121010000012300000?"),
            vec![Kind::Track2]
        );
        // In hex, behind tag 57 and its length: the PAN is the tail of the digit run.
        let f = Scanner::new().scan(b"57134761739001010010D22122011143804400000F");
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind, Kind::Track2);
        assert_eq!(f[0].offset, 4);
    }

    #[test]
    fn known_pans_in_any_form() {
        let s = Scanner::new().pan("4761739001010010");
        // Inside a longer digit run, where the generic rule cannot see it.
        let f = s.scan(b"ref=99994761739001010010123");
        assert_eq!(
            f.iter().map(|f| f.kind).collect::<Vec<_>>(),
            vec![Kind::KnownPan]
        );
        // Packed BCD in a binary file.
        let mut blob = vec![0u8, 1, 2, 0xFF];
        blob.extend([0x47, 0x61, 0x73, 0x90, 0x01, 0x01, 0x00, 0x10]);
        blob.extend([0, 0]);
        let f = s.scan(&blob);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!((f[0].kind, f[0].offset), (Kind::KnownPan, 4));
        // Plain text: reported once.
        assert_eq!(s.scan(b" 4761739001010010 ").len(), 1);
    }

    #[test]
    fn defaults_know_the_simulator_cards_and_sandbox_secrets() {
        let s = Scanner::with_defaults();
        assert!(s.pans.iter().any(|p| p == "4761739001010010"), "{s:?}");
        assert!(s.pans.len() >= 10, "{s:?}");
        let f = s.scan(b"header X-Api-Secret: p1_sandbox_secret");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, Kind::Secret);
        assert_eq!(f[0].masked, "p1_…");
        assert_eq!(f[0].offset, 21);
        // The finding itself never repeats the secret.
        assert!(!f[0].to_string().contains("sandbox_secret"));
    }

    #[test]
    fn masked_and_innocent_text_is_clean() {
        let s = Scanner::with_defaults();
        for text in [
            &b"card 411111******1111 approved"[..],
            b"pan 476173******0010",
            // The reader's own masking (SRED): digits replaced by 'A'.
            b"5A08374245AAAAA1006F",
            b"57 374245AAAAA1006FD2512",
            // Timestamps and ids: unix ms, compact date-times, nanos.
            b"ts=1700000000000 at=20261121200455123 t=1763755495123456789",
            // Non-Luhn card-shaped digits.
            b"4111111111111112 4761739001010011",
            // Amounts, counters, a hash in hex.
            b"amount=000000001234 atc=0001 sha=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            b"",
        ] {
            let f = s.scan(text);
            assert!(f.is_empty(), "{}: {f:?}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn hex_dumps_are_not_cards_by_chance() {
        // Hex of "MASTERCARD" and a 9F34/5F34 neighbourhood: Luhn-valid card-like digit runs
        // inside hex tokens (seen in recordings), not card numbers.
        let s = Scanner::new();
        assert!(s.scan(b"500A4D4153544552434152449F120A").is_empty());
        assert!(s
            .scan(b"5F2A0208405F3401005711555555AAAAAA4444D3012201")
            .is_empty());
        // But a real 5A inside the same kind of dump is found.
        assert_eq!(
            kinds(b"9F12045F34015A0841111111111111119F02"),
            vec![Kind::BcdPan]
        );
    }

    #[test]
    fn long_digit_runs_are_bounded() {
        // A megabyte of digits: no finding from the generic rule, and quick.
        let big = vec![b'7'; 1 << 20];
        assert!(Scanner::new().scan(&big).is_empty());
    }

    #[test]
    fn findings_are_masked_first6_last4() {
        let masked = |s: Scanner, data: &[u8]| -> Vec<String> {
            s.scan(data).into_iter().map(|f| f.masked).collect()
        };
        assert_eq!(
            masked(Scanner::new(), b"pan 4111111111111111 and 378282246310005"),
            ["411111******1111", "378282*****0005"]
        );
        // A 12-digit known PAN shows its last 4 only (no more than half of a short number).
        assert_eq!(
            masked(Scanner::new().pan("123456789012"), b"id=123456789012;"),
            ["********9012"]
        );
    }
}
