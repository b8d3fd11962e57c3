//! SQL for transactions, their line items, org transaction settings and currency ratios; every
//! function is org-first.

use crate::db::{Connection, DbError, Exec};
use crate::dispatch;
use crate::org::model::OrgId;

/// A stored transaction.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct TransactionRow {
    pub id: i64,
    pub customer_id: Option<i64>,
    pub program_id: Option<i64>,
    pub store_id: i64,
    pub till_id: Option<i64>,
    pub source: String,
    pub account_id: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub bill_number: String,
    pub billing_at: i64,
    pub billing_offset: String,
    pub amount: i64,
    pub gross_amount: i64,
    pub discount: i64,
    pub note: String,
    pub delivery_status: String,
    pub outlier_status: String,
    pub not_interested_reason: String,
    pub return_type: Option<String>,
    pub parent_id: Option<i64>,
    pub returned_amount: i64,
    pub return_state: Option<String>,
    pub currency_code: Option<String>,
    pub local_amount: Option<i64>,
    pub payment_modes: String,
    pub extended_fields: String,
    pub custom_fields: String,
    pub loyalty_status: String,
    pub points: i64,
    pub side_effects: String,
    pub evaluation_log: String,
    pub api_version: String,
    pub created_by_till_id: Option<i64>,
    pub modified_by_till_id: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

const TXN_COLUMNS: &str = "id, customer_id, program_id, store_id, till_id, source, account_id, \
    type, bill_number, billing_at, billing_offset, amount, gross_amount, discount, note, \
    delivery_status, outlier_status, not_interested_reason, return_type, parent_id, \
    returned_amount, return_state, currency_code, local_amount, payment_modes, extended_fields, \
    custom_fields, loyalty_status, points, side_effects, evaluation_log, api_version, \
    created_by_till_id, modified_by_till_id, created_at, updated_at";

/// A stored line item.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct LineRow {
    pub id: i64,
    pub transaction_id: i64,
    pub serial: i64,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub item_code: String,
    pub description: String,
    pub qty: i64,
    pub rate: i64,
    pub value: i64,
    pub discount: i64,
    pub amount: i64,
    pub returned_qty: i64,
    pub returned_amount: i64,
    pub parent_line_id: Option<i64>,
    pub attributes: String,
    pub extended_fields: String,
    pub custom_fields: String,
}

const LINE_COLUMNS: &str = "id, transaction_id, serial, type, item_code, description, qty, rate, \
    value, discount, amount, returned_qty, returned_amount, parent_line_id, attributes, \
    extended_fields, custom_fields";

/// A transaction about to be inserted (everything but the id).
#[derive(Clone, Debug)]
pub struct NewTransaction<'a> {
    pub customer_id: Option<i64>,
    pub program_id: Option<i64>,
    pub store_id: i64,
    pub till_id: Option<i64>,
    pub source: &'a str,
    pub account_id: &'a str,
    pub kind: &'a str,
    pub bill_number: &'a str,
    pub billing_at: i64,
    pub billing_offset: &'a str,
    pub amount: i64,
    pub gross_amount: i64,
    pub discount: i64,
    pub note: &'a str,
    pub delivery_status: &'a str,
    pub outlier_status: &'a str,
    pub not_interested_reason: &'a str,
    pub return_type: Option<&'a str>,
    pub parent_id: Option<i64>,
    pub currency_code: Option<&'a str>,
    pub local_amount: Option<i64>,
    pub payment_modes: &'a str,
    pub extended_fields: &'a str,
    pub custom_fields: &'a str,
    pub loyalty_status: &'a str,
    pub api_version: &'a str,
    pub now: i64,
}

pub async fn insert_transaction(
    c: &mut impl Connection,
    org: OrgId,
    t: &NewTransaction<'_>,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| {
        sqlx::query_scalar(
        "INSERT INTO transactions (org_id, customer_id, program_id, store_id, till_id, source, \
         account_id, type, bill_number, billing_at, billing_offset, amount, gross_amount, discount, \
         note, delivery_status, outlier_status, not_interested_reason, return_type, parent_id, \
         currency_code, local_amount, payment_modes, extended_fields, custom_fields, \
         loyalty_status, api_version, created_by_till_id, modified_by_till_id, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
         $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $5, $5, $28, $28) RETURNING id"
    )
    .bind(org.0)
    .bind(t.customer_id)
    .bind(t.program_id)
    .bind(t.store_id)
    .bind(t.till_id)
    .bind(t.source)
    .bind(t.account_id)
    .bind(t.kind)
    .bind(t.bill_number)
    .bind(t.billing_at)
    .bind(t.billing_offset)
    .bind(t.amount)
    .bind(t.gross_amount)
    .bind(t.discount)
    .bind(t.note)
    .bind(t.delivery_status)
    .bind(t.outlier_status)
    .bind(t.not_interested_reason)
    .bind(t.return_type)
    .bind(t.parent_id)
    .bind(t.currency_code)
    .bind(t.local_amount)
    .bind(t.payment_modes)
    .bind(t.extended_fields)
    .bind(t.custom_fields)
    .bind(t.loyalty_status)
    .bind(t.api_version)
    .bind(t.now)
    .fetch_one(e)
    .await
    })?)
}

/// A line item about to be inserted.
#[derive(Clone, Debug)]
pub struct NewLine<'a> {
    pub serial: i64,
    pub kind: &'a str,
    pub item_code: &'a str,
    pub description: &'a str,
    pub qty: i64,
    pub rate: i64,
    pub value: i64,
    pub discount: i64,
    pub amount: i64,
    pub parent_line_id: Option<i64>,
    pub attributes: &'a str,
    pub extended_fields: &'a str,
    pub custom_fields: &'a str,
}

pub async fn insert_line(
    c: &mut impl Connection,
    org: OrgId,
    transaction: i64,
    l: &NewLine<'_>,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO transaction_line_items (org_id, transaction_id, serial, type, item_code, \
         description, qty, rate, value, discount, amount, parent_line_id, attributes, \
         extended_fields, custom_fields) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
         $12, $13, $14, $15) RETURNING id"
    )
    .bind(org.0)
    .bind(transaction)
    .bind(l.serial)
    .bind(l.kind)
    .bind(l.item_code)
    .bind(l.description)
    .bind(l.qty)
    .bind(l.rate)
    .bind(l.value)
    .bind(l.discount)
    .bind(l.amount)
    .bind(l.parent_line_id)
    .bind(l.attributes)
    .bind(l.extended_fields)
    .bind(l.custom_fields)
    .fetch_one(e)
    .await)?)
}

/// Serialises every write about one bill number on PostgreSQL until the transaction ends (the
/// duplicate check and the insert then cannot interleave); SQLite has one writer already.
pub async fn lock_bill_number(
    c: &mut impl Connection,
    org: OrgId,
    bill_number: &str,
) -> Result<(), DbError> {
    if let Exec::Postgres(e) = c.exec() {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("perks-bill:{}:{bill_number}", org.0))
            .execute(e)
            .await?;
    }
    Ok(())
}

/// Sales of this number billed between `from` and `to`, in the store (or till, when given).
pub async fn count_same_number(
    c: &mut impl Connection,
    org: OrgId,
    bill_number: &str,
    store: Option<i64>,
    till: Option<i64>,
    (from, to): (i64, i64),
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "SELECT COUNT(*) FROM transactions WHERE org_id = $1 AND bill_number = $2 \
         AND type IN ('REGULAR', 'NOT_INTERESTED', 'MIXED') AND outlier_status <> 'DELETED' \
         AND billing_at >= $3 AND billing_at <= $6 AND ($4 < 0 OR store_id = $4) \
         AND ($5 < 0 OR till_id = $5)"
    )
    .bind(org.0)
    .bind(bill_number)
    .bind(from)
    .bind(store.unwrap_or(-1))
    .bind(till.unwrap_or(-1))
    .bind(to)
    .fetch_one(e)
    .await)?)
}

pub async fn get(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
) -> Result<Option<TransactionRow>, DbError> {
    let sql = format!("SELECT {TXN_COLUMNS} FROM transactions WHERE org_id = $1 AND id = $2");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, TransactionRow>(&sql)
        .bind(org.0)
        .bind(id)
        .fetch_optional(e)
        .await)?)
}

/// Sales (or not-interested sales) with this number, newest first, at most `limit`.
pub async fn by_number(
    c: &mut impl Connection,
    org: OrgId,
    bill_number: &str,
    types: &[&str],
    limit: i64,
) -> Result<Vec<TransactionRow>, DbError> {
    let list = types.iter().map(|t| format!("'{}'", t.replace('\'', ""))).collect::<Vec<_>>();
    let filter =
        if list.is_empty() { String::new() } else { format!(" AND type IN ({})", list.join(", ")) };
    let sql = format!(
        "SELECT {TXN_COLUMNS} FROM transactions WHERE org_id = $1 AND bill_number = $2{filter} \
         ORDER BY billing_at DESC, id DESC LIMIT $3"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, TransactionRow>(&sql)
        .bind(org.0)
        .bind(bill_number)
        .bind(limit)
        .fetch_all(e)
        .await)?)
}

/// A customer's transactions, newest first.
pub async fn of_customer(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    types: &[&str],
    offset: i64,
    limit: i64,
) -> Result<(Vec<TransactionRow>, i64), DbError> {
    let list = types.iter().map(|t| format!("'{}'", t.replace('\'', ""))).collect::<Vec<_>>();
    let filter =
        if list.is_empty() { String::new() } else { format!(" AND type IN ({})", list.join(", ")) };
    let sql = format!(
        "SELECT {TXN_COLUMNS} FROM transactions WHERE org_id = $1 AND customer_id = $2{filter} \
         ORDER BY billing_at DESC, id DESC LIMIT $3 OFFSET $4"
    );
    let rows = dispatch!(c, |e| sqlx::query_as::<_, TransactionRow>(&sql)
        .bind(org.0)
        .bind(customer)
        .bind(limit)
        .bind(offset)
        .fetch_all(e)
        .await)?;
    let count_sql =
        format!("SELECT COUNT(*) FROM transactions WHERE org_id = $1 AND customer_id = $2{filter}");
    let total = dispatch!(c, |e| sqlx::query_scalar::<_, i64>(&count_sql)
        .bind(org.0)
        .bind(customer)
        .fetch_one(e)
        .await)?;
    Ok((rows, total))
}

pub async fn lines(
    c: &mut impl Connection,
    org: OrgId,
    transaction: i64,
) -> Result<Vec<LineRow>, DbError> {
    let sql = format!(
        "SELECT {LINE_COLUMNS} FROM transaction_line_items WHERE org_id = $1 AND transaction_id = $2 \
         ORDER BY serial, id"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, LineRow>(&sql)
        .bind(org.0)
        .bind(transaction)
        .fetch_all(e)
        .await)?)
}

/// Records a return against a sale: what was returned so far and in which way.
pub async fn mark_returned(
    c: &mut impl Connection,
    org: OrgId,
    transaction: i64,
    returned_amount: i64,
    return_state: &str,
    now: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE transactions SET returned_amount = $3, return_state = $4, updated_at = $5 \
         WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(transaction)
    .bind(returned_amount)
    .bind(return_state)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

pub async fn mark_line_returned(
    c: &mut impl Connection,
    org: OrgId,
    line: i64,
    returned_qty: i64,
    returned_amount: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE transaction_line_items SET returned_qty = $3, returned_amount = $4 \
         WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(line)
    .bind(returned_qty)
    .bind(returned_amount)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// The outcome of a transaction's loyalty evaluation, as stored on it.
#[derive(Clone, Copy, Debug)]
pub struct EvaluationRecord<'a> {
    pub program_id: Option<i64>,
    pub loyalty_status: &'a str,
    pub points: i64,
    pub side_effects: &'a str,
    pub evaluation_log: &'a str,
}

/// Stores the outcome of the loyalty evaluation of a transaction.
#[allow(clippy::too_many_arguments)]
pub async fn set_evaluation(
    c: &mut impl Connection,
    org: OrgId,
    transaction: i64,
    record: &EvaluationRecord<'_>,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE transactions SET program_id = $3, loyalty_status = $4, points = $5, \
         side_effects = $6, evaluation_log = $7 WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(transaction)
    .bind(record.program_id)
    .bind(record.loyalty_status)
    .bind(record.points)
    .bind(record.side_effects)
    .bind(record.evaluation_log)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// The editable parts of a transaction, as JSON text.
#[derive(Clone, Copy, Debug)]
pub struct EditableFields<'a> {
    pub delivery_status: &'a str,
    pub extended_fields: &'a str,
    pub custom_fields: &'a str,
}

/// Replaces the editable parts of a transaction (fields and delivery status).
#[allow(clippy::too_many_arguments)]
pub async fn update_fields(
    c: &mut impl Connection,
    org: OrgId,
    transaction: i64,
    fields: &EditableFields<'_>,
    till: Option<i64>,
    now: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE transactions SET delivery_status = $3, extended_fields = $4, custom_fields = $5, \
         modified_by_till_id = $6, updated_at = $7 WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(transaction)
    .bind(fields.delivery_status)
    .bind(fields.extended_fields)
    .bind(fields.custom_fields)
    .bind(till)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

pub async fn update_line_fields(
    c: &mut impl Connection,
    org: OrgId,
    line: i64,
    extended_fields: &str,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE transaction_line_items SET extended_fields = $3 WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(line)
    .bind(extended_fields)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Converts a not-interested bill into a loyalty bill of `customer` (retro).
pub async fn convert_to_regular(
    c: &mut impl Connection,
    org: OrgId,
    transaction: i64,
    customer: i64,
    note: &str,
    now: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE transactions SET type = 'REGULAR', customer_id = $3, note = $4, \
         loyalty_status = 'PENDING', updated_at = $5 WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(transaction)
    .bind(customer)
    .bind(note)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Transactions waiting for asynchronous evaluation (any org), oldest first.
pub async fn pending(c: &mut impl Connection, limit: i64) -> Result<Vec<(i64, i64)>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, (i64, i64)>(
        "SELECT org_id, id FROM transactions WHERE loyalty_status = 'PENDING' ORDER BY id LIMIT $1"
    )
    .bind(limit)
    .fetch_all(e)
    .await)?)
}

/// The customer's net purchases and bill count in the program since `since` (tier periods).
pub async fn purchases_since(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    since: i64,
) -> Result<(i64, i64), DbError> {
    Ok(dispatch!(c, |e| {
        sqlx::query_as::<_, (i64, i64)>(
        "SELECT CAST(COALESCE(SUM(CASE WHEN type = 'RETURN' THEN -amount ELSE amount END), 0) AS BIGINT), \
         CAST(COALESCE(SUM(CASE WHEN type = 'RETURN' THEN 0 ELSE 1 END), 0) AS BIGINT) \
         FROM transactions WHERE org_id = $1 AND customer_id = $2 AND billing_at >= $3 \
         AND type IN ('REGULAR', 'RETURN', 'MIXED') AND outlier_status <> 'DELETED'"
    )
    .bind(org.0)
    .bind(customer)
    .bind(since)
    .fetch_one(e)
    .await
    })?)
}

/// The org's values of the given config keys (absent keys are simply missing).
pub async fn configs(
    c: &mut impl Connection,
    org: OrgId,
    keys: &[&str],
) -> Result<Vec<(String, String)>, DbError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (0..keys.len()).map(|i| format!("${}", i + 2)).collect();
    let sql = format!(
        "SELECT key_name, value FROM org_configs WHERE org_id = $1 AND key_name IN ({})",
        placeholders.join(", ")
    );
    Ok(dispatch!(c, |e| {
        let mut q = sqlx::query_as::<_, (String, String)>(&sql).bind(org.0);
        for key in keys {
            q = q.bind(*key);
        }
        q.fetch_all(e).await
    })?)
}

/// The org's conversion ratio of a currency into its base currency.
pub async fn currency_ratio(
    c: &mut impl Connection,
    org: OrgId,
    currency: &str,
) -> Result<Option<String>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "SELECT ratio FROM currency_ratios WHERE org_id = $1 AND currency_code = $2"
    )
    .bind(org.0)
    .bind(currency)
    .fetch_optional(e)
    .await)?)
}

pub async fn set_currency_ratio(
    c: &mut impl Connection,
    org: OrgId,
    currency: &str,
    ratio: &str,
    now: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| {
        sqlx::query(
        "INSERT INTO currency_ratios (org_id, currency_code, ratio, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (org_id, currency_code) DO UPDATE SET ratio = $3, updated_at = $4"
    )
    .bind(org.0)
    .bind(currency)
    .bind(ratio)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Claims a queued transaction for evaluation; false when someone else already took it (the
/// row lock of the UPDATE makes a second instance wait, then find it no longer pending).
pub async fn claim_pending(
    c: &mut impl Connection,
    org: OrgId,
    transaction: i64,
) -> Result<bool, DbError> {
    let claimed = dispatch!(c, |e| sqlx::query(
        "UPDATE transactions SET loyalty_status = 'PROCESSING' \
         WHERE org_id = $1 AND id = $2 AND loyalty_status = 'PENDING'"
    )
    .bind(org.0)
    .bind(transaction)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(claimed == 1)
}

/// The org's currency ratios, by code (an org keeps a few hundred at most).
pub async fn currency_ratios(
    c: &mut impl Connection,
    org: OrgId,
) -> Result<Vec<(String, String)>, DbError> {
    Ok(dispatch!(c, |e| {
        sqlx::query_as::<_, (String, String)>(
        "SELECT currency_code, ratio FROM currency_ratios WHERE org_id = $1 ORDER BY currency_code LIMIT 1000"
    )
    .bind(org.0)
    .fetch_all(e)
    .await
    })?)
}
