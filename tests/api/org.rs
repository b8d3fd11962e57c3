//! Org, store and till APIs (filled in below).
