//! The dialects' per-transaction state in SQLite, in the ledger's scratch file: PaymentsAI's
//! transaction extras ([`Extra`]) and idempotency records, Pay1st's payments ([`Payment`]).
//!
//! A lab or soak run makes hundreds of thousands of transactions and every one of them stays
//! answerable (a status query or list lookup of an old transaction must work), so this state
//! cannot be a bounded cache; held in maps it grew memory linearly. In SQLite memory holds only
//! the connection's page cache. The columns a lookup filters on (request id, customer,
//! instrument) are indexed, so a lookup reads the rows it returns, not the whole store.

use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use serde::{de::DeserializeOwned, Serialize};

use crate::dialect_state::{Extra, Payment};
use crate::exchange::SimResponse;

/// The tables, created next to the ledger's by [`create_tables`].
const SCHEMA: &str = "
    CREATE TABLE pai_extra (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        org TEXT NOT NULL,
        request_id TEXT,
        customer_id TEXT,
        instrument_id TEXT,
        data TEXT NOT NULL);
    CREATE INDEX pai_extra_org ON pai_extra (org, seq);
    CREATE INDEX pai_extra_request_id ON pai_extra (request_id, seq);
    CREATE INDEX pai_extra_customer_id ON pai_extra (customer_id, seq);
    CREATE INDEX pai_extra_instrument_id ON pai_extra (instrument_id, seq);
    CREATE TABLE pai_idem (
        org TEXT NOT NULL,
        key TEXT NOT NULL,
        digest BLOB NOT NULL,
        status INTEGER NOT NULL,
        content_type TEXT NOT NULL,
        body BLOB NOT NULL,
        txn_id TEXT NOT NULL,
        PRIMARY KEY (org, key));
    CREATE TABLE pay1st_payments (
        reference TEXT PRIMARY KEY,
        data TEXT NOT NULL);";

/// A stored PaymentsAI idempotent reply: the digest of the request body, the reply, and the
/// transaction it made.
pub(crate) struct IdemRecord {
    /// SHA-256 of the first request's body.
    pub(crate) digest: [u8; 32],
    /// The reply replayed to a repeat.
    pub(crate) resp: SimResponse,
    /// The transaction the first request made.
    pub(crate) txn_id: String,
}

/// The PaymentsAI columns [`Store::pai_ids`] can narrow a listing by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PaiIndex {
    /// The transaction id.
    Id,
    /// `requestId`.
    RequestId,
    /// `customerId`.
    CustomerId,
}

impl PaiIndex {
    /// The index for a Rebilly filter field, if there is one.
    pub(crate) fn for_field(field: &str) -> Option<PaiIndex> {
        match field {
            "id" => Some(PaiIndex::Id),
            "requestId" => Some(PaiIndex::RequestId),
            "customerId" => Some(PaiIndex::CustomerId),
            _ => None,
        }
    }

    fn column(self) -> &'static str {
        match self {
            PaiIndex::Id => "id",
            PaiIndex::RequestId => "request_id",
            PaiIndex::CustomerId => "customer_id",
        }
    }
}

/// The content types the dialects reply with (a stored reply names one of them).
const CONTENT_TYPES: [&str; 3] = [
    "application/json",
    "text/plain; charset=utf-8",
    "text/html; charset=utf-8",
];

fn to_json<T: Serialize>(what: &str, v: &T) -> Option<String> {
    serde_json::to_string(v)
        .map_err(|e| tracing::error!(error = %e, what, "sandbox store: row not serialised"))
        .ok()
}

fn from_json<T: DeserializeOwned>(what: &str, data: Option<String>) -> Option<T> {
    serde_json::from_str(&data?)
        .map_err(
            |e| tracing::error!(error = %e, what, "sandbox store: a stored row does not parse"),
        )
        .ok()
}

fn logged<T>(what: &str, r: rusqlite::Result<T>) -> Option<T> {
    r.map_err(|e| tracing::error!(error = %e, what, "sandbox store: query failed"))
        .ok()
}

/// Ids from `sql` (one text column), in the order it gives.
fn ids(db: &Connection, what: &str, sql: &str, args: &[&str]) -> Vec<String> {
    let r = db.prepare_cached(sql).and_then(|mut st| {
        st.query_map(params_from_iter(args), |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()
    });
    logged(what, r).unwrap_or_default()
}

/// Creates the tables in the ledger's connection (when the sandbox state is made).
pub(crate) fn create_tables(db: &Connection) {
    if let Err(e) = db.execute_batch(SCHEMA) {
        panic!("sandbox store: cannot create the dialects' tables: {e}");
    }
}

/// The dialects' tables, through the ledger's connection.
#[derive(Clone, Copy)]
pub(crate) struct Store<'a>(pub(crate) &'a Connection);

impl Store<'_> {
    fn db(&self) -> &Connection {
        self.0
    }

    /// PaymentsAI: the extras of transaction `id`.
    pub(crate) fn pai_extra(&self, id: &str) -> Option<Extra> {
        let data = self
            .db()
            .prepare_cached("SELECT data FROM pai_extra WHERE id = ?1")
            .and_then(|mut st| st.query_row([id], |r| r.get(0)).optional());
        from_json("pai extra", logged("pai extra", data)?)
    }

    /// PaymentsAI: stores (or replaces) the extras of transaction `id`. A replaced row keeps
    /// its place in the listing order.
    pub(crate) fn put_pai_extra(&self, id: &str, x: &Extra) {
        let Some(data) = to_json("pai extra", x) else {
            return;
        };
        let r = self.db().prepare_cached(
            "INSERT INTO pai_extra (id, org, request_id, customer_id, instrument_id, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (id) DO UPDATE SET org = excluded.org, request_id = excluded.request_id,
                 customer_id = excluded.customer_id, instrument_id = excluded.instrument_id,
                 data = excluded.data",
        );
        let r = r.and_then(|mut st| {
            st.execute(params![
                id,
                x.org,
                x.request_id,
                x.customer_id,
                x.instrument_id,
                data
            ])
        });
        logged("pai extra", r);
    }

    /// PaymentsAI: ids of organization `org`'s transactions, newest first; with `by`, only
    /// those whose indexed column equals one of the values.
    pub(crate) fn pai_ids(&self, org: &str, by: Option<(PaiIndex, &[&str])>) -> Vec<String> {
        match by {
            None => ids(
                self.db(),
                "pai list",
                "SELECT id FROM pai_extra WHERE org = ?1 ORDER BY seq DESC",
                &[org],
            ),
            Some((_, [])) => Vec::new(),
            Some((col, vals)) => {
                let marks = vec!["?"; vals.len()].join(", ");
                let sql = format!(
                    "SELECT id FROM pai_extra WHERE org = ? AND {} IN ({marks}) ORDER BY seq DESC",
                    col.column()
                );
                let args: Vec<&str> = std::iter::once(org).chain(vals.iter().copied()).collect();
                ids(self.db(), "pai list", &sql, &args)
            }
        }
    }

    /// PaymentsAI: ids of the transactions made on instrument `inst`, newest first.
    pub(crate) fn pai_ids_on_instrument(&self, inst: &str) -> Vec<String> {
        ids(
            self.db(),
            "pai instrument",
            "SELECT id FROM pai_extra WHERE instrument_id = ?1 ORDER BY seq DESC",
            &[inst],
        )
    }

    /// PaymentsAI: the idempotency record of `key` in organization `org`.
    pub(crate) fn pai_idem(&self, org: &str, key: &str) -> Option<IdemRecord> {
        let r = self
            .db()
            .prepare_cached(
                "SELECT digest, status, content_type, body, txn_id FROM pai_idem
                 WHERE org = ?1 AND key = ?2",
            )
            .and_then(|mut st| {
                st.query_row([org, key], |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, u16>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Vec<u8>>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                })
                .optional()
            });
        let (digest, status, ct, body, txn_id) = logged("pai idem", r)??;
        let Ok(digest) = <[u8; 32]>::try_from(digest) else {
            tracing::error!("sandbox store: a stored idempotency digest is not 32 bytes");
            return None;
        };
        let content_type = CONTENT_TYPES
            .iter()
            .find(|c| **c == ct)
            .copied()
            .unwrap_or(CONTENT_TYPES[0]);
        Some(IdemRecord {
            digest,
            resp: SimResponse {
                status,
                content_type,
                body,
            },
            txn_id,
        })
    }

    /// PaymentsAI: stores the idempotency record of `key` in organization `org`.
    pub(crate) fn put_pai_idem(&self, org: &str, key: &str, rec: &IdemRecord) {
        if !CONTENT_TYPES.contains(&rec.resp.content_type) {
            tracing::error!(
                content_type = rec.resp.content_type,
                "sandbox store: an idempotent reply of an unknown content type"
            );
        }
        let r = self
            .db()
            .prepare_cached(
                "INSERT OR REPLACE INTO pai_idem (org, key, digest, status, content_type, body, txn_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    org,
                    key,
                    &rec.digest[..],
                    rec.resp.status,
                    rec.resp.content_type,
                    rec.resp.body,
                    rec.txn_id
                ])
            });
        logged("pai idem", r);
    }

    /// Pay1st: the payment `reference`.
    pub(crate) fn pay1st_payment(&self, reference: &str) -> Option<Payment> {
        let data = self
            .db()
            .prepare_cached("SELECT data FROM pay1st_payments WHERE reference = ?1")
            .and_then(|mut st| st.query_row([reference], |r| r.get(0)).optional());
        from_json("pay1st payment", logged("pay1st payment", data)?)
    }

    /// Pay1st: stores (or replaces) the payment `reference`.
    pub(crate) fn put_pay1st_payment(&self, reference: &str, p: &Payment) {
        let Some(data) = to_json("pay1st payment", p) else {
            return;
        };
        let r = self
            .db()
            .prepare_cached(
                "INSERT INTO pay1st_payments (reference, data) VALUES (?1, ?2)
                 ON CONFLICT (reference) DO UPDATE SET data = excluded.data",
            )
            .and_then(|mut st| st.execute(params![reference, data]));
        logged("pay1st payment", r);
    }

    /// Pay1st: how many payments are stored (rows are never deleted and an update keeps its
    /// rowid, so the largest rowid is the count, read from the index's end).
    pub(crate) fn pay1st_payment_count(&self) -> usize {
        let r = self.db().query_row(
            "SELECT COALESCE(MAX(rowid), 0) FROM pay1st_payments",
            [],
            |r| r.get::<_, i64>(0),
        );
        logged("pay1st count", r)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ledger::Ledger;
    use crate::outcome::ThreeDs;

    fn extra(org: &str, req: Option<&str>, inst: Option<&str>) -> Extra {
        Extra {
            org: org.into(),
            type_name: "sale".into(),
            request_id: req.map(str::to_owned),
            instrument_id: inst.map(str::to_owned),
            metadata: json!({"lane": 3}),
            emv_response: Some(json!({"arc": "00"})),
            three_ds: Some(ThreeDs::ChallengeThenDecline),
            ..Extra::default()
        }
    }

    #[test]
    fn pai_extras_round_trip_and_list_newest_first_by_index() {
        let l = Ledger::default();
        create_tables(l.db());
        let s = Store(l.db());
        for i in 0..50 {
            let req = format!("req-{}", i % 5);
            s.put_pai_extra(
                &format!("t{i}"),
                &extra("org-a", Some(&req), Some("inst-1")),
            );
        }
        s.put_pai_extra("other", &extra("org-b", Some("req-1"), None));
        let x = s.pai_extra("t7").unwrap();
        assert_eq!(x.request_id.as_deref(), Some("req-2"));
        assert_eq!(x.metadata, json!({"lane": 3}));
        assert_eq!(x.three_ds, Some(ThreeDs::ChallengeThenDecline));
        assert!(s.pai_extra("t50").is_none());
        // A replaced row keeps its place.
        let mut x = s.pai_extra("t0").unwrap();
        x.customer_id = Some("cus".into());
        s.put_pai_extra("t0", &x);
        assert_eq!(s.pai_ids("org-a", None).len(), 50);
        assert_eq!(s.pai_ids("org-a", None)[49], "t0");
        assert_eq!(
            s.pai_ids("org-a", Some((PaiIndex::RequestId, &["req-1"]))),
            ["t46", "t41", "t36", "t31", "t26", "t21", "t16", "t11", "t6", "t1"]
        );
        assert_eq!(
            s.pai_ids("org-a", Some((PaiIndex::CustomerId, &["cus", "x"]))),
            ["t0"]
        );
        assert_eq!(
            s.pai_ids("org-b", Some((PaiIndex::Id, &["other", "t1"]))),
            ["other"]
        );
        assert_eq!(s.pai_ids_on_instrument("inst-1").first().unwrap(), "t49");
    }

    #[test]
    fn idempotency_records_and_payments_round_trip() {
        let l = Ledger::default();
        create_tables(l.db());
        let s = Store(l.db());
        let rec = IdemRecord {
            digest: [7; 32],
            resp: SimResponse::json(201, &json!({"id": "t1"})),
            txn_id: "t1".into(),
        };
        s.put_pai_idem("org", "k", &rec);
        assert!(s.pai_idem("org", "k2").is_none());
        assert!(s.pai_idem("org2", "k").is_none());
        let got = s.pai_idem("org", "k").unwrap();
        assert_eq!(
            (got.digest, got.resp, got.txn_id),
            (rec.digest, rec.resp, rec.txn_id)
        );

        assert_eq!(s.pay1st_payment_count(), 0);
        let mut p = Payment {
            country: "ZA".into(),
            webhook_url: None,
            emv_response: None,
            products: json!([]),
            metadata: json!({}),
            queries: 0,
            final_status: None,
        };
        s.put_pay1st_payment("C-1-P", &p);
        s.put_pay1st_payment("C-2-P", &p);
        p.queries = 2;
        p.final_status = Some("ABANDONED");
        s.put_pay1st_payment("C-1-P", &p);
        assert_eq!(s.pay1st_payment_count(), 2);
        let got = s.pay1st_payment("C-1-P").unwrap();
        assert_eq!((got.queries, got.final_status), (2, Some("ABANDONED")));
        assert!(s.pay1st_payment("C-3-P").is_none());
        // A new ledger starts from an empty store.
        let l2 = Ledger::default();
        create_tables(l2.db());
        assert_eq!(Store(l2.db()).pay1st_payment_count(), 0);
    }
}
