#!/usr/bin/env bash
# One entry point for people and CI: it sets up what the bridge and its tests need, then
# runs one job. `.ci/run` uses it too, so the quick start and CI cannot drift apart.
#
#   scripts/dev.sh demo [ARGS]   the main job: `ers-bridge demo` against the simulator
#   scripts/dev.sh test [ARGS]   the test suite: `cargo test --locked [ARGS]`
#   scripts/dev.sh setup         only the set-up (below), e.g. before `cargo test` by hand
#
# Set-up, each step skipped when already done: RabbitMQ on 127.0.0.1:5672 and PostgreSQL
# on 127.0.0.1:5432, each started when installed, else installed from Debian's packages
# (as root or with password-less sudo; a PostgreSQL installed here trusts user postgres
# from 127.0.0.1, as the tests expect), else started with `docker compose` when the
# machine has it, else the script names what is missing and exits 69; then the hl7apy
# venv in .venv-hl7apy (the strict outside HL7 validator the conformance tests run, and
# python-hl7's MLLP client the MLLP listener test runs; HL7APY_PYTHON points at it), Chromium (the dashboard test renders the page headless) and promtool (it checks deploy/).
set -euo pipefail
cd "$(dirname "$0")/.."

HL7APY_VERSION=1.3.5
# python-hl7, whose MLLP client is the outside oracle of the MLLP listener test.
PYTHON_HL7_VERSION=0.4.5

log() { printf '\n==> %s\n' "$*"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # name port seconds
  local i
  for ((i = 0; i < $3; i++)); do
    if port_open "$2"; then return 0; fi
    sleep 1
  done
  echo "error: $1 did not start listening on 127.0.0.1:$2 within $3s" >&2
  return 1
}

can_apt() { # apt-get present, and we are root or have password-less sudo
  command -v apt-get >/dev/null 2>&1 || return 1
  [[ $(id -u) -eq 0 ]] || sudo -n true 2>/dev/null
}

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  local sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "$@"
}

have_compose() { command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; }

# Starts one docker-compose.yml service and waits for its port.
compose_up() { # service port
  log "starting $1 with docker compose"
  docker compose up -d "$1"
  wait_port "$1" "$2" 120
}

missing() { # what, how to get it
  echo "error: $1 is not running on 127.0.0.1 and this script cannot start it here: $2" >&2
  exit 69
}

ensure_rabbitmq() {
  if port_open 5672; then
    echo "rabbitmq already listening on 5672"
  elif command -v rabbitmq-server >/dev/null 2>&1; then
    log "starting rabbitmq"
    rabbitmq-server -detached
    wait_port rabbitmq 5672 120
  elif can_apt; then
    log "installing rabbitmq-server"
    apt_install rabbitmq-server
    port_open 5672 || rabbitmq-server -detached
    wait_port rabbitmq 5672 120
  elif have_compose; then
    compose_up rabbitmq 5672
  else
    missing "RabbitMQ (127.0.0.1:5672, guest/guest)" \
      "install rabbitmq-server (e.g. \`sudo apt-get install rabbitmq-server\`) or Docker with compose, then run this again"
  fi
  if command -v rabbitmq-diagnostics >/dev/null 2>&1; then
    timeout 120 rabbitmq-diagnostics -q check_running >/dev/null || {
      echo "error: rabbitmq is listening but not running" >&2
      return 1
    }
  fi
}

# A cluster this script installed itself lets user postgres in from 127.0.0.1 without a
# password, as the tests expect; an existing installation's authentication is never
# changed.
trust_local_postgres() {
  local hba
  hba=$(ls /etc/postgresql/*/main/pg_hba.conf | head -n1)
  sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main reload
}

start_postgres_cluster() {
  log "starting postgresql"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  wait_port postgresql 5432 60
}

ensure_postgres() {
  if port_open 5432; then
    echo "postgresql already listening on 5432"
  elif command -v pg_ctlcluster >/dev/null 2>&1 && ls /etc/postgresql/*/main >/dev/null 2>&1; then
    start_postgres_cluster
  elif can_apt; then
    log "installing postgresql"
    apt_install postgresql
    start_postgres_cluster
    trust_local_postgres
  elif have_compose; then
    compose_up postgres 5432
  else
    missing "PostgreSQL (127.0.0.1:5432, trust auth for user postgres)" \
      "install postgresql (e.g. \`sudo apt-get install postgresql\`) or Docker with compose, then run this again"
  fi
}

ensure_hl7apy() {
  local py=.venv-hl7apy/bin/python
  if [[ -x $py ]] && "$py" -c 'import hl7apy, hl7.client' 2>/dev/null; then
    echo "hl7apy and python-hl7 ready in .venv-hl7apy"
  else
    log "installing hl7apy $HL7APY_VERSION and python-hl7 $PYTHON_HL7_VERSION into .venv-hl7apy"
    if ! python3 -m venv .venv-hl7apy 2>/dev/null; then
      apt_install python3-venv
      python3 -m venv .venv-hl7apy
    fi
    .venv-hl7apy/bin/pip install -q --disable-pip-version-check "hl7apy==$HL7APY_VERSION" \
      "hl7==$PYTHON_HL7_VERSION"
  fi
  HL7APY_PYTHON="$PWD/$py"
  export HL7APY_PYTHON
}

# Headless Chromium renders the dashboard in its test.
ensure_chromium() {
  if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    echo "chromium ready"
  elif can_apt; then
    log "installing chromium (the dashboard test renders the page headless)"
    apt_install chromium
  else
    missing "Chromium (for the dashboard test)" \
      "install it (e.g. \`sudo apt-get install chromium\`), then run this again"
  fi
}

# promtool checks deploy/'s Prometheus configuration, alert rules and dashboard queries.
ensure_promtool() {
  if command -v promtool >/dev/null 2>&1; then
    echo "promtool ready"
  elif can_apt; then
    log "installing promtool (Debian's prometheus package; its server is not needed)"
    apt_install --no-install-recommends prometheus
  else
    missing "promtool (for the monitoring files' tests)" \
      "install it (e.g. \`sudo apt-get install prometheus\`), then run this again"
  fi
}

setup() {
  log "services and tools"
  ensure_rabbitmq
  ensure_postgres
  ensure_hl7apy
  ensure_chromium
  ensure_promtool
}

job=${1:-}
shift || true
case "$job" in
  setup) setup ;;
  demo)
    setup
    log "the demo (ers-bridge demo $*)"
    cargo run --locked -- demo "$@"
    ;;
  test)
    setup
    log "tests (cargo test --locked $*)"
    cargo test --locked "$@"
    ;;
  *)
    echo "usage: scripts/dev.sh setup | demo [ARGS] | test [ARGS]" >&2
    exit 64
    ;;
esac
