#!/usr/bin/env bash
# once-log end to end: the happy path, a restart, and every malformed input
# answered with a message and a non-zero exit (never a crash).
# Usage: once_log_cli_test.sh PATH/TO/once-log
set -uo pipefail
bin=$1
dir=$(mktemp -d "${TMPDIR:-/tmp}/once-log-test.XXXXXX")
trap 'rm -rf "$dir"' EXIT
failures=0
passes=0

# expect EXIT_CODE PATTERN ARGS...: runs once-log, checks the exit code and
# that stdout+stderr match the extended regex PATTERN.
expect() {
  local want=$1 pattern=$2
  shift 2
  local out rc
  out=$("$bin" --data-dir "$dir/data" "$@" 2>&1)
  rc=$?
  if [ "$rc" -ne "$want" ] || ! grep -Eq -- "$pattern" <<<"$out"; then
    echo "FAIL: once-log $* -> exit $rc (want $want), output:"
    echo "$out" | sed 's/^/    /'
    failures=$((failures + 1))
  else
    passes=$((passes + 1))
  fi
}

expect 0 "created topic orders" create orders --partitions 4
expect 0 "existing topic orders" create orders --partitions 4
expect 2 "FAILED_PRECONDITION" create orders --partitions 2
expect 0 "partition [0-3] offset 0" append orders hello --key k1
expect 0 "partition [0-3] offset 1" append orders again --key k1
expect 0 "^orders$" list
expect 0 "4 partitions, backend disk" describe orders
expect 0 "created topic scratch" create scratch --backend memory --fsync never
expect 0 "partition 0 offset 0" append scratch v1
expect 0 "deleted topic scratch" delete scratch

# Malformed input: each is a clear message and a non-zero exit.
expect 2 "no command"
expect 2 "unknown command 'frobnicate'" frobnicate
expect 1 "Unknown command line flag 'bogus'" list --bogus
expect 1 "Illegal value|invalid value|not a valid" create t --partitions notanumber
expect 2 "takes a TOPIC" create
expect 2 "takes exactly one TOPIC" create a b
expect 2 "INVALID_ARGUMENT: .*topic name" create "a/b"
expect 2 "INVALID_ARGUMENT: .*topic name" create ..
expect 2 "INVALID_ARGUMENT: .*partitions" create zero --partitions 0
expect 2 "INVALID_ARGUMENT: .*partitions" create many --partitions 1025
expect 2 "INVALID_ARGUMENT: .*backend" create b --backend tape
expect 2 "INVALID_ARGUMENT: .*fsync" create f --fsync sometimes
expect 2 "NOT_FOUND" append nosuch v
expect 2 "NOT_FOUND" read nosuch
expect 2 "NOT_FOUND" delete nosuch
expect 2 "at least one VALUE" append orders
expect 2 "OUT_OF_RANGE" read orders --offset 99
expect 2 "INVALID_ARGUMENT: .*partition 9" read orders --partition 9
expect 2 "max must be positive" read orders --max 0

# The data directory is not a directory: a clear error, no crash.
touch "$dir/file"
out=$("$bin" --data-dir "$dir/file" list 2>&1)
rc=$?
if [ "$rc" -eq 2 ] && grep -q "once-log:" <<<"$out"; then passes=$((passes + 1)); else
  echo "FAIL: data dir is a file -> exit $rc: $out"
  failures=$((failures + 1))
fi

echo "once-log cli: $passes passed, $failures failed"
[ "$failures" -eq 0 ]
