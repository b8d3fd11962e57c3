//! Fuzzes JSON bodies into the typed request bodies of the write endpoints: any bytes give a body
//! or a clean error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perks::http::extract::from_value;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let _ = from_value::<perks::points::routes_v2::RedemptionBody>(&value);
    let _ = perks::programs::service::parse_document(
        &value.to_string(),
        perks::programs::service::DocumentFormat::Json,
    );
});
