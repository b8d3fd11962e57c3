//! Fuzzes the rule-expression compiler: any text as an earn rule's condition and points
//! expression is compiled (parse, static checks, trial evaluation) or refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perks::programs::engine::CompiledProgram;
use perks::programs::model::ProgramId;
use perks::programs::service::{DocumentFormat, parse_document};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (when, points) = text.split_once('\n').unwrap_or((text, "1"));
    let doc = serde_json::json!({
        "name": "fuzz",
        "earn": [{"name": "rule", "on": "transaction", "when": when, "points": points}],
    });
    let Ok(doc) = parse_document(&doc.to_string(), DocumentFormat::Json) else { return };
    let _ = CompiledProgram::compile(ProgramId(1), 1, doc, Vec::new());
});
