//! `POST /x/perks/v1/programs/{id}/dryRun`: evaluates a bill for a customer under one program
//! without writing anything, and says why each rule gave what it gave.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use super::routes_v2::BillBody;
use super::service::{self, customer_facts};
use crate::app::AppState;
use crate::auth::Principal;
use crate::customers::routes_v2::LookupQuery;
use crate::db::now_millis;
use crate::error::{ApiError, Code};
use crate::http::extract::{Json, Path};
use crate::points::model::Fixed;
use crate::points::store as points_store;
use crate::programs::model::ProgramId;

/// Who the bill is for, and the bill (the v2 transaction body).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DryRunBody {
    customer_id: Option<i64>,
    identifier_name: Option<String>,
    identifier_value: Option<String>,
    source: Option<String>,
    account_id: Option<String>,
    /// The store whose time zone and code the bill carries; the org's first store by default.
    store_code: Option<String>,
    bill: BillBody,
}

/// `POST /x/perks/v1/programs/{id}/dryRun` — each rule's verdict and points for a bill, the
/// total, and the tier the customer would reach; nothing is written (admin token only).
#[utoipa::path(post, path = "/x/perks/v1/programs/{id}/dryRun", tag = "admin", request_body = DryRunBody,
    params(("id" = i64, Path, description = "Program id")),
    responses((status = 200, description = "Rule by rule results"), (status = 404, description = "No such program or customer")))]
pub async fn dry_run(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Json(body): Json<DryRunBody>,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let org = principal.org;
    let now = now_millis();
    let mut conn = state.db.read().await?;
    let program =
        crate::programs::service::program_by_id(&state.programs, &mut conn, org, ProgramId(id))
            .await?;
    let store = match body.store_code.as_deref() {
        Some(code) => crate::org::store::find_store_by_code(&mut conn, org, code).await?,
        None => match principal.store {
            Some(s) => crate::org::store::get_store(&mut conn, org, s).await?,
            None => crate::org::store::find_store_by_code(&mut conn, org, "main.store").await?,
        },
    }
    .ok_or_else(|| {
        ApiError::with_message(Code::InvalidStoreOrTill, "storeCode names no store of the org")
    })?;
    let (tz, store_code) =
        service::store_locale(&mut conn, org, crate::org::model::StoreId(store.id)).await?;
    let customer = match body.customer_id {
        Some(id) => crate::customers::store::get_customer(
            &mut conn,
            org,
            crate::customers::model::CustomerId(id),
        )
        .await?
        .map(|c| c.id)
        .ok_or_else(|| ApiError::new(Code::CustomerNotFound))?,
        None => {
            let lookup = LookupQuery::new(
                body.source.clone(),
                body.account_id.clone(),
                body.identifier_name.clone(),
                body.identifier_value.clone(),
            );
            lookup.resolve(&mut conn, org, None).await?.0.0
        }
    };
    let input = body.bill.into_input(tz, false, now)?;
    let account = points_store::accounts_of_customer(&mut conn, org, customer)
        .await?
        .into_iter()
        .find(|a| a.program_id == program.id.0)
        .unwrap_or_else(|| points_store::AccountRow::empty(customer, program.id.0, now));
    let facts = customer_facts(&mut conn, org, customer, &program, &account).await?;
    let bill = service::facts_of_input(&input, &store_code);
    let rules = program.evaluate_bill(&bill, &facts);
    let total = rules
        .iter()
        .filter(|r| r.matched && r.currency.is_none())
        .fold(rust_decimal::Decimal::ZERO, |a, r| a + r.points);
    // Alternate currencies the bill would earn, per currency name, in the order first earned.
    let mut currencies: Vec<(String, rust_decimal::Decimal)> = Vec::new();
    for rule in rules.iter().filter(|r| r.matched) {
        let Some(name) = &rule.currency else { continue };
        match currencies.iter_mut().find(|(n, _)| n == name) {
            Some((_, value)) => *value += rule.points,
            None => currencies.push((name.clone(), rule.points)),
        }
    }
    let currencies: Vec<serde_json::Value> = currencies
        .iter()
        .map(|(name, value)| {
            json!({"alternateCurrencyName": name,
                "value": Fixed::from_decimal(*value).unwrap_or_default().to_f64()})
        })
        .collect();
    let mut metrics = service::tier_metrics(
        &mut conn,
        &program,
        crate::points::ledger::Scope { org, customer, program: program.id.0, till: None, now },
        tz,
        &account,
    )
    .await?;
    metrics.lifetime_purchases += input.amount.to_decimal();
    metrics.purchases_in_period += input.amount.to_decimal();
    metrics.lifetime_points += total;
    metrics.points_in_period += total;
    metrics.visits_in_period += rust_decimal::Decimal::ONE;
    let tier_after = program.qualifying_tier(&metrics).max(account.tier_number);
    Ok(axum::Json(json!({
        "data": {
            "programId": program.id.0,
            "programVersion": program.version,
            "customerId": customer,
            "rules": rules,
            "totalPoints": Fixed::from_decimal(total).unwrap_or_default().to_f64(),
            "alternateCurrencies": currencies,
            "promised": program.unlock_at(now).is_some(),
            "pointsExpiryDate": program.points_expiry(now, tz).map(super::time::iso_utc),
            "tier": {"current": program.tier_name(account.tier_number), "after": program.tier_name(tier_after)},
        },
        "warnings": [],
        "errors": [],
    }))
    .into_response())
}
