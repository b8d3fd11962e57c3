//! Points: fixed-point amounts, the append-only ledger of lots and entries, and the balance
//! projection kept equal to it in the same transaction.

pub mod ledger;
pub mod model;
pub mod redemption;
pub mod service;
pub mod store;
