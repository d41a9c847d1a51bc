#!/usr/bin/env bash
# Coverage-guided fuzzing of the inbound reader and decision path with cargo-fuzz
# (fuzz/fuzz_targets/inbound.rs), seeded with samples/pas/ and ../shared/hl7-samples/.
#
#   scripts/fuzz.sh            # 60 s
#   FUZZ_SECS=3600 scripts/fuzz.sh
#
# Needs the nightly toolchain (rustup toolchain install nightly) and cargo-fuzz (installed
# here on first use). A crash leaves its input under fuzz/artifacts/inbound/; the corpus
# grows under fuzz/corpus/inbound/ (neither is committed).
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECS=${FUZZ_SECS:-60}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
corpus=fuzz/corpus/inbound
mkdir -p "$corpus"
for f in samples/pas/*.hl7 ../shared/hl7-samples/*; do
    [[ -f $f ]] && cp -n "$f" "$corpus/" 2>/dev/null || true
done
cargo +nightly fuzz run inbound "$corpus" -- -max_total_time="$FUZZ_SECS" -max_len=65536 -timeout=10
