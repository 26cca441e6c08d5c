//! Fuzz the segment reader: any bytes, both limit modes; must not panic, loop or over-allocate.
#![no_main]

mod schema;

use cdc_commitlog::{ReadLimit, ReadOptions, SegmentReader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let schema = schema::fixture_schema();
    for limit in [ReadLimit::Completed, ReadLimit::UpTo(data.len() as u64)] {
        let options = ReadOptions {
            limit,
            resume_after: 0,
        };
        if let Ok(mut reader) = SegmentReader::new(data, schema, options) {
            // Every entry takes at least 22 bytes, so this bound is never reached legitimately.
            let n = reader.by_ref().take(data.len() + 1).count();
            assert!(n <= data.len() / 22 + 2, "more entries than bytes allow");
            assert!(reader.end().is_some(), "reader stopped without saying why");
        }
    }
});
