#!/usr/bin/env python3
"""Exactly-once end to end, under SIGKILL.

Starts a real onced (disk topic, fsync=always) on 127.0.0.1 with a temporary
data directory, publishes N payment messages with unique ids, runs three
ledger_consumer processes (the participant SDK) against it, and while they
consume, SIGKILLs a random consumer again and again and onced now and then,
restarting each. At the end it checks, across the consumers' SQLite ledgers:
every payment applied exactly once, the sum of balances equal to the sum of
payments, and the group's backlog empty.

  exactly_once_e2e.py --onced PATH --consumer PATH [--mode exactly-once|idempotent]
                      [--messages 20000] [--consumer-kills 20] [--onced-kills 5]
                      [--seed N] [--budget-s 300] [--read-ahead off|on|mixed]

--read-ahead (default mixed): which consumers run with
ParticipantOptions::read_ahead (the SDK's network thread of its own):
none, all, or the odd-numbered ones, so that a default run kills both.

Exit status 0 when every check holds; 1 with the failed checks otherwise.
Every wait is bounded by --budget-s.
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

CONSUMERS = 3
ACCOUNTS = 50


class Budget:
    def __init__(self, seconds):
        self.deadline = time.monotonic() + seconds

    def left(self):
        return self.deadline - time.monotonic()

    def check(self, what):
        if self.left() <= 0:
            raise TimeoutError(f"time budget spent while {what}")


def log(msg):
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Onced:
    """One onced on a fixed data dir; restarts keep the port."""

    def __init__(self, path, data_dir, workdir):
        self.path, self.data_dir, self.workdir = path, data_dir, workdir
        self.port = 0
        self.proc = None
        self.starts = 0

    def start(self, budget):
        self.starts += 1
        out = open(os.path.join(self.workdir, f"onced.{self.starts}.out"), "w")
        err = open(os.path.join(self.workdir, f"onced.{self.starts}.err"), "w")
        self.proc = subprocess.Popen(
            [self.path, "--data-dir", self.data_dir, "--listen", f"127.0.0.1:{self.port}",
             "--log-level", "warn"], stdout=out, stderr=err)
        out_path = out.name
        while True:
            budget.check("waiting for onced to listen")
            if self.proc.poll() is not None:
                # The old port may still be taken for a moment after a kill.
                time.sleep(0.2)
                return self.start(budget) if self.starts < 50 else self._died()
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", open(out_path).read())
            if m:
                self.port = int(m.group(1))
                break
            time.sleep(0.02)
        while True:
            budget.check("waiting for /readyz")
            try:
                if http("GET", self.url("/readyz"))[0] == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                self._died()
            time.sleep(0.05)

    def _died(self):
        raise RuntimeError(f"onced exited with {self.proc.returncode}; see {self.workdir}")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
                return -9
        return self.proc.returncode if self.proc else 0

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"


def http(method, url, body=None, timeout=30):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def uses_read_ahead(setting, index):
    """Whether consumer `index` runs with --read_ahead under --read-ahead=setting."""
    return setting == "on" or (setting == "mixed" and index % 2 == 1)


class Consumer:
    """One ledger_consumer. In exactly-once mode each has its own ledger
    (the 2PC coordinator keeps them apart); in idempotent mode the three
    share one ledger, as idempotent consumers must share the store they
    deduplicate in (a message redelivered to another consumer after a kill
    is recognised there)."""

    def __init__(self, index, path, workdir, mode, topic, group, read_ahead):
        self.index, self.path, self.workdir = index, path, workdir
        self.read_ahead = read_ahead
        self.mode, self.topic, self.group = mode, topic, group
        name = f"ledger{index}.db" if mode == "exactly-once" else "ledger-shared.db"
        self.db = os.path.join(workdir, name)
        self.proc = None
        self.starts = 0

    def start(self, port):
        self.starts += 1
        err = open(os.path.join(self.workdir, f"consumer{self.index}.{self.starts}.err"), "w")
        self.proc = subprocess.Popen(
            [self.path, "--url", f"ws://127.0.0.1:{port}/v1/ws", "--topic", self.topic,
             "--group", self.group, "--id", f"ledger-{self.index}", "--db", self.db,
             "--mode", self.mode] + (["--read_ahead"] if self.read_ahead else []),
            stdout=subprocess.DEVNULL, stderr=err)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


def publish(onced, topic, payments, budget, pause_s):
    """Publishes in batches, pausing between them so that publishing spans
    the kills; a batch interrupted by a dead onced is retried (idempotency
    keys make the retry store nothing twice)."""
    batch = 200
    for i in range(0, len(payments), batch):
        time.sleep(pause_s)
        msgs = [{"key": p["account"], "value": json.dumps(p), "idempotency_key": p["id"]}
                for p in payments[i:i + batch]]
        while True:
            budget.check("publishing")
            try:
                status, body = http("POST", onced.url(f"/v1/topics/{topic}/messages"),
                                    {"messages": msgs})
                if status == 200:
                    break
                log(f"publish answered {status}: {body}; retrying")
            except OSError as e:
                log(f"publish failed ({type(e).__name__}); retrying")
            time.sleep(0.2)


def group_backlog(onced, topic, group):
    status, body = http("GET", onced.url(f"/v1/topics/{topic}/groups/{group}"))
    if status != 200:
        return None
    return body.get("lag", -1), body.get("leased", -1), body.get("dead_lettered", 0)


def ledger_rows(consumers):
    rows = []
    seen = set()
    for c in consumers:
        if c.db in seen or not os.path.exists(c.db):
            continue
        seen.add(c.db)
        con = sqlite3.connect(c.db, timeout=10)
        try:
            rows += [(c.index,) + r for r in con.execute(
                "SELECT payment_id, account, amount FROM payments")]
            bal = con.execute("SELECT COALESCE(SUM(balance), 0) FROM accounts").fetchone()[0]
            rows.append((c.index, "__balance__", "", bal))
        except sqlite3.OperationalError:
            pass  # the consumer never got to create its tables
        finally:
            con.close()
    return rows


def run(args):
    rng = random.Random(args.seed)
    budget = Budget(args.budget_s)
    workdir = tempfile.mkdtemp(prefix="once-e2e.")
    keep = False
    onced = Onced(args.onced, os.path.join(workdir, "data"), workdir)
    consumers = []
    topic, group = "payments", "ledger"
    try:
        onced.start(budget)
        guarantee = "exactly-once" if args.mode == "exactly-once" else "idempotent"
        status, body = http("PUT", onced.url(f"/v1/topics/{topic}"),
                            {"partitions": 3, "backend": "disk", "fsync": "always"})
        assert status in (200, 201), (status, body)
        status, body = http("PUT", onced.url(f"/v1/topics/{topic}/groups/{group}"),
                            {"mode": "shared", "guarantee": guarantee, "ack_timeout_ms": 5000,
                             "max_deliveries": 1000})
        assert status in (200, 201), (status, body)

        payments = [{"id": f"pay-{i}", "account": f"acct-{rng.randrange(ACCOUNTS)}",
                     "amount": rng.randrange(-500, 5000)} for i in range(args.messages)]
        total = sum(p["amount"] for p in payments)
        consumers = [Consumer(i, args.consumer, workdir, args.mode, topic, group,
                              uses_read_ahead(args.read_ahead, i))
                     for i in range(CONSUMERS)]
        for c in consumers:
            c.start(onced.port)

        # Publishing runs beside the kills, so that they hit publishes,
        # prepares, commits and acks in flight alike.
        log(f"publishing {len(payments)} payments (sum {total}) to {onced.url('')}")
        kills = ["consumer"] * args.consumer_kills + ["onced"] * args.onced_kills
        chaos_s = len(kills) * (0.05 + args.kill_gap_s) / 2
        pause_s = chaos_s / max(1, len(payments) // 200)
        publisher_error = []

        def publisher():
            try:
                publish(onced, topic, payments, budget, pause_s)
            except Exception as e:  # noqa: BLE001 - reported by the main thread
                publisher_error.append(e)

        publisher_thread = threading.Thread(target=publisher, daemon=True)
        publisher_thread.start()

        rng.shuffle(kills)
        done_consumer = done_onced = 0
        for what in kills:
            budget.check("killing")
            time.sleep(rng.uniform(0.05, args.kill_gap_s))
            if what == "consumer":
                c = rng.choice(consumers)
                c.kill()
                time.sleep(rng.uniform(0, 0.2))
                c.start(onced.port)
                done_consumer += 1
            else:
                onced.kill()
                time.sleep(rng.uniform(0, 0.3))
                onced.start(budget)
                done_onced += 1
            for c in consumers:  # a consumer that gave up is restarted
                if c.proc.poll() is not None:
                    c.start(onced.port)
        applied_at_end = sum(1 for r in ledger_rows(consumers) if r[1] != "__balance__")
        log(f"chaos done: {done_consumer} consumer kills, {done_onced} onced kills, "
            f"{applied_at_end} payments applied so far; draining")
        publisher_thread.join(timeout=max(1, budget.left()))
        if publisher_thread.is_alive() or publisher_error:
            raise RuntimeError(f"publishing did not finish: {publisher_error}")

        # Drain: every message applied and the backlog empty.
        while True:
            budget.check("draining")
            applied = sum(1 for r in ledger_rows(consumers) if r[1] != "__balance__")
            backlog = group_backlog(onced, topic, group)
            if applied >= len(payments) and backlog is not None and backlog[:2] == (0, 0):
                break
            for c in consumers:
                if c.proc.poll() is not None:
                    c.start(onced.port)
            time.sleep(0.25)
        for c in consumers:
            c.stop()
        backlog = group_backlog(onced, topic, group)
        code = onced.stop()

        failures = []
        rows = ledger_rows(consumers)
        per_payment = {}
        balances = 0
        for consumer, pid, account, amount in rows:
            if pid == "__balance__":
                balances += amount
                continue
            per_payment.setdefault(pid, []).append(consumer)
        missing = [p["id"] for p in payments if p["id"] not in per_payment]
        twice = {k: v for k, v in per_payment.items() if len(v) > 1}
        if missing:
            failures.append(f"{len(missing)} payments never applied, e.g. {missing[:5]}")
        if twice:
            failures.append(f"{len(twice)} payments applied more than once, e.g. "
                            f"{list(twice.items())[:5]}")
        if balances != total:
            failures.append(f"sum of balances {balances} != sum of payments {total}")
        if backlog is None or backlog[:2] != (0, 0):
            failures.append(f"group backlog not empty: (lag, leased, dead) = {backlog}")
        if code != 0:
            failures.append(f"onced exited with {code} on SIGTERM")
        spread = ([sum(1 for v in per_payment.values() if v[0] == c.index) for c in consumers]
                  if args.mode == "exactly-once" else "one shared ledger")
        log(f"mode {args.mode}: {len(per_payment)}/{len(payments)} payments applied, "
            f"{len(twice)} twice, per consumer {spread}, balances {balances} vs {total}, "
            f"backlog {backlog}, consumer kills {done_consumer}, onced kills {done_onced}, "
            f"{args.budget_s - budget.left():.0f} s")
        if failures:
            keep = True
            for f in failures:
                log("FAIL: " + f)
            log(f"left for inspection: {workdir}")
            return 1
        log("PASS")
        return 0
    except Exception as e:  # noqa: BLE001 - report, keep the evidence, fail
        keep = True
        log(f"FAIL: {type(e).__name__}: {e}; left for inspection: {workdir}")
        return 1
    finally:
        for c in consumers:
            c.kill()
        if onced.proc and onced.proc.poll() is None:
            onced.kill()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--onced", required=True)
    p.add_argument("--consumer", required=True, help="path to ledger_consumer")
    p.add_argument("--mode", default="exactly-once", choices=["exactly-once", "idempotent"])
    p.add_argument("--messages", type=int, default=20000)
    p.add_argument("--consumer-kills", type=int, default=20)
    p.add_argument("--onced-kills", type=int, default=5)
    p.add_argument("--kill-gap-s", type=float, default=1.0,
                   help="most seconds between two kills")
    p.add_argument("--seed", type=int, default=int(time.time()))
    p.add_argument("--read-ahead", default="mixed", choices=["off", "on", "mixed"],
                   help="consumers with ParticipantOptions::read_ahead: none, all, or the odd ones")
    p.add_argument("--budget-s", type=float, default=300)
    args = p.parse_args()
    for path in (args.onced, args.consumer):
        if not os.access(path, os.X_OK):
            p.error(f"not an executable: {path}")
    if args.messages < 1 or args.consumer_kills < 0 or args.onced_kills < 0:
        p.error("--messages must be >= 1, kills >= 0")
    log(f"seed {args.seed}")
    sys.exit(run(args))


if __name__ == "__main__":
    main()
