//! Transactions (bills): sales, returns, not-interested bills and exchanges; their validation,
//! storage and loyalty evaluation, the sanity queue of rejected bills, and the v1.1 and v2
//! transaction APIs.

pub mod dry_run;
pub mod model;
pub mod rejections;
pub mod routes_rejections;
pub mod routes_v1;
pub mod routes_v2;
pub mod service;
pub mod store;
pub mod time;

use axum::Router;
use axum::routing::{get, post, put};
use utoipa::OpenApi;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/transactions", post(routes_v2::add).put(routes_v2::update))
        .route("/v2/transactions/bulk", post(routes_v2::add_bulk).put(routes_v2::update_bulk))
        .route("/v2/transactions/rejected", get(routes_rejections::list))
        .route("/v2/transactions/rejected/retrigger", post(routes_rejections::retrigger))
        .route(
            "/v2/transactions/rejected/retrigger/status",
            get(routes_rejections::retrigger_status),
        )
        .route("/v2/transactions/rejected/markFailed", put(routes_rejections::mark_failed))
        .route("/v2/transactions/{id}", get(routes_v2::get))
        .route("/v2/transactions/getByBillNumber/{billNumber}", get(routes_v2::get_by_number))
        .route("/v2/customers/{id}/transactions", get(routes_v2::of_customer))
        .route("/v2/simulation/transactions", post(routes_v2::simulate))
        .route("/v2/events/evaluationLog", post(routes_v2::evaluation_log))
        .route(
            "/v2/currencyratio",
            post(routes_v2::set_currency_ratio).get(routes_v2::currency_ratios),
        )
        .route("/v1.1/transaction/add", post(routes_v1::add))
        .route(
            "/v1.1/transaction/add_with_local_currency",
            post(routes_v1::add_with_local_currency),
        )
        .route("/v1.1/transaction/update", post(routes_v1::update))
        .route("/v1.1/transaction/get", get(routes_v1::get))
        .route("/x/perks/v1/programs/{id}/dryRun", post(dry_run::dry_run))
}

#[derive(OpenApi)]
#[openapi(paths(
    routes_v2::add,
    routes_v2::add_bulk,
    routes_v2::update,
    routes_v2::update_bulk,
    routes_v2::get,
    routes_v2::get_by_number,
    routes_v2::of_customer,
    routes_v2::simulate,
    routes_v2::evaluation_log,
    routes_v2::set_currency_ratio,
    routes_v2::currency_ratios,
    routes_rejections::list,
    routes_rejections::retrigger,
    routes_rejections::retrigger_status,
    routes_rejections::mark_failed,
    routes_v1::add,
    routes_v1::add_with_local_currency,
    routes_v1::update,
    routes_v1::get,
    dry_run::dry_run,
))]
pub struct ApiDoc;
