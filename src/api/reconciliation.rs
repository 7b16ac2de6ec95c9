//! `GET /v1/reconciliation?date=YYYY-MM-DD` (or `?from=…&to=…`): the day's counts and totals
//! by gateway, kind, outcome and currency in minor units, with every row not yet settled
//! listed — the numbers of `emvbridge report`, built by the same function
//! ([`crate::journal::report::build`]) over the journal. Days are UTC. Without the journal
//! there is nothing to reconcile: `404 no_journal`.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::{clip, ApiError};
use super::state::AppState;
use crate::journal::report;

const DAY: i64 = 24 * 3600;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Params {
    date: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

fn bad(message: String) -> ApiError {
    ApiError::bad_request("invalid_query", clip(&message, 200))
}

fn internal() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the journal could not be read",
    )
}

/// The period `[from, to)` the query names: one UTC day, or a range.
fn period(p: &Params) -> Result<(i64, i64), ApiError> {
    let time = |what: &str, v: &str| {
        report::parse_time(v).map_err(|reason| bad(format!("{what}: {reason}")))
    };
    match (&p.date, &p.from, &p.to) {
        (Some(d), None, None) => {
            if d.len() != 10 {
                return Err(bad("date: expected YYYY-MM-DD".into()));
            }
            let from = time("date", d)?;
            Ok((from, from + DAY))
        }
        (None, Some(f), Some(t)) => {
            let (from, to) = (time("from", f)?, time("to", t)?);
            if to <= from {
                return Err(bad("to must be after from".into()));
            }
            Ok((from, to))
        }
        _ => Err(bad("give date=YYYY-MM-DD, or from and to".into())),
    }
}

/// `GET /v1/reconciliation`.
pub(super) async fn reconciliation(
    State(s): State<AppState>,
    query: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = query.map_err(|e| bad(e.body_text()))?;
    let (from, to) = period(&p)?;
    let Some(relay) = s.relay.as_ref() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_journal",
            "reconciliation needs the journal (serve with --journal or a [journal] configuration)",
        ));
    };
    let journal = relay.relay.journal().clone();
    let built = tokio::task::spawn_blocking(move || report::build(&journal, from, to))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "reconciliation task failed");
            internal()
        })?;
    match built {
        Ok(r) => {
            let mut v = serde_json::to_value(&r).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("from_iso".into(), crate::gateway::iso8601(from).into());
                o.insert("to_iso".into(), crate::gateway::iso8601(to).into());
            }
            Ok(axum::Json(v).into_response())
        }
        Err(e) => {
            tracing::error!(error = %e, "reconciliation report failed");
            Err(internal())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(date: Option<&str>, from: Option<&str>, to: Option<&str>) -> Params {
        Params {
            date: date.map(str::to_owned),
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
        }
    }

    #[test]
    fn periods() {
        assert_eq!(
            period(&p(Some("1970-01-02"), None, None)).unwrap(),
            (DAY, 2 * DAY)
        );
        assert_eq!(
            period(&p(None, Some("1970-01-02"), Some("1970-01-04"))).unwrap(),
            (DAY, 3 * DAY)
        );
        for bad in [
            p(None, None, None),
            p(Some("86400"), None, None),
            p(Some("2026-02-30"), None, None),
            p(Some("1970-01-02"), Some("0"), None),
            p(None, Some("1970-01-04"), Some("1970-01-02")),
        ] {
            assert_eq!(period(&bad).unwrap_err().code, "invalid_query");
        }
    }
}
