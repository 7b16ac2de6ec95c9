//! Virtual clock (§4.1): wall time since start plus an offset that `POST /_sim/clock` advances,
//! so SessKey/token expiry and webhook retries can be driven in milliseconds of real time.

use std::time::Instant;

/// Seconds since the Unix epoch, as the sandbox sees them.
#[derive(Debug, Clone)]
pub struct VirtualClock {
    start_epoch_ms: i64,
    started: Instant,
    offset_ms: i64,
}

impl VirtualClock {
    /// A clock that starts at `start_epoch` (Unix seconds).
    pub fn new(start_epoch: i64) -> Self {
        VirtualClock {
            start_epoch_ms: start_epoch.saturating_mul(1000),
            started: Instant::now(),
            offset_ms: 0,
        }
    }

    /// The wall clock now, in Unix seconds.
    pub fn wall_epoch() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }

    /// Virtual now in milliseconds.
    pub fn now_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX / 2);
        self.start_epoch_ms
            .saturating_add(elapsed)
            .saturating_add(self.offset_ms)
    }

    /// Virtual now in seconds.
    pub fn now(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Moves virtual time forward (negative values are ignored: time does not run back).
    pub fn advance(&mut self, secs: i64) {
        self.offset_ms = self
            .offset_ms
            .saturating_add(secs.max(0).saturating_mul(1000));
    }
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn iso8601(epoch: i64) -> String {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Parses an ISO-8601/RFC 3339 date-time (`2025-03-17T08:10:52.544247646Z`, `…+02:00`) into
/// Unix seconds. Fractions are accepted and truncated. `None` for anything else.
pub fn parse_iso8601(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b.len() > 40 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !matches!(b.get(10), Some(b'T' | b't'))
    {
        return None;
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = match s.get(i..)? {
        "Z" | "z" => 0,
        tz if tz.len() == 6 => {
            let sign = match tz.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se - offset)
}

/// Howard Hinnant's days-from-civil.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_round_trip_and_vector_timestamp() {
        assert_eq!(parse_iso8601("1970-01-01T00:00:00Z"), Some(0));
        // date -u -d 2025-03-17T08:10:52Z +%s
        assert_eq!(
            parse_iso8601("2025-03-17T08:10:52.544247646Z"),
            Some(1_742_199_052)
        );
        assert_eq!(
            parse_iso8601("2025-03-17T10:10:52+02:00"),
            Some(1_742_199_052)
        );
        assert_eq!(iso8601(1_742_199_052), "2025-03-17T08:10:52Z");
        for bad in [
            "",
            "2025-03-17",
            "2025-13-17T08:10:52Z",
            "2025-03-17T08:10:52",
            "2025-03-17T08:10:52.Z",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
    }

    #[test]
    fn advance_moves_forward_only() {
        let mut c = VirtualClock::new(1000);
        let t0 = c.now();
        c.advance(90_000);
        assert!(c.now() >= t0 + 90_000);
        c.advance(-5);
        assert!(c.now() >= t0 + 90_000);
    }
}
