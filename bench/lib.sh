# Helpers the newer load scripts share (`source "$ROOT/bench/lib.sh"`): free ports, waiting
# for HTTP, a queue's depth, and a bridge configuration against a simulator.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits (up to a minute) until URL answers 2xx.
wait_http() { for _ in $(seq 1 600); do curl -fs "$1" >/dev/null && return 0; sleep 0.1; done; return 1; }

# A queue's messages (ready and unacknowledged), or -1 when it does not exist yet.
queue_depth() {
    rabbitmqctl -q list_queues name messages 2>/dev/null | awk -v q="$1" '$1 == q {print $2; f=1} END {if (!f) print -1}'
}

# bridge_toml SIM STORE NAME RATE INTERVAL: configuration against simulator SIM (auth none),
# SQLite file STORE, queues and exchanges NAME-*, e-RS rate RATE; the generated referrals'
# services polled every INTERVAL seconds (no [[poll]] when empty). Also reads AMQP_URL,
# ROOT, CONCURRENCY (32), MONITOR_LISTEN (127.0.0.1:0) and AMQP_EXTRA (more [amqp] lines).
bridge_toml() {
    cat <<TOML
[ers]
base_url = "$1/referrals/FHIR"
rate_limit_per_sec = $4
[ers.auth]
mode = "none"
[amqp]
url = "$AMQP_URL"
exchange = "$3-to-pas"
pas_queue = "$3-pas"
pas_ack_queue = "$3-acks"
inbound_queue = "$3-in"
dead_letter_exchange = "$3-dlx"
dead_letter_queue = "$3-dlq"
${AMQP_EXTRA:-}
[store]
url = "sqlite://$2"
[monitor]
listen = "${MONITOR_LISTEN:-127.0.0.1:0}"
[mappings]
dir = "$ROOT/mappings"
[pipeline]
concurrency = ${CONCURRENCY:-32}
TOML
    [[ -n $5 ]] || return 0
    for service in 21012 21013 21014 21015 11016 11010 11014; do
        printf '[[poll]]\nservice = "%s"\nlists = ["referrals-for-review", "appointment-slot-issues"]\ninterval_secs = %s\n' "$service" "$5"
    done
}

# Deletes the queues bridge_toml names NAME-*.
delete_bench_queues() { for q in pas acks in dlq; do rabbitmqctl delete_queue "$1-$q" >/dev/null 2>&1 || true; done; }
