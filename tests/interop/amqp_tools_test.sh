#!/usr/bin/env bash
# Interop with amqp-tools (Debian's rabbitmq-c command-line tools): amqp-declare-queue,
# amqp-publish (one connection per message, line mode, a large body from stdin), amqp-consume
# -c N, amqp-get and amqp-delete-queue, checking every body byte for byte.
# Starts its own warrend ($WARREND, free port, temp data dir) unless WARREN_TEST_HOST and
# WARREN_TEST_PORT name a broker to use. Exit 0 pass, 1 fail, 77 skip.
set -u

N=${N:-100}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/warren-tools-XXXXXX")
PID=
DATA=

fail() { echo "FAIL: $*" >&2; cleanup; exit 1; }
skip() { echo "SKIP: $*"; rm -rf "$WORK"; exit 77; }

cleanup() {
  if [ -n "$PID" ]; then
    kill -TERM "$PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PID" 2>/dev/null
    wait "$PID" 2>/dev/null
    PID=
  fi
  [ -n "$DATA" ] && rm -rf "$DATA"
  rm -rf "$WORK"
}
trap 'cleanup' INT TERM

for tool in amqp-publish amqp-consume amqp-get amqp-declare-queue amqp-delete-queue; do
  command -v "$tool" >/dev/null || skip "$tool not found (apt-get install amqp-tools)"
done

free_port() {
  /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

listening() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }

if [ -n "${WARREN_TEST_HOST:-}" ] && [ -n "${WARREN_TEST_PORT:-}" ]; then
  HOST=$WARREN_TEST_HOST PORT=$WARREN_TEST_PORT
  echo "using external broker $HOST:$PORT"
else
  [ -n "${WARREND:-}" ] && [ -x "${WARREND}" ] || skip "WARREND is not set and WARREN_TEST_HOST/PORT are not set"
  HOST=127.0.0.1
  DATA=$(mktemp -d "${TMPDIR:-/tmp}/warren-tools-data-XXXXXX")
  for attempt in 1 2 3; do
    PORT=$(free_port)
    "$WARREND" --port "$PORT" --bind 127.0.0.1 --data-dir "$DATA" --log-level warn &
    PID=$!
    for _ in $(seq 500); do
      listening && break
      kill -0 "$PID" 2>/dev/null || break
      sleep 0.02
    done
    listening && break
    kill -KILL "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; PID=
  done
  [ -n "$PID" ] || fail "warrend did not start listening"
  echo "started $WARREND on 127.0.0.1:$PORT (pid $PID)"
fi

S=(-s "$HOST" --port "$PORT" --username guest --password guest)
Q="tools-interop-$$"
T="timeout 30"

# Consume n messages from $Q; each body is appended to $1 followed by a 0x1e separator.
consume() {
  local out=$1 n=$2
  : > "$out"
  OUT=$out $T amqp-consume "${S[@]}" -q "$Q" -c "$n" -- sh -c 'cat >> "$OUT"; printf "\036" >> "$OUT"' \
    || fail "amqp-consume -c $n exited with $?"
}

# 1. declare
got=$($T amqp-declare-queue "${S[@]}" -q "$Q") || fail "amqp-declare-queue exited with $?"
[ "$got" = "$Q" ] || fail "amqp-declare-queue printed '$got', want '$Q'"

# 2. N publishes, one connection each, then amqp-consume -c N
: > "$WORK/want"
for i in $(seq "$N"); do
  body="message $i of $N"
  $T amqp-publish "${S[@]}" -r "$Q" -C text/plain -p -b "$body" || fail "amqp-publish $i exited with $?"
  printf '%s\036' "$body" >> "$WORK/want"
done
consume "$WORK/got" "$N"
cmp -s "$WORK/want" "$WORK/got" || { diff <(tr '\036' '\n' < "$WORK/want") <(tr '\036' '\n' < "$WORK/got") | head >&2; fail "consumed bodies differ"; }
echo "published $N messages with amqp-publish, consumed them in order with amqp-consume -c $N"

# 3. line mode: one connection, one message per line (the newline is part of the body)
printf 'alpha\nbeta\n\ngamma delta\n' | $T amqp-publish "${S[@]}" -r "$Q" -l || fail "amqp-publish -l exited with $?"
consume "$WORK/got" 4
printf 'alpha\n\036beta\n\036\n\036gamma delta\n\036' > "$WORK/want"
cmp -s "$WORK/want" "$WORK/got" || { od -c "$WORK/got" | head >&2; fail "line-mode bodies differ"; }
echo "amqp-publish -l: 4 lines, 4 messages"

# 4. a 300 KB binary body from stdin (multi-frame), back through amqp-consume
head -c 300000 /dev/urandom > "$WORK/big"
$T amqp-publish "${S[@]}" -r "$Q" < "$WORK/big" || fail "amqp-publish < big exited with $?"
consume "$WORK/got" 1
{ cat "$WORK/big"; printf '\036'; } > "$WORK/want"
cmp -s "$WORK/want" "$WORK/got" || fail "300 KB body differs"
echo "300000-octet body from stdin intact"

# 5. amqp-get: one message, then an empty queue (amqp-get exits 2 on get-empty)
$T amqp-publish "${S[@]}" -r "$Q" -b "single" || fail "amqp-publish exited with $?"
got=$($T amqp-get "${S[@]}" -q "$Q") || fail "amqp-get exited with $?"
[ "$got" = "single" ] || fail "amqp-get printed '$got'"
got=$($T amqp-get "${S[@]}" -q "$Q" 2>/dev/null); rc=$?
[ "$rc" -ne 0 ] || fail "amqp-get on an empty queue exited 0 (printed '$got')"
[ -z "$got" ] || fail "amqp-get on an empty queue printed '$got'"
echo "amqp-get: message, then get-empty"

# 6. delete: nothing left in the queue
got=$($T amqp-delete-queue "${S[@]}" -q "$Q") || fail "amqp-delete-queue exited with $?"
[ "$got" = "0" ] || fail "amqp-delete-queue reported $got messages left"

if [ -n "$PID" ]; then
  kill -0 "$PID" 2>/dev/null || fail "warrend died during the test"
  kill -TERM "$PID"
  for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$PID" 2>/dev/null && fail "warrend ignored SIGTERM for 5 s"
  wait "$PID"; rc=$?
  PID=
  [ "$rc" -eq 0 ] || [ "$rc" -eq 143 ] || fail "warrend exited with $rc on SIGTERM"
fi
cleanup
echo PASS
