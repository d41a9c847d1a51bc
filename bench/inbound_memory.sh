#!/usr/bin/env bash
# Peak memory of `ers-bridge run` while the PAS floods its inbound queue with large
# messages (issue 21: 835 MB for twenty 15 MB RRIs). For each byte budget in BUDGETS
# (`[amqp] inbound_bytes_in_flight_mib`), a fresh bridge on an empty simulator; COUNT
# RRI^I12 of BYTES each sent to its inbound queue (examples/flood.rs); once the queue is
# empty, the bridge's peak RSS (VmHWM). 4096 MiB is in effect no budget (the count alone).
#
#   bench/inbound_memory.sh
#   COUNT=2000 BYTES=2000 BUDGETS=32 bench/inbound_memory.sh     (many small ones)
#
# Env: COUNT=20 BYTES=15000000 BUDGETS="4096 32" PREFETCH=16 SKIP_BUILD=1 AMQP_URL.
# Needs RabbitMQ (rabbitmqctl), curl, python3.
set -euo pipefail

COUNT=${COUNT:-20}
BYTES=${BYTES:-15000000}
BUDGETS=${BUDGETS:-4096 32}
PREFETCH=${PREFETCH:-16}
AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BIN=target/release/ers-bridge
FLOOD=target/release/examples/flood
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
[[ -n "${SKIP_BUILD:-}" ]] || nice cargo build --release --locked --bin ers-bridge --example flood

source "$ROOT/bench/lib.sh"

echo "== inbound memory: $COUNT messages of $BYTES bytes, prefetch $PREFETCH, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(git rev-parse --short HEAD)"
port=$(free_port)
"$BIN" simulate --listen "127.0.0.1:$port" --no-auth >"$WORK/sim.out" 2>&1 &
PIDS+=($!)
SIM="http://127.0.0.1:$port"
wait_http "$SIM/"
for budget in $BUDGETS; do
    name="inmem-$(date +%s%N)"
    mon=$(free_port)
    AMQP_EXTRA="prefetch = $PREFETCH
inbound_bytes_in_flight_mib = $budget" MONITOR_LISTEN="127.0.0.1:$mon" \
        bridge_toml "$SIM" "$WORK/$name.db" "$name" 10 "" >"$WORK/$name.toml"
    "$BIN" run --config "$WORK/$name.toml" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    bridge=$!
    PIDS+=($bridge)
    wait_http "http://127.0.0.1:$mon/health/live"
    until [[ $(queue_depth "$name-in") -ge 0 ]]; do sleep 0.2; done
    before=$(awk '/VmRSS/ {print int($2/1024)}' "/proc/$bridge/status")
    start=$(date +%s.%N)
    "$FLOOD" --url "$AMQP_URL" --queue "$name-in" --count "$COUNT" --bytes "$BYTES"
    until [[ $(queue_depth "$name-in") -eq 0 ]]; do sleep 0.2; done
    secs=$(python3 -c "print(round($(date +%s.%N) - $start, 1))")
    peak=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$bridge/status")
    kill -TERM "$bridge"
    wait "$bridge" || true
    delete_bench_queues "$name"
    echo "RESULT budget_mib=$budget count=$COUNT bytes=$BYTES rss_before_mb=$before peak_rss_mb=$peak secs=$secs"
    echo "   its log: $(grep -c . "$WORK/$name.err") lines; the last warnings:"
    grep -E 'WARN|ERROR' "$WORK/$name.err" | tail -3 | cut -c1-300 | sed 's/^/   /'
done
