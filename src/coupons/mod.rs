//! Coupons: series (the offer, its validity, code generation and limits), coupons issued from
//! them (by API, by a bill's earn rule, by upload), redemption with every limit held under
//! concurrency, reactivation, revocation, expiry updates, CSV uploads, and the v1.1/v2 APIs.
//!
//! # Layout
//! - [`model`]: the series document, codes and their case, status filters, [`model::CouponError`].
//! - [`store`]: the SQL of series, coupons, redemptions and upload jobs.
//! - [`service`]: the rules: issue, redeem (and check), reactivate, revoke, expiry, reads.
//! - [`upload`]: CSV upload jobs: streaming into staged rows, processing in bounded batches.
//! - [`routes_v2`], [`routes_v1`], [`routes_upload`]: the v2, v1.1 and upload handlers.

pub mod model;
pub mod routes_upload;
pub mod routes_v1;
pub mod routes_v2;
pub mod service;
pub mod store;
pub mod upload;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use utoipa::OpenApi;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/coupon/series", post(routes_v2::create_series).get(routes_v2::get_series))
        .route("/x/neo/couponRedemption/customFields", get(routes_v2::redemption_custom_fields))
        .route("/v2/coupon/series/{id}", put(routes_v2::update_series))
        .route("/v2/coupon/issue", post(routes_v2::issue))
        .route("/v2/coupon/bulk/issue", post(routes_v2::bulk_issue))
        .route("/v2/coupon/issue/multiple", post(routes_v2::issue_multiple))
        .route("/v2/coupon/redeem", post(routes_v2::redeem).put(routes_v2::update_redeem))
        .route("/v2/coupon/bulk/redeem", post(routes_v2::bulk_redeem))
        .route("/v2/coupon/is_redeemable", get(routes_v2::is_redeemable))
        .route("/v2/coupon/reactivate", post(routes_v2::reactivate))
        .route("/v2/coupon", get(routes_v2::get_coupons))
        .route("/v2/customers/coupons", get(routes_v2::all_customer_coupons))
        .route("/v2/customers/{id}/coupons", get(routes_v2::detailed_customer_coupons))
        .route("/v2/coupon/bulk/expiry", put(routes_v2::update_expiry))
        .route("/v2/coupon/revoke", post(routes_v2::revoke))
        .route("/v1.1/coupon/series", get(routes_v1::series))
        .route("/v1.1/coupon/get", get(routes_v1::get))
        .route("/v1.1/customer/coupons", get(routes_v1::customer_coupons))
        .route("/v1.1/coupon/isredeemable", get(routes_v1::is_redeemable))
        .route("/v1.1/coupon/redeem", post(routes_v1::redeem))
        .route("/v1.1/coupon/resend", get(routes_v1::resend))
        .route(
            "/coupon/api/v1/upload/file/{id}",
            post(routes_upload::upload_codes).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/coupon/api/v1/upload/redeemFile/{id}",
            post(routes_upload::upload_redemptions).layer(DefaultBodyLimit::disable()),
        )
        .route("/coupon/api/v1/upload/getUploadStatus/{id}", get(routes_upload::upload_status))
        .route(
            "/coupon/api/v1/upload/getRedeemUploadStatus/{id}",
            get(routes_upload::redeem_upload_status),
        )
        .route("/coupon/api/v1/upload/errorFile/{id}", get(routes_upload::error_file))
}

#[derive(OpenApi)]
#[openapi(paths(
    routes_v2::redemption_custom_fields,
    routes_v2::create_series,
    routes_v2::update_series,
    routes_v2::get_series,
    routes_v2::issue,
    routes_v2::bulk_issue,
    routes_v2::issue_multiple,
    routes_v2::redeem,
    routes_v2::bulk_redeem,
    routes_v2::is_redeemable,
    routes_v2::reactivate,
    routes_v2::get_coupons,
    routes_v2::all_customer_coupons,
    routes_v2::detailed_customer_coupons,
    routes_v2::update_redeem,
    routes_v2::update_expiry,
    routes_v2::revoke,
    routes_v1::series,
    routes_v1::get,
    routes_v1::customer_coupons,
    routes_v1::is_redeemable,
    routes_v1::redeem,
    routes_v1::resend,
    routes_upload::upload_codes,
    routes_upload::upload_redemptions,
    routes_upload::upload_status,
    routes_upload::redeem_upload_status,
    routes_upload::error_file,
))]
pub struct ApiDoc;
