#!/usr/bin/env bash
# A throw-away three-node RabbitMQ cluster on this machine, for ers-bridge's cluster
# (failover) tests: quorum queues replicated over three nodes, and a node that can be stopped
# and started again while the bridge keeps publishing and consuming.
#
#   scripts/rabbit-cluster.sh up            start ers-ha1..3 (those not running), join 2 and 3
#                                           to 1; idempotent; prints the three AMQP URLs
#   scripts/rabbit-cluster.sh down          stop the three nodes and delete their data dir
#   scripts/rabbit-cluster.sh stop-node N   stop node N (1..3): the failover the tests inject
#   scripts/rabbit-cluster.sh start-node N  start node N again; it rejoins as its data says
#   scripts/rabbit-cluster.sh status        cluster_status of each running node, and each
#                                           quorum queue's leader, members and online members
#   scripts/rabbit-cluster.sh urls          amqp://guest:guest@127.0.0.1:5681/%2f etc., one a line
#
# How the tests and harness use it: `up` once before the cluster tests (its stdout, or `urls`,
# gives the URLs the bridge is configured with, all three for failover); a test injects a
# node failure with `stop-node N` and heals it with `start-node N`; `down` at the end.
# stdout carries only what a caller parses (the URLs; status's report); log lines go to stderr.
#
# Nodes: ers-ha1@localhost, ers-ha2@localhost, ers-ha3@localhost; AMQP on 127.0.0.1, ports
# HA_BASE_PORT, +1, +2 (default 5681..5683); Erlang distribution on AMQP port + 20000
# (25681..25683); no plugins (not even management); user guest, from loopback only (the
# default). Data, logs, configs and pid files live under HA_DIR (default /tmp/ers-ha-rabbit),
# one folder per node. The nodes have their own rabbitmq.conf, conf.d, advanced.config path,
# enabled-plugins file and rabbitmq-env.conf, so nothing in /etc/rabbitmq applies to them.
# The node names are fixed, so one such cluster runs per machine, whatever HA_DIR says.
#
# Quorum queues declared on the cluster get a member on each node; they stay available (and
# confirm publishes) while two of the three nodes run. A node stopped with stop-node catches
# up from the others on start-node. After all three stopped, start them together (`up`): a
# node started alone waits for the peer that was running when it stopped, and start-node's
# wait runs out (HA_START_TIMEOUT).
#
# The nodes' own configuration, written on each start from this script's environment: AMQP
# listener 127.0.0.1:port, cluster_name ers-ha, guest from loopback only, no plugins;
# RABBITMQ_* variables inherited from the caller are dropped before a node starts.
#
# The machine's own broker, rabbit@localhost on 127.0.0.1:5672 (dist 25672), is never
# addressed by this script: every command names an ers-ha node, and the ports refuse to
# overlap 5672/25672.
#
# Runs as root (or as user rabbitmq). Debian's rabbitmq-server/rabbitmqctl wrappers run the
# nodes and the CLI as user rabbitmq (su, environment kept), whose home /var/lib/rabbitmq
# holds the Erlang cookie that all nodes and the CLI share; hence HA_DIR must be reachable
# by user rabbitmq (the script makes it rabbitmq's), and it must be an absolute path (the
# wrapper cd's to /var/lib/rabbitmq; a relative HA_DIR is made absolute here).
#
# Environment: HA_DIR, HA_BASE_PORT (see above); HA_START_TIMEOUT (seconds a node may take
# to boot, default 120); HA_CTL_TIMEOUT (seconds for one CLI call, default 60).
set -euo pipefail

readonly NODES=(1 2 3)
HA_DIR=$(realpath -m -- "${HA_DIR:-/tmp/ers-ha-rabbit}")
readonly HA_DIR
readonly HA_BASE_PORT="${HA_BASE_PORT:-5681}"
readonly START_TIMEOUT="${HA_START_TIMEOUT:-120}"
readonly CTL_TIMEOUT="${HA_CTL_TIMEOUT:-60}"
readonly MARKER="$HA_DIR/.ers-ha-rabbit"

log() { printf 'rabbit-cluster: %s\n' "$*" >&2; }
die() {
  printf 'rabbit-cluster: error: %s\n' "$*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
  exit 64
}

node_name() { printf 'ers-ha%s@localhost' "$1"; }
amqp_port() { printf '%s' $((HA_BASE_PORT + $1 - 1)); }
dist_port() { printf '%s' $((HA_BASE_PORT + $1 - 1 + 20000)); }
node_dir() { printf '%s/ers-ha%s' "$HA_DIR" "$1"; }
pid_file() { printf '%s/rabbitmq.pid' "$(node_dir "$1")"; }
log_file() { printf '%s/log/%s.log' "$(node_dir "$1")" "$(node_name "$1")"; }
url() { printf 'amqp://guest:guest@127.0.0.1:%s/%%2f' "$(amqp_port "$1")"; }

# One CLI call, bounded. Debian's wrapper runs it as user rabbitmq.
ctl() { timeout --kill-after=10 "$CTL_TIMEOUT" rabbitmqctl "$@"; }

# A CLI call whose output is shown only when it fails (join_cluster, for one, logs harmless
# "[error] Failed to create a tracked connection table" lines while the joining node is down).
ctl_step() {
  local out
  if ! out=$(ctl -q "$@" 2>&1); then
    printf '%s\n' "$out" >&2
    return 1
  fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The process listening on a port, for error messages.
port_owner() {
  if command -v ss >/dev/null 2>&1; then
    ss -ltnpH "sport = :$1" 2>/dev/null | grep -o 'users:.*' | head -n1 || true
  fi
}

check_setup() {
  [[ $HA_BASE_PORT =~ ^[0-9]+$ ]] || die "HA_BASE_PORT must be a number, not '$HA_BASE_PORT'"
  ((HA_BASE_PORT >= 1024 && HA_BASE_PORT + 2 + 20000 <= 65535)) ||
    die "HA_BASE_PORT=$HA_BASE_PORT: the ports (and +20000 for Erlang distribution) must lie in 1024..65535"
  local n p
  for n in "${NODES[@]}"; do
    for p in "$(amqp_port "$n")" "$(dist_port "$n")"; do
      [[ $p != 5672 && $p != 25672 ]] ||
        die "HA_BASE_PORT=$HA_BASE_PORT would put node $n on port $p, the main broker's (rabbit@localhost)"
    done
  done
  [[ $START_TIMEOUT =~ ^[0-9]+$ && $CTL_TIMEOUT =~ ^[0-9]+$ ]] ||
    die "HA_START_TIMEOUT and HA_CTL_TIMEOUT must be whole seconds"
  [[ -n $HA_DIR && $HA_DIR != / ]] || die "HA_DIR must not be /"
  if ! command -v rabbitmq-server >/dev/null 2>&1 || ! command -v rabbitmqctl >/dev/null 2>&1; then
    die "rabbitmq-server and rabbitmqctl are not on PATH (Debian's rabbitmq-server package puts them in /usr/sbin)"
  fi
  id -u rabbitmq >/dev/null 2>&1 || die "there is no user rabbitmq (Debian's rabbitmq-server package makes it)"
  [[ $(id -u) -eq 0 || $(id -un) == rabbitmq ]] ||
    die "run as root (or as user rabbitmq): Debian's RabbitMQ wrappers refuse anyone else"
}

# Echoes 'running' (the rabbit app runs), 'booting' (the VM answers, the app is not running)
# or 'down' (nothing answers under that name).
node_state() {
  local out
  if out=$(ctl -q -n "$(node_name "$1")" eval 'rabbit:is_running().' 2>/dev/null); then
    if [[ $out == true ]]; then echo running; else echo booting; fi
  else
    echo down
  fi
}

# True when node $1's cluster (as its own data says) includes node $2.
in_cluster_with() {
  local out
  out=$(ctl -q -n "$(node_name "$1")" eval \
    "lists:member('$(node_name "$2")', rabbit_mnesia:cluster_nodes(all)).") || return 1
  [[ $out == true ]]
}

# Writes node $1's configuration (again; it is derived from the environment only).
write_config() {
  local n=$1 d
  d=$(node_dir "$n")
  mkdir -p "$d/mnesia" "$d/log" "$d/conf.d"
  # The main broker's /etc/rabbitmq/rabbitmq-env.conf would apply otherwise; this keeps its
  # loopback-only Erlang distribution, and nothing else.
  cat >"$HA_DIR/rabbitmq-env.conf" <<'EOF'
# written by ers-bridge scripts/rabbit-cluster.sh: Erlang distribution on loopback only
ERL_EPMD_ADDRESS=127.0.0.1
export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"
EOF
  cat >"$d/rabbitmq.conf" <<EOF
# written by ers-bridge scripts/rabbit-cluster.sh for $(node_name "$n")
cluster_name = ers-ha
listeners.tcp.1 = 127.0.0.1:$(amqp_port "$n")
loopback_users.guest = true
log.file.level = info
log.console = false
EOF
  # No plugins at all: the management plugin's listener (15672) would clash across nodes.
  printf '[].\n' >"$d/enabled_plugins"
}

# Fails unless node $1's AMQP and distribution ports are free.
check_ports_free() {
  local n=$1 p
  for p in "$(amqp_port "$n")" "$(dist_port "$n")"; do
    if port_open "$p"; then
      die "cannot start $(node_name "$n"): 127.0.0.1:$p is already in use $(port_owner "$p") (set HA_BASE_PORT to move the cluster)"
    fi
  done
}

# Starts node $1's VM in the background (rabbitmq-server -detached).
launch() {
  local n=$1 name d
  name=$(node_name "$n")
  d=$(node_dir "$n")
  rm -f "$(pid_file "$n")"
  # RABBITMQ_* variables of the caller (the main broker's, say) must not reach the node.
  local v inherited=()
  for v in $(compgen -e); do
    if [[ $v == RABBITMQ_* ]]; then inherited+=(-u "$v"); fi
  done
  log "starting $name (amqp 127.0.0.1:$(amqp_port "$n"), dist $(dist_port "$n"), log $(log_file "$n"))"
  env "${inherited[@]}" \
    RABBITMQ_NODENAME="$name" \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="$(amqp_port "$n")" \
    RABBITMQ_DIST_PORT="$(dist_port "$n")" \
    RABBITMQ_MNESIA_BASE="$d/mnesia" \
    RABBITMQ_LOG_BASE="$d/log" \
    RABBITMQ_PID_FILE="$(pid_file "$n")" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" \
    RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" \
    RABBITMQ_CONFIG_FILES="$d/conf.d" \
    RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config" \
    RABBITMQ_CONF_ENV_FILE="$HA_DIR/rabbitmq-env.conf" \
    timeout 60 rabbitmq-server -detached >>"$d/log/startup.log" 2>&1 ||
    die "rabbitmq-server -detached failed for $name; see $d/log/startup.log"
}

# Waits, at most START_TIMEOUT seconds, until node $1's rabbit app runs.
await() {
  local n=$1 name deadline left pid
  name=$(node_name "$n")
  deadline=$((SECONDS + START_TIMEOUT))
  # await_startup fails at once while the VM is not registered yet, so first wait for that.
  until [[ $(node_state "$n") != down ]]; do
    pid=$(cat "$(pid_file "$n")" 2>/dev/null || true)
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
      die "$name exited while starting; see $(log_file "$n") and $(node_dir "$n")/log/startup.log"
    fi
    ((SECONDS < deadline)) ||
      die "$name did not come up within ${START_TIMEOUT}s; see $(log_file "$n")"
    sleep 1
  done
  left=$((deadline - SECONDS))
  ((left > 0)) || left=1
  if ! timeout --kill-after=10 $((left + 10)) rabbitmqctl -q -n "$name" await_startup --timeout "$left" >/dev/null; then
    die "$name did not finish booting within ${START_TIMEOUT}s (a clustered node waits for a peer that was running when it stopped); see $(log_file "$n")"
  fi
  log "$name is running"
}

# Starts the given nodes that are not running (all launched first, then awaited, so that
# clustered nodes that wait for each other can boot together).
start_nodes() {
  local n states=() started=()
  for n in "$@"; do
    states[n]=$(node_state "$n")
    # Every port is checked before any node starts, so a clash leaves nothing half-started.
    if [[ ${states[n]} == down ]]; then check_ports_free "$n"; fi
  done
  for n in "$@"; do
    case ${states[n]} in
    running) log "$(node_name "$n") is already running" ;;
    booting)
      # The VM is up but its app is stopped (e.g. a join cut short): start the app.
      log "$(node_name "$n") answers but its app is not running (still booting, or stopped): start_app"
      ctl -q -n "$(node_name "$n")" start_app >/dev/null 2>&1 &
      started+=("$n")
      ;;
    down)
      write_config "$n"
      chown -R rabbitmq:rabbitmq "$HA_DIR"
      launch "$n"
      started+=("$n")
      ;;
    esac
  done
  for n in "${started[@]}"; do await "$n"; done
  wait || true
}

prepare_dir() {
  if [[ -e $HA_DIR && ! -e $MARKER ]]; then
    if [[ -n $(ls -A "$HA_DIR" 2>/dev/null) ]]; then
      die "$HA_DIR exists and is not this script's (no $MARKER); set HA_DIR elsewhere or remove it"
    fi
  fi
  mkdir -p "$HA_DIR"
  touch "$MARKER"
  chown -R rabbitmq:rabbitmq "$HA_DIR"
  if [[ $(id -u) -eq 0 ]] && ! runuser -u rabbitmq -- test -w "$HA_DIR"; then
    die "user rabbitmq cannot write $HA_DIR (a parent folder shuts it out); choose another HA_DIR"
  fi
}

cmd_up() {
  local t0=$SECONDS n first
  prepare_dir
  start_nodes "${NODES[@]}"
  first=$(node_name 1)
  for n in 2 3; do
    if in_cluster_with "$n" 1; then
      log "$(node_name "$n") is already clustered with $first"
      continue
    fi
    log "joining $(node_name "$n") to $first"
    ctl_step -n "$(node_name "$n")" stop_app ||
      die "stop_app on $(node_name "$n") failed"
    ctl_step -n "$(node_name "$n")" join_cluster "$first" ||
      die "join_cluster $first on $(node_name "$n") failed; see $(log_file "$n")"
    ctl_step -n "$(node_name "$n")" start_app ||
      die "start_app on $(node_name "$n") failed; see $(log_file "$n")"
    await "$n"
  done
  # Each node must see all three as running members.
  for n in "${NODES[@]}"; do
    local out
    out=$(ctl -q -n "$(node_name "$n")" eval 'lists:sort(rabbit_nodes:all_running()).') ||
      die "cannot read the running members from $(node_name "$n")"
    [[ $out == "['ers-ha1@localhost','ers-ha2@localhost','ers-ha3@localhost']" ]] ||
      die "$(node_name "$n") sees running members $out, not the three"
  done
  log "cluster up in $((SECONDS - t0))s: ers-ha1, ers-ha2, ers-ha3 all running and clustered"
  cmd_urls
}

# Stops node $1 (no-op when it is not running) and waits for its OS process to exit.
stop_one() {
  local n=$1 name pidf
  name=$(node_name "$n")
  pidf=$(pid_file "$n")
  if [[ $(node_state "$n") == down ]]; then
    log "$name is not running"
    return 0
  fi
  log "stopping $name"
  if [[ -s $pidf ]]; then
    # With the pid file, stop also waits for the OS process to exit.
    ctl_step -n "$name" stop "$pidf" || die "stopping $name failed"
  else
    ctl_step -n "$name" stop || die "stopping $name failed"
  fi
  log "$name stopped"
}

# After a failed stop: kills what is left of node $1, but only a process whose environment
# names the node (so never the main broker).
kill_leftover() {
  local n=$1 pid
  pid=$(cat "$(pid_file "$n")" 2>/dev/null || true)
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "RABBITMQ_NODENAME=$(node_name "$n")"; then
    log "killing what is left of $(node_name "$n") (pid $pid)"
    kill -KILL "$pid" 2>/dev/null || true
  fi
}

cmd_down() {
  local n pids=() failed=()
  # The three stop together (the data goes anyway); a node whose stop fails is killed.
  for n in "${NODES[@]}"; do
    (stop_one "$n") &
    pids[n]=$!
  done
  for n in "${NODES[@]}"; do
    if ! wait "${pids[n]}"; then
      kill_leftover "$n"
      failed+=("$n")
    fi
  done
  for n in "${failed[@]}"; do
    sleep 2
    [[ $(node_state "$n") == down ]] ||
      die "$(node_name "$n") is still running; not deleting $HA_DIR (stop it by hand: rabbitmqctl -n $(node_name "$n") stop)"
  done
  if [[ -e $HA_DIR ]]; then
    [[ -e $MARKER ]] || die "$HA_DIR is not this script's (no $MARKER); not deleting it"
    rm -rf -- "$HA_DIR"
    log "deleted $HA_DIR"
  fi
  log "cluster down"
}

node_arg() {
  [[ ${1:-} =~ ^[123]$ ]] || die "expected a node number 1, 2 or 3, got '${1:-}'"
  printf '%s' "$1"
}

cmd_stop_node() {
  local n
  n=$(node_arg "${1:-}")
  stop_one "$n"
}

cmd_start_node() {
  local n
  n=$(node_arg "${1:-}")
  [[ -d $(node_dir "$n")/mnesia ]] || die "$(node_name "$n") has no data in $HA_DIR; run 'up' first"
  start_nodes "$n"
}

cmd_status() {
  local n any="" states=()
  for n in "${NODES[@]}"; do
    states[n]=$(node_state "$n")
    printf '%s (amqp 127.0.0.1:%s): %s\n' "$(node_name "$n")" "$(amqp_port "$n")" "${states[n]}"
    [[ ${states[n]} == running && -z $any ]] && any=$n
  done
  for n in "${NODES[@]}"; do
    [[ ${states[n]} == running ]] || continue
    printf '\n'
    ctl -n "$(node_name "$n")" cluster_status || log "cluster_status on $(node_name "$n") failed"
  done
  if [[ -z $any ]]; then
    log "no node is running"
    return 0
  fi
  printf '\nquorum queues as %s sees them (vhost, name, leader, members, online members, messages):\n' \
    "$(node_name "$any")"
  local vhost vhosts rows found=""
  vhosts=$(ctl -q -n "$(node_name "$any")" list_vhosts name --no-table-headers) ||
    die "list_vhosts on $(node_name "$any") failed"
  while IFS= read -r vhost; do
    [[ -n $vhost ]] || continue
    if ! rows=$(ctl -q -n "$(node_name "$any")" list_queues -p "$vhost" --no-table-headers \
      name type leader members online messages); then
      log "list_queues on vhost $vhost failed"
      continue
    fi
    rows=$(awk -v vh="$vhost" 'BEGIN { FS = OFS = "\t" } $2 == "quorum" { print vh, $1, $3, $4, $5, $6 }' <<<"$rows")
    if [[ -n $rows ]]; then
      printf '%s\n' "$rows"
      found=1
    fi
  done <<<"$vhosts"
  [[ -n $found ]] || printf '(none)\n'
}

cmd_urls() {
  local n
  [[ $HA_BASE_PORT =~ ^[0-9]+$ ]] || die "HA_BASE_PORT must be a number, not '$HA_BASE_PORT'"
  for n in "${NODES[@]}"; do
    url "$n"
    printf '\n'
  done
}

main() {
  local cmd=${1:-}
  [[ $# -gt 0 ]] && shift
  case $cmd in
  urls) cmd_urls ;;
  up | down | stop-node | start-node | status)
    check_setup
    case $cmd in
    up) cmd_up ;;
    down) cmd_down ;;
    stop-node) cmd_stop_node "$@" ;;
    start-node) cmd_start_node "$@" ;;
    status) cmd_status ;;
    esac
    ;;
  -h | --help | help) usage ;;
  *) usage ;;
  esac
}

main "$@"
