//! v1.1 points APIs: check if points are redeemable, issue a validation code, redeem (batch).

use axum::extract::State;
use axum::http::HeaderMap;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::IntoParams;

use super::model::Fixed;
use super::redemption::{self, PointsError, Redeem};
use crate::app::AppState;
use crate::auth::{Level, Principal, Resource};
use crate::customers::routes_v1::{
    CustomerKey, batch_items, echo, failed_item, find, identity, key_from, text,
};
use crate::customers::routes_v2::country_code;
use crate::db::now_millis;
use crate::error::ApiError;
use crate::http::envelope::{V1Reply, item_status};
use crate::http::extract::{Query, V1Body};
use crate::programs::engine::CompiledProgram;
use crate::programs::model::ProgramId;

/// The org's program a request names (`program_id`), else the one of the caller's store.
pub(crate) async fn program_of(
    state: &AppState,
    principal: &Principal,
    program_id: Option<&str>,
) -> Result<CompiledProgram, ApiError> {
    let mut conn = state.db.read().await?;
    let org = principal.org;
    match program_id.map(str::trim).filter(|p| !p.is_empty()) {
        Some(id) => {
            let id: i64 = id.parse().map_err(|_| {
                ApiError::from(PointsError::Program(crate::programs::model::ProgramError::NotFound))
            })?;
            crate::programs::service::program_by_id(&state.programs, &mut conn, org, ProgramId(id))
                .await
                .map_err(|e| ApiError::from(PointsError::from(e)))
        }
        None => {
            let store = principal.store.map(|s| s.0).unwrap_or(0);
            Ok(crate::programs::service::program_for_store(&state.programs, &mut conn, org, store)
                .await?)
        }
    }
}

/// Points from the wire (801 when not a positive whole number).
fn points_of(value: Option<&str>) -> Result<Fixed, ApiError> {
    let parsed =
        value.and_then(|v| v.trim().parse::<Decimal>().ok()).ok_or(PointsError::InvalidPoints)?;
    Ok(redemption::parse_points(parsed)?)
}

fn is_true(value: Option<&str>) -> bool {
    value.is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1"))
}

/// One answer wrapped as `response.<outer>.<inner>` (an object, not a list).
fn reply_one(outer: &str, inner: &str, item: Value) -> V1Reply {
    let mut reply = V1Reply::batch(outer, inner, vec![item]);
    if let Some(list) = reply.body.pointer_mut(&format!("/response/{outer}/{inner}"))
        && let Some(first) = list.get_mut(0).map(Value::take)
    {
        *list = first;
    }
    reply
}

/// Query of `GET /v1.1/points/isredeemable` (group, card-external-id and validation-type
/// parameters are accepted and not acted on).
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct IsRedeemableQuery {
    mobile: Option<String>,
    email: Option<String>,
    external_id: Option<String>,
    card_number: Option<String>,
    card_external_id: Option<String>,
    id: Option<String>,
    program_id: Option<String>,
    points: Option<String>,
    group_redemption: Option<String>,
    issue_otp: Option<String>,
    validation_code: Option<String>,
    skip_validation: Option<String>,
    validation_type: Option<String>,
    user_group2_primary_user_id: Option<String>,
    user_group2_id: Option<String>,
    format: Option<String>,
}

impl IsRedeemableQuery {
    fn get(&self, key: &str) -> Option<String> {
        let v = match key {
            "mobile" => &self.mobile,
            "email" => &self.email,
            "external_id" => &self.external_id,
            "card_number" => &self.card_number,
            "id" | "user_id" => &self.id,
            _ => &None,
        };
        v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_string)
    }

    fn echo(&self) -> Map<String, Value> {
        let mut out = Map::new();
        for key in ["mobile", "email", "external_id", "id"] {
            if let Some(v) = self.get(key) {
                out.insert(key.into(), json!(v));
            }
        }
        out
    }
}

/// `GET /v1.1/points/isredeemable` — whether the customer can redeem `points` in the program
/// (rules 801/807/819/821, fraud 809, balance 803/804, code 808 when wrong, expired or missing); with
/// `issue_otp=true` also sends a validation code (876 when that fails). Writes nothing else.
#[utoipa::path(get, path = "/v1.1/points/isredeemable", tag = "points-v1.1", params(IsRedeemableQuery),
    responses((status = 200, description = "Redeemable (item code 800)"), (status = 500, description = "Not redeemable (item code says why)")))]
pub async fn is_redeemable(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<IsRedeemableQuery>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Points, Level::Read)?;
    let mut fields = q.echo();
    fields.insert("points".into(), json!(q.points.clone().unwrap_or_default()));
    let result = check(&state, &principal, &headers, &q, &mut fields).await;
    let item = match result {
        Ok(()) => {
            fields.insert("is_redeemable".into(), json!("true"));
            fields.insert("item_status".into(), item_status(true, 800, "Points can be redeemed"));
            Value::Object(fields)
        }
        Err(e) => {
            fields.insert("is_redeemable".into(), json!("false"));
            failed_item(fields, &e)
        }
    };
    Ok(reply_one("points", "redeemable", item))
}

async fn check(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    q: &IsRedeemableQuery,
    fields: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    let key = key_from(|k| q.get(k), country_code(headers).as_deref())?;
    let points = points_of(q.points.as_deref())?;
    let program = program_of(state, principal, q.program_id.as_deref()).await?;
    let customer = {
        let mut conn = state.db.read().await?;
        find(&mut conn, principal.org, &key).await?
    };
    fields.extend(identity(&customer));
    let now = now_millis();
    let request = Redeem {
        customer: customer.row.id,
        program: &program,
        points,
        validation_code: q.validation_code.as_deref().map(str::trim).filter(|c| !c.is_empty()),
        skip_validation: is_true(q.skip_validation.as_deref()),
        code_if_given: true,
        bill_number: "",
        external_reference: "",
        notes: "",
        till: principal.till.map(|t| t.0),
        commit: false,
    };
    let quote =
        redemption::redeem(&state.db, Some(principal), principal.org, &request, now).await?;
    fields.insert("points".into(), json!(points.to_f64()));
    fields.insert("points_redeem_value".into(), json!(f64_of(quote.value)));
    fields.insert("points_currency_ratio".into(), json!(f64_of(quote.point_value)));
    fields.insert("program_id".into(), json!(program.id.0));
    if is_true(q.issue_otp.as_deref())
        && redemption::issue_code(
            &state.db,
            Some(principal),
            principal.org,
            customer.row.id,
            points,
            now,
        )
        .await
        .is_err()
    {
        fields.insert("is_redeemable".into(), json!("true"));
        fields.insert(
            "item_status".into(),
            item_status(
                false,
                876,
                "Points are redeemable but the validation code could not be sent",
            ),
        );
    }
    Ok(())
}

fn f64_of(value: Decimal) -> f64 {
    use rust_decimal::prelude::ToPrimitive;
    value.to_f64().unwrap_or(0.0)
}

/// `GET /v1.1/points/validationcode` — sends the customer a validation code for `points`;
/// asking again within the code's validity re-sends the same code.
#[utoipa::path(get, path = "/v1.1/points/validationcode", tag = "points-v1.1", params(IsRedeemableQuery),
    responses((status = 200, description = "Code sent"), (status = 500, description = "Not sent (item code says why)")))]
pub async fn validation_code(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<IsRedeemableQuery>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Points, Level::Write)?;
    let mut fields = q.echo();
    let result: Result<(), ApiError> = async {
        let key = key_from(|k| q.get(k), country_code(&headers).as_deref())?;
        let points = points_of(q.points.as_deref())?;
        let customer = {
            let mut conn = state.db.read().await?;
            find(&mut conn, principal.org, &key).await?
        };
        fields.extend(identity(&customer));
        let issued = redemption::issue_code(
            &state.db,
            Some(&principal),
            principal.org,
            customer.row.id,
            points,
            now_millis(),
        )
        .await?;
        fields.insert("points".into(), json!(points.to_f64()));
        fields.insert("channel".into(), json!(issued.channel));
        fields.insert(
            "valid_till".into(),
            json!(crate::customers::routes_v1::v1_time(issued.expires_at)),
        );
        fields.insert("resent".into(), json!(issued.resent));
        Ok(())
    }
    .await;
    let item = match result {
        Ok(()) => {
            fields.insert("item_status".into(), item_status(true, 200, "Validation code sent"));
            Value::Object(fields)
        }
        Err(e) => failed_item(fields, &e),
    };
    Ok(reply_one("validation_code", "code", item))
}

/// Query of `POST /v1.1/points/redeem`.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct RedeemQuery {
    program_id: Option<String>,
    skip_validation: Option<String>,
    format: Option<String>,
}

/// The customer of a redeem item: its `customer` object, else the item's own keys.
fn item_customer(item: &Value, country: Option<&str>) -> Result<CustomerKey, ApiError> {
    let customer = item.get("customer").filter(|c| c.is_object());
    key_from(|k| customer.and_then(|c| text(c, k)).or_else(|| text(item, k)), country)
}

async fn redeem_one(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    q: &RedeemQuery,
    program: &CompiledProgram,
    item: &Value,
) -> Result<Value, ApiError> {
    let key = item_customer(item, country_code(headers).as_deref())?;
    let points = points_of(text(item, "points_redeemed").as_deref())?;
    let customer = {
        let mut conn = state.db.read().await?;
        find(&mut conn, principal.org, &key).await?
    };
    let bill_number = text(item, "transaction_number").unwrap_or_default();
    let external = text(item, "external_reference_number").unwrap_or_default();
    let notes = text(item, "notes").unwrap_or_default();
    let code = text(item, "validation_code");
    let request = Redeem {
        customer: customer.row.id,
        program,
        points,
        validation_code: code.as_deref(),
        skip_validation: is_true(q.skip_validation.as_deref()),
        code_if_given: false,
        bill_number: &bill_number,
        external_reference: &external,
        notes: &notes,
        till: principal.till.map(|t| t.0),
        commit: true,
    };
    let done =
        redemption::redeem(&state.db, Some(principal), principal.org, &request, now_millis())
            .await?;
    let mut fields = identity(&customer);
    fields.insert("points_redeemed".into(), json!(points.to_f64()));
    fields.insert("transaction_number".into(), json!(bill_number));
    fields.insert("redemption_id".into(), json!(done.redemption_id));
    fields.insert("balance".into(), json!(done.balance.to_f64()));
    fields.insert("points_redeem_value".into(), json!(f64_of(done.value)));
    fields.insert("program_id".into(), json!(program.id.0));
    fields.insert("item_status".into(), item_status(true, 800, "Points redeemed successfully"));
    Ok(Value::Object(fields))
}

/// `POST /v1.1/points/redeem` — redeems points for each `root.redeem[]` item (validation code
/// unless `skip_validation=true` where the program allows, or the program never asks for one);
/// item code 800 with `redemption_id` and the new balance.
#[utoipa::path(post, path = "/v1.1/points/redeem", tag = "points-v1.1", params(RedeemQuery),
    responses((status = 200, description = "All redeemed"), (status = 201, description = "Some failed"), (status = 500, description = "All failed")))]
pub async fn redeem(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<RedeemQuery>,
    V1Body(body): V1Body<Value>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Points, Level::Write)?;
    let items = batch_items(&body, "redeem", &["points_redeemed"])?;
    let program = program_of(&state, &principal, q.program_id.as_deref()).await;
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        let result = match &program {
            Ok(program) => redeem_one(&state, &principal, &headers, &q, program, item).await,
            Err(e) => Err(e.clone()),
        };
        out.push(result.unwrap_or_else(|e| {
            let mut fields = echo(item.get("customer").unwrap_or(item));
            if let Some(p) = text(item, "points_redeemed") {
                fields.insert("points_redeemed".into(), json!(p));
            }
            failed_item(fields, &e)
        }));
    }
    Ok(V1Reply::batch("responses", "points", out))
}
