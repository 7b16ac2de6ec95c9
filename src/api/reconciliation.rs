//! `GET /v1/reconciliation?date=YYYY-MM-DD` (or `?from=…&to=…`), optionally `&tz=Europe/Berlin`:
//! the period's counts and totals by gateway, kind, outcome and currency in minor units, with
//! every row not yet settled listed — the numbers of `emvbridge report`, the period read and
//! the report built by the same functions ([`crate::journal::report::Period::parse`],
//! [`crate::journal::report::build_period`]) over the journal. Days are UTC unless `tz`
//! names a zone; the answer echoes the zone and the bounds in it. Without the journal there
//! is nothing to reconcile: `404 no_journal`.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::{clip, ApiError};
use super::state::AppState;
use crate::journal::report::{self, Period, Zone};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Params {
    date: Option<String>,
    from: Option<String>,
    to: Option<String>,
    tz: Option<String>,
}

fn bad(code: &'static str, message: String) -> ApiError {
    tracing::debug!(code, %message, "reconciliation query refused");
    ApiError::bad_request(code, clip(&message, 200))
}

fn internal() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the journal could not be read",
    )
}

/// The period the query names: `400 invalid_time_zone` for a zone the database does not
/// know, `400 invalid_query` for the rest.
fn period(p: &Params) -> Result<Period, ApiError> {
    let zone = match p.tz.as_deref() {
        None => Zone::utc(),
        Some(tz) => Zone::parse(tz).map_err(|e| bad("invalid_time_zone", format!("tz: {e}")))?,
    };
    Period::parse(p.date.as_deref(), p.from.as_deref(), p.to.as_deref(), zone)
        .map_err(|e| bad("invalid_query", e.to_string()))
}

/// `GET /v1/reconciliation`.
pub(super) async fn reconciliation(
    State(s): State<AppState>,
    query: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = query.map_err(|e| bad("invalid_query", e.body_text()))?;
    let period = period(&p)?;
    let Some(relay) = s.relay.as_ref() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_journal",
            "reconciliation needs the journal (serve with --journal or a [journal] configuration)",
        ));
    };
    let journal = relay.relay.journal().clone();
    let built = tokio::task::spawn_blocking(move || report::build_period(&journal, &period))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "reconciliation task failed");
            internal()
        })?;
    match built {
        Ok(r) => Ok(axum::Json(r).into_response()),
        Err(e) => {
            tracing::error!(error = %e, "reconciliation report failed");
            Err(internal())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(date: Option<&str>, from: Option<&str>, to: Option<&str>, tz: Option<&str>) -> Params {
        Params {
            date: date.map(str::to_owned),
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            tz: tz.map(str::to_owned),
        }
    }

    #[test]
    fn periods() {
        const DAY: i64 = 86_400;
        let r = period(&p(Some("1970-01-02"), None, None, None)).unwrap();
        assert_eq!((r.from, r.to, r.zone.name()), (DAY, 2 * DAY, "UTC"));
        let r = period(&p(None, Some("1970-01-02"), Some("1970-01-04"), None)).unwrap();
        assert_eq!((r.from, r.to), (DAY, 3 * DAY));
        let r = period(&p(Some("2026-03-29"), None, None, Some("Europe/Berlin"))).unwrap();
        assert_eq!(r.to - r.from, 23 * 3600);
        for bad in [
            p(None, None, None, None),
            p(Some("86400"), None, None, None),
            p(Some("2026-02-30"), None, None, None),
            p(Some("1970-01-02"), Some("0"), None, None),
            p(None, Some("1970-01-04"), Some("1970-01-02"), None),
            p(Some("2026-02-30"), None, None, Some("UTC")),
        ] {
            assert_eq!(period(&bad).unwrap_err().code, "invalid_query");
        }
        for tz in ["Mars/Olympus", "+99:00", ""] {
            let e = period(&p(Some("2026-03-29"), None, None, Some(tz))).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.code),
                (400, "invalid_time_zone"),
                "{tz}"
            );
        }
    }
}
