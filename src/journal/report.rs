//! The reconciliation report (`emvbridge report --from … --to …`): counts and totals by
//! outcome and gateway over a period, with every row still unresolved listed.

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
    /// Groups, sorted by dialect, kind, state, currency.
    pub lines: Vec<Line>,
    /// Rows not settled (any date): unknown, reversals due, stored, escalated…
    pub unresolved: Vec<Entry>,
}

/// Builds the report for `[from, to)`.
///
/// # Errors
/// [`JournalError`].
pub fn build(journal: &Journal, from: i64, to: i64) -> Result<Report, JournalError> {
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
            "reconciliation {} .. {}",
            crate::gateway::iso8601(self.from),
            crate::gateway::iso8601(self.to)
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

/// A `--from` / `--to` value that names no time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{flag} {value:?}: {reason}")]
pub struct BadTime {
    /// The flag (`--from`, `--to`).
    pub flag: &'static str,
    /// The value as given.
    pub value: String,
    /// Why it was refused.
    pub reason: String,
}

/// Parses the value of `flag` with [`parse_time`].
///
/// # Errors
/// [`BadTime`], naming the flag, the value and why (`--from "2026-02-31": no such date:
/// February 2026 has 28 days`).
pub fn parse_flag(flag: &'static str, value: &str) -> Result<i64, BadTime> {
    parse_time(value).map_err(|reason| BadTime {
        flag,
        value: value.to_owned(),
        reason,
    })
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
        let e = parse_flag("--from", "2026-02-31").unwrap_err();
        assert_eq!(
            e.to_string(),
            "--from \"2026-02-31\": no such date: February 2026 has 28 days"
        );
        let e = parse_flag("--to", "2024-04-31T10:00:00Z").unwrap_err();
        assert_eq!(
            e.to_string(),
            "--to \"2024-04-31T10:00:00Z\": no such date: April 2024 has 30 days"
        );
        assert!(parse_flag("--from", "2025-02-29").is_err());
        assert_eq!(parse_flag("--from", "2024-02-29"), Ok(1_709_164_800));
        assert_eq!(parse_flag("--to", "2026-02-28"), Ok(1_772_236_800));
        let e = parse_flag("--to", "yesterday").unwrap_err();
        assert_eq!(e.flag, "--to");
        assert!(
            e.to_string()
                .starts_with("--to \"yesterday\": expected YYYY-MM-DD"),
            "{e}"
        );
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
