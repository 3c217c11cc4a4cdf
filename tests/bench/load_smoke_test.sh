#!/usr/bin/env bash
# Smoke test of once-load (tests/bench/service_load.cc) against a real
# onced on an ephemeral 127.0.0.1 port with a temp data dir: a 1 s run per
# transport must print a result in which every published message was
# consumed and acked, with no error; bad flags must be refused (exit 2).
#   load_smoke_test.sh ONCED ONCE_LOAD
set -euo pipefail
onced=$1
load=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/once-load-smoke.XXXXXX")
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$onced" --data_dir "$work/data" --listen 127.0.0.1:0 --log_level warn \
  >"$work/onced.out" 2>"$work/onced.err" &
pid=$!
port=""
for _ in $(seq 300); do
  port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$work/onced.out" 2>/dev/null | sed 's/.*://' || true)
  [ -n "$port" ] && break
  kill -0 "$pid" 2>/dev/null || fail "onced exited: $(cat "$work/onced.err")"
  sleep 0.1
done
[ -n "$port" ] || fail "onced did not print its port within 30 s"
url="http://127.0.0.1:$port"

# field NAME LINE: the value of NAME=... in a result line.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

check_run() {
  local line
  line=$(timeout 120 "$load" --url="$url" --duration-s=1 --connections=2 --drain-timeout-s=30 "$@") \
    || fail "once-load $* exited with $?"
  echo "$line"
  [[ "$line" == once-load\ * ]] || fail "no result line from once-load $*"
  local published consumed errors
  published=$(field published "$line")
  consumed=$(field consumed "$line")
  errors=$(field errors "$line")
  [ -n "$published" ] && [ "$published" -gt 0 ] || fail "nothing published: $line"
  [ "$consumed" = "$published" ] || fail "consumed $consumed != published $published: $line"
  [ "$errors" = 0 ] || fail "errors: $line"
  [ -n "$(field p99_ms "$line")" ] || fail "no p99 latency: $line"
}

check_run --transport=ws --topic-backend=disk --fsync=always --batch=16
check_run --transport=http --topic-backend=memory --batch=16
check_run --transport=ws --topic-backend=disk --batch=1 --rate=200
check_run --transport=ws --topic-backend=memory --batch=8 --ws-batch=false
line=$(check_run --transport=ws --topic-backend=disk --fsync=always --batch=16 --backlog)
echo "$line"
[[ "$line" == *" backlog=true "* ]] || fail "a --backlog run does not say so: $line"

# The disk runs' group commits show in /metrics' fsync histogram.
metrics=$(curl -sf "$url/metrics") || fail "GET /metrics failed"
syncs=$(sed -n 's/^once_fsync_duration_seconds_count \([0-9]*\)$/\1/p' <<<"$metrics")
[ -n "$syncs" ] && [ "$syncs" -gt 0 ] || fail "once_fsync_duration_seconds_count missing or 0"
grep -q '^once_fsync_duration_seconds_bucket{le="+Inf"} '"$syncs"'$' <<<"$metrics" \
  || fail "fsync histogram's +Inf bucket differs from its count"

# --json gives the same counts as JSON.
json=$(timeout 120 "$load" --url="$url" --duration-s=1 --connections=1 --json --topic-backend=memory) \
  || fail "once-load --json exited with $?"
python3 -c 'import json,sys; r=json.loads(sys.argv[1]); assert r["published"]>0 and r["consumed"]==r["published"] and r["errors"]==0, r' "$json" \
  || fail "bad --json result: $json"

# Bad input is refused before any traffic, naming the flag.
for bad in "--connections=0" "--ws-batch=maybe" "--transport=http --backlog" "--transport=carrier-pigeon" "--url=http://localhost:1" "--rate=-1" \
           "--batch=abc" "--no-such-flag" "--url"; do
  set +e
  msg=$("$load" --url="$url" $bad 2>&1 >/dev/null)
  rc=$?
  set -e
  [ "$rc" = 2 ] || fail "once-load $bad: exit $rc, expected 2 ($msg)"
  [ -n "$msg" ] || fail "once-load $bad: no message"
done
set +e
msg=$("$load" --duration-s=1 2>&1 >/dev/null); rc=$?
set -e
[ "$rc" = 2 ] && [[ "$msg" == *--url* ]] || fail "missing --url: exit $rc ($msg)"

# A service that is not there: a clear error, exit 1.
set +e
msg=$("$load" --url=http://127.0.0.1:1 --duration-s=1 2>&1 >/dev/null); rc=$?
set -e
[ "$rc" = 1 ] && [[ "$msg" == *setup* ]] || fail "unreachable service: exit $rc ($msg)"
echo PASS
