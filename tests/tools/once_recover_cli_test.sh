#!/usr/bin/env bash
# once-recover end to end: list / show / verify / resolve on data
# directories made by once_recover_fixture (real TxnStore + broker APIs),
# the refusal beside a running onced (exit 3), and malformed invocations,
# each a non-zero exit with a message (never a crash). Every wait is bounded.
# Usage: once_recover_cli_test.sh ONCE_RECOVER ONCE_RECOVER_FIXTURE ONCED
set -uo pipefail
bin=${1:?usage: once_recover_cli_test.sh ONCE_RECOVER FIXTURE ONCED}
fixture=${2:?fixture binary}
onced=${3:?onced binary}
unset ONCE_DATA_DIR
dir=$(mktemp -d "${TMPDIR:-/tmp}/once-recover-test.XXXXXX")
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; wait "$pid" 2>/dev/null; fi
  rm -rf "$dir"
}
trap cleanup EXIT
failures=0
passes=0

# expect EXIT_CODE PATTERN ARGS...: runs once-recover, checks the exit code
# and that stdout+stderr match the extended regex PATTERN.
expect() {
  local want=$1 pattern=$2
  shift 2
  local out rc
  out=$(timeout 60 "$bin" "$@" 2>&1)
  rc=$?
  if [ "$rc" -ne "$want" ] || ! grep -Eq -- "$pattern" <<<"$out"; then
    echo "FAIL: once-recover $* -> exit $rc (want $want), output:"
    echo "$out" | sed 's/^/    /'
    failures=$((failures + 1))
  else
    passes=$((passes + 1))
  fi
}
# expect_json EXIT_CODE PYTHON_EXPR ARGS...: stdout must be exactly one JSON
# document `d` for which PYTHON_EXPR is true.
expect_json() {
  local want=$1 check=$2
  shift 2
  local out rc
  out=$(timeout 60 "$bin" "$@" 2>/dev/null)
  rc=$?
  if [ "$rc" -ne "$want" ] ||
    ! python3 -c "import json,sys; d=json.loads(sys.stdin.read()); sys.exit(0 if ($check) else 1)" <<<"$out"; then
    echo "FAIL: once-recover $* -> exit $rc (want $want), JSON check '$check' on:"
    echo "$out" | sed 's/^/    /'
    failures=$((failures + 1))
  else
    passes=$((passes + 1))
  fi
}

good="$dir/good"
"$fixture" "$good" good >/dev/null || { echo "FAIL: fixture good"; exit 1; }

# ---- happy paths
expect 0 "2 unfinished transactions, oldest 5m1[0-9]s" --data-dir "$good" list
expect 0 "^1\.1 +5m1[0-9]s +p1 +orders/billing +2 +1  pending" --data-dir "$good" list
expect_json 0 "d['unfinished'] == 2 and [t['txn'] for t in d['transactions']] == ['1.1', '1.2'] and d['exit_code'] == 0" \
  --data-dir "$good" list --json
expect 0 "partition 0 offset 1" --data-dir "$good" show 1.1
expect 0 "note by test: made by once_recover_fixture" --data-dir "$good" show 1.1
expect_json 0 "d['found'] and d['record']['message_count'] == 2 and d['record']['attempts'] == 1 and len(d['audit']) == 1" \
  --data-dir "$good" show 1.1 --json
expect 4 "no record of txn 1.3" --data-dir "$good" show 1.3   # done, then removed
expect 0 "3 transactions checked|2 transactions checked" --data-dir "$good" verify
expect 0 "all invariants hold" --data-dir "$good" verify
expect_json 0 "d['ok'] and d['failures'] == []" --data-dir "$good" verify --json
expect 0 "2 unfinished transactions re-driven" --data-dir "$good" resolve
expect 0 "batch deleted \(acked\) in the group" --data-dir "$good" show 1.1
expect 0 "resolve by once-recover: offline re-drive" --data-dir "$good" show 1.2
expect 0 "all invariants hold" --data-dir "$good" verify   # broker_deleted=1 is now checked
expect 0 "2 unfinished transactions re-driven" --data-dir "$good" resolve   # idempotent
expect 4 "after the commit point the outcome can only be commit" \
  --data-dir "$good" resolve --abort 1.1 --reason "operator wants it gone"
expect 0 "no COMMIT record: it is aborted .*audit log" \
  --data-dir "$good" resolve --abort 9.9 --reason "stuck participant"
expect 4 "force_abort by once-recover: stuck participant" --data-dir "$good" show 9.9
expect 4 "refused: txn 9.9 has no COMMIT record" \
  --data-dir "$good" resolve --commit 9.9 --reason "wrong id"
expect_json 0 "d['result'] == 'committed'" \
  --data-dir "$good" resolve --commit 1.2 --reason "participant p2 decommissioned" --json
expect 0 "^1 unfinished transaction, oldest" --data-dir "$good" list
expect 4 "force_commit by once-recover: participant p2 decommissioned" --data-dir "$good" show 1.2
expect 0 "Exit codes:" --help

# ---- invariants that do not hold: exit 1, each failure printed
bad="$dir/bad"
"$fixture" "$bad" bad >/dev/null || { echo "FAIL: fixture bad"; exit 1; }
expect 1 "FAIL: txn 1.4: message orders/0/99 is not in the log" --data-dir "$bad" verify
expect 1 "FAIL: message orders/0/1 of group billing is in two unfinished txns: 1.1 and 1.4" \
  --data-dir "$bad" verify
expect 1 "FAIL: txn 1.5: its topic vanished does not exist" --data-dir "$bad" verify
expect 1 "FAIL: txn 1.6: epoch 7 is above the store's current epoch 1" --data-dir "$bad" verify
expect 1 "FAIL: txn 1.7: marked deleted in the broker, but message orders/1/4 is not done" \
  --data-dir "$bad" verify
expect 1 "5 failures: INVARIANTS VIOLATED" --data-dir "$bad" verify
expect_json 1 "not d['ok'] and len(d['failures']) == 5" --data-dir "$bad" verify --json

# ---- a long scan: progress lines on stderr, the answer on stdout
many="$dir/many"
"$fixture" "$many" many >/dev/null || { echo "FAIL: fixture many"; exit 1; }
expect 0 "verify: 2000/2502 transactions checked" --data-dir "$many" verify
expect 0 "2502 transactions checked, 0 trimmed message\(s\), 0 failures" --data-dir "$many" verify
expect_json 0 "d['ok'] and d['checked'] == 2502" --data-dir "$many" verify --json
expect 0 "2502 unfinished transactions re-driven" --data-dir "$many" resolve
expect 0 "all invariants hold" --data-dir "$many" verify

# ---- a running onced holds the lock: exit 3, and the store is untouched
live="$dir/live"
"$onced" --data-dir "$live" --listen 127.0.0.1:0 >"$dir/onced.out" 2>"$dir/onced.err" &
pid=$!
for _ in $(seq 1 300); do
  grep -q "^listening on" "$dir/onced.out" 2>/dev/null && break
  sleep 0.05
done
if grep -q "^listening on" "$dir/onced.out"; then
  expect 3 "locked by a running onced" --data-dir "$live" list
  expect 3 "locked by a running onced" --data-dir "$live" resolve
  expect_json 3 "d['error']['exit_code'] == 3" --data-dir "$live" verify --json
  kill -TERM "$pid"
  for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  wait "$pid" 2>/dev/null
  pid=""
  expect 0 "unfinished transactions" --data-dir "$live" list   # the lock is free again
else
  echo "FAIL: onced did not start: $(cat "$dir/onced.err")"
  failures=$((failures + 1))
fi

# ---- malformed invocations: a message and a non-zero exit each
expect 2 "no command" --data-dir "$good"
expect 2 "unknown command 'frobnicate'" --data-dir "$good" frobnicate
expect 2 "--data-dir DIR is required" list
expect 2 "'show' takes a TXN" --data-dir "$good" show
expect 2 "unexpected 'extra'" --data-dir "$good" list extra
expect 2 "unknown flag --bogus" --data-dir "$good" list --bogus
expect 2 "flag --data-dir needs a value" list --data-dir
expect 2 "flag --abort needs a non-empty value" --data-dir "$good" resolve --abort= --reason r
expect 2 "flag --commit needs a non-empty value" --data-dir "$good" resolve --commit "" --reason r
expect 2 "takes no value .*'maybe'" --data-dir "$good" list --json=maybe
expect 2 "resolve --abort needs --reason" --data-dir "$good" resolve --abort 1.1
expect 2 "resolve --commit needs --reason" --data-dir "$good" resolve --commit 1.1
expect 2 "not both" --data-dir "$good" resolve --commit 1.1 --abort 1.2 --reason r
expect 2 "belong to 'resolve'" --data-dir "$good" list --reason why
expect 2 "data directory $dir/nope does not exist" --data-dir "$dir/nope" list
touch "$dir/plainfile"
expect 2 "is not a directory" --data-dir "$dir/plainfile" list
mkdir -p "$dir/corrupt"
for _ in $(seq 1 200); do printf 'this is not a database '; done >"$dir/corrupt/coordinator.db"
expect 2 "DATA_LOSS: .*coordinator.db" --data-dir "$dir/corrupt" list
expect 2 "DATA_LOSS: .*coordinator.db" --data-dir "$dir/corrupt" verify
"$fixture" "$dir/future" future >/dev/null || { echo "FAIL: fixture future"; exit 1; }
expect 2 "schema version [0-9]+ is newer than this once-recover knows" --data-dir "$dir/future" list
expect 1 "FAIL: .*schema version [0-9]+ is newer" --data-dir "$dir/future" verify
expect_json 2 "d['error']['code'] == 'INVALID_ARGUMENT'" --data-dir "$good" show --json
[ -d "$dir/nope" ] && { echo "FAIL: once-recover created a missing data directory"; failures=$((failures + 1)); }

echo "once-recover cli: $passes passed, $failures failed"
[ "$failures" -eq 0 ]
