//! Communications: messages rendered from templates, recorded in a message log, and delivered by
//! a worker through pluggable channel providers (SMS, e-mail, WhatsApp, Zalo).
//!
//! # Sending a message from another module
//!
//! There is one way in: build a [`SendRequest`] and call [`send`] with the write transaction of
//! the change that causes the message. The message is recorded (`QUEUED`, `SCHEDULED`, or
//! `SKIPPED_OPTED_OUT` when the customer opted out of the channel) in that transaction, so it
//! exists if and only if the change commits; the delivery worker (`jobs::comms`) sends it.
//!
//! ```ignore
//! use perks::audit::AuditActor;
//! use perks::comms::{self, Channel, Recipient, SendRequest, TemplateRef};
//!
//! let mut tx = state.db.begin_write().await?;
//! // … the caller's own change (issue a validation code, create a reminder, …) …
//! let request = SendRequest::new(
//!     Channel::Sms,
//!     Recipient::Customer(customer),                 // or Recipient::Address("9198…".into())
//!     TemplateRef::Named("points_validation".into()), // or TemplateRef::Inline { subject, body }
//!     AuditActor::from(&principal),                   // or AuditActor::system() in jobs
//! )
//! .value("code", "482913")
//! .value("points", 120);
//! let request = SendRequest { purpose: "POINTS_VALIDATION".into(), ..request };
//! let sent = comms::send(&mut tx, org, request).await?; // sent.id, sent.status
//! tx.commit().await?;
//! ```
//!
//! Placeholders are `{name}` (or `{{name}}`, Capillary's tag style). The customer's own values
//! (`name`, `first_name`, `last_name`, `mobile`, `email`, `customer_id`) are filled in when the
//! message goes to a customer; the request's `values` win. A placeholder without a value refuses
//! the send ([`CommsError::MissingValues`]): no message ever shows a raw `{placeholder}`.
//!
//! # Channels and providers
//!
//! Each channel has one provider chosen by `[comms.<channel>]` settings: `log` (the default:
//! records the message as sent, delivers nothing), `smtp` (e-mail, via `lettre`) or `http` (SMS,
//! WhatsApp, Zalo: a generic HTTP API, via `reqwest`). See [`provider`].
//!
//! # Layout
//! - [`model`]: channels, ids, statuses, [`SendRequest`], limits, [`CommsError`].
//! - [`template`]: placeholder parsing and rendering.
//! - [`service`]: send, resend, templates, the customer's messages, delivery of due messages.
//! - [`provider`]: the [`provider::Provider`] trait and the log, SMTP and HTTP providers.
//! - [`store`]: the SQL of templates and messages.
//! - [`routes`]: the v2/v1.1 `sendMessage`, v2 `resend`, and the `/x/perks/v1` admin API.

pub mod model;
pub mod provider;
pub mod routes;
pub mod service;
pub mod store;
pub mod template;

use axum::Router;
use axum::routing::{get, post};
use utoipa::OpenApi;

use crate::app::AppState;

pub use model::{
    Channel, CommsError, MessageId, MessageStatus, Recipient, SendRequest, Sent, TemplateId,
    TemplateRef,
};
pub use service::send;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/communications/sendMessage", post(routes::v2_send))
        .route("/v2/communications/resend", post(routes::v2_resend))
        .route("/v1.1/communications/sendMessage", post(routes::v1_send))
        .route("/v2/customers/{id}/interactions", get(routes::customer_interactions))
        .route("/x/perks/v1/messages/{id}", get(routes::get_message))
        .route("/x/perks/v1/templates", get(routes::list_templates).post(routes::create_template))
        .route(
            "/x/perks/v1/templates/{id}",
            get(routes::get_template).put(routes::replace_template).delete(routes::delete_template),
        )
}

#[derive(OpenApi)]
#[openapi(paths(
    routes::v2_send,
    routes::v2_resend,
    routes::v1_send,
    routes::customer_interactions,
    routes::get_message,
    routes::list_templates,
    routes::create_template,
    routes::get_template,
    routes::replace_template,
    routes::delete_template,
))]
pub struct ApiDoc;
