#!/usr/bin/env python3
"""Smoke test of the exactly-once benchmark (scripts/bench-e2e and
tests/bench/eo_bench_consumer.cc), against a real onced on 127.0.0.1:

  eo_bench_smoke_test.py BUILD_DIR

1. bad flags: eo-bench-consumer exits 2 naming the flag;
2. a payload without a timestamp: the consumer votes NO and applies nothing;
3. 500 messages through an exactly-once group: 500 rows, 500 distinct ids,
   the JSON result counts 500 and has latencies, split into phases;
4. scripts/bench-e2e at a tiny size prints its table without problems.
Exit status 0 when every check holds. Every wait is bounded.
"""
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


def main():
    build = os.path.abspath(sys.argv[1])
    out = tempfile.mkdtemp(prefix="eo-bench-smoke.")
    os.environ["EO_OUT"] = out
    os.environ["EO_BUILD"] = build
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import bench_e2e as b  # noqa: E402 (needs EO_OUT)

    bad_flags = [
        (["--mode=bogus", "--topic=t", "--group=g", "--db=x.db"], "--mode"),
        (["--topic=t", "--group=g"], "required"),
        (["--topic=t", "--group=g", "--db=x.db", "--window=0"], "--window"),
        (["--topic=t", "--group=g", "--db=x.db", "--max_group_frames=-1"], "--max_group_frames"),
        (["--topic=t", "--group=g", "--db=x.db", "--store=none"], "--store=none"),
        (["--topic=t", "--group=g", "--db=x.db", "--store=disk", "--mode=at-least-once"],
         "--store"),
    ]
    for flags, word in bad_flags:
        r = subprocess.run([b.CONSUMER] + flags, capture_output=True, text=True, timeout=30)
        check(r.returncode == 2 and word in r.stderr, f"{flags} -> exit 2 naming {word}")
    # A value the flag parser itself refuses (Abseil exits 1).
    r = subprocess.run([b.CONSUMER, "--read_ahead=maybe", "--topic=t", "--group=g", "--db=x.db"],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 1 and "read_ahead" in r.stderr, "--read_ahead=maybe -> exit 1 naming it")

    onced, port, _ = b.start_onced()
    try:
        api = b.Api(port)
        deadline = time.monotonic() + 30
        while not api.ready():
            check(time.monotonic() < deadline, "onced ready within 30 s")
            time.sleep(0.1)

        # 2. A payload without a timestamp is refused by the handler: NO.
        api.call("PUT", "/v1/topics/bad", b.TOPIC_CONFIG)
        api.call("POST", "/v1/topics/bad/messages",
                 {"messages": [{"value": "this is not a timestamp"}]}, ok=(200,))
        api.call("PUT", "/v1/topics/bad/groups/g",
                 {"mode": "shared", "guarantee": "exactly-once", "max_deliveries": 2})
        db = os.path.join(out, "bad.db")
        r = subprocess.run(b.consumer_cmd(port, "bad", "g", "exactly-once", "bad-1", db)[:-1]
                           + ["--timeout_s=3"], capture_output=True, text=True, timeout=60)
        res = json.loads(r.stdout.strip().splitlines()[-1])
        check(r.returncode == 0 and res["votes_no"] >= 1 and res["applied"] == 0,
              f"malformed payload voted NO, nothing applied ({res['votes_no']} NO votes)")
        check(b.count_rows([db]) == 0, "no row for the malformed payload")
        # A ready file that cannot be created: a clear error, exit 1.
        r = subprocess.run(b.consumer_cmd(port, "bad", "g", "exactly-once", "bad-2",
                                          os.path.join(out, "bad2.db"))[:-1]
                           + ["--timeout_s=10", f"--ready_file={out}/no/such/dir/ready"],
                           capture_output=True, text=True, timeout=60)
        check(r.returncode == 1 and "--ready_file" in r.stderr,
              f"unwritable --ready_file -> exit 1 naming it ({r.stderr.strip()[-200:]})")

        # 3. 500 messages, exactly once.
        api.call("PUT", f"/v1/topics/{b.TOPIC}", b.TOPIC_CONFIG)
        b.publish_backlog(api, 500)
        b.create_group(api, b.TOPIC, "g", "exactly-once")
        db = os.path.join(out, "good.db")
        ready = os.path.join(out, "good.ready")
        r = subprocess.run(b.consumer_cmd(port, b.TOPIC, "g", "exactly-once", "good-1", db,
                                          expect=500) + [f"--ready_file={ready}"],
                           capture_output=True, text=True, timeout=120)
        check(r.returncode == 0, f"consumer exit 0 ({r.stderr.strip()[-300:]})")
        check(os.path.exists(ready), "the ready file was created once the session opened")
        res = json.loads(r.stdout.strip().splitlines()[-1])
        rows, distinct = b.distinct_rows([db])
        check(res["applied"] == 500 and rows == 500 and distinct == 500,
              f"500 applied, {rows} rows, {distinct} distinct")
        check(res["samples"] == 500 and 0 < res["p50_ms"] <= res["p99_ms"] <= res["max_ms"],
              f"latencies p50 {res['p50_ms']:.2f} <= p99 {res['p99_ms']:.2f} ms")
        phases = res.get("phases_ms", {})
        check(sorted(phases) == sorted(key for key, _ in b.PHASES)
              and phases["publish_to_prepare"]["n"] == 500
              and all(0 < p["n"] <= 500 and 0 <= p["p50"] <= p["p99"] for p in phases.values())
              and phases["publish_to_prepare"]["p50"] <= res["p50_ms"],
              f"phases {json.dumps(phases)}")
        with sqlite3.connect(db) as c:
            stamps = c.execute("SELECT count(*) FROM eo_bench WHERE publish_ns <= 0").fetchone()[0]
        check(stamps == 0, "every row carries its publish time")
    finally:
        b.stop(onced)

    # 4. The whole driver, tiny.
    env = dict(os.environ, REPS="1", N="300", MAX_S="10", STEADY_S="1", REF_S="1",
               BUILD_DIR=build, SKIP_BUILD="1", NICE="0")
    r = subprocess.run([os.path.join(ROOT, "scripts", "bench-e2e")], capture_output=True,
                       text=True, timeout=600, env=env)
    table = [line for line in r.stdout.splitlines() if line.startswith("| exactly-once, 2PC")]
    check(r.returncode == 0 and len(table) == 2, f"bench-e2e table ({r.stderr.strip()[-300:]})")
    check(all(line.rstrip().endswith("| 1 |") for line in table),
          "exactly-once rows complete, no duplicates or failures")
    check(any(line.startswith("| publish -> PREPARE handled |") for line in r.stdout.splitlines()),
          "bench-e2e prints where the steady latency goes")


if __name__ == "__main__":
    try:
        main()
    finally:
        if os.environ.get("EO_OUT", "").startswith(tempfile.gettempdir()):
            shutil.rmtree(os.environ["EO_OUT"], ignore_errors=True)
