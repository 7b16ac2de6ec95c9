//! Virtual clock (gateways.md §4.1): wall time since start plus an offset that
//! `POST /_sim/clock` advances, so SessKey/token expiry and webhook retries can be driven in
//! milliseconds of real time. Also the date-times the dialects read and write (RFC 3339,
//! calendar days), done with the `time` crate.

use std::time::Instant;

use time::format_description::well_known::Rfc3339;
use time::format_description::BorrowedFormatItem;
use time::macros::{date, format_description, time};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

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

/// `YYYY-MM-DDTHH:MM:SSZ`.
const ISO_SECONDS: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`. Instants outside years 0000–9999 are
/// clamped to that range.
pub fn iso8601(epoch: i64) -> String {
    let first = PrimitiveDateTime::new(date!(0000 - 01 - 01), Time::MIDNIGHT).assume_utc();
    let last = PrimitiveDateTime::new(date!(9999 - 12 - 31), time!(23:59:59)).assume_utc();
    let clamped = epoch.clamp(first.unix_timestamp(), last.unix_timestamp());
    OffsetDateTime::from_unix_timestamp(clamped)
        .ok()
        .and_then(|t| t.format(ISO_SECONDS).ok())
        .unwrap_or_default()
}

/// Parses an RFC 3339 date-time (`2025-03-17T08:10:52.544247646Z`, `…+02:00`) into Unix
/// seconds. Fractions are accepted and truncated. `None` for anything else, including dates
/// that do not exist (`2025-02-30`) and a space in place of the `T`.
pub fn parse_iso8601(s: &str) -> Option<i64> {
    if s.len() < 20 || s.len() > 40 || !matches!(s.as_bytes().get(10), Some(b'T' | b't')) {
        return None;
    }
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

/// Days since 1970-01-01 of a calendar date; `None` if the date does not exist.
pub fn days_from_civil(year: i32, month: u8, day: u8) -> Option<i64> {
    let month = Month::try_from(month).ok()?;
    let date = Date::from_calendar_date(year, month, day).ok()?;
    Some(i64::from(
        date.to_julian_day() - date!(1970 - 01 - 01).to_julian_day(),
    ))
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
        assert_eq!(
            parse_iso8601("2025-03-17t08:10:52.5-01:30"),
            Some(1_742_199_052 + 5400)
        );
        assert_eq!(parse_iso8601("2025-03-17T08:10:52z"), Some(1_742_199_052));
        assert_eq!(
            parse_iso8601("2025-03-17T08:10:52.123456789123Z"),
            Some(1_742_199_052)
        );
        assert_eq!(iso8601(1_742_199_052), "2025-03-17T08:10:52Z");
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(-1), "1969-12-31T23:59:59Z");
        assert_eq!(iso8601(i64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(iso8601(i64::MIN), "0000-01-01T00:00:00Z");
        for e in [0, 951_782_400, 1_742_199_052, 4_102_444_800] {
            assert_eq!(parse_iso8601(&iso8601(e)), Some(e));
        }
        for bad in [
            "",
            "2025-03-17",
            "2025-13-17T08:10:52Z",
            "2025-03-17T08:10:52",
            "2025-03-17T08:10:52.Z",
            "2025-03-17 08:10:52Z",
            "2025-03-17T08:10:52+0200",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
    }

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), Some(0));
        assert_eq!(days_from_civil(2025, 3, 17), Some(1_742_199_052 / 86_400));
        assert_eq!(days_from_civil(2000, 2, 29), Some(11_016));
        assert_eq!(days_from_civil(1969, 12, 31), Some(-1));
        assert_eq!(days_from_civil(2025, 2, 29), None);
        assert_eq!(days_from_civil(2025, 13, 1), None);
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
