#!/usr/bin/env bash
# What the e-RS fault mix costs the outbound drain (issue 21: "faults slow it fivefold").
# N generated referrals drained by `ers-bridge run --until-drained` against the simulator
# (its own process), once with no faults and once with the chaos run's mix (5% 500, 2% 429,
# 1% 503 with Retry-After: 1, up to 800 ms of extra latency on every call), for each
# binary given, interleaved. One line per run, then the slowdown (faults / none) per binary.
#
#   bench/faults.sh [BIN...]      (default: target/release/ers-bridge)
#   bench/faults.sh target/compare/bin/<base-sha>/ers-bridge target/compare/bin/worktree/ers-bridge
#
# The simulator is the last binary's. Env: N=500 LIMIT=100 (the app's e-RS calls/s, also
# the simulator's limit) CONCURRENCY=32 ROUNDS=1 AMQP_URL, MIX (the faults, as JSON for
# /_admin/faults). Needs RabbitMQ, curl, python3.
set -euo pipefail

N=${N:-500}
LIMIT=${LIMIT:-100}
CONCURRENCY=${CONCURRENCY:-32}
ROUNDS=${ROUNDS:-1}
AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BINS=("$@")
[[ ${#BINS[@]} -gt 0 ]] || BINS=(target/release/ers-bridge)
SIM_BIN=${BINS[-1]}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
MIX=${MIX:-'{"error_500_rate":0.05,"error_429_rate":0.02,"error_503_rate":0.01,"retry_after_secs":1,"latency_jitter_ms":800}'}

source "$ROOT/bench/lib.sh"

echo "== faults: N=$N limit $LIMIT/s, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%H:%M)"
declare -A total
run() { # bin faults(none|mix) i
    local bin=$1 mode=$2 i=$3 port sim name out
    port=$(free_port)
    "$SIM_BIN" simulate --listen "127.0.0.1:$port" --no-auth --generate "$N" \
        --rate-limit-per-sec "$LIMIT" >"$WORK/sim.out" 2>&1 &
    sim=$!
    PIDS+=("$sim")
    wait_http "http://127.0.0.1:$port/"
    [[ $mode == mix ]] && curl -fs -X POST "http://127.0.0.1:$port/_admin/faults" \
        -H 'content-type: application/json' -d "$MIX" >/dev/null
    name="faults-$(date +%s%N)"
    bridge_toml "http://127.0.0.1:$port" "$WORK/$name.db" "$name" "$LIMIT" 5 >"$WORK/$name.toml"
    local start end
    start=$(date +%s.%N)
    "$bin" run --config "$WORK/$name.toml" --until-drained >"$WORK/run.out" 2>"$WORK/run.err" || true
    end=$(date +%s.%N)
    out=$(curl -fs "http://127.0.0.1:$port/_admin/stats" | python3 -c '
import json, sys
s = json.load(sys.stdin)["by_status"]
print("500s=%s 503s=%s 429s=%s" % (s.get("500", 0), s.get("503", 0), s.get("429", 0)))')
    kill "$sim" 2>/dev/null || true
    wait "$sim" 2>/dev/null || true
    delete_bench_queues "$name"
    local published secs
    published=$(grep 'referrals published:' "$WORK/run.out" | awk '{print $NF}')
    secs=$(python3 -c "print(round($end - $start, 1))")
    echo "RUN bin=$bin faults=$mode round=$i published=${published:-?} secs=$secs $out"
    total[$bin.$mode]=$(python3 -c "print(${total[$bin.$mode]:-0} + $secs)")
}
for i in $(seq 1 "$ROUNDS"); do
    for bin in "${BINS[@]}"; do
        run "$bin" none "$i"
        run "$bin" mix "$i"
    done
done
for bin in "${BINS[@]}"; do
    python3 -c "n=${total[$bin.none]}; m=${total[$bin.mix]}; print(f'RESULT bin=$bin none={n/$ROUNDS:.1f}s mix={m/$ROUNDS:.1f}s slowdown={m/n:.2f}x')"
done
