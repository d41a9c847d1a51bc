#!/usr/bin/env bash
# The chaos run, long version (issue 21, RELIABILITY.md): the same test as CI's
# `tests/cluster/chaos.rs` (the whole loop as separate processes, one bridge SIGKILLed at
# seeded random moments, an e-RS fault mix, on SQLite then PostgreSQL), with more
# referrals, more kills and a longer fault window. One summary line per store, written to
# bench/chaos-<date>.log as well.
#
# Env: CHAOS_N (referrals, 3000), CHAOS_KILLS (50), CHAOS_FAULT_SECS (how long the fault
# mix lasts, 120), CHAOS_SEED (repeats a kill schedule), CHAOS_TIMEOUT_SECS (1800).
# Needs what the tests need (RabbitMQ and PostgreSQL running: scripts/dev.sh setup).
set -euo pipefail
cd "$(dirname "$0")/.."
export CHAOS_N="${CHAOS_N:-3000}" CHAOS_KILLS="${CHAOS_KILLS:-50}"
export CHAOS_FAULT_SECS="${CHAOS_FAULT_SECS:-120}" CHAOS_TIMEOUT_SECS="${CHAOS_TIMEOUT_SECS:-1800}"
log="bench/chaos-$(date -u +%Y-%m-%d).log"
echo "== chaos: N=$CHAOS_N kills=$CHAOS_KILLS faults for ${CHAOS_FAULT_SECS}s, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(git rev-parse --short HEAD)" | tee -a "$log"
cargo test --release --test cluster chaos -- --nocapture 2>&1 \
  | grep --line-buffered -E "^chaos |chaos run on|test result|panicked|FAILED" | tee -a "$log"
