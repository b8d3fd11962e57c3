//! Staff accounts: the associates and cashiers of a store, zone or concept, their verification
//! by OTP, access tokens that let them call the Task API as themselves, and the staff reads.
//!
//! # Layout
//! - [`model`]: ids, staff types, placements, validated forms, limits, [`model::StaffError`].
//! - [`store`]: the SQL of accounts, one-time codes and tokens.
//! - [`service`]: the rules, the token principal, and [`service::StoreScope`] (which stores a
//!   caller sees, shared with the Task API).
//! - [`routes`]: the v2 Staff APIs and `GET /v1.1/store/staff`.

pub mod model;
pub mod routes;
pub mod service;
pub mod store;

use axum::Router;
use axum::routing::{get, post};
use utoipa::OpenApi;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/staff", get(routes::get).post(routes::add))
        .route("/v2/staff/accessToken", post(routes::access_token))
        .route("/v2/staff/update", post(routes::update).put(routes::update))
        .route("/v2/staff/changePassword", post(routes::change_password))
        .route("/v2/staff/sendOtp", post(routes::send_otp))
        .route("/v2/staff/validateOtp", post(routes::validate_otp))
        .route("/v2/staff/changeIdentifier/sendOtp", post(routes::change_identifier_send))
        .route("/v2/staff/changeIdentifier/validateOtp", post(routes::change_identifier_validate))
        .route("/v2/staff/transfer", post(routes::transfer))
        .route("/v2/staff/list", get(routes::list))
        .route("/v2/staff/logout", get(routes::logout))
        .route("/v2/staff/remove", post(routes::remove))
        .route("/v1.1/store/staff", get(routes::store_staff))
}

#[derive(OpenApi)]
#[openapi(paths(
    routes::add,
    routes::access_token,
    routes::update,
    routes::get,
    routes::change_password,
    routes::send_otp,
    routes::validate_otp,
    routes::change_identifier_send,
    routes::change_identifier_validate,
    routes::transfer,
    routes::list,
    routes::logout,
    routes::remove,
    routes::store_staff,
))]
pub struct ApiDoc;
