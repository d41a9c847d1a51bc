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
    delete_bench_queues "$name"
    rm -rf "$WORK"
}
trap cleanup EXIT
[[ -n "${SKIP_BUILD:-}" ]] || nice cargo build --release --locked --bin ers-bridge --example flood

source "$ROOT/bench/lib.sh"
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
AMQP_EXTRA="prefetch = $PREFETCH" MONITOR_LISTEN="127.0.0.1:$mon" \
    bridge_toml "$SIM" "$WORK/$name.db" "$name" 1000000 3600 >"$WORK/$name.toml"
"$BIN" run --config "$WORK/$name.toml" >"$WORK/run.out" 2>"$WORK/run.err" &
bridge=$!
PIDS+=($bridge)
wait_http "http://127.0.0.1:$mon/health/live"
until [[ $(queue_depth "$name-in") -ge 0 ]]; do sleep 0.2; done
start=$(date +%s.%N)
"$FLOODER" --url "$AMQP_URL" --queue "$name-in" --count "$FLOOD" --bytes 200 \
    --ubrn-from "$UBRN_FROM" --ubrns "$([[ $UBRN_FROM == 100000 ]] && echo "$N" || echo "$FLOOD")" --msa false
deadline=$(( $(date +%s) + TIMEOUT_SECS ))
last_refs=-1; still=0
while :; do
    refs=$(metric ers_bridge_messages_published_total 'REF^I12')
    depth=$(queue_depth "$name-in")
    [[ ${refs%.*} -ge $N && $depth -eq 0 ]] && break
    # Decisions about the backlog's own referrals: one the flood accepted before any pass
    # listed it has left the worklist and is never read (counted below); done when the
    # queue is empty and no REF^I12 was confirmed for 15 s.
    if [[ $UBRN_FROM == 100000 && $depth -eq 0 ]]; then
        if [[ $refs == "$last_refs" ]]; then still=$((still + 1)); else still=0; fi
        last_refs=$refs
        (( still >= 15 )) && break
    fi
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
{ grep -cE ' (WARN|ERROR) ' "$WORK/run.err" || true; } | sed 's/^/   warn+error lines: /'
python3 - "$WORK/$name.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
q = lambda sql: db.execute(sql).fetchone()[0]
print("   referrals never published:", q("SELECT COUNT(DISTINCT ubrn) FROM referral_versions WHERE ubrn NOT IN (SELECT ubrn FROM published_messages)"),
      "of which own writes only (decided before any pass listed them):",
      q("SELECT COUNT(DISTINCT ubrn) FROM referral_versions r WHERE outcome = 'own-write' AND ubrn NOT IN (SELECT ubrn FROM published_messages) AND NOT EXISTS (SELECT 1 FROM referral_versions o WHERE o.ubrn = r.ubrn AND o.outcome <> 'own-write')"))
print("   needs-action:", q("SELECT COUNT(*) FROM inbound_messages WHERE status = 'needs-action'"))
PY
