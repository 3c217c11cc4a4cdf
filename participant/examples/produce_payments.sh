#!/bin/sh
# produce_payments.sh: publishes N payment messages {"id","account","amount"}
# to a topic of a running onced with curl, creating the topic and an
# exactly-once group first (both idempotent: 200 when they already exist).
#
#   produce_payments.sh [-u http://127.0.0.1:8080] [-t payments] [-g ledger]
#                       [-G exactly-once] [-n 100] [-a 3] [-s 1]
#
# Payments are numbered from -s (default 1) to -s + n - 1; payment i goes to
# account "acct-(i mod a)" with amount i; each message
# carries the idempotency key "payment-i", so re-running the script does not
# publish a payment twice (within the topic's dedup window). At the end the
# expected balance of every account is printed, to compare with the ledger:
#   sqlite3 ledger.db 'SELECT account, balance FROM accounts ORDER BY account'
set -eu

url=http://127.0.0.1:8080
topic=payments
group=ledger
guarantee=exactly-once
count=100
accounts=3
start=1
while getopts u:t:g:G:n:a:s: opt; do
  case $opt in
    u) url=$OPTARG ;;
    t) topic=$OPTARG ;;
    g) group=$OPTARG ;;
    G) guarantee=$OPTARG ;;
    n) count=$OPTARG ;;
    a) accounts=$OPTARG ;;
    s) start=$OPTARG ;;
    *) echo "usage: $0 [-u URL] [-t TOPIC] [-g GROUP] [-G GUARANTEE] [-n COUNT] [-a ACCOUNTS] [-s START]" >&2
       exit 2 ;;
  esac
done

fail() { echo "produce_payments: $*" >&2; exit 1; }

call() {  # method path body -> prints the HTTP status; the body goes to $tmp
  curl -sS -o "$tmp" -w '%{http_code}' -X "$1" -H 'Content-Type: application/json' \
    --data "$3" "$url$2"
}

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT

status=$(call PUT "/v1/topics/$topic" '{"partitions": 3, "backend": "disk"}') ||
  fail "cannot reach $url"
case $status in 200|201) ;; *) fail "create topic $topic: HTTP $status: $(cat "$tmp")" ;; esac
status=$(call PUT "/v1/topics/$topic/groups/$group" "{\"mode\": \"shared\", \"guarantee\": \"$guarantee\"}")
case $status in 200|201) ;; *) fail "create group $group: HTTP $status: $(cat "$tmp")" ;; esac

last=$((start + count - 1))
i=$start
while [ "$i" -le "$last" ]; do
  account="acct-$((i % accounts))"
  value="{\\\"id\\\": \\\"payment-$i\\\", \\\"account\\\": \\\"$account\\\", \\\"amount\\\": $i}"
  body="{\"messages\": [{\"key\": \"$account\", \"value\": \"$value\", \"idempotency_key\": \"payment-$i\"}]}"
  status=$(call POST "/v1/topics/$topic/messages" "$body")
  [ "$status" = 200 ] || fail "publish payment-$i: HTTP $status: $(cat "$tmp")"
  i=$((i + 1))
done
echo "published payments $start..$last to $topic"

a=0
while [ "$a" -lt "$accounts" ]; do
  sum=0
  i=$start
  while [ "$i" -le "$last" ]; do
    [ $((i % accounts)) -eq "$a" ] && sum=$((sum + i))
    i=$((i + 1))
  done
  echo "expected acct-$a $sum"
  a=$((a + 1))
done
