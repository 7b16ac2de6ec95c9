//! The reconciliation report (`emvbridge report --date …` or `--from … --to …`, and
//! `GET /v1/reconciliation`): counts and totals by outcome and gateway over a period, with
//! every row still unresolved listed.
//!
//! A period is named in a [`Zone`]: UTC unless the caller gives an IANA zone
//! (`Europe/Berlin`) or a fixed offset (`+02:00`). A day in a zone runs from local midnight to
//! the next local midnight, so a day on which the clocks change is 23 or 25 hours long. The
//! zone rules are the IANA database bundled into the binary (`jiff`'s `tzdb-bundle-always`):
//! the same answer on every till, with or without `/usr/share/zoneinfo`.

use std::collections::BTreeMap;

use super::{Entry, Journal, JournalError, RelayState};

/// One line of the summary: a (dialect, kind, state, currency) group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Line {
    /// Gateway dialect.
    pub dialect: String,
    /// Sale, pre-authorization or refund, as the journal records it.
    pub kind: String,
    /// Relay state.
    pub state: RelayState,
    /// Currency.
    pub currency: String,
    /// Rows.
    pub count: u64,
    /// Sum of requested amounts, minor units.
    pub requested_minor: i64,
    /// Sum of approved amounts, minor units (approved, forwarded, stored).
    pub approved_minor: i64,
}

/// The report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// Period start (Unix seconds, inclusive).
    pub from: i64,
    /// Period end (Unix seconds, exclusive).
    pub to: i64,
    /// The zone the period was named in (`UTC`, `Europe/Berlin`, `+02:00`).
    pub tz: String,
    /// Period start, ISO 8601 with the zone's offset at that instant (`Z` in UTC).
    pub from_iso: String,
    /// Period end, likewise.
    pub to_iso: String,
    /// Groups, sorted by dialect, kind, state, currency.
    pub lines: Vec<Line>,
    /// Rows not settled (any date): unknown, reversals due, stored, escalated…
    pub unresolved: Vec<Entry>,
}

/// Builds the report for `[from, to)` named in UTC.
///
/// # Errors
/// [`JournalError`].
pub fn build(journal: &Journal, from: i64, to: i64) -> Result<Report, JournalError> {
    build_period(
        journal,
        &Period {
            from,
            to,
            zone: Zone::utc(),
        },
    )
}

/// Builds the report for a period ([`Period::parse`]), its bounds shown in its zone.
///
/// # Errors
/// [`JournalError`].
pub fn build_period(journal: &Journal, period: &Period) -> Result<Report, JournalError> {
    let (from, to) = (period.from, period.to);
    let mut groups: BTreeMap<(String, String, RelayState, String), Line> = BTreeMap::new();
    for e in journal.between(from, to)? {
        let key = (
            e.dialect.clone(),
            e.kind.clone(),
            e.state,
            e.currency.clone(),
        );
        let l = groups.entry(key).or_insert_with(|| Line {
            dialect: e.dialect.clone(),
            kind: e.kind.clone(),
            state: e.state,
            currency: e.currency.clone(),
            count: 0,
            requested_minor: 0,
            approved_minor: 0,
        });
        l.count += 1;
        l.requested_minor = l.requested_minor.saturating_add(e.amount_minor);
        if matches!(
            e.state,
            RelayState::Approved | RelayState::Forwarded | RelayState::Stored
        ) {
            l.approved_minor = l
                .approved_minor
                .saturating_add(e.approved_minor.unwrap_or(e.amount_minor));
        }
    }
    Ok(Report {
        from,
        to,
        tz: period.zone.name().to_owned(),
        from_iso: period.zone.iso8601(from),
        to_iso: period.zone.iso8601(to),
        lines: groups.into_values().collect(),
        unresolved: journal.unresolved()?,
    })
}

/// Minor units as major units of the currency (`1234` USD → `12.34`); an unknown currency
/// is shown with two decimals.
fn major(minor: i64, currency: &str) -> String {
    let exp = emvbridge_core::money::Money::from_minor(0, currency)
        .map(|m| m.currency().exponent)
        .unwrap_or(2);
    let sign = if minor < 0 { "-" } else { "" };
    let digits = emvbridge_protocol::emv::numeric::format_minor_units(minor.unsigned_abs(), exp);
    format!("{sign}{digits}")
}

impl Report {
    /// A fixed-width table.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "reconciliation {} .. {} ({})",
            self.from_iso, self.to_iso, self.tz
        );
        let _ = writeln!(
            s,
            "{:<11} {:<17} {:<4} {:>6} {:>16} {:>16}  kind",
            "gateway", "state", "cur", "count", "requested", "approved"
        );
        for l in &self.lines {
            let _ = writeln!(
                s,
                "{:<11} {:<17} {:<4} {:>6} {:>16} {:>16}  {}",
                l.dialect,
                l.state.as_str(),
                l.currency,
                l.count,
                major(l.requested_minor, &l.currency),
                major(l.approved_minor, &l.currency),
                l.kind
            );
        }
        if self.unresolved.is_empty() {
            let _ = writeln!(s, "unresolved: none");
        } else {
            let _ = writeln!(s, "UNRESOLVED: {}", self.unresolved.len());
            for e in &self.unresolved {
                let _ = writeln!(
                    s,
                    "  {} {} {} {} {} attempts={} {}",
                    e.reference,
                    e.dialect,
                    e.state.as_str(),
                    major(e.amount_minor, &e.currency),
                    e.currency,
                    e.resolve_attempts,
                    e.reason.as_deref().unwrap_or("")
                );
            }
        }
        s
    }

    /// CSV: one line per group, then one line per unresolved row (section column first; the
    /// kind last, so readers of the earlier columns are unaffected).
    pub fn csv(&self) -> String {
        let mut s = String::from(
            "section,gateway,state,currency,count,requested,approved,reference,kind\n",
        );
        for l in &self.lines {
            s.push_str(&format!(
                "summary,{},{},{},{},{},{},,{}\n",
                l.dialect,
                l.state.as_str(),
                l.currency,
                l.count,
                major(l.requested_minor, &l.currency),
                major(l.approved_minor, &l.currency),
                csv_field(&l.kind)
            ));
        }
        for e in &self.unresolved {
            s.push_str(&format!(
                "unresolved,{},{},{},1,{},,{},{}\n",
                e.dialect,
                e.state.as_str(),
                e.currency,
                major(e.amount_minor, &e.currency),
                csv_field(&e.reference),
                csv_field(&e.kind)
            ));
        }
        s
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The zone a period is named in: UTC, a fixed offset or an IANA zone.
#[derive(Debug, Clone)]
pub struct Zone {
    /// As echoed: `UTC`, `+02:00`, or the database's spelling of the IANA name.
    name: String,
    tz: jiff::tz::TimeZone,
}

/// Longest zone name looked up (the longest IANA name has 32 characters).
const MAX_ZONE_NAME: usize = 64;

impl Zone {
    /// UTC.
    pub fn utc() -> Zone {
        Zone {
            name: "UTC".into(),
            tz: jiff::tz::TimeZone::UTC,
        }
    }

    /// Parses `UTC` (or `Z`), a fixed offset `±HH:MM` (at most 18 hours), or an IANA zone
    /// name (`Europe/Berlin`, `America/New_York`; the database's case-insensitive match).
    ///
    /// # Errors
    /// Why the text names no zone, in words.
    pub fn parse(s: &str) -> Result<Zone, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("utc") || s == "Z" {
            return Ok(Zone::utc());
        }
        if s.starts_with(['+', '-']) {
            return fixed_offset(s);
        }
        if s.is_empty() || s.len() > MAX_ZONE_NAME {
            return Err("expected an IANA zone (Europe/Berlin), UTC or an offset (+02:00)".into());
        }
        let tz = jiff::tz::TimeZone::get(s).map_err(|_| {
            format!(
                "unknown time zone {s:?}: expected an IANA zone (Europe/Berlin), UTC or an offset (+02:00)"
            )
        })?;
        let name = tz.iana_name().unwrap_or(s).to_owned();
        Ok(Zone { name, tz })
    }

    /// The zone's name as echoed in answers.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `t` (Unix seconds) as ISO 8601 with the zone's offset at `t`; UTC as `…Z`, and a time
    /// outside the calendar's years as the gateways' UTC form.
    pub fn iso8601(&self, t: i64) -> String {
        if self.name == "UTC" {
            return crate::gateway::iso8601(t);
        }
        match jiff::Timestamp::from_second(t) {
            Ok(ts) => ts.display_with_offset(self.tz.to_offset(ts)).to_string(),
            Err(_) => crate::gateway::iso8601(t),
        }
    }

    /// The instant a civil time (given as the Unix seconds it would be in UTC) is in this
    /// zone. A time the clocks skip (a spring-forward gap) is taken forward by the gap, a time
    /// they pass twice is the first; a date alone is the start of its day.
    fn instant(&self, civil_as_utc: i64, date_only: bool) -> Result<i64, String> {
        let ts = jiff::Timestamp::from_second(civil_as_utc).map_err(|e| e.to_string())?;
        let civil = jiff::tz::TimeZone::UTC.to_datetime(ts);
        let zoned = civil
            .to_zoned_datetime(self.tz.clone())
            .and_then(|z| if date_only { z.start_of_day() } else { Ok(z) })
            .map_err(|e| format!("not a time in {}: {e}", self.name))?;
        Ok(zoned.timestamp().as_second())
    }

    /// The day after the civil date `date_as_utc` (its UTC midnight) starts, in this zone.
    fn next_day(&self, date_as_utc: i64) -> Result<i64, String> {
        self.instant(date_as_utc + DAY, true)
    }
}

/// `+HH:MM`, `-HH:MM` or `±HH` (at most 18 hours, as ISO 8601 and jiff allow); `+00:00` is UTC.
fn fixed_offset(s: &str) -> Result<Zone, String> {
    let bad = || format!("offset {s:?}: expected ±HH:MM, at most 18 hours");
    let (negative, rest) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').ok_or_else(bad)?),
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "00"));
    let digits = |p: &str| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || !digits(m) {
        return Err(bad());
    }
    let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 18 || m > 59 || (h == 18 && m > 0) {
        return Err(bad());
    }
    let secs = (h * 3600 + m * 60) * if negative { -1 } else { 1 };
    if secs == 0 {
        return Ok(Zone::utc());
    }
    let offset = jiff::tz::Offset::from_seconds(secs).map_err(|_| bad())?;
    Ok(Zone {
        name: format!("{}{h:02}:{m:02}", if negative { '-' } else { '+' }),
        tz: jiff::tz::TimeZone::fixed(offset),
    })
}

const DAY: i64 = 24 * 3600;

/// A period `[from, to)` and the zone it was named in.
#[derive(Debug, Clone)]
pub struct Period {
    /// Start, Unix seconds (inclusive).
    pub from: i64,
    /// End, Unix seconds (exclusive).
    pub to: i64,
    /// The zone of the dates and local times that named it.
    pub zone: Zone,
}

/// A period that cannot be built from what was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct BadPeriod {
    /// The parameter at fault (`date`, `from`, `to`, `tz`, or `period`).
    pub what: &'static str,
    /// Why, in words.
    pub reason: String,
}

impl Period {
    /// The period named by a day (`date`, `YYYY-MM-DD`: local midnight to the next local
    /// midnight in `zone`) or by a range (`from` and `to`, each as [`parse_time`] reads it; a
    /// date or a time without `Z` is local to `zone`, Unix seconds and `…Z` are absolute).
    ///
    /// # Errors
    /// [`BadPeriod`]: neither or both forms, a value that names no time, an empty range.
    pub fn parse(
        date: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        zone: Zone,
    ) -> Result<Period, BadPeriod> {
        // The value is echoed (bounded): `from "2026-02-31": no such date: …`.
        let bad = |what, value: &str, reason: String| BadPeriod {
            what,
            reason: format!("{:?}: {reason}", value.chars().take(40).collect::<String>()),
        };
        match (date, from, to) {
            (Some(d), None, None) => {
                let day = d.trim();
                if day.len() != 10 {
                    return Err(bad("date", d, "expected YYYY-MM-DD".into()));
                }
                let midnight = parse_time(day).map_err(|r| bad("date", d, r))?;
                let from = zone
                    .instant(midnight, true)
                    .map_err(|r| bad("date", d, r))?;
                let to = zone.next_day(midnight).map_err(|r| bad("date", d, r))?;
                Ok(Period { from, to, zone })
            }
            (None, Some(f), Some(t)) => {
                let from = time_in(f, &zone).map_err(|r| bad("from", f, r))?;
                let to = time_in(t, &zone).map_err(|r| bad("to", t, r))?;
                if to <= from {
                    return Err(BadPeriod {
                        what: "period",
                        reason: "to must be after from".into(),
                    });
                }
                Ok(Period { from, to, zone })
            }
            _ => Err(BadPeriod {
                what: "period",
                reason: "give a date (YYYY-MM-DD), or from and to".into(),
            }),
        }
    }
}

/// [`parse_time`] in `zone`: Unix seconds and times marked `Z` are absolute; a date, or a
/// date and time without `Z`, is the zone's local time.
fn time_in(s: &str, zone: &Zone) -> Result<i64, String> {
    let s = s.trim();
    let t = parse_time(s)?;
    let absolute = s.ends_with('Z') || s.bytes().all(|b| b.is_ascii_digit());
    if absolute || zone.name == "UTC" {
        return Ok(t);
    }
    zone.instant(t, !s.contains('T'))
}

const FORMS: &str = "expected YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ (UTC) or Unix seconds";

/// Parses `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SSZ` (UTC) or Unix seconds. The date must be one
/// the calendar has (the years 1970–9999); seconds may be 60 (a leap second, counted as the
/// next minute's first).
///
/// # Errors
/// Why the text is no such time, in words.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.len() <= 12 {
        return s.parse().map_err(|_| FORMS.to_owned());
    }
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t.trim_end_matches('Z'))),
        None => (s, None),
    };
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (Some(Some(y)), Some(Some(m)), Some(Some(day))) = (d.next(), d.next(), d.next()) else {
        return Err(FORMS.to_owned());
    };
    if !(1970..=9999).contains(&y) {
        return Err(format!("year {y} is outside 1970-9999"));
    }
    let month = u8::try_from(m)
        .ok()
        .and_then(|m| time::Month::try_from(m).ok())
        .ok_or_else(|| format!("no month {m} (1-12)"))?;
    let year = i32::try_from(y).map_err(|_| FORMS.to_owned())?;
    let date = u8::try_from(day)
        .ok()
        .and_then(|day| time::Date::from_calendar_date(year, month, day).ok())
        .ok_or_else(|| {
            format!(
                "no such date: {month} {year} has {} days",
                month.length(year)
            )
        })?;
    let secs = match time {
        None => 0,
        Some(t) => {
            let mut p = t.splitn(3, ':').map(|p| p.parse::<i64>().ok());
            let (Some(Some(h)), Some(Some(mi)), Some(se)) =
                (p.next(), p.next(), p.next().unwrap_or(Some(0)))
            else {
                return Err(FORMS.to_owned());
            };
            if !(0..24).contains(&h) || !(0..60).contains(&mi) || !(0..61).contains(&se) {
                return Err(format!("no such time of day {t}"));
            }
            h * 3600 + mi * 60 + se
        }
    };
    Ok(date.midnight().assume_utc().unix_timestamp() + secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_amounts() {
        assert_eq!(parse_time("1970-01-01"), Ok(0));
        assert_eq!(parse_time("2025-03-17T08:10:52Z"), Ok(1_742_199_052));
        assert_eq!(parse_time("2000-02-29"), Ok(951_782_400));
        assert_eq!(parse_time("1742199052"), Ok(1_742_199_052));
        assert_eq!(parse_time("2025-03-17T08:10Z"), Ok(1_742_199_000));
        assert_eq!(parse_time("2016-12-31T23:59:60Z"), Ok(1_483_228_800));
        assert!(parse_time("2025-13-01").is_err());
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2025-03-17T24:00:00Z").is_err());
        assert!(parse_time("1969-12-31").is_err());
        assert_eq!(major(1234, "USD"), "12.34");
        assert_eq!(major(5, "USD"), "0.05");
        assert_eq!(major(1500, "JPY"), "1500");
        assert_eq!(major(1234, "BHD"), "1.234");
        assert_eq!(major(-5, "USD"), "-0.05");
        assert_eq!(major(0, "USD"), "0.00");
        assert_eq!(major(-1500, "JPY"), "-1500");
        assert_eq!(major(i64::MIN, "USD"), "-92233720368547758.08");
        assert_eq!(major(1234, "XXX?"), "12.34");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }

    #[test]
    fn days_the_calendar_does_not_have_are_refused() {
        let range = |f: &str, t: &str| Period::parse(None, Some(f), Some(t), Zone::utc());
        let e = range("2026-02-31", "2026-03-01").unwrap_err();
        assert_eq!(
            e.to_string(),
            "from: \"2026-02-31\": no such date: February 2026 has 28 days"
        );
        let e = range("2024-04-01", "2024-04-31T10:00:00Z").unwrap_err();
        assert_eq!(
            e.to_string(),
            "to: \"2024-04-31T10:00:00Z\": no such date: April 2024 has 30 days"
        );
        assert!(range("2025-02-29", "2025-03-01").is_err());
        let p = range("2024-02-29", "2026-02-28").unwrap();
        assert_eq!((p.from, p.to), (1_709_164_800, 1_772_236_800));
        let e = range("2024-02-29", "yesterday").unwrap_err();
        assert_eq!(e.what, "to");
        assert!(
            e.to_string()
                .starts_with("to: \"yesterday\": expected YYYY-MM-DD"),
            "{e}"
        );
    }

    fn day(date: &str, tz: &str) -> Period {
        Period::parse(Some(date), None, None, Zone::parse(tz).unwrap()).unwrap()
    }

    #[test]
    fn a_day_in_a_zone_runs_from_local_midnight_to_local_midnight() {
        // Europe/Berlin springs forward on 2026-03-29: 23 hours, +01:00 to +02:00.
        let p = day("2026-03-29", "Europe/Berlin");
        assert_eq!(p.to - p.from, 23 * 3600);
        assert_eq!(p.zone.iso8601(p.from), "2026-03-29T00:00:00+01:00");
        assert_eq!(p.zone.iso8601(p.to), "2026-03-30T00:00:00+02:00");
        assert_eq!(p.from, parse_time("2026-03-28T23:00:00Z").unwrap());
        // …and falls back on 2026-10-25: 25 hours.
        let p = day("2026-10-25", "europe/berlin");
        assert_eq!((p.to - p.from, p.zone.name()), (25 * 3600, "Europe/Berlin"));
        // America/New_York falls back on 2026-11-01 and springs forward on 2026-03-08.
        let p = day("2026-11-01", "America/New_York");
        assert_eq!(p.to - p.from, 25 * 3600);
        assert_eq!(p.zone.iso8601(p.from), "2026-11-01T00:00:00-04:00");
        assert_eq!(p.zone.iso8601(p.to), "2026-11-02T00:00:00-05:00");
        assert_eq!(
            day("2026-03-08", "America/New_York").to - day("2026-03-08", "America/New_York").from,
            23 * 3600
        );
        // An ordinary day, a fixed offset, and UTC as before.
        assert_eq!(
            day("2026-06-01", "Europe/Berlin").to - day("2026-06-01", "Europe/Berlin").from,
            DAY
        );
        let p = day("2026-03-29", "+02:00");
        assert_eq!(
            (p.from, p.to - p.from),
            (parse_time("2026-03-28T22:00:00Z").unwrap(), DAY)
        );
        assert_eq!(p.zone.iso8601(p.from), "2026-03-29T00:00:00+02:00");
        let p = day("2026-03-29", "-05:30");
        assert_eq!(p.zone.iso8601(p.from), "2026-03-29T00:00:00-05:30");
        let p = day("2026-03-29", "UTC");
        assert_eq!((p.from, p.to), (1_774_742_400, 1_774_742_400 + DAY));
        assert_eq!(p.zone.iso8601(p.from), "2026-03-29T00:00:00Z");
        assert_eq!(day("2026-03-29", "+00:00").zone.name(), "UTC");
    }

    #[test]
    fn ranges_in_a_zone_are_local_unless_marked_absolute() {
        let z = || Zone::parse("Europe/Berlin").unwrap();
        let p = Period::parse(
            None,
            Some("2026-03-29T01:00"),
            Some("2026-03-29T12:00:00Z"),
            z(),
        )
        .unwrap();
        assert_eq!(p.from, parse_time("2026-03-29T00:00:00Z").unwrap());
        assert_eq!(p.to, parse_time("2026-03-29T12:00:00Z").unwrap());
        // 02:30 does not exist that night: taken forward by the gap (03:30 CEST).
        let p = Period::parse(None, Some("2026-03-29T02:30"), Some("1774800000"), z()).unwrap();
        assert_eq!(p.from, parse_time("2026-03-29T01:30:00Z").unwrap());
        assert_eq!(p.to, 1_774_800_000);
        let p = Period::parse(None, Some("2026-03-29"), Some("2026-03-31"), z()).unwrap();
        assert_eq!(p.to - p.from, 47 * 3600);
    }

    #[test]
    fn zones_and_periods_that_do_not_exist_are_refused() {
        for bad in [
            "Mars/Olympus",
            "",
            "+25:00",
            "+2:00",
            "+02:60",
            "Europe/",
            &"x".repeat(200),
            "../etc/passwd",
        ] {
            assert!(Zone::parse(bad).is_err(), "{bad:?}");
        }
        let e = Zone::parse("Europe/Berlinn").unwrap_err();
        assert!(e.starts_with("unknown time zone \"Europe/Berlinn\""), "{e}");
        let utc = Zone::utc;
        let e = Period::parse(None, None, None, utc()).unwrap_err();
        assert_eq!(e.what, "period");
        assert_eq!(
            Period::parse(Some("2026-02-30"), None, None, utc())
                .unwrap_err()
                .what,
            "date"
        );
        assert_eq!(
            Period::parse(Some("86400"), None, None, utc())
                .unwrap_err()
                .what,
            "date"
        );
        assert_eq!(
            Period::parse(Some("2026-01-01"), Some("0"), None, utc())
                .unwrap_err()
                .what,
            "period"
        );
        assert_eq!(
            Period::parse(None, Some("2026-01-04"), Some("2026-01-02"), utc())
                .unwrap_err()
                .what,
            "period"
        );
        assert_eq!(
            Period::parse(None, Some("x"), Some("1"), utc())
                .unwrap_err()
                .what,
            "from"
        );
    }

    proptest::proptest! {
        #[test]
        fn zone_parse_never_panics(s in ".{0,40}") {
            let _ = Zone::parse(&s);
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_time_never_panics(s in ".{0,40}") {
            let _ = parse_time(&s);
        }

        #[test]
        fn iso_round_trip(t in 0i64..253_402_300_799) {
            proptest::prop_assert_eq!(parse_time(&crate::gateway::iso8601(t)), Ok(t));
        }
    }
}
