//! Fuzz the mutation decoder with the fixture schema, in both LDT formats.
#![no_main]

mod schema;

use cdc_commitlog::{FormatVersion, decode_mutation};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let schema = schema::fixture_schema();
    let _ = decode_mutation(data, FormatVersion::V40, schema);
    let _ = decode_mutation(data, FormatVersion::V50, schema);
});
