//! Masking throughput on one core: `cargo run --release -p cdc-mask --example bench_masker`.
//! Measures decode + mask + re-encode of a JSON envelope with 8 columns, for a policy with HMAC
//! only (email, ssn, phone hashed) and one that also tokenizes (AES-GCM sealing of the vault entry;
//! the vault round trip itself is per batch and not included).

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use cdc_mask::{KeyRing, Masker, Policy, PolicyContext};
use mimalloc::MiMalloc;

/// The services' allocator (mimalloc), counting allocations: allocations per event is the
/// profiling pass's noise-free measure (docs/benchmarks.md), next to events/s on a shared machine.
struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to `MiMalloc`; only a counter is added.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on to `MiMalloc`.
        unsafe { MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn envelope(i: u32) -> Vec<u8> {
    format!(
        r#"{{"op":"c","ts_ms":1,"correlation_id":"h:1:{i}:0","source":{{"cluster":"c","host_id":"00000000-0000-0000-0000-000000000001","keyspace":"shop","table":"customers","table_id":"00000000-0000-0000-0000-000000000002","schema_version":1,"segment_id":1,"segment_position":{i},"index":0}},"static":false,"columns":[{{"name":"id","type":"int","kind":"partition_key"}},{{"name":"email","type":"text","kind":"regular"}},{{"name":"ssn","type":"text","kind":"regular"}},{{"name":"medical_record_number","type":"text","kind":"regular"}},{{"name":"phone","type":"text","kind":"regular"}},{{"name":"name","type":"text","kind":"regular"}},{{"name":"city","type":"text","kind":"regular"}},{{"name":"age","type":"int","kind":"regular"}}],"key":{{"id":{i}}},"clustering":{{}},"liveness":{{"writetime":1,"ttl":null,"expires_at":null}},"deletion":null,"after":{{"email":{{"writetime":1,"ttl":null,"expires_at":null,"value":"fake.user{i}@example.test"}},"ssn":{{"writetime":1,"ttl":null,"expires_at":null,"value":"000-00-{i:04}"}},"medical_record_number":{{"writetime":1,"ttl":null,"expires_at":null,"value":"MRN-FAKE-{i}"}},"phone":{{"writetime":1,"ttl":null,"expires_at":null,"value":"555-000-{i:04}"}},"name":{{"writetime":1,"ttl":null,"expires_at":null,"value":"Fake Name"}},"city":{{"writetime":1,"ttl":null,"expires_at":null,"value":"Testville"}},"age":{{"writetime":1,"ttl":null,"expires_at":null,"value":42}}}}}}"#
    )
    .into_bytes()
}

fn run(label: &str, policy: &str) -> Result<(), cdc_mask::Error> {
    let mut keys = KeyRing::new();
    keys.insert("h", b"fake-bench-hmac-key".to_vec());
    keys.insert("t", b"fake-bench-token-key".to_vec());
    keys.insert("v", "42".repeat(32).into_bytes());
    let p = Policy::parse(
        "bench.yaml",
        policy,
        PolicyContext {
            keys: &keys,
            vault_configured: true,
        },
    )?;
    let masker = Masker::new(p, keys, Some("v".into()))?;
    let inputs: Vec<Vec<u8>> = (0..100_000).map(envelope).collect();
    // Best of 3 passes: the machine is shared, so the fastest pass is the least disturbed one.
    let mut best = f64::MAX;
    let mut bytes = 0usize;
    let mut allocations = 0u64;
    for _ in 0..3 {
        bytes = 0;
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        let started = Instant::now();
        for e in &inputs {
            bytes += masker.mask_envelope(e)?.0.len();
        }
        best = best.min(started.elapsed().as_secs_f64());
        allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    }
    println!(
        "{label}: {:.0} events/s on one core, {:.1} allocations/event ({} events, best of 3 passes {:.2} s, {} output bytes)",
        inputs.len() as f64 / best,
        allocations as f64 / inputs.len() as f64,
        inputs.len(),
        best,
        bytes
    );
    Ok(())
}

fn main() -> Result<(), cdc_mask::Error> {
    let hash = "version: 1\nhash_key_id: h\ndefault_rules: []\ntables:\n  shop.customers:\n    email: {class: pii, strategy: hash}\n    ssn: {class: pii, strategy: hash}\n    phone: {class: pii, strategy: hash}\n";
    run("hmac-only", hash)?;
    let tok =
        format!("{hash}    medical_record_number: {{class: phi, strategy: tokenize, key_id: t}}\n");
    run("hmac+tokenize", &tok)
}
