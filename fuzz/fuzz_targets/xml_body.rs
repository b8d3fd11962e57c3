//! Fuzzes the v1.1 XML body parser: any bytes give a JSON value or a clean error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = perks::http::extract::xml_to_value(data);
});
