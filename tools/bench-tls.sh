#!/usr/bin/env bash
# tools/bench-tls.sh — the cost of TLS (docs/benchmarks.md): bench.sh's first four scenarios
# against warrend and against RabbitMQ, each over plain AMQP and over AMQPS, on the same
# certificates (an EC P-256 CA and server certificate made here with the openssl CLI). Owns
# the temporary directory with the certificates, the warrend it starts and the RabbitMQ node it
# starts (its own node name, ports and data under that directory; not ../shared's reference
# node), and stops both at the end.
#
# Usage: tools/bench-tls.sh [SECONDS]   (per scenario, default 10)
#   WARREND, WARREN_PERF   binaries (default build/broker/warrend, build/tools/warren-perf)
#   NO_RABBITMQ=1          warrend only
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
WARREND=${WARREND:-build/broker/warrend}
export WARREN_PERF=${WARREN_PERF:-build/tools/warren-perf}
W_TCP=5995 W_TLS=5996 R_TCP=5997 R_TLS=5998
DIR=$(mktemp -d /tmp/warren-bench-tls-XXXXXX)
RMQ=/usr/lib/rabbitmq/bin
export HOME=$DIR RABBITMQ_NODENAME=warrentls@localhost RABBITMQ_CTL_ERL_ARGS="-dist_listen false"
export ERL_CRASH_DUMP=$DIR/erl_crash.dump # not in the work tree
pid="" rmq=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null
    [ -n "$rmq" ] && "$RMQ/rabbitmqctl" -n "$RABBITMQ_NODENAME" stop >/dev/null 2>&1
    [ -n "$rmq" ] && pkill -f -- "-home $DIR" # a node that never finished booting
    wait 2>/dev/null
    rm -rf "$DIR"
}
trap cleanup EXIT

ec() { echo "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"; }
# shellcheck disable=SC2046
openssl req -x509 $(ec) -keyout "$DIR/ca.key" -out "$DIR/ca.pem" -days 2 -subj "/CN=bench CA" 2>/dev/null
# shellcheck disable=SC2046
openssl req $(ec) -keyout "$DIR/server.key" -out "$DIR/server.csr" -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$DIR/san.ext"
openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" -CAcreateserial \
    -out "$DIR/server.pem" -days 2 -extfile "$DIR/san.ext" 2>/dev/null
chmod 644 "$DIR"/*.key

tls_keys="ssl_options.cacertfile = $DIR/ca.pem
ssl_options.certfile = $DIR/server.pem
ssl_options.keyfile = $DIR/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false"

wait_port() {
    for _ in $(seq 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.2
    done
    echo "bench-tls.sh: nothing listens on port $1" >&2
    exit 1
}

cat > "$DIR/warren.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$W_TCP
listeners.ssl.default = 127.0.0.1:$W_TLS
management.tcp.port = none
prometheus.tcp.port = none
log.console.level = warning
data_dir = $DIR/warren-data
$tls_keys
CONF
"$WARREND" --config "$DIR/warren.conf" 2>>"$DIR/warrend.log" &
pid=$!
wait_port $W_TLS

if [ -z "${NO_RABBITMQ:-}" ] && [ -x "$RMQ/rabbitmq-server" ]; then
    mkdir -p "$DIR/rmq/mnesia" "$DIR/rmq/log"
    cat > "$DIR/rmq/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$R_TCP
listeners.ssl.default = 127.0.0.1:$R_TLS
loopback_users.guest = true
disk_free_limit.absolute = 50MB
log.console = false
$tls_keys
CONF
    echo '[].' > "$DIR/rmq/enabled_plugins"
    : > "$DIR/rmq/rabbitmq-env.conf"
    head -c 15 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DIR/.erlang.cookie"
    chmod 400 "$DIR/.erlang.cookie"
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$R_TCP RABBITMQ_DIST_PORT=25999 \
    RABBITMQ_MNESIA_BASE=$DIR/rmq/mnesia RABBITMQ_LOG_BASE=$DIR/rmq/log \
    RABBITMQ_PID_FILE=$DIR/rmq/rabbit.pid RABBITMQ_CONFIG_FILE=$DIR/rmq/rabbitmq.conf \
    RABBITMQ_ENABLED_PLUGINS_FILE=$DIR/rmq/enabled_plugins \
    RABBITMQ_CONF_ENV_FILE=$DIR/rmq/rabbitmq-env.conf \
        "$RMQ/rabbitmq-server" -detached
    rmq=1
    for _ in $(seq 90); do # await_startup fails at once while the node is not up at all
        "$RMQ/rabbitmqctl" -n "$RABBITMQ_NODENAME" await_startup --timeout 5 >/dev/null 2>&1 && break
        sleep 1
    done
    wait_port $R_TLS
fi

run() { # label port amqps|"" broker-pid
    local args=""
    [ "$3" = amqps ] && args="--uri amqps://guest:guest@localhost --cacert $DIR/ca.pem"
    BENCH_FIRST=4 BENCH_SECONDS=$SECS BENCH_PID=$4 BENCH_ARGS="$args" \
        tools/bench.sh localhost "$2" "$1" | sed -n "s/^| \([0-9]\)/| $1 | \1/p"
}
echo "### TLS cost, $SECS s per scenario, $(date -u +%Y-%m-%d), $(nproc) cores"
echo
echo "| broker | scenario | sent/s | recv/s | p50 ms | p99 ms | broker peak RSS MiB |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
run "warrend, AMQP" $W_TCP "" $pid
run "warrend, AMQPS" $W_TLS amqps $pid
if [ -n "$rmq" ]; then
    rpid=$(cat "$DIR/rmq/rabbit.pid")
    v=$("$RMQ/rabbitmqctl" -n "$RABBITMQ_NODENAME" version 2>/dev/null)
    run "RabbitMQ $v, AMQP" $R_TCP "" "$rpid"
    run "RabbitMQ $v, AMQPS" $R_TLS amqps "$rpid"
fi
