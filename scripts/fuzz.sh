#!/usr/bin/env bash
# Coverage-guided fuzzing of the inbound reader and decision path with cargo-fuzz
# (fuzz/fuzz_targets/inbound.rs), seeded with samples/pas/ and ../shared/hl7-samples/.
#
#   scripts/fuzz.sh                  # 60 s (CI runs it for 30 s after the tests)
#   FUZZ_SECS=3600 scripts/fuzz.sh   # an hour
#
# Runs on the stable toolchain: cargo-fuzz's -Z flags are allowed with RUSTC_BOOTSTRAP=1,
# and without a sanitizer (FUZZ_SANITIZER=none; the target is safe Rust, so what it looks
# for is a panic, an abort, a hang or runaway memory, which libFuzzer sees without one).
# cargo-fuzz is installed on first use. The build and the corpus are kept under
# ~/.cache/ers-bridge/ (FUZZ_CACHE), so a clean clone rebuilds only the bridge's own crate
# (about 2.5 minutes here; 6.5 with nothing cached) and each run starts from what earlier
# runs found. A crash fails the script and leaves its input under $FUZZ_CACHE/artifacts/;
# reproduce it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -s none --target-dir "$FUZZ_CACHE/target" inbound FILE
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECS=${FUZZ_SECS:-60}
FUZZ_SANITIZER=${FUZZ_SANITIZER:-none}
FUZZ_CACHE=${FUZZ_CACHE:-$HOME/.cache/ers-bridge/fuzz}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
corpus=$FUZZ_CACHE/corpus/inbound
artifacts=$FUZZ_CACHE/artifacts/inbound
mkdir -p "$corpus" "$artifacts"
for f in samples/pas/*.hl7 ../shared/hl7-samples/*; do
    [[ -f $f ]] && cp -n "$f" "$corpus/" 2>/dev/null || true
done
export RUSTC_BOOTSTRAP=1
cargo fuzz build -s "$FUZZ_SANITIZER" --target-dir "$FUZZ_CACHE/target" inbound
cargo fuzz run -s "$FUZZ_SANITIZER" --target-dir "$FUZZ_CACHE/target" inbound "$corpus" -- \
    -max_total_time="$FUZZ_SECS" -max_len=65536 -timeout=10 -rss_limit_mb=1024 \
    -artifact_prefix="$artifacts/" -print_final_stats=1
