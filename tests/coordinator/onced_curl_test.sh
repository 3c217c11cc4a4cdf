#!/usr/bin/env bash
# The HTTP API from a shell: starts a real onced (the binary given as $1)
# on 127.0.0.1:0 with a temporary data directory and drives it with curl:
# topic and group lifecycle, publish -> fetch -> ack, error answers, and a
# clean SIGTERM. Every wait is bounded.
set -euo pipefail
ONCED=${1:?usage: onced_curl_test.sh PATH_TO_ONCED}
DIR=$(mktemp -d "${TMPDIR:-/tmp}/onced_curl.XXXXXX")
PID=""
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -KILL "$PID"; wait "$PID" || true; fi
  rm -rf "$DIR"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; echo "--- onced stderr:" >&2; cat "$DIR/err" >&2 || true; exit 1; }

"$ONCED" --data-dir "$DIR/data" --listen 127.0.0.1:0 >"$DIR/out" 2>"$DIR/err" &
PID=$!
PORT=""
for _ in $(seq 1 300); do
  # The background job may not have created $DIR/out yet.
  PORT=$(sed -n 's|^listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$DIR/out" 2>/dev/null || true)
  [ -n "$PORT" ] && break
  sleep 0.05
done
[ -n "$PORT" ] || fail "no 'listening on' line"
BASE="http://127.0.0.1:$PORT"
for _ in $(seq 1 300); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/readyz")" = 200 ] && break
  sleep 0.05
done

# check METHOD PATH EXPECTED_STATUS [BODY]: runs curl, prints the body to
# $DIR/body, fails unless the status matches.
check() {
  local method=$1 path=$2 want=$3 body=${4:-}
  local args=(-s -o "$DIR/body" -w '%{http_code}' -X "$method" --max-time 20)
  if [ -n "$body" ]; then args+=(-H 'Content-Type: application/json' --data-binary "$body"); fi
  local got
  got=$(curl "${args[@]}" "$BASE$path")
  [ "$got" = "$want" ] || fail "$method $path: want $want, got $got: $(cat "$DIR/body")"
}
# has TEXT: the last body contains TEXT (bodies are compact JSON).
has() { grep -qF -- "$1" "$DIR/body"; }
count() { grep -o -- "$1" "$DIR/body" | wc -l; }

check GET /healthz 200
check PUT /v1/topics/events 201 '{"partitions": 2}'
check PUT /v1/topics/events 200 '{"partitions": 2}'
check PUT /v1/topics/events 409 '{"partitions": 5}'
has '"code":"topic_exists"' || fail "409 code: $(cat "$DIR/body")"
check GET /v1/topics 200
check PUT /v1/topics/events/groups/audit 201 '{"mode": "shared"}'
check POST /v1/topics/events/messages 200 '{"messages": [{"key": "a", "value": "one"}, {"value_b64": "dHdv"}]}'
[ "$(count '"offset":')" = 2 ] || fail "two results: $(cat "$DIR/body")"
check POST /v1/topics/events/groups/audit/fetch 200 '{"consumer": "sh", "max": 10, "wait_ms": 1000}'
[ "$(count '"delivery_token":')" = 2 ] || fail "two messages: $(cat "$DIR/body")"
has '"value":"one"' || fail "text value: $(cat "$DIR/body")"
has '"value_b64":"dHdv"' || fail "bytes value: $(cat "$DIR/body")"
TOKENS="{\"tokens\": [$(grep -o '"delivery_token":"[^"]*"' "$DIR/body" | sed 's/"delivery_token"://' | paste -sd,)]}"
check POST /v1/topics/events/groups/audit/ack 200 "$TOKENS"
has '"applied":2' || fail "two applied: $(cat "$DIR/body")"
check POST /v1/topics/events/groups/audit/ack 409 "$TOKENS"
has '"code":"stale_tokens"' || fail "stale: $(cat "$DIR/body")"
check GET /v1/topics/events/groups/audit 200
has '"lag":0,' || fail "lag 0: $(cat "$DIR/body")"
check POST /v1/topics/events/groups/audit/reset 200 '{"to": "earliest"}'
check GET /v1/topics/nope 404
check DELETE /v1/topics 405
check POST /v1/topics/events/messages 400 '{"messages": "nope"}'
check GET /metrics 200
grep -q '^once_published_messages_total{topic="events"} 2$' "$DIR/body" || fail "metrics"
check DELETE /v1/topics/events/groups/audit 200
check DELETE /v1/topics/events 200

kill -TERM "$PID"
for _ in $(seq 1 300); do kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$PID" 2>/dev/null; then fail "still running 15 s after SIGTERM"; fi
wait "$PID" && CODE=0 || CODE=$?
PID=""
[ "$CODE" = 0 ] || fail "exit status $CODE after SIGTERM"
echo "onced_curl_test: all checks passed"
