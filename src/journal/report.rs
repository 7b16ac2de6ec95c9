//! The reconciliation report (`emvbridge report --from … --to …`): counts and totals by
//! outcome and gateway over a period, with every row still unresolved listed.

use std::collections::BTreeMap;

use super::{Entry, Journal, JournalError, RelayState};

/// One line of the summary: a (dialect, state, currency) group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Line {
    /// Gateway dialect.
    pub dialect: String,
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
    /// Groups, sorted by dialect, state, currency.
    pub lines: Vec<Line>,
    /// Rows not settled (any date): unknown, reversals due, stored, escalated…
    pub unresolved: Vec<Entry>,
}

/// Builds the report for `[from, to)`.
///
/// # Errors
/// [`JournalError`].
pub fn build(journal: &Journal, from: i64, to: i64) -> Result<Report, JournalError> {
    let mut groups: BTreeMap<(String, RelayState, String), Line> = BTreeMap::new();
    for e in journal.between(from, to)? {
        let key = (e.dialect.clone(), e.state, e.currency.clone());
        let l = groups.entry(key).or_insert_with(|| Line {
            dialect: e.dialect.clone(),
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

fn major(minor: i64, currency: &str) -> String {
    let exp = emvbridge_core::money::Money::from_minor(0, currency)
        .map(|m| m.currency().exponent)
        .unwrap_or(2);
    if exp == 0 {
        return minor.to_string();
    }
    let p = 10i64.pow(u32::from(exp));
    let sign = if minor < 0 { "-" } else { "" };
    let m = minor.unsigned_abs();
    let p = p.unsigned_abs();
    format!("{sign}{}.{:0w$}", m / p, m % p, w = usize::from(exp))
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
            "{:<11} {:<17} {:<4} {:>6} {:>16} {:>16}",
            "gateway", "state", "cur", "count", "requested", "approved"
        );
        for l in &self.lines {
            let _ = writeln!(
                s,
                "{:<11} {:<17} {:<4} {:>6} {:>16} {:>16}",
                l.dialect,
                l.state.as_str(),
                l.currency,
                l.count,
                major(l.requested_minor, &l.currency),
                major(l.approved_minor, &l.currency)
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

    /// CSV: one line per group, then one line per unresolved row (section column first).
    pub fn csv(&self) -> String {
        let mut s =
            String::from("section,gateway,state,currency,count,requested,approved,reference\n");
        for l in &self.lines {
            s.push_str(&format!(
                "summary,{},{},{},{},{},{},\n",
                l.dialect,
                l.state.as_str(),
                l.currency,
                l.count,
                major(l.requested_minor, &l.currency),
                major(l.approved_minor, &l.currency)
            ));
        }
        for e in &self.unresolved {
            s.push_str(&format!(
                "unresolved,{},{},{},1,{},,{}\n",
                e.dialect,
                e.state.as_str(),
                e.currency,
                major(e.amount_minor, &e.currency),
                csv_field(&e.reference)
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

/// Parses `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SSZ` (UTC) or Unix seconds.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.len() <= 12 {
        return s.parse().ok();
    }
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t.trim_end_matches('Z'))),
        None => (s, None),
    };
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    let secs = match time {
        None => 0,
        Some(t) => {
            let mut p = t.splitn(3, ':').map(|p| p.parse::<i64>().ok());
            let (h, mi, se) = (p.next()??, p.next()??, p.next().unwrap_or(Some(0))?);
            if !(0..24).contains(&h) || !(0..60).contains(&mi) || !(0..61).contains(&se) {
                return None;
            }
            h * 3600 + mi * 60 + se
        }
    };
    // Howard Hinnant's days_from_civil.
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * 86_400 + secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_amounts() {
        assert_eq!(parse_time("1970-01-01"), Some(0));
        assert_eq!(parse_time("2025-03-17T08:10:52Z"), Some(1_742_199_052));
        assert_eq!(parse_time("2000-02-29"), Some(951_782_400));
        assert_eq!(parse_time("1742199052"), Some(1_742_199_052));
        assert_eq!(parse_time("2025-13-01"), None);
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(major(1234, "USD"), "12.34");
        assert_eq!(major(5, "USD"), "0.05");
        assert_eq!(major(1500, "JPY"), "1500");
        assert_eq!(major(1234, "BHD"), "1.234");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }

    proptest::proptest! {
        #[test]
        fn parse_time_never_panics(s in ".{0,40}") {
            let _ = parse_time(&s);
        }

        #[test]
        fn iso_round_trip(t in 0i64..253_402_300_799) {
            proptest::prop_assert_eq!(parse_time(&crate::gateway::iso8601(t)), Some(t));
        }
    }
}
