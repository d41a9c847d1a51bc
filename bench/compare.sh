#!/usr/bin/env bash
# Interleaved comparison of two commits of the bridge on one machine (issue 20): what a
# change to the pipeline, the store or the events costs, in numbers a closing note can
# quote.
#
#   bench/compare.sh BASE [HEAD]
#   MODE=loop N=2000 bench/compare.sh BASE [HEAD]     (the inbound side, below)
#
# BASE and HEAD are anything `git rev-parse` takes; HEAD defaults to `.`, the working tree
# as it is (uncommitted changes included). Each commit is built once in release, in a
# worktree under target/compare/ sharing this checkout's target directory (so dependencies
# build once); the binaries are copied out per commit, so a second comparison against the
# same BASE starts at once.
#
# Then PAIRS pairs of runs, interleaved (base, head; head, base; ...), each one
# `bench/e2e.sh` step 1 and 1b: a fresh simulator process (always HEAD's, so both bridges
# face the same server and the same generated referrals) with N referrals at zero latency,
# `ers-bridge run --until-drained` against it under /usr/bin/time, then the ceiling client
# (HEAD's examples/ceiling.rs: the same e-RS requests the bridge must make and one
# confirmed publish of a message of the bridge's average size) on the same simulator.
# One line per run, then the means and the ratios HEAD/BASE. The machine is shared and
# drifts by +-30% between hours: compare only inside one run, and prefer the bridge/
# simulator CPU ratio, which takes out most of the host's drift.
#
# TOOLS=REV takes the simulator and the ceiling client from another commit (a bisection
# over commits older than the ceiling's flags).
# Env: N=10000 PAIRS=3 CONCURRENCY=32 AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f
# CARGO_TARGET_DIR (default target/) holds the builds and target/compare/.
# Needs RabbitMQ on 127.0.0.1:5672, curl, python3, /usr/bin/time.
set -euo pipefail
shopt -s inherit_errexit

[[ $# -ge 1 && $# -le 2 ]] || { sed -n '2,25p' "$0"; exit 64; }
N=${N:-10000}
PAIRS=${PAIRS:-3}
CONCURRENCY=${CONCURRENCY:-32}
AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
CACHE=$TARGET/compare
mkdir -p "$CACHE/bin"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# Builds `ers-bridge` (and, for HEAD, the ceiling client) for one side; prints the
# directory holding the binaries.
build() { # rev examples?
    local rev=$1 with_examples=$2 sha dir
    if [[ $rev == . ]]; then
        dir=$CACHE/bin/worktree
        CARGO_TARGET_DIR=$TARGET nice cargo build --quiet --release --locked --bin ers-bridge \
            ${with_examples:+--example ceiling} >&2
        mkdir -p "$dir"
        cp "$TARGET/release/ers-bridge" "$dir/"
        [[ -z $with_examples ]] || cp "$TARGET/release/examples/ceiling" "$dir/"
        rm -rf "$dir/mappings"
        cp -r "$ROOT/mappings" "$dir/mappings"
        echo "$dir"
        return
    fi
    sha=$(git rev-parse --short=10 "$rev^{commit}")
    dir=$CACHE/bin/$sha
    if [[ ! -x $dir/ers-bridge || ( -n $with_examples && ! -x $dir/ceiling ) ]]; then
        # One worktree at one path, checked out at each commit in turn: cargo keeps one
        # fingerprint per package path and judges freshness by mtimes, which a checkout
        # updates. (A worktree per commit sharing the target directory made cargo reuse
        # another commit's build.)
        local wt=$CACHE/wt
        [[ -d $wt ]] || git worktree add --detach "$wt" "$sha" >&2
        git -C "$wt" checkout --quiet --detach --force "$sha" >&2
        # Its sources newer than any build before, so a build interrupted half-way (a
        # stopped comparison) is never taken for this commit's.
        find "$wt/src" "$wt/examples" -type f -exec touch {} +
        echo "== building $sha" >&2
        (cd "$wt" && CARGO_TARGET_DIR=$TARGET nice cargo build --quiet --release \
            --bin ers-bridge ${with_examples:+--example ceiling} >&2)
        mkdir -p "$dir"
        cp "$TARGET/release/ers-bridge" "$dir/"
        [[ -z $with_examples ]] || cp "$TARGET/release/examples/ceiling" "$dir/"
        # Each bridge maps with its own commit's mapping files.
        rm -rf "$dir/mappings"
        git -C "$wt" archive "$sha" mappings | tar -x -C "$dir"
    fi
    echo "$dir"
}

label() { if [[ $1 == . ]]; then echo "worktree"; else git rev-parse --short=10 "$1^{commit}"; fi; }
BASE=$1
HEAD_REV=${2:-.}
TOOLS=${TOOLS:-$HEAD_REV}
BASE_BIN=$(build "$BASE" "") || { echo "error: building $BASE failed" >&2; exit 1; }
HEAD_BIN=$(build "$HEAD_REV" "") || { echo "error: building $HEAD_REV failed" >&2; exit 1; }
TOOLS_BIN=$(build "$TOOLS" yes) || { echo "error: building $TOOLS failed" >&2; exit 1; }
BASE_LABEL=$(label "$BASE")
HEAD_LABEL=$(label "$HEAD_REV")
SIM_BIN=$TOOLS_BIN/ers-bridge
CEILING=$TOOLS_BIN/ceiling

echo "== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "== base $BASE_LABEL, head $HEAD_LABEL; N=$N PAIRS=$PAIRS CONCURRENCY=$CONCURRENCY; simulator and ceiling from $(label "$TOOLS")"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 600); do curl -fs "$1" >/dev/null && return 0; sleep 0.1; done; return 1; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
wall_secs() { python3 -c "
s=0.0
for x in '$1'.split(':'): s=s*60+float(x)
print(s)"; }

# The bench/e2e.sh configuration; `monitor` is left out for bridges older than it.
bridge_config() { # sim db name with_monitor mappings
    cat <<EOF
[ers]
base_url = "$1/referrals/FHIR"
rate_limit_per_sec = 1000000
[ers.auth]
mode = "none"
[amqp]
url = "$AMQP_URL"
exchange = "$3-to-pas"
pas_queue = "$3-pas"
inbound_queue = "$3-from-pas"
dead_letter_exchange = "$3-dlx"
dead_letter_queue = "$3-dlq"
[store]
url = "sqlite://$2"
[mappings]
dir = "$5"
[pipeline]
concurrency = $CONCURRENCY
EOF
    [[ -z $4 ]] || printf '[monitor]\nlisten = "127.0.0.1:0"\n'
    for service in 21012 21013 21014 21015 11016 11010 11014; do
        printf '[[poll]]\nservice = "%s"\nlists = ["referrals-for-review", "appointment-slot-issues"]\ninterval_secs = 3600\n' \
            "$service"
    done
}

# The average published message in a store, whichever schema wrote it.
avg_message() {
    python3 - "$1" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for q in ("SELECT AVG(LENGTH(body)) FROM payloads WHERE kind = 'out'",
          "SELECT AVG(LENGTH(hl7)) FROM published_messages"):
    try:
        v = db.execute(q).fetchone()[0]
        if v:
            print(round(v)); break
    except sqlite3.Error:
        pass
else:
    print(0)
PY
}

RESULTS=$WORK/results
run_one() { # label bindir pair
    local label=$1 bin=$2/ers-bridge port sim name cfg
    port=$(free_port)
    "$SIM_BIN" simulate --listen "127.0.0.1:$port" --no-auth --generate "$N" --seed-dir samples/fhir \
        --rate-limit-per-sec 1000000 >"$WORK/sim.out" 2>&1 &
    local sim_pid=$!
    PIDS+=($sim_pid)
    sim="http://127.0.0.1:$port"
    wait_http "$sim/"
    name="cmp-$(date +%s%N)"
    cfg=$WORK/$name.toml
    bridge_config "$sim" "$WORK/$name.db" "$name" yes "$2/mappings" >"$cfg"
    "$bin" validate --config "$cfg" >/dev/null 2>&1 ||
        bridge_config "$sim" "$WORK/$name.db" "$name" "" "$2/mappings" >"$cfg"
    local beam sim0 beam0 sim1 beam1
    beam=$(pgrep -f beam.smp | head -1 || echo 0)
    sim0=$(cpu_ticks "$sim_pid"); beam0=$(cpu_ticks "$beam")
    /usr/bin/time -v "$bin" run --config "$cfg" --until-drained >"$WORK/run.out" 2>"$WORK/run.err" \
        || { tail -20 "$WORK/run.err" >&2; exit 1; }
    sim1=$(cpu_ticks "$sim_pid"); beam1=$(cpu_ticks "$beam")
    [[ -z ${KEEP_OUTPUT:-} ]] || { echo "--- $label"; grep -E "published|calls|failed|parked|took" "$WORK/run.out"; } >&2
    local published avg ceiling_line
    published=$(grep 'referrals published:' "$WORK/run.out" | awk '{print $NF}')
    avg=$(avg_message "$WORK/$name.db")
    ceiling_line=$("$CEILING" --sim "$sim" --amqp "$AMQP_URL" --in-flight 64 --message-bytes "$avg")
    kill "$sim_pid" 2>/dev/null || true
    wait "$sim_pid" 2>/dev/null || true
    for q in pas from-pas dlq; do rabbitmqctl delete_queue "$name-$q" >/dev/null 2>&1 || true; done
    python3 - "$label" "$3" "$published" "$avg" "$WORK/run.err" "$((sim1 - sim0))" "$((beam1 - beam0))" \
        "$(getconf CLK_TCK)" "$ceiling_line" "$RESULTS" <<'PY'
import json, re, sys
label, pair, n, avg, err, sim, beam, tck, ceiling_line, results = sys.argv[1:]
n, sim, beam, tck = int(n), int(sim), int(beam), int(tck)
t = open(err).read()
g = lambda k: re.search(re.escape(k) + r".*: (.*)", t).group(1).strip()
wall = 0.0
for x in g("Elapsed (wall clock) time").split(":"):
    wall = wall * 60 + float(x)
bridge = float(g("User time (seconds)")) + float(g("System time (seconds)"))
rss = int(g("Maximum resident set size")) / 1024
ceiling = float(re.search(r"ceiling_referrals_per_s=(\d+)", ceiling_line).group(1))
r = dict(label=label, pair=int(pair), referrals=n, per_s=n / wall, ceiling=ceiling,
         bridge_us=1e6 * bridge / n, sim_us=1e6 * sim / tck / n, rabbit_us=1e6 * beam / tck / n,
         rss_mb=rss, avg_message=int(avg), cpu=g("Percent of CPU this job got"))
r["of_ceiling"] = 100 * r["per_s"] / ceiling
r["bridge_over_sim"] = r["bridge_us"] / r["sim_us"] if r["sim_us"] else float("nan")
open(results, "a").write(json.dumps(r) + "\n")
print(f"run pair={pair} commit={label} referrals={n} referrals_per_s={r['per_s']:.0f} "
      f"ceiling_per_s={ceiling:.0f} of_ceiling={r['of_ceiling']:.0f}% "
      f"bridge_cpu_us={r['bridge_us']:.0f} sim_cpu_us={r['sim_us']:.0f} rabbitmq_cpu_us={r['rabbit_us']:.0f} "
      f"bridge_over_sim={r['bridge_over_sim']:.2f} bridge_cpu={r['cpu']} peak_rss_mb={rss:.1f} "
      f"avg_message_b={avg}", flush=True)
PY
}

# MODE=loop: the inbound side. `ers-bridge demo --generate N` twice per side, once with
# --no-pas-sim (outbound only) and once with the PAS simulator answering every REF with a
# commit ACK and an RRI^I12 (the whole loop); the difference in CPU is the inbound half,
# divided by the PAS messages handled and the decisions applied. The e-RS and PAS
# simulators run inside the demo process, so this is an upper bound per decision.
run_loop() { # label bindir pair
    local label=$1 bin=$2/ers-bridge out=$WORK/loop.out
    local prefix="cmp-$(date +%s%N)"
    RUST_LOG=warn /usr/bin/time -v "$bin" demo --generate "$N" --rate-limit-per-sec 5000 \
        --concurrency 32 --queue-prefix "$prefix-o" --no-pas-sim >"$WORK/out.out" 2>"$WORK/out.err" \
        || { tail -20 "$WORK/out.err" >&2; exit 1; }
    RUST_LOG=warn /usr/bin/time -v "$bin" demo --generate "$N" --rate-limit-per-sec 5000 \
        --concurrency 32 --queue-prefix "$prefix-l" >"$out" 2>"$WORK/loop.err" \
        || { tail -20 "$WORK/loop.err" >&2; exit 1; }
    for p in "$prefix-o" "$prefix-l"; do
        for q in pas.referrals pas.acks from-pas dead-letter; do
            rabbitmqctl delete_queue "$p.$q" >/dev/null 2>&1 || true
        done
    done
    python3 - "$label" "$3" "$WORK/out.err" "$WORK/loop.err" "$out" "$RESULTS" <<'PY'
import json, re, sys
label, pair, out_err, loop_err, loop_out, results = sys.argv[1:]
def cpu(path):
    t = open(path).read()
    g = lambda k: float(re.search(re.escape(k) + r".*: (.*)", t).group(1))
    return g("User time (seconds)") + g("System time (seconds)")
o = open(loop_out).read()
handled, secs = re.search(r"inbound handled:\s+(\d+) PAS messages in ([\d.]+)s", o).groups()
handled, secs = int(handled), float(secs)
n = lambda k: int(re.search(re.escape(k) + r"\s+(\d+)", o).group(1))
decisions = sum(n(k) for k in ("accepted (A013):", "review outcomes (A028):", "rejected (A014):", "cancel-action-later (A022):"))
inbound = cpu(loop_err) - cpu(out_err)
r = dict(label=label, pair=int(pair), per_s=handled / secs, decisions=decisions,
         us_per_message=1e6 * inbound / handled, us_per_decision=1e6 * inbound / max(1, decisions),
         needs_action=n("needs action in e-RS:"))
open(results, "a").write(json.dumps(r) + "\n")
print(f"run pair={pair} commit={label} pas_messages={handled} messages_per_s={r['per_s']:.0f} "
      f"decisions={decisions} needs_action={r['needs_action']} inbound_cpu_s={inbound:.2f} "
      f"cpu_per_message_us={r['us_per_message']:.0f} cpu_per_decision_us={r['us_per_decision']:.0f}", flush=True)
PY
}

for ((pair = 1; pair <= PAIRS; pair++)); do
    if ((pair % 2)); then order="base head"; else order="head base"; fi
    for side in $order; do
        if [[ $side == base ]]; then label=$BASE_LABEL bin=$BASE_BIN; else label=$HEAD_LABEL bin=$HEAD_BIN; fi
        if [[ ${MODE:-outbound} == loop ]]; then run_loop "$label" "$bin" "$pair"
        else run_one "$label" "$bin" "$pair"; fi
    done
done

if [[ ${MODE:-outbound} == loop ]]; then
    python3 - "$RESULTS" "$BASE_LABEL" "$HEAD_LABEL" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
base, head = sys.argv[2], sys.argv[3]
keys = ["per_s", "us_per_message", "us_per_decision"]
mean = lambda label, k: sum(r[k] for r in rows if r["label"] == label) / max(1, sum(1 for r in rows if r["label"] == label))
for label in (base, head):
    print(f"mean commit={label} " + " ".join(f"{k}={mean(label, k):.2f}" for k in keys))
print("RATIO head/base " + " ".join(f"{k}={mean(head, k) / mean(base, k):.2f}" for k in keys if mean(base, k)))
PY
    exit 0
fi

python3 - "$RESULTS" "$BASE_LABEL" "$HEAD_LABEL" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
base, head = sys.argv[2], sys.argv[3]
keys = ["per_s", "of_ceiling", "bridge_us", "sim_us", "bridge_over_sim", "rss_mb", "avg_message"]
mean = lambda label, k: sum(r[k] for r in rows if r["label"] == label) / max(1, sum(1 for r in rows if r["label"] == label))
for label in (base, head):
    print(f"mean commit={label} " + " ".join(f"{k}={mean(label, k):.2f}" for k in keys))
print("RATIO head/base " + " ".join(f"{k}={mean(head, k) / mean(base, k):.2f}" for k in keys if mean(base, k)))
PY
