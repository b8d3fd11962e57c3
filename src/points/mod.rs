//! Points: fixed-point amounts, the append-only ledger of lots and entries, the balance
//! projection kept equal to it in the same transaction, redemption (rules, validation codes,
//! reversal) and the points APIs.

pub mod ledger;
pub mod model;
pub mod redemption;
pub mod routes_v1;
pub mod routes_v2;
pub mod service;
pub mod store;
pub mod store_currency;

use axum::Router;
use axum::routing::{get, post};
use utoipa::OpenApi;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1.1/points/isredeemable", get(routes_v1::is_redeemable))
        .route("/v1.1/points/validationcode", get(routes_v1::validation_code))
        .route("/v1.1/points/redeem", post(routes_v1::redeem))
        .route("/v2/customers/{id}/redemptions", post(routes_v2::redeem))
        .route("/v2/customers/{id}/points/balance", get(routes_v2::balance))
        .route("/v2/customers/lookup/points/balance", get(routes_v2::lookup_balance))
        .route("/v2/points/reverse", post(routes_v2::reverse))
        .route("/v2/pointsLedger/getCustomerLedgerInfo", get(routes_v2::ledger_info))
        .route("/v2/pointsLedger/getCustomerLedgerBalance", get(routes_v2::ledger_balance))
}

#[derive(OpenApi)]
#[openapi(paths(
    routes_v1::is_redeemable,
    routes_v1::validation_code,
    routes_v1::redeem,
    routes_v2::redeem,
    routes_v2::balance,
    routes_v2::lookup_balance,
    routes_v2::reverse,
    routes_v2::ledger_info,
    routes_v2::ledger_balance,
))]
pub struct ApiDoc;
