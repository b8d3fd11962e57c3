//! Perks: a self-hostable loyalty and customer-engagement engine whose REST API is a drop-in for
//! Capillary's public loyalty API. See `docs/ARCHITECTURE.md` for the map and one request's walk.
//!
//! # Layout
//! - [`app`]: `AppState`, the router and a server bound to its own listener.
//! - [`cli`]: the `perks` command line (`serve`, `migrate`, `org create`, `verify`).
//! - [`config`]: typed settings, layered defaults < `perks.toml` < `PERKS_*` < flags.
//! - [`error`]: the one table of client-facing error codes and `ApiError`.
//! - [`http`]: envelopes (v1.1 JSON/XML, v2), extractors, authentication, rate limit and metrics layers.
//! - [`db`]: the `Db` enum over SQLite and PostgreSQL, transactions, the dispatch helper, migrations.
//! - [`auth`]: principals, access groups, Basic/OAuth/admin-token authentication, the token endpoint.
//! - [`org`]: orgs, concepts, zones, stores and tills, and their v1.1/v2 APIs.
//! - [`customers`]: customers, profiles per source, identifiers, status, images, and their APIs.
//! - [`labels`]: customer labels: the org's catalogue, tagging customers, search by label.
//! - [`events`]: the domain-event outbox every state change writes to.
//! - [`fields`]: org configs, custom fields and their values, extended fields, and their validation.
//! - [`audit`]: the audit record every write leaves in its own transaction, and the audit log API.
//! - [`comms`]: messages (SMS, e-mail, WhatsApp, Zalo): templates, the message log, providers
//!   (log, SMTP, HTTP) and the communications APIs; [`comms::send`] is the way to send.
//! - [`idempotency`]: `Idempotency-Key` replay for POST/PUT/PATCH.
//! - [`ops`]: `/healthz`, `/readyz`, `/metrics`, `/openapi.json` and `/docs`.
//! - [`points`]: fixed-point amounts, the ledger of lots and entries, balances, and the points
//!   operations (redemption, reversal, transfers, deductions, schedules, manual issue).
//! - [`currencies`]: alternate currencies ("stars"), their admin API and redemption; each is a
//!   dimension of the points ledger.
//! - [`loyalty`]: the customer loyalty views (details, tiers and gaps, events, trackers) and
//!   manual tier adjustment.
//! - [`programs`]: loyalty programs: the document, its compiled rules, tiers and dates, the
//!   compiled-program cache and the `/x/perks/v1/programs` admin API.
//! - [`coupons`]: coupon series, issuance, redemption under concurrency, uploads, and their APIs.
//! - [`transactions`]: bills, returns and exchanges, their loyalty evaluation, and their APIs.
//! - [`behavioral`]: behavioral events: custom event definitions, posted events, their reads.
//! - [`webhooks`]: webhook subscriptions, delivery of outbox events (signed, retried, with a
//!   circuit per subscription), the admin API, Add Webhook and the event notification logs.
//! - [`staff`]: staff accounts (associates, cashiers), OTP verification, access tokens.
//! - [`tasks`]: store tasks, entries per executor, status mappings, logs, reminders.
//! - [`jobs`]: background jobs of a running server (loyalty, message delivery, task
//!   reminders, key purge).

pub mod app;
pub mod audit;
pub mod auth;
pub mod behavioral;
pub mod cli;
pub mod comms;
pub mod config;
pub mod coupons;
pub mod currencies;
pub mod customers;
pub mod db;
pub mod error;
pub mod events;
pub mod fields;
pub mod http;
pub mod idempotency;
pub mod jobs;
pub mod labels;
pub mod loyalty;
pub mod ops;
pub mod org;
pub mod points;
pub mod programs;
pub mod staff;
pub mod tasks;
pub mod transactions;
pub mod webhooks;
