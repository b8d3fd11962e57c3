//! SQL for labels and customer tags; every function is org-first.

use super::model::LabelId;
use crate::customers::model::CustomerId;
use crate::db::{Connection, DbError};
use crate::dispatch;
use crate::org::model::OrgId;

/// A label row.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct LabelRow {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub is_active: bool,
    pub last_updated_by: Option<i64>,
}

/// A label on a customer.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct TagRow {
    pub customer_id: i64,
    pub label_id: i64,
    pub name: String,
    pub tagged_at: i64,
}

/// Inserts a label unless the org already has one of that name (then `None`).
pub async fn insert_label(
    c: &mut impl Connection,
    org: OrgId,
    name: &str,
    description: &str,
    updated_by: Option<i64>,
    now: i64,
) -> Result<Option<LabelId>, DbError> {
    let id: Option<i64> = dispatch!(c, |e| {
        sqlx::query_scalar(
        "INSERT INTO labels (org_id, name, description, last_updated_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (org_id, name) DO NOTHING RETURNING id"
    )
    .bind(org.0)
    .bind(name)
    .bind(description)
    .bind(updated_by)
    .bind(now)
    .fetch_optional(e)
    .await
    })?;
    Ok(id.map(LabelId))
}

pub async fn count_labels(c: &mut impl Connection, org: OrgId) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar("SELECT COUNT(*) FROM labels WHERE org_id = $1")
        .bind(org.0)
        .fetch_one(e)
        .await)?)
}

/// The org's labels in creation order, at most `limit`.
pub async fn labels(
    c: &mut impl Connection,
    org: OrgId,
    limit: i64,
) -> Result<Vec<LabelRow>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, LabelRow>(
        "SELECT id, name, description, is_active, last_updated_by FROM labels \
         WHERE org_id = $1 ORDER BY id LIMIT $2"
    )
    .bind(org.0)
    .bind(limit)
    .fetch_all(e)
    .await)?)
}

/// The org's active labels among `names` (callers bound the list).
pub async fn labels_named(
    c: &mut impl Connection,
    org: OrgId,
    names: &[&str],
) -> Result<Vec<LabelRow>, DbError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    // `$1` is the org and `$2` the active flag; the names follow from `$3`.
    let placeholders: Vec<String> = (0..names.len()).map(|i| format!("${}", i + 3)).collect();
    let numbered = format!(
        "SELECT id, name, description, is_active, last_updated_by FROM labels \
         WHERE org_id = $1 AND is_active = $2 AND name IN ({})",
        placeholders.join(", ")
    );
    Ok(dispatch!(c, |e| {
        let mut query = sqlx::query_as::<_, LabelRow>(&numbered).bind(org.0).bind(true);
        for name in names {
            query = query.bind(*name);
        }
        query.fetch_all(e).await
    })?)
}

/// Tags a customer with a label; false when it already was.
pub async fn tag(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
    label: LabelId,
    now: i64,
) -> Result<bool, DbError> {
    let affected = dispatch!(c, |e| sqlx::query(
        "INSERT INTO customer_labels (org_id, customer_id, label_id, tagged_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (org_id, customer_id, label_id) DO NOTHING"
    )
    .bind(org.0)
    .bind(customer.0)
    .bind(label.0)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(affected > 0)
}

/// Removes a label from a customer; false when the customer did not have it.
pub async fn untag(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
    label: LabelId,
) -> Result<bool, DbError> {
    let affected = dispatch!(c, |e| sqlx::query(
        "DELETE FROM customer_labels WHERE org_id = $1 AND customer_id = $2 AND label_id = $3"
    )
    .bind(org.0)
    .bind(customer.0)
    .bind(label.0)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(affected > 0)
}

/// A customer's labels in tagging order, at most `limit`.
pub async fn customer_tags(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
    limit: i64,
) -> Result<Vec<TagRow>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, TagRow>(
        "SELECT cl.customer_id, cl.label_id, l.name, cl.tagged_at FROM customer_labels cl \
         JOIN labels l ON l.org_id = cl.org_id AND l.id = cl.label_id \
         WHERE cl.org_id = $1 AND cl.customer_id = $2 ORDER BY cl.tagged_at, cl.label_id LIMIT $3"
    )
    .bind(org.0)
    .bind(customer.0)
    .bind(limit)
    .fetch_all(e)
    .await)?)
}

/// Case-sensitive prefix match on the label name, the same on both backends (`LIKE` is not).
const NAME_PREFIX: &str = "substr(l.name, 1, length($2)) = $2";

/// Customers holding a label whose name starts with `prefix`: one page of ids (ascending) and
/// the total.
pub async fn search_customers(
    c: &mut impl Connection,
    org: OrgId,
    prefix: &str,
    limit: i64,
    offset: i64,
) -> Result<(Vec<CustomerId>, i64), DbError> {
    let from = format!(
        "FROM customer_labels cl JOIN labels l ON l.org_id = cl.org_id AND l.id = cl.label_id \
         WHERE cl.org_id = $1 AND {NAME_PREFIX}"
    );
    let count_sql = format!("SELECT COUNT(DISTINCT cl.customer_id) {from}");
    let total: i64 = dispatch!(c, |e| sqlx::query_scalar(&count_sql)
        .bind(org.0)
        .bind(prefix)
        .fetch_one(e)
        .await)?;
    let page_sql =
        format!("SELECT DISTINCT cl.customer_id {from} ORDER BY cl.customer_id LIMIT $3 OFFSET $4");
    let ids: Vec<i64> = dispatch!(c, |e| sqlx::query_scalar(&page_sql)
        .bind(org.0)
        .bind(prefix)
        .bind(limit)
        .bind(offset)
        .fetch_all(e)
        .await)?;
    Ok((ids.into_iter().map(CustomerId).collect(), total))
}

/// The matching labels of customers with ids from `first` to `last`, ordered by customer.
/// Used for one page of [`search_customers`]: in that id range only the page's customers match.
pub async fn matching_tags(
    c: &mut impl Connection,
    org: OrgId,
    prefix: &str,
    first: CustomerId,
    last: CustomerId,
) -> Result<Vec<TagRow>, DbError> {
    let sql = format!(
        "SELECT cl.customer_id, cl.label_id, l.name, cl.tagged_at FROM customer_labels cl \
         JOIN labels l ON l.org_id = cl.org_id AND l.id = cl.label_id \
         WHERE cl.org_id = $1 AND {NAME_PREFIX} AND cl.customer_id BETWEEN $3 AND $4 \
         ORDER BY cl.customer_id, l.name"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, TagRow>(&sql)
        .bind(org.0)
        .bind(prefix)
        .bind(first.0)
        .bind(last.0)
        .fetch_all(e)
        .await)?)
}
