#!/usr/bin/env bash
# Start (or stop) private RabbitMQ, Redis and Docker Engine instances on loopback for
# the test-suite and local development. Idempotent: a service already answering is
# left alone. State lives under $CODEBUS_SERVICES_DIR (default: ./.services).
#
#   scripts/services.sh install   apt-get the Debian packages that are missing
#   scripts/services.sh start     start what is not running, wait until it answers
#   scripts/services.sh env       print the export lines tests read
#   scripts/services.sh stop      stop what this script started
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${CODEBUS_SERVICES_DIR:-$ROOT/.services}"
AMQP_PORT="${CODEBUS_TEST_AMQP_PORT:-5682}"
DIST_PORT="${CODEBUS_TEST_AMQP_DIST_PORT:-25682}"
REDIS_PORT="${CODEBUS_TEST_REDIS_PORT:-6390}"
NODE="codebus-test@localhost"
# The Erlang cookie lives outside the checkout so that rabbitmqctl from any checkout on
# this machine can talk to the node, whichever checkout started it.
RABBIT_HOME="${CODEBUS_RABBITMQ_HOME:-${XDG_STATE_HOME:-${HOME:-/root}/.local/state}/codebus-rabbitmq}"
DOCKER_SOCK="/var/run/docker.sock"

log() { printf '[services] %s\n' "$*" >&2; }

install() {
    local missing=()
    command -v redis-server >/dev/null || missing+=(redis-server)
    [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing+=(rabbitmq-server)
    command -v dockerd >/dev/null || missing+=(docker.io)
    [ -x /usr/bin/busybox ] || missing+=(busybox-static)
    command -v prometheus >/dev/null || missing+=(prometheus)
    command -v promtool >/dev/null || missing+=(prometheus)
    # The AsyncAPI parser (npm) validates the event catalogue in tests/ops.
    command -v node >/dev/null || missing+=(nodejs)
    command -v npm >/dev/null || missing+=(npm)
    # The shell tool's attack table runs the real git and make (tests/security/).
    command -v git >/dev/null || missing+=(git)
    command -v make >/dev/null || missing+=(make)
    command -v chromium >/dev/null || missing+=(chromium)  # console browser tests
    # The cluster chaos test partitions a private node with iptables (tests/chaos/).
    command -v iptables >/dev/null || missing+=(iptables)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
}

rabbit_env() {
    export HOME="$RABBIT_HOME"
    export RABBITMQ_NODENAME="$NODE"
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    export RABBITMQ_NODE_PORT="$AMQP_PORT"
    export RABBITMQ_DIST_PORT="$DIST_PORT"
    export RABBITMQ_MNESIA_BASE="$DIR/rabbitmq/mnesia"
    export RABBITMQ_LOG_BASE="$DIR/rabbitmq/log"
    export RABBITMQ_CONFIG_FILE="$DIR/rabbitmq/rabbitmq"
    export RABBITMQ_ADVANCED_CONFIG_FILE="$DIR/rabbitmq/advanced.config"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/rabbitmq/enabled_plugins"
    export RABBITMQ_PID_FILE="$DIR/rabbitmq/rabbit.pid"
    export ERL_EPMD_ADDRESS=127.0.0.1
    # Crash dumps stay with the node's state, never in the checkout.
    export ERL_CRASH_DUMP="$DIR/rabbitmq/erl_crash.dump"
}

rabbit_ping() { (rabbit_env; /usr/lib/rabbitmq/bin/rabbitmq-diagnostics -q -n "$NODE" ping >/dev/null 2>&1); }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_rabbitmq() {
    # A broker already listening (e.g. started from another checkout) is used as is.
    if port_open "$AMQP_PORT"; then return; fi
    mkdir -p "$DIR/rabbitmq/mnesia" "$DIR/rabbitmq/log" "$RABBIT_HOME"
    cat >"$DIR/rabbitmq/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$AMQP_PORT
loopback_users = none
vm_memory_high_watermark.relative = 0.4
disk_free_limit.absolute = 200MB
heartbeat = 10
log.console = false
log.file.level = warning
EOF
    # Expired retry copies are forwarded soon after a restart instead of parked for the
    # default 180 s (docs/reliability.md, "Retries across broker restarts").
    echo "[{rabbit, [{dead_letter_worker_publisher_confirm_timeout, 5000}]}]." \
        >"$DIR/rabbitmq/advanced.config"
    echo "[]." >"$DIR/rabbitmq/enabled_plugins"
    (rabbit_env; cd "$DIR/rabbitmq"; setsid nohup /usr/lib/rabbitmq/bin/rabbitmq-server \
        >"$DIR/rabbitmq/stdout.log" 2>&1 &)
    for _ in $(seq 1 120); do
        if rabbit_ping && port_open "$AMQP_PORT"; then
            log "rabbitmq up on 127.0.0.1:$AMQP_PORT"; return
        fi
        sleep 1
    done
    log "rabbitmq did not start; see $DIR/rabbitmq"; tail -30 "$DIR/rabbitmq/stdout.log" >&2
    exit 1
}

start_redis() {
    if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then return; fi
    mkdir -p "$DIR/redis"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$DIR/redis" --daemonize yes --pidfile "$DIR/redis/redis.pid" \
        --logfile "$DIR/redis/redis.log" >/dev/null
    for _ in $(seq 1 50); do
        if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
            log "redis up on 127.0.0.1:$REDIS_PORT"; return
        fi
        sleep 0.2
    done
    log "redis did not start"; exit 1
}

start_docker() {
    if docker -H "unix://$DOCKER_SOCK" info >/dev/null 2>&1; then return; fi
    mkdir -p "$DIR/docker"
    setsid nohup dockerd --host "unix://$DOCKER_SOCK" --data-root "$DIR/docker/data" \
        --pidfile "$DIR/docker/dockerd.pid" >"$DIR/docker/dockerd.log" 2>&1 &
    for _ in $(seq 1 60); do
        if docker -H "unix://$DOCKER_SOCK" info >/dev/null 2>&1; then
            log "dockerd up on $DOCKER_SOCK"; return
        fi
        sleep 1
    done
    log "dockerd did not start; see $DIR/docker/dockerd.log"; tail -20 "$DIR/docker/dockerd.log" >&2
    exit 1
}

env_lines() {
    echo "export CODEBUS_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:$AMQP_PORT/"
    echo "export CODEBUS_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
    echo "export CODEBUS_TEST_DOCKER_HOST=unix://$DOCKER_SOCK"
    echo "export CODEBUS_TEST_RABBITMQ_NODE=$NODE"
}

stop() {
    (rabbit_env; /usr/lib/rabbitmq/bin/rabbitmqctl -q -n "$NODE" stop >/dev/null 2>&1) || true
    redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    if [ -f "$DIR/docker/dockerd.pid" ]; then kill "$(cat "$DIR/docker/dockerd.pid")" 2>/dev/null || true; fi
}

case "${1:-start}" in
    install) install ;;
    start) start_redis; start_rabbitmq; start_docker ;;
    env) env_lines ;;
    stop) stop ;;
    rabbitmqctl) shift; (rabbit_env; /usr/lib/rabbitmq/bin/rabbitmqctl -n "$NODE" "$@") ;;
    *) echo "usage: $0 install|start|env|stop|rabbitmqctl ARGS" >&2; exit 2 ;;
esac
