#!/usr/bin/env bash
# Bounded-time fuzzing of cdc-commitlog (segment, mutation: corpus seeded from the real fixtures) and
# of configuration parsing in cdc-config (config: corpus seeded from config/*.yaml).
#   fuzz/smoke.sh [seconds-per-target]   (default 60)
# Needs a nightly toolchain and cargo-fuzz (cargo install cargo-fuzz). Without them it runs the
# in-crate random-input property tests instead (same decoders, proptest-driven), and says so.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
SECS="${1:-60}"
FIX=../crates/cdc-commitlog/tests/fixtures

seed() {
    mkdir -p corpus/segment corpus/mutation corpus/config
    cp ../config/*.yaml corpus/config/ 2>/dev/null || true
    cp "$FIX"/CommitLog-*.log corpus/segment/ 2>/dev/null || true
    # Split the uncompressed fixture segments into their mutation bodies (marker chain + entries).
    python3 - "$FIX" corpus/mutation <<'PY'
import glob, os, struct, sys
src, dst = sys.argv[1], sys.argv[2]
for path in glob.glob(os.path.join(src, "CommitLog-*.log")):
    b = open(path, "rb").read()
    plen = struct.unpack(">H", b[12:14])[0]
    pos, n = 18 + plen, 0
    while pos + 8 <= len(b):
        nxt = struct.unpack(">i", b[pos:pos + 4])[0]
        if nxt <= pos or nxt > len(b):
            break
        e = pos + 8
        while e + 12 <= nxt:
            size = struct.unpack(">i", b[e:e + 4])[0]
            if size <= 0 or e + 12 + size > nxt:
                break
            with open(os.path.join(dst, f"{os.path.basename(path)}.{n}"), "wb") as f:
                f.write(b[e + 8:e + 8 + size])
            n += 1
            e += 12 + size
        pos = nxt
PY
}

# A fresh machine has the nightly toolchain but not cargo-fuzz: install it once (it lands in ~/.cargo/bin).
if cargo +nightly --version >/dev/null 2>&1 && ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz (once per machine)" >&2
    cargo install --locked cargo-fuzz >&2 || echo "cargo-fuzz could not be installed" >&2
fi

if cargo +nightly fuzz --version >/dev/null 2>&1; then
    seed
    for target in segment mutation config; do
        echo "fuzzing $target for ${SECS}s"
        cargo +nightly fuzz run "$target" "corpus/$target" -- -max_total_time="$SECS" -rss_limit_mb=2048
    done
else
    echo "cargo-fuzz/nightly not available: running the proptest random-input smoke tests instead" >&2
    cd .. && PROPTEST_CASES="${PROPTEST_CASES:-20000}" cargo test -p cdc-commitlog --lib -- survives
    echo "config parsing is fuzzed only with cargo-fuzz (fuzz/fuzz_targets/config.rs)" >&2
fi
