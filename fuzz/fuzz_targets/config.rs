//! Configuration parsing (`cdc_config::load_str`): any text — YAML or not — must give a config or
//! an error naming the problem, never a panic. A first line starting with `CDC__` is applied as an
//! environment override (`CDC__KAFKA__TOPIC_PARTITIONS=7`), so the override parser is fuzzed too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (env, yaml) = match text.split_once('\n') {
        Some((first, rest)) if first.starts_with("CDC__") => {
            let (k, v) = first.split_once('=').unwrap_or((first, ""));
            (vec![(k.to_owned(), v.to_owned())], rest)
        }
        _ => (Vec::new(), text),
    };
    if let Err(e) = cdc_config::load_str("fuzz.yaml", yaml, env) {
        // Rendering the error (what a service prints at start) must not panic either.
        let _ = e.to_string();
    }
});
