#!/usr/bin/env python3
"""The driver of scripts/bench-e2e (read its header): runs onced, publishes,
runs tests/bench/eo_bench_consumer.cc per scenario, prints the table.

Environment (all optional): EO_BUILD, EO_OUT (set by scripts/bench-e2e),
REPS=3, N=100000, MAX_S=30, RATE=2000, STEADY_S=10 (0: no steady run), PARTITIONS=1,
TXN_BATCH_MAX=1000, TXN_LINGER_MS (unset: onced's default), WINDOW=16, STEADY_WINDOW=2, REF_S=5 (0: no once-load reference
run), ONCED_FLAGS="...", MODES, COUNTS, METRICS=1, READ_AHEAD=1, MAX_GROUP_FRAMES.
Every wait is bounded; a failed scenario is reported, not hidden.
"""
import http.client
import json
import os
import re
import shlex
import signal
import sqlite3
import statistics
import subprocess
import sys
import time

BUILD = os.environ.get("EO_BUILD", "build-bench")
OUT = os.environ["EO_OUT"]
REPS = int(os.environ.get("REPS", "3"))
N = int(os.environ.get("N", "100000"))
MAX_S = float(os.environ.get("MAX_S", "30"))
RATE = int(os.environ.get("RATE", "2000"))
STEADY_S = float(os.environ.get("STEADY_S", "10"))
PARTITIONS = int(os.environ.get("PARTITIONS", "1"))
WINDOW = int(os.environ.get("WINDOW", "16"))
# Fewer transactions in flight at a steady rate make bigger batches and a
# shorter queue at the participant (see the README section).
STEADY_WINDOW = int(os.environ.get("STEADY_WINDOW", "2"))
# READ_AHEAD=1: the backlog consumers read and decode the next frames on a
# thread of their own (ParticipantOptions::read_ahead: more messages a
# second through a backlog; at the steady rate it costs latency, so the
# steady consumer never uses it).
READ_AHEAD = os.environ.get("READ_AHEAD", "1") == "1"
# MAX_GROUP_FRAMES=N: the consumers' --max_group_frames (unset: the SDK's
# default, 8; 0: a group per burst, however long).
MAX_GROUP_FRAMES = os.environ.get("MAX_GROUP_FRAMES", "")
# onced's default is 100; 1000 amortises the per-transaction fsyncs better.
TXN_BATCH_MAX = os.environ.get("TXN_BATCH_MAX", "1000")
TXN_LINGER_MS = os.environ.get("TXN_LINGER_MS", "")
REF_S = float(os.environ.get("REF_S", "5"))
# METRICS=1: onced's transaction and fsync histograms after each steady run.
METRICS = os.environ.get("METRICS", "") == "1"
ONCED_FLAGS = shlex.split(os.environ.get("ONCED_FLAGS", ""))
# "at-least-once/no-store": the at-least-once consumer applying nothing
# (--store=none): Once's own at-least-once delivery rate.
MODES = os.environ.get("MODES",
                       "at-least-once/no-store at-least-once idempotent exactly-once").split()
BASE = "at-least-once/no-store"
LABELS = {"at-least-once/no-store": "at-least-once, ack only (no store)",
          "at-least-once": "at-least-once, durable INSERT",
          "idempotent": "idempotent, durable INSERT + id",
          "exactly-once": "exactly-once, 2PC, durable INSERT"}
COUNTS = [int(c) for c in os.environ.get("COUNTS", "1 3").split()]
MSG_BYTES = 256
TOPIC = "eo-bench"
TOPIC_CONFIG = {"partitions": PARTITIONS, "backend": "disk", "fsync": "always"}

ONCED = os.path.join(BUILD, "coordinator/onced")
LOAD = os.path.join(BUILD, "tests/bench/once-load")
CONSUMER = os.path.join(BUILD, "tests/bench/eo-bench-consumer")


def log(msg):
    print(f"[bench-e2e {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Api:
    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def ready(self):
        self.conn.request("GET", "/readyz")
        r = self.conn.getresponse()
        r.read()
        return r.status == 200

    def call(self, method, path, body=None, ok=(200, 201)):
        data = None if body is None else json.dumps(body)
        self.conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        r = self.conn.getresponse()
        text = r.read().decode()
        if r.status not in ok:
            raise RuntimeError(f"{method} {path}: {r.status} {text[:300]}")
        return json.loads(text) if text else {}


def cpu_seconds(pid):
    """User + system CPU time of a process, from /proc."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_onced():
    flags = ["--data_dir", os.path.join(OUT, "data"), "--listen", "127.0.0.1:0",
             "--log_level", "warn", "--txn_sync", "full"]
    if TXN_BATCH_MAX:
        flags += ["--txn_batch_max", TXN_BATCH_MAX]
    if TXN_LINGER_MS:
        flags += ["--txn_linger_ms", TXN_LINGER_MS]
    flags += ONCED_FLAGS
    out = open(os.path.join(OUT, "onced.out"), "w")
    err = open(os.path.join(OUT, "onced.err"), "w")
    proc = subprocess.Popen([ONCED] + flags, stdout=out, stderr=err)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("onced exited: " + open(err.name).read()[-2000:])
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", open(out.name).read())
        if m:
            return proc, int(m.group(1)), "onced " + " ".join(flags)
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("onced did not report its port within 30 s")


def stop(proc, timeout=15):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def publish_backlog(api, n):
    """n messages in requests of 1000; payload: 16 hex digits of
    CLOCK_MONOTONIC ns (once-load's format), padded to MSG_BYTES."""
    sent = 0
    t0 = time.monotonic()
    while sent < n:
        k = min(1000, n - sent)
        stamp = f"{time.monotonic_ns():016x}"
        value = stamp + "x" * (MSG_BYTES - len(stamp))
        r = api.call("POST", f"/v1/topics/{TOPIC}/messages",
                     {"messages": [{"value": value}] * k}, ok=(200,))
        if len(r["results"]) != k:
            raise RuntimeError(f"publish answered {len(r['results'])} results for {k}")
        sent += k
    log(f"published {n} messages in {time.monotonic() - t0:.1f} s")


def count_rows(dbs):
    total = 0
    for db in dbs:
        if not os.path.exists(db):
            continue
        try:
            c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
            total += c.execute("SELECT count(*) FROM eo_bench").fetchone()[0]
            c.close()
        except sqlite3.OperationalError:
            pass  # the consumer has not created its table yet
    return total


def distinct_rows(dbs):
    ids = set()
    rows = 0
    for db in dbs:
        c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        for (mid,) in c.execute("SELECT message_id FROM eo_bench"):
            ids.add(mid)
            rows += 1
        c.close()
    return rows, len(ids)


def consumer_cmd(port, topic, group, mode, cid, db, expect=0, window=WINDOW, read_ahead=False):
    guarantee, _, variant = mode.partition("/")
    return [CONSUMER, f"--url=ws://127.0.0.1:{port}/v1/ws", f"--topic={topic}",
            f"--group={group}", f"--id={cid}", f"--db={db}", f"--mode={guarantee}",
            f"--store={'none' if variant == 'no-store' else 'sqlite'}",
            f"--window={window}", f"--expect={expect}", f"--timeout_s={MAX_S + 60}"] + (
                ["--read_ahead"] if read_ahead else []) + (
                [f"--max_group_frames={MAX_GROUP_FRAMES}"] if MAX_GROUP_FRAMES else [])


def group_acked(api, topic, group):
    return api.call("GET", f"/v1/topics/{topic}/groups/{group}", ok=(200,)).get("acked", 0)


def finish_consumers(procs):
    results = []
    for p in procs:
        stop(p)
        line = p.stdout.read().strip().splitlines()
        err = p.stderr.read().strip()
        if not line:
            raise RuntimeError(f"consumer printed no result (exit {p.returncode}): {err[-500:]}")
        results.append(json.loads(line[-1]))
    return results


def create_group(api, topic, group, guarantee):
    # Leases outlive every run (no redelivery from a lease timeout); the
    # prefetch never limits the window.
    api.call("PUT", f"/v1/topics/{topic}/groups/{group}",
             {"mode": "shared", "guarantee": guarantee, "ack_timeout_ms": 600000,
              "prefetch": 100000, "max_deliveries": 100})


def run_backlog(api, port, mode, count, rep, onced_pid):
    group = f"{mode.replace('/', '-')}-{count}c-r{rep}"
    stored = not mode.endswith("/no-store")
    create_group(api, TOPIC, group, mode.partition("/")[0])
    dbs = [os.path.join(OUT, f"{group}-c{i}.db") for i in range(count)]
    onced_cpu = cpu_seconds(onced_pid)
    procs = [subprocess.Popen(consumer_cmd(port, TOPIC, group, mode, f"{group}-c{i}", dbs[i],
                                           read_ahead=READ_AHEAD),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(count)]
    deadline = time.monotonic() + MAX_S
    while time.monotonic() < deadline and \
            (count_rows(dbs) if stored else group_acked(api, TOPIC, group)) < N:
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.1)
    onced_cpu = cpu_seconds(onced_pid) - onced_cpu
    results = finish_consumers(procs)
    rows, distinct = distinct_rows(dbs)
    applied = sum(r["applied"] for r in results)
    start = min(r["start_ns"] for r in results)
    last = max(r["last_commit_ns"] for r in results)
    secs = (last - start) / 1e9 if last > start else float("nan")
    problems = []
    if not stored:
        distinct = applied  # nothing stored: the consumers' count
    elif mode != "at-least-once" and rows != distinct:
        problems.append(f"{rows - distinct} duplicate effects")
    if stored and rows != applied:
        problems.append(f"{rows} rows but {applied} counted")
    for r in results:
        if r["session_failures"] or r["votes_no"] or r["nacks"]:
            problems.append(f"{r['id']}: failures {r['session_failures']} no {r['votes_no']} "
                            f"nacks {r['nacks']} {r['last_error']}")
    commits = sum(r["commits"] for r in results)
    return {"mode": mode, "consumers": count, "applied": applied, "distinct": distinct,
            "seconds": secs, "msg_s": applied / secs if secs == secs else 0.0,
            "complete": distinct >= N, "problems": problems,
            "batch": applied / commits if commits else 0.0, "onced_cpu": onced_cpu,
            "consumer_cpu": sum(r["cpu_s"] for r in results)}


def run_steady(api, port, rep):
    topic = f"eo-steady-r{rep}"
    api.call("PUT", f"/v1/topics/{topic}", TOPIC_CONFIG)
    group = f"steady-eo-r{rep}"
    create_group(api, topic, group, "exactly-once")
    db = os.path.join(OUT, f"{group}.db")
    ready = os.path.join(OUT, f"{group}.ready")
    consumer = subprocess.Popen(consumer_cmd(port, topic, group, "exactly-once", group, db,
                                             window=STEADY_WINDOW) + [f"--ready_file={ready}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Publishing starts once the consumer's session is open: the figures are
    # of the steady state, not of messages that waited for a consumer to
    # start (at 2,000 msg/s, each 10 ms of start-up is 0.1% of the run).
    deadline = time.monotonic() + 30
    while not os.path.exists(ready) and consumer.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    if not os.path.exists(ready):
        log("steady consumer: no session open after 30 s (or it exited); publishing anyway")
    load_cmd = [LOAD, f"--url=http://127.0.0.1:{port}", f"--topic={topic}", "--keep-topic",
                "--transport=ws", "--topic-backend=disk", "--fsync=always",
                f"--partitions={PARTITIONS}", "--batch=1", f"--rate={RATE}",
                "--connections=2", f"--duration-s={STEADY_S}", "--json"]
    load = subprocess.run(load_cmd, capture_output=True, text=True, timeout=STEADY_S + 120)
    if load.returncode != 0:
        log(f"once-load: {load.stderr.strip()[-500:]}")
    lines = load.stdout.strip().splitlines()
    alo = json.loads(lines[-1]) if lines else {}
    published = alo.get("published", 0)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and count_rows([db]) < published:
        time.sleep(0.1)
    (eo,) = finish_consumers([consumer])
    if METRICS:
        api.conn.request("GET", "/metrics")
        text = api.conn.getresponse().read().decode()
        log("onced /metrics after the steady run:\n" + "\n".join(
            l for l in text.splitlines() if l.startswith(("once_txn", "once_fsync"))))
    api.call("DELETE", f"/v1/topics/{topic}", ok=(200, 204))
    return {"published": published, "eo_applied": eo["applied"], "eo_p50": eo["p50_ms"],
            "eo_p99": eo["p99_ms"], "eo_p999": eo["p999_ms"], "alo_p50": alo.get("p50_ms", 0),
            "alo_p99": alo.get("p99_ms", 0), "alo_consumed": alo.get("consumed", 0),
            "phases": eo.get("phases_ms", {}),
            "command": " ".join(shlex.quote(a) for a in load_cmd[1:] if not a.startswith("--url"))}


def run_reference(port, rep):
    """once-load flat out (publishing and consuming at once, acks in batches
    of 128), as scripts/bench-service runs it: the at-least-once rate of the
    broker without the SDK's one-ack-per-message."""
    cmd = [LOAD, f"--url=http://127.0.0.1:{port}", f"--topic=eo-ref-r{rep}", "--transport=ws",
           "--topic-backend=disk", "--fsync=always", f"--partitions={PARTITIONS}", "--batch=64",
           "--connections=4", f"--duration-s={REF_S}", "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=REF_S + 120)
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines:
        log(f"once-load reference: exit {r.returncode}: {r.stderr.strip()[-300:]}")
    res = json.loads(lines[-1]) if lines else {}
    res["command"] = " ".join(a for a in cmd[1:] if not a.startswith(("--url", "--topic=")))
    return res


def med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def main():
    onced, port, onced_cmd = start_onced()
    try:
        api = Api(port)
        deadline = time.monotonic() + 30
        while not api.ready():
            if time.monotonic() > deadline:
                raise RuntimeError("onced is not ready after 30 s")
            time.sleep(0.1)
        api.call("PUT", f"/v1/topics/{TOPIC}", TOPIC_CONFIG)
        publish_backlog(api, N)
        backlog = {}
        for rep in range(1, REPS + 1):
            for count in COUNTS:
                for mode in MODES:
                    r = run_backlog(api, port, mode, count, rep, onced.pid)
                    log(f"{mode} x{count} ({rep}/{REPS}): {r['applied']} in {r['seconds']:.2f} s"
                        f" = {r['msg_s']:,.0f} msg/s, batch {r['batch']:.0f}, cpu s onced "
                        f"{r['onced_cpu']:.2f} consumers {r['consumer_cpu']:.2f} {r['problems']}")
                    backlog.setdefault((mode, count), []).append(r)
        reference = []
        for rep in range(1, REPS + 1 if REF_S > 0 else 1):
            ref = run_reference(port, rep)
            log(f"once-load reference ({rep}/{REPS}): consume+ack "
                f"{ref.get('consume_msg_s', 0):,.0f} msg/s")
            reference.append(ref)
        steady = []
        for rep in range(1, REPS + 1 if STEADY_S > 0 else 1):
            s = run_steady(api, port, rep)
            log(f"steady ({rep}/{REPS}): exactly-once p50 {s['eo_p50']:.2f} p99 {s['eo_p99']:.2f}"
                f" ms; at-least-once p50 {s['alo_p50']:.2f} p99 {s['alo_p99']:.2f} ms")
            steady.append(s)
    finally:
        stop(onced, 30)
    print_table(backlog, steady, reference, onced_cmd)


# eo-bench-consumer's phases_ms (read its header), in the order they happen.
PHASES = [("publish_to_prepare", "publish -> PREPARE handled"),
          ("prepare", "journal the PREPARE (in the group, no fsync)"),
          ("prepared_to_commit", "-> COMMIT handled (group fsync, vote, COMMIT record, COMMIT)"),
          ("commit", "apply, until durable (group fsync)")]


def print_phases(steady):
    rows = [(key, label) for key, label in PHASES if all(key in s["phases"] for s in steady)]
    if not rows:
        return
    print()
    print("Where the exactly-once latency goes, as the consumer sees it (medians over the runs; "
          "the first per message, the others per transaction):")
    print()
    print("| phase | p50 ms | p99 ms |")
    print("|---|---:|---:|")
    for key, label in rows:
        print(f"| {label} | {med(s['phases'][key]['p50'] for s in steady):.2f} | "
              f"{med(s['phases'][key]['p99'] for s in steady):.2f} |")


def print_table(backlog, steady, reference, onced_cmd):
    print()
    print(f"Backlog of {N:,} x {MSG_BYTES} B messages on one disk topic (fsync=always, "
          f"{PARTITIONS} partition(s)); each row a fresh group on that topic, "
          f"medians of {REPS} run(s):")
    print()
    print("| consumer (guarantee, effect) | consumers | msg/s applied | ÷ at-least-once ack only "
          "| ÷ at-least-once durable | msgs/commit | runs |")
    print("|---|---:|---:|---:|---:|---:|---|")

    def ratio(rate, base):
        return f"{rate / base:.2f}" if base == base and base > 0 else "-"

    for count in COUNTS:
        base = med(r["msg_s"] for r in backlog.get((BASE, count), []))
        durable = med(r["msg_s"] for r in backlog.get(("at-least-once", count), []))
        for mode in MODES:
            runs = backlog[(mode, count)]
            rate = med(r["msg_s"] for r in runs)
            batch = f"{med(r['batch'] for r in runs):.0f}" if mode == "exactly-once" else "1"
            notes = [p for r in runs for p in r["problems"]]
            incomplete = sum(1 for r in runs if not r["complete"])
            flag = "" if not notes and not incomplete else \
                f" ({incomplete} stopped at MAX_S={MAX_S:g} s{'; ' if notes else ''}{'; '.join(notes)[:200]})"
            print(f"| {LABELS.get(mode, mode)} | {count} | {rate:,.0f} | {ratio(rate, base)} | "
                  f"{ratio(rate, durable)} | {batch} | {len(runs)}{flag} |")
    if reference:
        rate = med(r.get("consume_msg_s", float("nan")) for r in reference)
        print()
        print(f"Reference, same onced: once-load flat out on a fresh topic of the same settings "
              f"(publishing while consuming, acks in batches of 128): consume+ack "
              f"{rate:,.0f} msg/s (median of {len(reference)}); exactly-once with "
              + ", ".join(f"{c} consumer(s) is "
                          f"{ratio(med(r['msg_s'] for r in backlog[('exactly-once', c)]), rate)}x"
                          for c in COUNTS if ("exactly-once", c) in backlog)
              + " of it.")
    if steady:
        print()
        print(f"Steady {RATE} msg/s for {STEADY_S:g} s (once-load, 1 message per publish) on a "
              "fresh topic of the same settings; latency publish -> effect committed:")
        print()
        print("| consumer | p50 ms | p99 ms | p99.9 ms | messages |")
        print("|---|---:|---:|---:|---:|")
        print(f"| exactly-once, eo-bench-consumer (SQLite journal FULL) | "
              f"{med(s['eo_p50'] for s in steady):.2f} | {med(s['eo_p99'] for s in steady):.2f} | "
              f"{med(s['eo_p999'] for s in steady):.2f} | "
              f"{med(s['eo_applied'] for s in steady):,.0f} |")
        print(f"| at-least-once, once-load's own group (ack, no store) | "
              f"{med(s['alo_p50'] for s in steady):.2f} | {med(s['alo_p99'] for s in steady):.2f} | - | "
              f"{med(s['alo_consumed'] for s in steady):,.0f} |")
        print_phases(steady)
    print()
    print(f"- service: `{onced_cmd}` (data dir on the repository's file system)")
    print(f"- consumers: `eo-bench-consumer --mode=MODE [--store=none] --window={WINDOW}"
          f"{' --read_ahead' if READ_AHEAD else ''}` "
          "(one INSERT per message, SQLite synchronous=FULL; --store=none applies nothing)")
    print("- msg/s = messages whose effect is committed in the consumers' stores / (last commit "
          "- consumers' start); a fresh group per row reads the same backlog")
    if reference:
        print(f"- reference: `once-load {reference[0]['command']}`")
    if steady:
        print(f"- steady consumer: `eo-bench-consumer --mode=exactly-once --window={STEADY_WINDOW}`")
        print(f"- steady publisher: `once-load {steady[0]['command']}`")
    print(f"- driver: `REPS={REPS} N={N} MAX_S={MAX_S:g} RATE={RATE} WINDOW={WINDOW} "
          f"STEADY_WINDOW={STEADY_WINDOW} TXN_BATCH_MAX={TXN_BATCH_MAX or 'default'} "
          f"TXN_LINGER_MS={TXN_LINGER_MS or 'default'} "
          f"scripts/bench-e2e`")


if __name__ == "__main__":
    main()
