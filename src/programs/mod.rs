//! Loyalty programs: the program document, its validation and compiled form (earn rules as CEL
//! expressions, tiers, expiry and promise dates), storage, and the admin API.

pub mod cache;
pub mod engine;
pub mod expr;
pub mod model;
pub mod service;
pub mod store;
