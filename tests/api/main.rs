//! The API test suite: one binary, every test on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;

mod audit_logs;
mod auth;
mod behavioral;
mod cli;
mod comms;
mod coupons;
mod coupons_concurrency;
mod coupons_lifecycle;
mod coupons_upload;
mod coupons_v1;
mod crash;
mod currencies;
mod customers;
mod customers_embeds;
mod customers_enrol;
mod customers_v1;
mod envelopes;
mod fields;
mod idempotency;
mod images;
mod labels;
mod ledger_props;
mod loyalty;
mod loyalty_views;
mod migrations;
mod model;
mod ops;
mod org;
mod points;
mod points_ops;
mod points_ops_transfers;
mod programs;
mod rejections;
mod staff;
mod tasks;
mod tasks_reminders;
mod transactions;
mod transactions_v1;
mod webhooks;
