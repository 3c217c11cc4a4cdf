#!/usr/bin/env python3
"""Prints scripts/bench's table: fio's baseline, then every benchmark's median.

Reads fio_seq.json, fio_sync.json and <binary>.json (Google Benchmark's JSON
output with repetitions) from the directory given as the only argument.
"""
import json
import pathlib
import sys


def fio_figures(out):
    seq = json.loads((out / "fio_seq.json").read_text())["jobs"][0]["write"]
    sync = json.loads((out / "fio_sync.json").read_text())["jobs"][0]
    sync_lat = sync.get("sync", {}).get("lat_ns", {})
    figures = {
        "seq_write_MiBps": seq["bw_bytes"] / 2**20,
        "fdatasync_per_s": sync["write"]["iops"],
        "fdatasync_p50_us": sync_lat.get("percentile", {}).get("50.000000", 0) / 1000,
    }
    for bs in (320, 5120):
        path = out / f"fio_sync_{bs}.json"
        if path.exists():
            job = json.loads(path.read_text())["jobs"][0]
            figures[f"sync_{bs}_us"] = job.get("sync", {}).get("lat_ns", {}).get("mean", 0) / 1000
    return figures


def medians(out):
    rows = {}
    for path in sorted(out.glob("*_bench.json")):
        text = path.read_text()
        if not text.strip():
            continue  # FILTER matched none of this binary's benchmarks
        for b in json.loads(text).get("benchmarks", []):
            if b.get("aggregate_name") != "median":
                continue
            name = b["run_name"]
            rows[name] = {
                "items_per_second": b.get("items_per_second", 0.0),
                "bytes_per_second": b.get("bytes_per_second", 0.0),
                "appends_per_sync": b.get("appends_per_sync"),
                "sync_us": b.get("sync_us"),
            }
    return rows


def main():
    out = pathlib.Path(sys.argv[1])
    fio = fio_figures(out)
    print()
    print("baseline (fio, same disk, same run)")
    print(f"  sequential write 1 MiB blocks : {fio['seq_write_MiBps']:10.1f} MiB/s")
    print(f"  4 KiB write + fdatasync       : {fio['fdatasync_per_s']:10.0f} /s"
          f"  (p50 {fio['fdatasync_p50_us']:.0f} us)")
    if fio.get("sync_320_us") and fio.get("sync_5120_us"):
        bound = 16 * fio["sync_320_us"] / fio["sync_5120_us"]
        print(f"  fdatasync after 320 B / 5 KiB : {fio['sync_320_us']:6.0f} / "
              f"{fio['sync_5120_us']:.0f} us mean: 16 appenders sharing syncs can reach at "
              f"most {bound:.1f}x one appender on this disk")
    print()
    rows = medians(out)
    width = max([len(n) for n in rows] + [20])
    print(f"{'benchmark (median)':<{width}}  {'msg/s':>12}  {'MiB/s':>9}")
    for name, r in rows.items():
        mib = r["bytes_per_second"] / 2**20
        extra = ""
        if r.get("appends_per_sync") is not None:
            extra = f"  {r['appends_per_sync']:.1f} appends/fdatasync, {r['sync_us']:.0f} us each"
        print(f"{name:<{width}}  {r['items_per_second']:12.0f}  {mib:9.1f}{extra}")
    print()
    for line in targets(rows, fio):
        print(line)


def find(rows, *parts):
    """The median row whose name has every part as a /-separated segment."""
    for name, r in rows.items():
        segments = name.split("/")
        if all(p in segments for p in parts):
            return r
    return None


def targets(rows, fio):
    """The ratios the targets are stated in, where the benchmarks exist."""
    lines = ["targets"]

    def check(label, value, goal, unit=""):
        verdict = "met" if value >= goal else "NOT met"
        lines.append(f"  {label}: {value:.2f}{unit} (target >= {goal}{unit}) {verdict}")

    disk4k = find(rows, "BM_DiskAppendNever", "bytes:4096", "batch:64")
    if disk4k:
        ratio = disk4k["bytes_per_second"] / 2**20 / fio["seq_write_MiBps"]
        check("disk append fsync=never 4 KiB / fio sequential write", ratio, 0.7)
    one = find(rows, "BM_DiskAppendAlways", "threads:1")
    sixteen = find(rows, "BM_DiskAppendAlways", "threads:16")
    if one and sixteen and one["items_per_second"] > 0:
        check("fsync=always 16 appenders / 1 appender", sixteen["items_per_second"] /
              one["items_per_second"], 10, "x")
        cycle = find(rows, "BM_GroupWakeCycle", "threads:16")
        if cycle and cycle["items_per_second"] > 0 and sixteen.get("sync_us"):
            # A group of 16 takes at least its fdatasync plus waking the 16
            # and gathering them again; one appender, its append's time.
            cycle_us = 16 * 1e6 / cycle["items_per_second"]
            one_us = 1e6 / one["items_per_second"]
            bound = 16 * one_us / (sixteen["sync_us"] + cycle_us)
            lines.append(f"    (waking and regathering 16 threads: {cycle_us:.0f} us a group; with "
                         f"fdatasync at {sixteen['sync_us']:.0f} us for 16 and one append at "
                         f"{one_us:.0f} us, 16 appenders can reach at most {bound:.1f}x)")
    # The same with appenders that do not block (Log::AppendAsync): 16
    # appends in flight against one appender, blocking or not, whichever
    # is faster (the stricter ratio).
    async16 = find(rows, "BM_DiskAppendAlwaysAsync", "in_flight:16")
    async1 = find(rows, "BM_DiskAppendAlwaysAsync", "in_flight:1")
    singles = [r["items_per_second"] for r in (one, async1) if r and r["items_per_second"] > 0]
    if async16 and singles:
        check("fsync=always 16 appends in flight (AppendAsync) / 1 appender",
              async16["items_per_second"] / max(singles), 10, "x")
    mem = find(rows, "BM_MemoryAppend", "batch:1")
    if mem:
        check("memory append 256 B (M msg/s)", mem["items_per_second"] / 1e6, 5)
    shared_mem = find(rows, "BM_SharedLeaseAck_Memory")
    if shared_mem:
        check("memory shared lease+ack (M msg/s)", shared_mem["items_per_second"] / 1e6, 1)
    shared_disk = find(rows, "BM_SharedLeaseAck_Disk")
    disk_append = find(rows, "BM_DiskAppend")  # group_bench: same size and batch
    if shared_disk and disk_append and disk_append["items_per_second"] > 0:
        check("disk shared lease+ack / disk append (same size)",
              shared_disk["items_per_second"] / disk_append["items_per_second"], 0.3)
    return lines


if __name__ == "__main__":
    main()
