#!/usr/bin/env bash
# One entry point for people and CI: it sets up what the bridge and its tests need, then
# runs one job. `.ci/run` uses it too, so the quick start and CI cannot drift apart.
#
#   scripts/dev.sh demo [ARGS]   the main job: `ers-bridge demo` against the simulator
#   scripts/dev.sh test [ARGS]   the test suite: `cargo test --locked [ARGS]`
#   scripts/dev.sh setup         only the set-up (below), e.g. before `cargo test` by hand
#
# Set-up, each step skipped when already done: RabbitMQ on 127.0.0.1:5672 (installed from
# Debian's packages and started when missing), PostgreSQL on 127.0.0.1:5432 (started when
# installed), and the hl7apy venv in .venv-hl7apy (the strict outside HL7 validator the
# conformance tests run; HL7APY_PYTHON points at it).
set -euo pipefail
cd "$(dirname "$0")/.."

HL7APY_VERSION=1.3.5

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

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  local sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "$@"
}

ensure_rabbitmq() {
  if port_open 5672; then
    echo "rabbitmq already listening on 5672"
  else
    if ! command -v rabbitmq-server >/dev/null 2>&1; then
      log "installing rabbitmq-server"
      apt_install rabbitmq-server
    fi
    log "starting rabbitmq"
    rabbitmq-server -detached
    wait_port rabbitmq 5672 120
  fi
  if command -v rabbitmq-diagnostics >/dev/null 2>&1; then
    timeout 120 rabbitmq-diagnostics -q check_running >/dev/null || {
      echo "error: rabbitmq is listening but not running" >&2
      return 1
    }
  fi
}

ensure_postgres() {
  if port_open 5432; then
    echo "postgresql already listening on 5432"
    return 0
  fi
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    log "starting postgresql"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    wait_port postgresql 5432 60 || echo "warning: postgresql is not running; tests that need it will say so"
  else
    echo "warning: postgresql is not installed; tests that need it will say so"
  fi
}

ensure_hl7apy() {
  local py=.venv-hl7apy/bin/python
  if [[ -x $py ]] && "$py" -c 'import hl7apy' 2>/dev/null; then
    echo "hl7apy ready in .venv-hl7apy"
  else
    log "installing hl7apy $HL7APY_VERSION into .venv-hl7apy"
    if ! python3 -m venv .venv-hl7apy 2>/dev/null; then
      apt_install python3-venv
      python3 -m venv .venv-hl7apy
    fi
    .venv-hl7apy/bin/pip install -q --disable-pip-version-check "hl7apy==$HL7APY_VERSION"
  fi
  HL7APY_PYTHON="$PWD/$py"
  export HL7APY_PYTHON
}

setup() {
  log "services and tools"
  ensure_rabbitmq
  ensure_postgres
  ensure_hl7apy
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
