#!/usr/bin/env bash
# Overload (issue 21): PAS messages flooding the inbound queue while a backlog of referrals
# drains. A simulator with N generated referrals (zero latency, no rate limit), one
# `ers-bridge run`, and at once FLOOD decisions (examples/flood.rs, accepts without MSA) on
# its inbound queue: by default about referrals e-RS does not have (UBRN_FROM=900000, each
# its own; each ends needs-action after one A005), or with UBRN_FROM=100000 about the
# backlog's own referrals, in turn. Waits until every referral's
# REF^I12 is confirmed (the bridge's /metrics) and the inbound queue is empty; prints the
# bridge's peak RSS (VmHWM), the time, and the inbound outcomes from /metrics.
#
#   bench/overload.sh                        (N=10000 FLOOD=20000)
#   N=2000 FLOOD=4000 SKIP_BUILD=1 bench/overload.sh
#
# Env: N, FLOOD, UBRN_FROM=900000, PREFETCH=16, CONCURRENCY=32, TIMEOUT_SECS=1800, AMQP_URL, SKIP_BUILD.
# Needs RabbitMQ (rabbitmqctl), curl, python3.
set -euo pipefail

N=${N:-10000}
FLOOD=${FLOOD:-20000}
UBRN_FROM=${UBRN_FROM:-900000}
PREFETCH=${PREFETCH:-16}
CONCURRENCY=${CONCURRENCY:-32}
TIMEOUT_SECS=${TIMEOUT_SECS:-1800}
AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BIN=target/release/ers-bridge
FLOODER=target/release/examples/flood
WORK=$(mktemp -d)
PIDS=()
name="overload-$(date +%s%N)"
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for q in pas acks in dlq; do rabbitmqctl delete_queue "$name-$q" >/dev/null 2>&1 || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
[[ -n "${SKIP_BUILD:-}" ]] || nice cargo build --release --locked --bin ers-bridge --example flood

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 600); do curl -fs "$1" >/dev/null && return 0; sleep 0.1; done; return 1; }
queue_depth() {
    rabbitmqctl -q list_queues name messages 2>/dev/null | awk -v q="$1" '$1 == q {print $2; f=1} END {if (!f) print -1}'
}
metric() { # name [label filter]: the sum of its samples
    curl -fs "http://127.0.0.1:$mon/metrics" | awk -v m="$1" -v f="${2:-}" \
        'index($0, m) == 1 && index($0, f) {s += $NF} END {print s + 0}'
}

echo "== overload: $N referrals draining, $FLOOD PAS decisions flooding (ubrns from $UBRN_FROM), prefetch $PREFETCH, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(git rev-parse --short HEAD)"
port=$(free_port)
"$BIN" simulate --listen "127.0.0.1:$port" --no-auth --generate "$N" \
    --rate-limit-per-sec 1000000 >"$WORK/sim.out" 2>&1 &
PIDS+=($!)
SIM="http://127.0.0.1:$port"
wait_http "$SIM/"
mon=$(free_port)
{
    cat <<EOF
[ers]
base_url = "$SIM/referrals/FHIR"
rate_limit_per_sec = 1000000
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
[store]
url = "sqlite://$WORK/$name.db"
[monitor]
listen = "127.0.0.1:$mon"
[mappings]
dir = "$ROOT/mappings"
[pipeline]
concurrency = $CONCURRENCY
EOF
    for service in 21012 21013 21014 21015 11016 11010 11014; do
        printf '[[poll]]\nservice = "%s"\nlists = ["referrals-for-review", "appointment-slot-issues"]\ninterval_secs = 3600\n' "$service"
    done
} >"$WORK/$name.toml"
"$BIN" run --config "$WORK/$name.toml" >"$WORK/run.out" 2>"$WORK/run.err" &
bridge=$!
PIDS+=($bridge)
wait_http "http://127.0.0.1:$mon/health/live"
until [[ $(queue_depth "$name-in") -ge 0 ]]; do sleep 0.2; done
start=$(date +%s.%N)
"$FLOODER" --url "$AMQP_URL" --queue "$name-in" --count "$FLOOD" --bytes 200 \
    --ubrn-from "$UBRN_FROM" --ubrns "$([[ $UBRN_FROM == 100000 ]] && echo "$N" || echo "$FLOOD")" --msa false
deadline=$(( $(date +%s) + TIMEOUT_SECS ))
while :; do
    refs=$(metric ers_bridge_messages_published_total 'REF^I12')
    depth=$(queue_depth "$name-in")
    [[ ${refs%.*} -ge $N && $depth -eq 0 ]] && break
    if (( $(date +%s) > deadline )); then
        echo "RESULT timeout: $refs of $N REF^I12 confirmed, $depth on the inbound queue; peak_rss_mb=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$bridge/status")"
        exit 1
    fi
    sleep 1
done
secs=$(python3 -c "print(round($(date +%s.%N) - $start, 1))")
peak=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$bridge/status")
handled=$(metric ers_bridge_inbound_messages_total)
echo "RESULT referrals=$N flood=$FLOOD peak_rss_mb=$peak secs=$secs inbound_handled=${handled%.*}"
curl -fs "http://127.0.0.1:$mon/metrics" | grep '^ers_bridge_inbound_messages_total' | sed 's/^/   /'
grep -cE ' (WARN|ERROR) ' "$WORK/run.err" | sed 's/^/   warn+error lines: /'
