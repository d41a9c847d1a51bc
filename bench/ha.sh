#!/usr/bin/env bash
# Several bridges on one PostgreSQL store (docs/ha.md): real `ers-bridge run` processes
# against the e-RS simulator (its own process, with a per-client limit of LIMIT requests/s:
# every bridge is the same anonymous client, so the app's limit is the simulator's), the
# PAS simulator (`ers-bridge pas-sim`, a commit ACK and an RRI^I12 per REF^I12) and
# RabbitMQ. One summary line per run (`run mode=…`), a table at the end, everything
# written to bench/ha-<date>-<mode>.log as well.
#
#   bench/ha.sh scale    for each k in INSTANCES: N generated referrals, k bridges, until
#                        every referral's REF^I12 is published and every PAS message is
#                        handled. Per k: referrals/s (N over the time until the last REF^I12
#                        was recorded), decisions/s (RRI^I12s handled over the time until the
#                        inbound side was done), the busiest second e-RS saw against LIMIT
#                        (over it is a FAIL), 429s, worklist handovers between bridges
#                        (the lists are shared out among the bridges; two bridges polling
#                        one list at once is a FAIL), CPU seconds per bridge
#                        (utime+stime), peak RSS per bridge; the bridges are stopped with
#                        SIGTERM and must exit 0.
#   bench/ha.sh rabbit   2 bridges with `[amqp] urls` = a three-node RabbitMQ cluster
#                        (scripts/rabbit-cluster.sh), the PAS simulator on node 3 only; once
#                        OUTAGE_AT referrals are published: stop-node 1, 10 s, start-node 1,
#                        10 s, stop-node 2, 10 s, start-node 2, the bridges never restarted.
#                        Then until done (RABBIT_TIMEOUT after the last start-node) and
#                        checks: N REF^I12s, one MSH-10 per (UBRN, version, type), every PAS
#                        message ended, no referral with two applied e-RS writes; the
#                        bridges' broker lines (connection lost, reconnected to which node,
#                        outage started/ended) and how long each outage lasted for them.
#
# Env: N (scale 10000, rabbit 2000), INSTANCES="1 2 3" (scale), LIMIT (e-RS requests/s for
# all bridges together, the simulator's per-client limit: scale 300, rabbit 100 so that the
# run outlasts the ~70 s of node stops), OUTAGE_AT (rabbit: N/10), RUN_TIMEOUT (scale:
# seconds per run, 900), RABBIT_TIMEOUT (600), BIN (target/release/ers-bridge),
# KEEP_WORK=1 (keep the bridges' logs and configs; they are kept anyway after a failure),
# PGHOST/PGPORT/PGUSER (127.0.0.1, 5432, postgres), AMQP_URL (the main broker, scale only).
#
# Needs: a release build (`nice cargo build --release --bin ers-bridge`; not built here),
# PostgreSQL on 127.0.0.1:5432 with trust auth for user postgres (psql), RabbitMQ on
# 127.0.0.1:5672 (scale; queues deleted with rabbitmqctl afterwards; the exchanges stay),
# for rabbit Debian's rabbitmq-server and root (scripts/rabbit-cluster.sh, torn down at the
# end; the main broker is never touched), curl, python3. Uses the whole of a 2-core machine:
# run one at a time. Exit 0 when every run passed its checks, 1 after the first that failed
# (the rest is not run), 64 for a usage error.
set -euo pipefail
shopt -s inherit_errexit
export LC_ALL=C

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
    exit 64
}
[[ $# -eq 1 ]] || usage
MODE=$1
case $MODE in
scale)
    N=${N:-10000}
    INSTANCES=${INSTANCES:-1 2 3}
    LIMIT=${LIMIT:-300}
    ;;
rabbit)
    N=${N:-2000}
    INSTANCES=2
    LIMIT=${LIMIT:-100}
    OUTAGE_AT=${OUTAGE_AT:-$((N / 10))}
    ;;
*) usage ;;
esac
[[ $N =~ ^[1-9][0-9]*$ && $LIMIT =~ ^[1-9][0-9]*$ ]] || { echo "error: N and LIMIT must be positive numbers" >&2; exit 64; }
RUN_TIMEOUT=${RUN_TIMEOUT:-900}
RABBIT_TIMEOUT=${RABBIT_TIMEOUT:-600}
PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}
PGUSER=${PGUSER:-postgres}
AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
# Consecutive one-second polls with nothing changing before a run counts as done.
STABLE_POLLS=3

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BIN=${BIN:-$ROOT/target/release/ers-bridge}
[[ -x $BIN ]] || { echo "error: no $BIN: nice cargo build --release --bin ers-bridge" >&2; exit 64; }
CLUSTER_SCRIPT=$ROOT/scripts/rabbit-cluster.sh

LOG=$ROOT/bench/ha-$(date +%Y-%m-%d)-$MODE.log
i=2
while [[ -e $LOG ]]; do
    LOG=$ROOT/bench/ha-$(date +%Y-%m-%d)-$MODE-$i.log
    i=$((i + 1))
done
exec > >(tee "$LOG") 2>&1

WORK=$(mktemp -d /tmp/ers-ha-bench.XXXXXX)
PIDS=()        # every process this script started and has not seen exit
QUEUES=()      # queues made on the main broker, deleted at the end
DBS=()         # databases made, dropped at the end
CLUSTER_UP=""  # scripts/rabbit-cluster.sh up was called
FAILED=""

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*"; }
fail() {
    printf '%s FAIL: %s\n' "$(date -u +%H:%M:%S)" "$*"
    FAILED+="${FAILED:+; }$*"
}

forget() { # pid
    local keep=() p
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# Stops the given processes: SIGTERM, then SIGKILL after $1 seconds. Only children of this
# script (PIDS), and the children of the outage sequence's subshell, by their parent's id.
stop_pids() { # grace pid...
    local grace=$1 p alive _
    shift
    for p in "$@"; do
        pkill -TERM -P "$p" 2>/dev/null || true
        kill -TERM "$p" 2>/dev/null || true
    done
    for _ in $(seq 1 $((grace * 10))); do
        alive=""
        for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [[ -n $alive ]] || break
        sleep 0.1
    done
    for p in "$@"; do
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
        forget "$p"
    done
}

pg() { # database sql
    timeout 60 psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d "$1" -AtqX -v ON_ERROR_STOP=1 -c "$2"
}

delete_queues() {
    local q
    for q in "$@"; do timeout 60 rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true; done
}

drop_db() {
    pg postgres "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" >/dev/null 2>&1 ||
        log "warning: could not drop database $1"
}

cleanup() {
    local rc=$? db
    trap - EXIT INT TERM
    set +e
    if ((${#PIDS[@]})); then stop_pids 10 "${PIDS[@]}"; fi
    ((${#QUEUES[@]})) && delete_queues "${QUEUES[@]}"
    for db in "${DBS[@]}"; do drop_db "$db"; done
    if [[ -n $CLUSTER_UP ]]; then
        timeout 300 "$CLUSTER_SCRIPT" down 2>&1 | sed 's/^/  /' ||
            log "warning: scripts/rabbit-cluster.sh down failed; run it by hand"
    fi
    if [[ $rc -ne 0 || -n $FAILED || -n ${KEEP_WORK:-} ]]; then
        log "logs and configs kept in $WORK"
    else
        rm -rf "$WORK"
    fi
    log "log: $LOG"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now_ms() {
    local t=$EPOCHREALTIME
    printf '%s' $((${t%.*} * 1000 + 10#${t#*.} / 1000))
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo ""; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo ""; }
TCK=$(getconf CLK_TCK)

# Waits (at most $3 s) for a line starting with $2 in file $1; prints the rest of it.
await_line() { # file prefix secs pid
    local _ line
    for _ in $(seq 1 $(($3 * 10))); do
        line=$(grep -m1 "^$2" "$1" 2>/dev/null || true)
        if [[ -n $line ]]; then
            printf '%s' "${line#"$2"}"
            return 0
        fi
        kill -0 "$4" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

await_http() { # url secs pid
    local _
    for _ in $(seq 1 $(($2 * 10))); do
        curl -fs --max-time 2 "$1" >/dev/null && return 0
        kill -0 "$3" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# The bridges' configuration (tests/outbound/helpers.rs, tests/cluster/world.rs): sim $1,
# queue prefix $2, store URL $3, the [amqp] node line(s) $4.
bridge_config() {
    cat <<EOF
[ers]
base_url = "$1/referrals/FHIR"
rate_limit_per_sec = $LIMIT
[ers.auth]
mode = "none"
[amqp]
$4
exchange = "$2-x"
pas_queue = "$2-pas"
pas_ack_queue = "$2-acks"
inbound_queue = "$2-in"
dead_letter_exchange = "$2-dlx"
dead_letter_queue = "$2-dlq"
[store]
url = "$3"
[mappings]
dir = "$ROOT/mappings"
[monitor]
listen = "127.0.0.1:0"
[pipeline]
concurrency = 32
[cluster]
lease_ttl_secs = 4
heartbeat_ms = 1000
EOF
    local service
    for service in 21012 21013 21014 21015; do
        printf '[[poll]]\nservice = "%s"\nlists = ["referrals-for-review", "appointment-slot-issues"]\ninterval_secs = 2\n' \
            "$service"
    done
}

# The broker lines of bridge log $1, for the rabbit mode.
BROKER_LINES='broker connection lost|consumer connect failed|publisher connected to broker node|consuming from broker|consumer lost its channel|consumer cancelled by the broker|inbound consumer stopped|outage started|outage continues|outage ended|broker connected'

# The outage sequence of the rabbit mode, in the background; each step's time (ms) and name
# on a line of $1.
outage_sequence() { # events-file
    local ev=$1 step
    for step in "stop-node 1" "sleep" "start-node 1" "sleep" "stop-node 2" "sleep" "start-node 2"; do
        if [[ $step == sleep ]]; then
            sleep 10
            continue
        fi
        printf '%s begin %s\n' "$(now_ms)" "$step" >>"$ev"
        # shellcheck disable=SC2086 # the step is a command and its argument
        if ! timeout 300 "$CLUSTER_SCRIPT" $step >>"$WORK/cluster.out" 2>&1; then
            printf '%s failed %s\n' "$(now_ms)" "$step" >>"$ev"
            exit 1
        fi
        printf '%s end %s\n' "$(now_ms)" "$step" >>"$ev"
    done
}

RESULTS=$WORK/results.jsonl

# One run: k bridges on a fresh simulator, database and queues. Appends a JSON line to
# RESULTS and prints the run's summary line.
run_k() { # k
    local k=$1 dir prefix db store_url sim sim_pid pas_pid cfg pas_cfg amqp_lines i
    dir=$WORK/k$k
    mkdir -p "$dir"
    prefix="ha-$(date +%s)-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')-k$k"
    db="ha_bench_${prefix//-/_}"
    log "== run mode=$MODE instances=$k referrals=$N limit=$LIMIT prefix=$prefix"

    # e-RS simulator, its own process.
    "$BIN" simulate --listen 127.0.0.1:0 --generate "$N" --no-auth --rate-limit-per-sec "$LIMIT" \
        >"$dir/sim.out" 2>"$dir/sim.err" &
    sim_pid=$!
    PIDS+=("$sim_pid")
    if ! sim=$(await_line "$dir/sim.out" 'listening on ' 300 "$sim_pid"); then
        tail -20 "$dir/sim.err"
        fail "the simulator did not start"
        exit 1
    fi
    await_http "$sim/_admin/stats" 60 "$sim_pid" || { fail "the simulator does not answer at $sim"; exit 1; }
    log "simulator $sim (pid $sim_pid), $N referrals, limit $LIMIT requests/s per client"

    # Store.
    DBS+=("$db")
    pg postgres "CREATE DATABASE \"$db\"" >/dev/null
    store_url="postgres://$PGUSER@$PGHOST:$PGPORT/$db"

    # Broker.
    if [[ $MODE == rabbit ]]; then
        amqp_lines="urls = [$(printf '"%s", ' "${CLUSTER_URLS[@]}" | sed 's/, $//')]"
    else
        amqp_lines="url = \"$AMQP_URL\""
        QUEUES+=("$prefix-pas" "$prefix-acks" "$prefix-in" "$prefix-dlq")
    fi
    cfg=$dir/bridge.toml
    bridge_config "$sim" "$prefix" "$store_url" "$amqp_lines" >"$cfg"
    pas_cfg=$cfg
    if [[ $MODE == rabbit ]]; then
        # pas-sim uses the first node of its configuration: node 3 only.
        pas_cfg=$dir/pas.toml
        bridge_config "$sim" "$prefix" "$store_url" "url = \"${CLUSTER_URLS[2]}\"" >"$pas_cfg"
    fi
    "$BIN" validate --config "$cfg" >"$dir/validate.out" 2>&1 || {
        cat "$dir/validate.out"
        fail "the configuration does not validate"
        exit 1
    }
    grep -i 'store:' "$dir/validate.out" | sed 's/^/  /' || true

    # The PAS: waits for the broker and the bridges' queues, answers every 500 ms until SIGTERM.
    "$BIN" pas-sim --config "$pas_cfg" >"$dir/pas.out" 2>"$dir/pas.err" &
    pas_pid=$!
    PIDS+=("$pas_pid")

    # The bridges, all at once (as `docker compose up` would).
    local bridge_pids=() ports=() t0
    t0=$(now_ms)
    for ((i = 1; i <= k; i++)); do
        ports[i]=$(free_port)
        ERS_BRIDGE__CLUSTER__INSTANCE_ID=bench-$i ERS_BRIDGE__MONITOR__LISTEN=127.0.0.1:${ports[i]} \
            "$BIN" run --config "$cfg" >"$dir/bridge-$i.out" 2>"$dir/bridge-$i.err" &
        bridge_pids[i]=$!
        PIDS+=("${bridge_pids[i]}")
    done
    local holders=()
    for ((i = 1; i <= k; i++)); do
        if ! await_http "http://127.0.0.1:${ports[i]}/health/live" 120 "${bridge_pids[i]}"; then
            tail -20 "$dir/bridge-$i.err"
            fail "bridge bench-$i (pid ${bridge_pids[i]}) did not come up"
            exit 1
        fi
        holders[i]=$(curl -s --max-time 2 "http://127.0.0.1:${ports[i]}/health/ready" |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["instance"]["holder"])' 2>/dev/null || echo "?")
        log "bridge bench-$i pid ${bridge_pids[i]} monitor 127.0.0.1:${ports[i]} holder ${holders[i]}"
    done

    # Progress, once a second, until done or the deadline.
    local deadline row refs inbound open state last_state="" stable=0 t_refs="" t_change t_done=""
    local now tick=0 cpu=() hwm=() c h outage_pid="" outage_rc="" outage_end=""
    local ev=$dir/outage-events
    : >"$ev"
    t_change=$t0
    deadline=$((t0 + RUN_TIMEOUT * 1000))
    [[ $MODE == rabbit ]] && deadline=$((t0 + (RABBIT_TIMEOUT + 600) * 1000))
    while :; do
        sleep 1
        tick=$((tick + 1))
        now=$(now_ms)
        if ! row=$(pg "$db" "SELECT (SELECT COUNT(DISTINCT ubrn) FROM published_messages WHERE message_type = 'REF^I12'), (SELECT COUNT(*) FROM inbound_messages), (SELECT COUNT(*) FROM inbound_messages WHERE status IN ('received', 'intent', 'retry'))" 2>/dev/null); then
            row="0|0|0" # not migrated yet
        fi
        IFS='|' read -r refs inbound open <<<"$row"
        for ((i = 1; i <= k; i++)); do
            c=$(cpu_ticks "${bridge_pids[i]}")
            h=$(hwm_kb "${bridge_pids[i]}")
            [[ -n $c ]] && cpu[i]=$c
            [[ -n $h ]] && hwm[i]=$h
            if ! kill -0 "${bridge_pids[i]}" 2>/dev/null; then
                local rc=0
                wait "${bridge_pids[i]}" || rc=$?
                forget "${bridge_pids[i]}"
                log "bridge bench-$i exited with $rc while working; its last lines:"
                tail -30 "$dir/bridge-$i.err" | sed 's/^/  /'
                fail "bridge bench-$i (pid ${bridge_pids[i]}) exited with $rc during the run (refs=$refs inbound=$inbound)"
                exit 1
            fi
        done
        if ((tick % 60 == 0)); then
            # The simulator keeps 600 s of per-second counts: keep snapshots.
            curl -fs --max-time 10 "$sim/_admin/requests" >"$dir/requests-$tick.json" || true
        fi
        if [[ -z $t_refs ]] && ((refs >= N)); then t_refs=$now; fi
        # The rabbit mode's node stops, once OUTAGE_AT referrals are out.
        if [[ $MODE == rabbit && -z $outage_pid && -z $outage_rc ]] && ((refs >= OUTAGE_AT)); then
            log "refs=$refs: starting the node stops (stop-node 1, 10 s, start-node 1, 10 s, stop-node 2, 10 s, start-node 2)"
            outage_sequence "$ev" &
            outage_pid=$!
            PIDS+=("$outage_pid")
        fi
        if [[ -n $outage_pid ]] && ! kill -0 "$outage_pid" 2>/dev/null; then
            outage_rc=0
            wait "$outage_pid" || outage_rc=$?
            forget "$outage_pid"
            outage_pid=""
            outage_end=$now
            deadline=$((now + RABBIT_TIMEOUT * 1000))
            sed 's/^/  outage step /' "$ev"
            if ((outage_rc != 0)); then
                tail -20 "$WORK/cluster.out" | sed 's/^/  /'
                fail "the node stop sequence failed (scripts/rabbit-cluster.sh); see above"
                exit 1
            fi
            log "node stops done; waiting for completion (at most ${RABBIT_TIMEOUT}s)"
        fi
        state="$inbound|$open"
        if [[ $state != "$last_state" ]]; then
            last_state=$state
            t_change=$now
            stable=0
        else
            stable=$((stable + 1))
        fi
        if ((tick % 10 == 0)); then
            log "progress t=$(((now - t0) / 1000))s refs=$refs/$N inbound=$inbound open=$open load=$(cut -d' ' -f1 /proc/loadavg)"
        fi
        if ((refs >= N && inbound >= 2 * N && open == 0 && stable >= STABLE_POLLS)) &&
            [[ $MODE == scale || -n $outage_end ]]; then
            t_done=$((t_change > t_refs ? t_change : t_refs))
            break
        fi
        if ((now > deadline)); then
            log "store at the deadline: $(pg "$db" "SELECT string_agg(status || '=' || n, ' ') FROM (SELECT status, COUNT(*) n FROM inbound_messages GROUP BY status ORDER BY status) s" 2>/dev/null || true)"
            for ((i = 1; i <= k; i++)); do
                log "bridge bench-$i: last lines"
                tail -15 "$dir/bridge-$i.err" | sed 's/^/  /'
            done
            fail "not done in time: refs=$refs/$N inbound=$inbound open=$open"
            exit 1
        fi
    done
    log "done: refs=$refs inbound=$inbound open=$open; referrals at $(((t_refs - t0) / 1000))s, inbound done at $(((t_done - t0) / 1000))s"

    # What e-RS saw, before anything stops (a stopping bridge gives its worklists away).
    curl -fs --max-time 30 "$sim/_admin/requests" >"$dir/requests-final.json"
    curl -fs --max-time 30 "$sim/_admin/polls" >"$dir/polls.json"
    curl -fs --max-time 30 "$sim/_admin/stats" >"$dir/stats.json"
    curl -fs --max-time 60 "$sim/_admin/calls" >"$dir/calls.json"
    local sim_cpu
    sim_cpu=$(cpu_ticks "$sim_pid")

    # The store's view.
    pg "$db" "SELECT 'published ' || message_type || ': ' || COUNT(*) || ' messages, ' || COUNT(DISTINCT ubrn) || ' referrals' FROM published_messages GROUP BY message_type ORDER BY message_type" | sed 's/^/  /'
    pg "$db" "SELECT 'inbound ' || message_type || ' ' || status || ': ' || COUNT(*) FROM inbound_messages GROUP BY message_type, status ORDER BY message_type, status" | sed 's/^/  /'
    local decisions split parked
    decisions=$(pg "$db" "SELECT COUNT(*) FROM inbound_messages WHERE message_type LIKE 'RRI%'")
    split=$(pg "$db" "SELECT COUNT(*) FROM (SELECT 1 FROM published_messages GROUP BY ubrn, version, message_type HAVING COUNT(DISTINCT control_id) > 1) s")
    parked=$(pg "$db" "SELECT COUNT(*) FROM parked" 2>/dev/null || echo "?")
    log "store: $decisions RRI decisions, $split (ubrn, version, type) with more than one control id, $parked parked"

    # Stop the bridges together: SIGTERM, each must exit 0 (bounded: 60 s, then SIGKILL).
    local rcs=() _ alive
    for ((i = 1; i <= k; i++)); do
        c=$(cpu_ticks "${bridge_pids[i]}")
        h=$(hwm_kb "${bridge_pids[i]}")
        [[ -n $c ]] && cpu[i]=$c
        [[ -n $h ]] && hwm[i]=$h
        kill -TERM "${bridge_pids[i]}"
    done
    for _ in $(seq 1 600); do
        alive=""
        for ((i = 1; i <= k; i++)); do
            c=$(cpu_ticks "${bridge_pids[i]}")
            if [[ -n $c ]]; then
                cpu[i]=$c
                alive=1
            fi
        done
        [[ -n $alive ]] || break
        sleep 0.1
    done
    for ((i = 1; i <= k; i++)); do
        if kill -0 "${bridge_pids[i]}" 2>/dev/null; then
            kill -KILL "${bridge_pids[i]}" 2>/dev/null || true
            fail "bridge bench-$i did not exit within 60 s of SIGTERM (killed)"
        fi
        rcs[i]=0
        wait "${bridge_pids[i]}" || rcs[i]=$?
        forget "${bridge_pids[i]}"
        ((rcs[i] == 0)) || {
            tail -20 "$dir/bridge-$i.err" | sed 's/^/  /'
            fail "bridge bench-$i exited with ${rcs[i]} after SIGTERM"
        }
    done
    stop_pids 10 "$pas_pid" "$sim_pid"
    local answered
    answered=$(awk '/^answered [0-9]+ referrals/ {s += $2} END {print s + 0}' "$dir/pas.out")

    # Log lines worth seeing: warnings and errors per bridge, the rabbit mode's broker lines.
    for ((i = 1; i <= k; i++)); do
        log "bridge bench-$i: $(grep -c ' WARN ' "$dir/bridge-$i.err" || true) WARN, $(grep -c ' ERROR ' "$dir/bridge-$i.err" || true) ERROR lines; distinct:"
        { grep -E ' (WARN|ERROR) ' "$dir/bridge-$i.err" || true; } |
            sed -E 's/^\[[^]]*\] +[^ ]+ +//; s/ [a-z_]+=.*//' | sort | uniq -c | sort -rn | head -12 | sed 's/^/  /'
        if [[ $MODE == rabbit ]]; then
            log "bridge bench-$i: broker lines"
            { grep -E "$BROKER_LINES" "$dir/bridge-$i.err" || true; } | cut -c1-260 | sed 's/^/  /'
        fi
    done

    local bridge_cpu="" bridge_hwm="" bridge_rc="" prc=0
    for ((i = 1; i <= k; i++)); do
        bridge_cpu+="${cpu[i]:-0} "
        bridge_hwm+="${hwm[i]:-0} "
        bridge_rc+="${rcs[i]} "
    done
    python3 - "$MODE" "$k" "$N" "$LIMIT" "$t0" "$t_refs" "$t_done" "$decisions" "$split" \
        "$bridge_cpu" "$bridge_hwm" "$bridge_rc" "$TCK" "$dir" "$answered" "${sim_cpu:-0}" \
        "${outage_end:-0}" "$RESULTS" <<'PY' || prc=$?
import glob, json, os, re, sys
from datetime import datetime
(mode, k, n, limit, t0, t_refs, t_done, decisions, split, cpu, hwm, rcs, tck, d, answered,
 sim_cpu, outage_end, results) = sys.argv[1:]
k, n, limit, t0, t_refs, t_done = int(k), int(n), int(limit), int(t0), int(t_refs), int(t_done)
decisions, split, tck, answered = int(decisions), int(split), int(tck), int(answered)
cpu = [int(x) / tck for x in cpu.split()]
hwm = [int(x) / 1024 for x in hwm.split()]
rcs = [int(x) for x in rcs.split()]
problems = []

# Requests per second as e-RS saw them (snapshots, the simulator keeps 600 s).
per_second = {}
for f in sorted(glob.glob(os.path.join(d, "requests-*.json"))):
    for r in json.load(open(f)):
        per_second[r["second"]] = max(per_second.get(r["second"], 0), r["count"])
busiest = max(per_second.values(), default=0)
over = sorted(s for s, c in per_second.items() if c > limit)
if over:
    problems.append(f"rate limit exceeded: {len(over)} seconds over {limit}, busiest {busiest}")
    print(f"FAIL: e-RS saw more than {limit} requests in {len(over)} seconds: "
          + ", ".join(f"s{s}={per_second[s]}" for s in over[:20]), flush=True)
stats = json.load(open(os.path.join(d, "stats.json")))
limited = stats.get("rate_limited", 0)

# One poller per worklist: consecutive A008 calls of a list from different holders.
polls = json.load(open(os.path.join(d, "polls.json")))
by_list = {}
for p in polls:
    agent = p.get("agent", "")
    m = re.search(r"\((.*)\)\s*$", agent)
    p["holder"] = m.group(1) if m else agent
    by_list.setdefault((p["service"], p["list"]), []).append(p)
handovers, overlaps, pollers = 0, 0, {}
for key, ps in sorted(by_list.items()):
    ps.sort(key=lambda p: p["started_ms"])
    for a, b in zip(ps, ps[1:]):
        if a["holder"] != b["holder"]:
            handovers += 1
            print(f"  worklist {key[0]}/{key[1]} went from {a['holder']} to {b['holder']} "
                  f"at +{(b['started_ms'] - t0) / 1000:.1f}s", flush=True)
            if b["started_ms"] < a["ended_ms"]:
                overlaps += 1
    for p in ps:
        pollers.setdefault(p["holder"], set()).add(key)
print("  worklists polled per holder: " + ", ".join(
    f"{h}={len(v)}" for h, v in sorted(pollers.items())) + f" ({len(polls)} A008 calls)", flush=True)
# Hand-overs are expected: an instance leading more than its part of the lists gives one
# away per lease time (docs/ha.md); two pollers at once never are.
if overlaps:
    problems.append(f"{overlaps} worklists polled by two bridges at once")

# Applied e-RS writes per referral.
calls = json.load(open(os.path.join(d, "calls.json")))
applied = {}
for c in calls:
    if c.get("applied") is True:
        applied[c.get("ubrn")] = applied.get(c.get("ubrn"), 0) + 1
twice = {u: c for u, c in applied.items() if c > 1}
if twice:
    problems.append(f"{len(twice)} referrals with two applied writes")
    print("FAIL: referrals with more than one applied write: "
          + ", ".join(f"{u}x{c}" for u, c in list(twice.items())[:20]), flush=True)
if split:
    problems.append(f"{split} messages published under two control ids")
if any(rcs):
    problems.append("a bridge exited non-zero after SIGTERM")

wall_refs = (t_refs - t0) / 1000
wall_done = (t_done - t0) / 1000
r = dict(mode=mode, instances=k, referrals=n, limit=limit,
         wall_refs_s=wall_refs, referrals_per_s=n / wall_refs,
         wall_done_s=wall_done, decisions=decisions, decisions_per_s=decisions / wall_done,
         busiest_second=busiest, rate_limited_429=limited, handovers=handovers,
         overlaps=overlaps, bridge_cpu_s=cpu, cpu_us_per_referral=1e6 * sum(cpu) / n,
         sim_cpu_s=int(sim_cpu) / tck, peak_rss_mb=hwm, exit=rcs,
         applied_writes=len(applied), doubly_applied=len(twice), split_ids=split,
         pas_answered=answered, pas_copies=max(0, answered - n), problems=problems)

if mode == "rabbit":
    # When the bridges lost and regained the broker, from their logs.
    ev = [l.split(" ", 2) for l in open(os.path.join(d, "outage-events")).read().splitlines()]
    print("  node steps (s after the bridges started): " + ", ".join(
        f"{what} {step} +{(int(ms) - t0) / 1000:.1f}" for ms, what, step in ev), flush=True)
    ts = re.compile(r"(\d{4}-\d\d-\d\dT[\d:.]+)Z")
    def ms_of(line):
        m = ts.search(line[:80])
        if not m:
            return None
        s = m.group(1)
        if "." in s:
            head, frac = s.split(".")
            s = head + "." + frac[:6]
        return int(datetime.fromisoformat(s + "+00:00").timestamp() * 1000)
    seen = []
    for i in range(1, k + 1):
        lost = {}
        for line in open(os.path.join(d, f"bridge-{i}.err"), errors="replace"):
            t = ms_of(line)
            if t is None:
                continue
            for side, downs, up in (("publisher", ("broker connection lost",), "publisher connected to broker node"),
                                    ("consumer", ("consumer lost its channel", "consumer cancelled by the broker"), "consuming from broker")):
                if any(x in line for x in downs) and side not in lost:
                    lost[side] = t
                elif up in line and side in lost:
                    node = re.search(r"node=(\S+)", line)
                    seen.append(dict(bridge=i, side=side, lost_at=(lost[side] - t0) / 1000,
                                     back_after_s=(t - lost[side]) / 1000,
                                     node=node.group(1) if node else "?"))
                    del lost[side]
            m = re.search(r'outage ended dependency=(?:"([^"]*)"|(\S+)).*lasted_secs=(\d+)', line)
            if m:
                seen.append(dict(bridge=i, side=f"outage of {m.group(1) or m.group(2)} ended",
                                 lost_at=(t - t0) / 1000, back_after_s=float(m.group(3)), node=""))
        for side, at in lost.items():
            problems.append(f"bridge {i}: {side} lost the broker at +{(at - t0) / 1000:.1f}s and never came back")
    for s in seen:
        if s["node"]:
            print(f"  bridge bench-{s['bridge']} {s['side']}: lost the broker at +{s['lost_at']:.1f}s, "
                  f"connected again after {s['back_after_s']:.1f}s to {s['node']}", flush=True)
        else:
            print(f"  bridge bench-{s['bridge']} {s['side']} at +{s['lost_at']:.1f}s "
                  f"(lasted_secs={s['back_after_s']:.0f})", flush=True)
    # The longest pause in each bridge's PAS decisions (competing consumers: both should
    # keep taking them through the node stops).
    for i in range(1, k + 1):
        ts_applied = [ms_of(l) for l in open(os.path.join(d, f"bridge-{i}.err"), errors="replace")
                      if "pas decision applied" in l]
        ts_applied = [t for t in ts_applied if t is not None]
        ts_applied.append(t_done)  # a pause until the end counts too
        gaps = sorted(((b - a) / 1000, (a - t0) / 1000) for a, b in zip(ts_applied, ts_applied[1:]))
        if gaps:
            g, at = gaps[-1]
            print(f"  bridge bench-{i}: {len(ts_applied) - 1} decisions applied, longest pause {g:.1f}s "
                  f"from +{at:.1f}s", flush=True)
            r[f"bridge{i}_longest_decision_pause_s"] = g
    r["reconnects"] = seen
    r["after_outages_s"] = (t_done - int(outage_end)) / 1000 if int(outage_end) else None

open(results, "a").write(json.dumps(r) + "\n")
print(f"run mode={mode} instances={k} referrals={n} limit={limit} "
      f"referrals_per_s={r['referrals_per_s']:.1f} (all published in {wall_refs:.1f}s) "
      f"decisions={decisions} decisions_per_s={r['decisions_per_s']:.1f} (inbound done in {wall_done:.1f}s) "
      f"busiest_second={busiest}/{limit} rate_limited_429={limited} "
      f"worklist_handovers={handovers} overlapping_polls={overlaps} "
      f"bridge_cpu_s={'+'.join(f'{c:.1f}' for c in cpu)}={sum(cpu):.1f} "
      f"cpu_per_referral_us={r['cpu_us_per_referral']:.0f} sim_cpu_s={r['sim_cpu_s']:.1f} "
      f"peak_rss_mb={'/'.join(f'{h:.0f}' for h in hwm)} exit={'/'.join(map(str, rcs))} "
      f"applied_writes={len(applied)} doubly_applied={len(twice)} pas_copies={r['pas_copies']} "
      f"result={'FAIL(' + '; '.join(problems) + ')' if problems else 'ok'}", flush=True)
sys.exit(1 if problems else 0)
PY
    # Per-run clean-up: the queues and the database go now (the trap covers a failure).
    if [[ $MODE == scale ]]; then
        delete_queues "$prefix-pas" "$prefix-acks" "$prefix-in" "$prefix-dlq"
    fi
    drop_db "$db"
    ((prc == 0)) || fail "run instances=$k failed its checks (see the run line)"
    if [[ -n $FAILED ]]; then
        log "stopping after the failed run (instances=$k): $FAILED"
        exit 1
    fi
}

log "== ha.sh $MODE: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
log "binary $BIN ($("$BIN" --version 2>/dev/null || echo '?'), built $(date -u -r "$BIN" +%Y-%m-%dT%H:%M:%SZ)); checkout at $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src 2>/dev/null || echo ' with uncommitted changes in src')"
log "N=$N LIMIT=$LIMIT$([[ $MODE == scale ]] && echo " INSTANCES=\"$INSTANCES\" RUN_TIMEOUT=$RUN_TIMEOUT" || echo " OUTAGE_AT=$OUTAGE_AT RABBIT_TIMEOUT=$RABBIT_TIMEOUT") work $WORK"

CLUSTER_URLS=()
if [[ $MODE == rabbit ]]; then
    log "starting the three-node cluster (scripts/rabbit-cluster.sh up)"
    CLUSTER_UP=1
    if ! out=$(timeout 600 "$CLUSTER_SCRIPT" up 2>"$WORK/cluster.out"); then
        sed 's/^/  /' "$WORK/cluster.out"
        fail "scripts/rabbit-cluster.sh up failed"
        exit 1
    fi
    mapfile -t CLUSTER_URLS <<<"$out"
    [[ ${#CLUSTER_URLS[@]} -eq 3 ]] || { fail "expected three URLs from rabbit-cluster.sh up, got: $out"; exit 1; }
    log "cluster up: ${CLUSTER_URLS[*]} ($(grep -o 'cluster up in [0-9]*s' "$WORK/cluster.out" || true))"
fi

for k in $INSTANCES; do
    [[ $k =~ ^[1-9][0-9]*$ ]] || { echo "error: INSTANCES must be whole numbers" >&2; exit 64; }
    run_k "$k"
done

python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("\n| instances | referrals/s | decisions/s | busiest second / limit | 429s | handovers | bridge CPU s (sum) | CPU µs/referral | peak RSS MB per bridge |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['instances']} | {r['referrals_per_s']:.1f} | {r['decisions_per_s']:.1f} | "
          f"{r['busiest_second']} / {r['limit']} | {r['rate_limited_429']} | {r['handovers']} | "
          f"{' + '.join(f'{c:.1f}' for c in r['bridge_cpu_s'])} = {sum(r['bridge_cpu_s']):.1f} | "
          f"{r['cpu_us_per_referral']:.0f} | {' / '.join(f'{h:.0f}' for h in r['peak_rss_mb'])} |")
PY
log "all runs passed"
