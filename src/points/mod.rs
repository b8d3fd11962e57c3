//! Points: fixed-point amounts, the append-only ledger of lots and entries, the balance
//! projection kept equal to it in the same transaction, redemption (rules, validation codes,
//! reversal) and the points APIs.

pub mod adjust;
pub mod goodwill;
pub mod ledger;
pub mod model;
pub mod redemption;
pub mod routes_ledger;
pub mod routes_ops;
pub mod routes_transfer;
pub mod routes_v1;
pub mod routes_v2;
pub mod schedule;
pub mod service;
pub mod store;
pub mod store_currency;
pub mod store_ops;
pub mod transfer;

use axum::Router;
use axum::routing::{get, post, put};
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
        .route("/v2/points/updateRedemption", put(routes_ops::update_redemption))
        .route("/v2/customers/{id}/pointsExpirySchedule", get(routes_ops::expiry_schedule))
        .route("/v2/customers/lookup/pointsExpirySchedule", get(routes_ops::lookup_expiry_schedule))
        .route("/v2/customers/{id}/promisedPointsSchedule", get(routes_ops::conversion_schedule))
        .route(
            "/v2/customers/lookup/promisedPointsSchedule",
            get(routes_ops::lookup_conversion_schedule),
        )
        .route("/v2/points/unlockPromisedPoints", post(routes_ops::unlock_promised))
        .route("/v2/customers/lookup/negativePointsAdjustment", post(routes_ops::lookup_deduct))
        .route("/v2/customers/{id}/negativePointsAdjustment", post(routes_ops::deduct))
        .route("/v2/points/updateExpiry", post(routes_ops::update_expiry))
        .route("/v2/customers/bulk/manualCurrencyAllocate", post(routes_ops::allocate))
        .route("/v2/requests", post(routes_ops::add_request))
        .route("/v2/customers/{id}/goodwillRequests", get(routes_ops::goodwill_requests))
        .route("/v2/customers/{id}/pointsTransfers", get(routes_transfer::transfer_summary))
        .route("/v2/points/isTransferable", post(routes_transfer::is_transferable))
        .route("/v2/points/isTransferrable", post(routes_transfer::is_transferable))
        .route(
            "/v2/points/transfer",
            post(routes_transfer::transfer_points).get(routes_transfer::transfer_details),
        )
        .route(
            "/v2/points/userGroup2/isTransferrable",
            post(routes_transfer::group_is_transferable),
        )
        .route("/v2/points/userGroup2/isTransferable", post(routes_transfer::group_is_transferable))
        .route("/v2/points/userGroup2/transfer", post(routes_transfer::group_transfer))
        .route("/v2/pointsLedger/getLedgerExplodeInfo", get(routes_ledger::explode_info))
        .route(
            "/v2.1/pointsLedger/getCustomerLedgerInfo",
            get(routes_ledger::connected_ledger_info),
        )
        .route(
            "/v2.1/pointsLedger/getLedgerExplodeInfo",
            get(routes_ledger::connected_explode_info),
        )
        .route("/x/neo/pointsAllocation/event", get(routes_ledger::allocations_by_event))
        .route("/x/neo/pointsAllocation/dateRange", get(routes_ledger::allocations_by_expiry))
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
    routes_ops::update_redemption,
    routes_ops::expiry_schedule,
    routes_ops::lookup_expiry_schedule,
    routes_ops::conversion_schedule,
    routes_ops::lookup_conversion_schedule,
    routes_ops::unlock_promised,
    routes_ops::lookup_deduct,
    routes_ops::deduct,
    routes_ops::update_expiry,
    routes_ops::allocate,
    routes_ops::add_request,
    routes_ops::goodwill_requests,
    routes_transfer::transfer_summary,
    routes_transfer::is_transferable,
    routes_transfer::transfer_points,
    routes_transfer::transfer_details,
    routes_transfer::group_is_transferable,
    routes_transfer::group_transfer,
    routes_ledger::explode_info,
    routes_ledger::connected_ledger_info,
    routes_ledger::connected_explode_info,
    routes_ledger::allocations_by_event,
    routes_ledger::allocations_by_expiry,
))]
pub struct ApiDoc;
