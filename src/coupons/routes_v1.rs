//! v1.1 coupon APIs: series details, redeem (`root.coupon[]`, each item on its own), is
//! redeemable, coupon details, a customer's coupons, and resend.

use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Map, Value, json};

use super::model::{CodeCase, CouponError, effective_expiry};
use super::routes_v2::{Params, check_each, customer_ref_of, money, text};
use super::service::{
    self, CodeRef, CouponDetails, CustomerRef, IssueContext, RedeemContext, Series,
};
use super::store;
use crate::app::AppState;
use crate::auth::{Level, Principal, Resource};
use crate::customers::model::CustomerId;
use crate::customers::routes_v1::{batch_items, one_or_many};
use crate::customers::routes_v2::country_code;
use crate::customers::store::CustomerRow;
use crate::db::now_millis;
use crate::error::ApiError;
use crate::http::envelope::{V1Reply, item_status};
use crate::http::extract::{Query, V1Body};
use crate::points::model::Fixed;

/// Most series, codes and coupons one v1.1 read may name.
const PER_READ_MAX: usize = 100;
/// Default and largest number of coupons `customer/coupons` lists.
const CUSTOMER_LIMIT_DEFAULT: usize = 200;
const CUSTOMER_LIMIT_MAX: usize = 1_000;

/// `YYYY-MM-DD HH:MM:SS` in UTC (the server's zone), as v1.1 shows instants.
fn v1_time(millis: i64) -> String {
    crate::customers::routes_v1::v1_time(millis)
}

/// `DD-MM-YYYY` in UTC (`valid_till` of v1.1 coupon reads).
fn v1_date(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|t| t.format("%d-%m-%Y").to_string())
        .unwrap_or_default()
}

/// Items under `response.<outer>.<inner>`: an object when there is one, a list otherwise.
fn reply(outer: &str, inner: &str, items: Vec<Value>) -> V1Reply {
    let single = items.len() == 1;
    let mut reply = V1Reply::batch(outer, inner, items);
    if single
        && let Some(list) = reply.body.pointer_mut(&format!("/response/{outer}/{inner}"))
        && let Some(first) = list.get_mut(0).map(Value::take)
    {
        *list = first;
    }
    reply
}

fn failed(mut fields: Map<String, Value>, e: &ApiError) -> Value {
    fields.insert("item_status".into(), item_status(false, e.code.info().code, &e.message));
    Value::Object(fields)
}

fn ok(mut fields: Map<String, Value>, message: &str) -> Value {
    fields.insert("item_status".into(), item_status(true, 700, message));
    Value::Object(fields)
}

/// The identifiers of a v1.1 query, in the order v1.1 reads them.
fn customer_of_query(params: &Params, headers: &HeaderMap) -> Result<CustomerRef, CouponError> {
    customer_ref_of(|k| params.get(k).map(str::to_string), country_code(headers).as_deref())
}

/// `mobile`, `email`, `external_id` of a customer (INSTORE first, else any source).
async fn identity(
    state: &AppState,
    principal: &Principal,
    customer: &CustomerRow,
) -> Result<Map<String, Value>, ApiError> {
    let mut conn = state.db.read().await?;
    let ids =
        crate::customers::store::identifiers(&mut conn, principal.org, CustomerId(customer.id))
            .await?;
    let find = |kind: &str| {
        ids.iter()
            .find(|i| i.kind == kind && i.source == "INSTORE")
            .or_else(|| ids.iter().find(|i| i.kind == kind))
            .map(|i| i.value.clone())
    };
    let mut out = Map::new();
    out.insert("id".into(), json!(customer.id));
    out.insert("mobile".into(), json!(find("mobile")));
    out.insert("email".into(), json!(find("email")));
    out.insert("external_id".into(), json!(find("externalId")));
    Ok(out)
}

fn series_v1(series: &Series) -> Map<String, Value> {
    let c = &series.config;
    let r = &series.row;
    let mut m = Map::new();
    m.insert("id".into(), json!(r.id));
    m.insert("description".into(), json!(c.description));
    m.insert("discount_code".into(), json!(c.discount_code));
    m.insert("series_code".into(), json!(c.series_code));
    m.insert("discount_type".into(), json!(c.discount_type.as_str()));
    m.insert("discount_value".into(), json!(Fixed(c.discount_value).to_f64()));
    m.insert("discount_upto".into(), json!(Fixed(c.discount_upto).to_f64()));
    m.insert("discount_on".into(), json!(c.discount_on));
    m.insert("valid_till".into(), json!(v1_time(r.valid_till_at)));
    m.insert("expiry_strategy_type".into(), json!(c.expiry_strategy.as_str()));
    m.insert("expiry_strategy_value".into(), json!(c.expiry_strategy_value));
    m.insert("num_issued".into(), json!(r.num_issued));
    m.insert("num_redeemed".into(), json!(r.num_redeemed));
    m.insert("max_create".into(), json!(c.max_create));
    m.insert("max_redeem".into(), json!(c.max_redeem));
    m.insert("max_redemptions_per_coupon".into(), json!(c.redemption_per_coupon_max_limit));
    m.insert(
        "max_redemptions_in_series_per_user".into(),
        json!(c.max_redemptions_in_series_per_user),
    );
    m.insert("max_vouchers_per_user".into(), json!(c.max_vouchers_per_user));
    m.insert("any_user".into(), json!(c.any_user));
    m.insert("is_multiple_use_allowed".into(), json!(c.multiple_use_allowed));
    m.insert("same_user_multiple_redeem".into(), json!(c.same_user_multiple_redeem));
    m.insert("created_on".into(), json!(v1_time(r.created_at)));
    m
}

/// `GET /v1.1/coupon/series?id=1,2` — series details (item code 700, or 707 per unknown id).
#[utoipa::path(get, path = "/v1.1/coupon/series", tag = "coupons-v1.1",
    params(("id" = String, Query, description = "Series ids, comma separated")),
    responses((status = 200, description = "All found (item code 700)"), (status = 201, description = "Some unknown (707)"), (status = 500, description = "None found")))]
pub async fn series(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Coupon, Level::Read)?;
    let params = Params(params);
    let mut ids = params.all("id");
    ids.extend(params.all("ids"));
    if ids.is_empty() || ids.len() > PER_READ_MAX {
        return Err(
            CouponError::invalid(format!("id must list 1 to {PER_READ_MAX} series ids")).into()
        );
    }
    let mut conn = state.db.read().await?;
    let mut items = Vec::with_capacity(ids.len());
    for raw in ids {
        let mut fields = Map::new();
        fields.insert("id".into(), json!(raw));
        let found = match raw.parse::<i64>() {
            Ok(id) => service::load_series(&mut conn, principal.org, id).await,
            Err(_) => Err(CouponError::SeriesNotFound(-1)),
        };
        items.push(match found {
            Ok(series) => ok(series_v1(&series), "Coupon series fetched successfully"),
            Err(CouponError::Db(e)) => return Err(e.into()),
            Err(e) => failed(fields, &e.into()),
        });
    }
    Ok(reply("coupon_series", "series", items))
}

fn coupon_v1(
    d: &CouponDetails,
    case: CodeCase,
    issued_to: Option<&Map<String, Value>>,
) -> Map<String, Value> {
    let c = &d.series.config;
    let valid_till = effective_expiry(d.coupon.expires_at, d.series.row.valid_till_at);
    let mut m = Map::new();
    m.insert("id".into(), json!(d.coupon.id));
    m.insert("code".into(), json!(case.show(&d.coupon.code)));
    m.insert("series_id".into(), json!(d.coupon.series_id));
    m.insert("description".into(), json!(c.description));
    m.insert("discount_code".into(), json!(c.discount_code));
    m.insert("discount_type".into(), json!(c.discount_type.as_str()));
    m.insert("discount_value".into(), json!(Fixed(c.discount_value).to_f64()));
    m.insert("valid_from".into(), json!(d.coupon.issued_at.map(v1_time)));
    m.insert("valid_till".into(), json!(v1_date(valid_till)));
    m.insert("issued_on".into(), json!(d.coupon.issued_at.map(v1_time)));
    m.insert("created_date".into(), json!(d.coupon.issued_at.map(v1_time)));
    m.insert("purpose".into(), json!(d.coupon.source));
    let properties: Vec<Value> = c
        .custom_property_map
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())}))
        .collect();
    m.insert("custom_properties".into(), json!({"property": properties}));
    m.insert(
        "issued_to".into(),
        match issued_to {
            Some(identity) => Value::Object(identity.clone()),
            None => json!({"id": d.coupon.customer_id}),
        },
    );
    let status = if d.coupon.is_revoked() {
        "REVOKED"
    } else if d.state.expired {
        "EXPIRED"
    } else if d.state.redeemed {
        "REDEEMED"
    } else {
        "ACTIVE"
    };
    m.insert("status".into(), json!(status));
    let live: Vec<&store::RedemptionRow> = d.redemptions.iter().filter(|r| !r.reversed).collect();
    let last = live.last();
    m.insert(
        "redemption".into(),
        json!({"redeemed": if live.is_empty() { "false" } else { "true" }, "count": live.len(),
            "last_redeemed_on": last.map(|r| v1_time(r.redeemed_at)),
            "redemptions": {"redemption": live.iter().map(|r| json!({"id": r.id, "redeemed_on": v1_time(r.redeemed_at),
                "transaction_number": r.transaction_number, "bill_amount": r.bill_amount.map(|a| Fixed(a).to_f64()),
                "till_id": r.till_id, "store_id": r.store_id, "customer_id": r.customer_id})).collect::<Vec<_>>()}}),
    );
    m.insert(
        "transaction".into(),
        json!({"number": last.map(|r| r.transaction_number.clone()).unwrap_or_default(),
            "amount": last.and_then(|r| r.bill_amount).map(|a| Fixed(a).to_f64())}),
    );
    m
}

/// `GET /v1.1/coupon/get` — coupons by `code` (comma separated), coupon `id` or `issuedToIds`.
#[utoipa::path(get, path = "/v1.1/coupon/get", tag = "coupons-v1.1",
    params(("code" = Option<String>, Query), ("id" = Option<String>, Query), ("issuedToIds" = Option<String>, Query), ("coupon_code_case" = Option<String>, Query)),
    responses((status = 200, description = "Item code 700 per coupon"), (status = 500, description = "None found (702/715/719)")))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Coupon, Level::Read)?;
    let params = Params(params);
    let case = CodeCase::parse(params.get("coupon_code_case"))?;
    let codes = params.all("code");
    let ids = params.all("id");
    let issued_to = params
        .all("issuedToIds")
        .iter()
        .map(|s| {
            s.parse::<i64>().map_err(|_| CouponError::invalid("issuedToIds must be customer ids"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if codes.len() + ids.len() > PER_READ_MAX || issued_to.len() > 10 {
        return Err(
            CouponError::invalid(format!("At most {PER_READ_MAX} coupons per request")).into()
        );
    }
    if codes.is_empty() && ids.is_empty() && issued_to.is_empty() {
        return Err(CouponError::invalid("code, id or issuedToIds is required").into());
    }
    let org = principal.org;
    let now = now_millis();
    let mut conn = state.db.read().await?;
    let mut items = Vec::new();
    let mut found: Vec<store::CouponRow> = Vec::new();
    let asked: Vec<CodeRef> = codes
        .iter()
        .map(|c| CodeRef::Code(c.clone()))
        .chain(
            ids.iter()
                .map(|i| i.parse().map(CodeRef::Id).unwrap_or_else(|_| CodeRef::Code(i.clone()))),
        )
        .collect();
    for code in &asked {
        let row = match code {
            CodeRef::Code(c) => match super::model::code_key(c) {
                Ok(key) => store::coupon_by_key(&mut conn, org, &key, false).await?,
                Err(e) => {
                    items.push(failed(Map::from_iter([("code".into(), json!(c))]), &e.into()));
                    continue;
                }
            },
            CodeRef::Id(id) => store::coupon_by_id(&mut conn, org, *id, false).await?,
        };
        let row = row.filter(|r| {
            issued_to.is_empty() || r.customer_id.is_some_and(|c| issued_to.contains(&c))
        });
        match row {
            Some(row) => found.push(row),
            None => {
                let e = match code {
                    CodeRef::Code(c)
                        if store::code_in_other_org(&mut conn, org, &c.trim().to_uppercase())
                            .await? =>
                    {
                        CouponError::OtherOrg(c.clone())
                    }
                    other => CouponError::CodeNotFound(other.shown()),
                };
                items.push(failed(
                    Map::from_iter([("code".into(), json!(code.shown()))]),
                    &e.into(),
                ));
            }
        }
    }
    if asked.is_empty() {
        for customer in &issued_to {
            found.extend(
                store::coupons_of_customer(
                    &mut conn,
                    org,
                    *customer,
                    None,
                    service::CUSTOMER_COUPONS_MAX,
                )
                .await?,
            );
        }
    }
    for d in service::details(&mut conn, org, found, now).await? {
        items.push(ok(coupon_v1(&d, case, None), "Coupon details fetched successfully"));
    }
    Ok(reply("coupons", "coupon", items))
}

/// `GET /v1.1/customer/coupons` — a customer's coupons (status, series, date window, order, limit).
#[utoipa::path(get, path = "/v1.1/customer/coupons", tag = "coupons-v1.1",
    params(("mobile" = Option<String>, Query), ("email" = Option<String>, Query), ("external_id" = Option<String>, Query), ("id" = Option<i64>, Query),
        ("status" = Option<String>, Query, description = "unredeemed, redeemed, expired or active"), ("series_id" = Option<i64>, Query),
        ("start_date" = Option<String>, Query), ("end_date" = Option<String>, Query), ("order_by" = Option<String>, Query),
        ("sort_order" = Option<String>, Query), ("limit" = Option<i64>, Query), ("store_id" = Option<i64>, Query)),
    responses((status = 200, description = "The customer with coupons"), (status = 500, description = "701 customer not found")))]
pub async fn customer_coupons(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Coupon, Level::Read)?;
    let params = Params(params);
    let mut echo = Map::new();
    for key in ["mobile", "email", "external_id", "id"] {
        if let Some(v) = params.get(key) {
            echo.insert(key.into(), json!(v));
        }
    }
    let result: Result<Value, ApiError> = async {
        let reference = customer_of_query(&params, &headers)?;
        let case = CodeCase::parse(params.get("coupon_code_case"))?;
        let customer = {
            let mut conn = state.db.read().await?;
            service::find_customer(&mut conn, principal.org, &reference).await?
        };
        let filter = match params.get("status").map(str::to_ascii_lowercase).as_deref() {
            None => None,
            Some(s @ ("unredeemed" | "redeemed" | "expired" | "active")) => Some(s.to_string()),
            Some(_) => {
                return Err(CouponError::invalid(
                    "status must be unredeemed, redeemed, expired or active",
                )
                .into());
            }
        };
        let series = params
            .get("series_id")
            .map(|s| s.parse::<i64>().map_err(|_| CouponError::invalid("series_id must be an id")))
            .transpose()?;
        let store_id = params
            .get("store_id")
            .map(|s| s.parse::<i64>().map_err(|_| CouponError::invalid("store_id must be an id")))
            .transpose()?;
        let date = |key: &str, end: bool| -> Result<Option<i64>, ApiError> {
            let Some(v) = params.get(key) else { return Ok(None) };
            let day = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .map_err(|_| CouponError::invalid(format!("{key} must be YYYY-MM-DD")))?;
            let day = if end { day.succ_opt().unwrap_or(day) } else { day };
            Ok(day.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp_millis()))
        };
        let (from, to) = (date("start_date", false)?, date("end_date", true)?);
        let limit = match params.get("limit") {
            None => CUSTOMER_LIMIT_DEFAULT,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=CUSTOMER_LIMIT_MAX).contains(l))
                .ok_or_else(|| {
                    CouponError::invalid(format!("limit must be 1 to {CUSTOMER_LIMIT_MAX}"))
                })?,
        };
        let mut coupons =
            super::routes_v2::customer_coupons(&state, &principal, customer.id, series, &[])
                .await?;
        coupons.retain(|d| {
            let status_ok = match filter.as_deref() {
                None => true,
                Some("unredeemed") => !d.state.redeemed && !d.coupon.is_revoked(),
                Some("redeemed") => d.state.redeemed,
                Some("expired") => d.state.expired,
                _ => !d.state.expired && !d.coupon.is_revoked(),
            };
            let in_window = |t: i64| from.is_none_or(|f| t >= f) && to.is_none_or(|e| t < e);
            let window_ok = (from.is_none() && to.is_none())
                || d.coupon.issued_at.is_some_and(in_window)
                || d.redemptions.iter().any(|r| in_window(r.redeemed_at));
            status_ok && window_ok && store_id.is_none_or(|s| d.coupon.issued_store_id == Some(s))
        });
        let by_valid_till =
            params.get("order_by").is_some_and(|o| o.eq_ignore_ascii_case("valid_till"));
        coupons.sort_by_key(|d| {
            if by_valid_till {
                effective_expiry(d.coupon.expires_at, d.series.row.valid_till_at)
            } else {
                d.coupon.issued_at.unwrap_or(d.coupon.created_at)
            }
        });
        if !params.get("sort_order").is_some_and(|o| o.eq_ignore_ascii_case("asc")) {
            coupons.reverse();
        }
        coupons.truncate(limit);
        let person = identity(&state, &principal, &customer).await?;
        let list: Vec<Value> =
            coupons.iter().map(|d| Value::Object(coupon_v1(d, case, None))).collect();
        let mut fields = person;
        fields.insert("firstname".into(), json!(customer.first_name));
        fields.insert("lastname".into(), json!(customer.last_name));
        fields.insert("coupons".into(), json!({"coupon": list}));
        Ok(ok(fields, "Coupons retrieved successfully"))
    }
    .await;
    let item = result.unwrap_or_else(|e| failed(echo, &e));
    Ok(V1Reply::batch("customers", "customer", vec![item]))
}

/// Coupons `GET /v1.1/customer/get` lists per customer at most.
pub const CUSTOMER_GET_COUPONS_MAX: usize = 10;
/// The customer's latest coupons `GET /v1.1/customer/get` looks among for active ones.
const CUSTOMER_GET_COUPONS_SCAN: i64 = 100;

/// The customer's active coupons (neither expired nor revoked), most recently issued first, at
/// most [`CUSTOMER_GET_COUPONS_MAX`] of its latest [`CUSTOMER_GET_COUPONS_SCAN`], in the item
/// shape of `GET /v1.1/customer/coupons`: the `coupons.coupon` list of `GET /v1.1/customer/get`.
pub(crate) async fn active_coupons_v1(
    conn: &mut impl crate::db::Connection,
    org: crate::org::model::OrgId,
    customer: i64,
) -> Result<Vec<Value>, ApiError> {
    let rows =
        store::coupons_of_customer(conn, org, customer, None, CUSTOMER_GET_COUPONS_SCAN).await?;
    let mut coupons = service::details(conn, org, rows, now_millis()).await?;
    coupons.retain(|d| !d.state.expired && !d.coupon.is_revoked());
    coupons.sort_by_key(|d| {
        std::cmp::Reverse((d.coupon.issued_at.unwrap_or(d.coupon.created_at), d.coupon.id))
    });
    coupons.truncate(CUSTOMER_GET_COUPONS_MAX);
    Ok(coupons.iter().map(|d| Value::Object(coupon_v1(d, CodeCase::Upper, None))).collect())
}

/// `GET /v1.1/coupon/isredeemable` — whether each code can be redeemed by the customer now;
/// `details=true|extended` adds the series (reads only).
#[utoipa::path(get, path = "/v1.1/coupon/isredeemable", tag = "coupons-v1.1",
    params(("code" = String, Query, description = "Codes, comma separated"), ("mobile" = Option<String>, Query), ("email" = Option<String>, Query),
        ("external_id" = Option<String>, Query), ("id" = Option<i64>, Query), ("details" = Option<String>, Query), ("coupon_code_case" = Option<String>, Query)),
    responses((status = 200, description = "Redeemable (item code 700)"), (status = 500, description = "Not redeemable (the item code says why)")))]
pub async fn is_redeemable(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Coupon, Level::Read)?;
    let params = Params(params);
    let codes = params.all("code");
    let mut echo = Map::new();
    for key in ["mobile", "email", "external_id", "id"] {
        if let Some(v) = params.get(key) {
            echo.insert(key.into(), json!(v));
        }
    }
    let prepared: Result<(CodeCase, CustomerRow, Map<String, Value>), ApiError> = async {
        if codes.is_empty() || codes.len() > service::REDEEM_CODES_MAX {
            return Err(CouponError::invalid(format!(
                "code must list 1 to {} codes",
                service::REDEEM_CODES_MAX
            ))
            .into());
        }
        let case = CodeCase::parse(params.get("coupon_code_case"))?;
        let reference = customer_of_query(&params, &headers)?;
        let customer = {
            let mut conn = state.db.read().await?;
            service::find_customer(&mut conn, principal.org, &reference).await?
        };
        let person = identity(&state, &principal, &customer).await?;
        Ok((case, customer, person))
    }
    .await;
    let (case, customer, person) = match prepared {
        Ok(p) => p,
        Err(e) => {
            let mut fields = echo;
            fields.insert("code".into(), json!(codes.join(",")));
            fields.insert("is_redeemable".into(), json!("false"));
            return Ok(reply("coupons", "redeemable", vec![failed(fields, &e)]));
        }
    };
    let details = params.get("details").unwrap_or("").to_ascii_lowercase();
    let mut items = Vec::with_capacity(codes.len());
    for (code, result) in check_each(&state, &principal, &customer, &codes).await? {
        let mut fields = Map::new();
        fields.insert("mobile".into(), person.get("mobile").cloned().unwrap_or(Value::Null));
        fields.insert("email".into(), person.get("email").cloned().unwrap_or(Value::Null));
        fields.insert(
            "external_id".into(),
            person.get("external_id").cloned().unwrap_or(Value::Null),
        );
        fields.insert("code".into(), json!(case.show(&code)));
        items.push(match result {
            Ok(q) => {
                fields.insert("is_redeemable".into(), json!("true"));
                fields.insert("redemptions_left".into(), json!(q.redemptions_left.unwrap_or(-1)));
                fields.insert("no_of_redemptions_by_user".into(), json!(q.redemptions_by_customer));
                if details == "true" || details == "extended" {
                    let mut s = series_v1(&q.series);
                    if details == "extended" {
                        s.insert("config".into(), q.series.render());
                    }
                    fields.insert("series_info".into(), Value::Object(s));
                }
                ok(fields, "Coupon is redeemable")
            }
            Err(e) => {
                fields.insert("is_redeemable".into(), json!("false"));
                fields.insert("redemptions_left".into(), json!(0));
                failed(fields, &e.into())
            }
        });
    }
    Ok(reply("coupons", "redeemable", items))
}

/// The customer of a redeem item: its `customer` object, else the item's own keys.
fn item_customer(item: &Value, country: Option<&str>) -> Result<CustomerRef, CouponError> {
    let customer = item.get("customer").filter(|c| c.is_object());
    customer_ref_of(|k| customer.and_then(|c| text(c, k)).or_else(|| text(item, k)), country)
}

async fn redeem_one(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    item: &Value,
    single: bool,
) -> Result<Value, ApiError> {
    let code = match (text(item, "code"), text(item, "id")) {
        (Some(code), _) => CodeRef::Code(code),
        (None, Some(id)) => {
            CodeRef::Id(id.parse().map_err(|_| CouponError::CodeNotFound(id.clone()))?)
        }
        (None, None) => return Err(CouponError::invalid("code (or id) is required").into()),
    };
    let customer = item_customer(item, country_code(headers).as_deref())?;
    let transaction =
        one_or_many(item.get("transaction")).into_iter().next().unwrap_or(Value::Null);
    let custom_fields: Map<String, Value> = item
        .get("custom_fields")
        .map(|w| one_or_many(w.get("field")))
        .unwrap_or_default()
        .iter()
        .filter_map(|f| Some((text(f, "name")?, json!(text(f, "value").unwrap_or_default()))))
        .collect();
    let ctx = RedeemContext {
        at: now_millis(),
        store_id: principal.store.map(|s| s.0),
        till_id: principal.till.map(|t| t.0),
        transaction_number: text(&transaction, "number").unwrap_or_default(),
        bill_amount: money(transaction.get("amount"), "transaction.amount")?,
        bill_id: String::new(),
        custom_fields,
        details: String::new(),
        source: "API",
        upload_job_id: None,
        check_bill_amount: true,
        bulk: !single,
        deferred_series_count: None,
        validation_code: Some(text(item, "validation_code").unwrap_or_default()),
    };
    let codes = [code];
    let (customer, done) = service::redeem(&state.db, principal, &codes, &customer, &ctx)
        .await
        .map_err(|(_, e)| ApiError::from(e))?;
    let d =
        done.first().ok_or_else(|| ApiError::from(CouponError::CodeNotFound(codes[0].shown())))?;
    let c = &d.quote.series.config;
    let person = identity(state, principal, &customer).await?;
    let mut fields = Map::new();
    fields.insert("code".into(), json!(d.quote.coupon.code.to_uppercase()));
    fields.insert(
        "customer".into(),
        json!({"mobile": person.get("mobile"), "email": person.get("email"),
        "external_id": person.get("external_id")}),
    );
    fields.insert(
        "transaction".into(),
        json!({"number": ctx.transaction_number,
        "amount": ctx.bill_amount.map(|a| Fixed(a).to_f64().to_string()).unwrap_or_default()}),
    );
    fields.insert("discount_code".into(), json!(c.discount_code));
    fields.insert("discount_value".into(), json!(Fixed(c.discount_value).to_f64().to_string()));
    fields.insert("discount_type".into(), json!(c.discount_type.as_str()));
    fields.insert("redemption_id".into(), json!(d.redemption_id));
    fields.insert("voucher_redemption_event".into(), json!(single));
    Ok(ok(fields, "Coupon processed successfully"))
}

/// `POST /v1.1/coupon/redeem` — redeems each `root.coupon[]` item on its own (item code 700 with
/// the redemption id, or the refusal's code).
#[utoipa::path(post, path = "/v1.1/coupon/redeem", tag = "coupons-v1.1",
    request_body(content = Object, description = "{root: {coupon: [{code, customer, transaction[{number, amount}], custom_fields}]}}", content_type = "application/json"),
    responses((status = 200, description = "All redeemed"), (status = 201, description = "Some failed"), (status = 500, description = "All failed")))]
pub async fn redeem(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    V1Body(body): V1Body<Value>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Coupon, Level::Write)?;
    let items = batch_items(&body, "coupon", &["code"])?;
    let single = items.len() == 1;
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        let result = redeem_one(&state, &principal, &headers, item, single).await;
        out.push(result.unwrap_or_else(|e| {
            let mut fields = Map::new();
            fields.insert("code".into(), json!(text(item, "code").or_else(|| text(item, "id"))));
            if let Some(customer) = item.get("customer") {
                fields.insert("customer".into(), customer.clone());
            }
            failed(fields, &e)
        }));
    }
    Ok(reply("coupons", "coupon", out))
}

/// `GET /v1.1/coupon/resend` — sends the coupon's message to the customer it was issued to again.
#[utoipa::path(get, path = "/v1.1/coupon/resend", tag = "coupons-v1.1",
    params(("code" = Option<String>, Query), ("id" = Option<String>, Query, description = "Coupon id when no code"),
        ("mobile" = Option<String>, Query), ("email" = Option<String>, Query), ("external_id" = Option<String>, Query), ("user_id" = Option<i64>, Query)),
    responses((status = 200, description = "Resent (item code 700)"), (status = 500, description = "701, 702, 703, 704, 724")))]
pub async fn resend(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Coupon, Level::Write)?;
    let params = Params(params);
    let shown = params.get("code").or(params.get("id")).unwrap_or("").to_string();
    let result: Result<Value, ApiError> = async {
        let code = match (params.get("code"), params.get("id")) {
            (Some(code), _) => CodeRef::Code(code.to_string()),
            (None, Some(id)) => {
                CodeRef::Id(id.parse().map_err(|_| CouponError::CodeNotFound(id.to_string()))?)
            }
            (None, None) => {
                return Err(CouponError::invalid("code (or the coupon id) is required").into());
            }
        };
        // `id` names the coupon here; the customer is named by `user_id` or an identifier.
        let reference = customer_ref_of(
            |k| if k == "id" { None } else { params.get(k).map(str::to_string) },
            country_code(&headers).as_deref(),
        )?;
        let ctx = IssueContext::api(&principal, Map::new());
        let (coupon, customer) =
            service::resend(&state.db, &principal, &code, &reference, &ctx, now_millis()).await?;
        let person = identity(&state, &principal, &customer).await?;
        let mut fields = Map::new();
        fields.insert("code".into(), json!(coupon.code.to_uppercase()));
        fields.insert(
            "customer".into(),
            json!({"mobile": person.get("mobile"), "email": person.get("email")}),
        );
        Ok(ok(fields, "Coupon resent successfully"))
    }
    .await;
    let item =
        result.unwrap_or_else(|e| failed(Map::from_iter([("code".into(), json!(shown))]), &e));
    Ok(reply("coupons", "coupon", vec![item]))
}
