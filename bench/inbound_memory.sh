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

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 600); do curl -fs "$1" >/dev/null && return 0; sleep 0.1; done; return 1; }
queue_depth() { # name: ready + unacked, or -1 when the queue does not exist yet
    rabbitmqctl -q list_queues name messages 2>/dev/null | awk -v q="$1" '$1 == q {print $2; f=1} END {if (!f) print -1}'
}

echo "== inbound memory: $COUNT messages of $BYTES bytes, prefetch $PREFETCH, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(git rev-parse --short HEAD)"
port=$(free_port)
"$BIN" simulate --listen "127.0.0.1:$port" --no-auth >"$WORK/sim.out" 2>&1 &
PIDS+=($!)
SIM="http://127.0.0.1:$port"
wait_http "$SIM/"
for budget in $BUDGETS; do
    name="inmem-$(date +%s%N)"
    mon=$(free_port)
    cat >"$WORK/$name.toml" <<EOF
[ers]
base_url = "$SIM/referrals/FHIR"
[ers.auth]
mode = "none"
[amqp]
url = "$AMQP_URL"
exchange = "$name-to-pas"
pas_queue = "$name-pas"
pas_ack_queue = "$name-acks"
inbound_queue = "$name-in"
dead_letter_exchange = "$name-dlx"
dead_letter_queue = "$name-dlq"
prefetch = $PREFETCH
inbound_bytes_in_flight_mib = $budget
[store]
url = "sqlite://$WORK/$name.db"
[monitor]
listen = "127.0.0.1:$mon"
[mappings]
dir = "$ROOT/mappings"
EOF
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
    for q in pas acks in dlq; do rabbitmqctl delete_queue "$name-$q" >/dev/null 2>&1 || true; done
    echo "RESULT budget_mib=$budget count=$COUNT bytes=$BYTES rss_before_mb=$before peak_rss_mb=$peak secs=$secs"
    echo "   its log: $(grep -c . "$WORK/$name.err") lines; the last warnings:"
    grep -E 'WARN|ERROR' "$WORK/$name.err" | tail -3 | cut -c1-300 | sed 's/^/   /'
done
