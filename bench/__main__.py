"""`make bench`: sinker against the real Kafka broker and the Doris emulator, with references.

Everything is measured in ONE run on the same backlog, so the figures compare as ratios:
- raw:    kafka-python's poll loop alone — the ceiling for this client (and confluent-kafka's
          consume loop, the ceiling of kafka.client confluent-kafka);
- naive:  the straightforward implementation a user would write (stdlib json, dicts, csv module,
          one PUT per batch);
- sinker: csv and json formats, 1 worker, and 2 workers in one group (small profile).
The Doris emulator runs in its own process in bench mode (it checks framing, labels and row
counts without storing rows) so neither it nor the broker is the bottleneck; the report shows
the emulator's CPU to prove it. The raw loop runs first and last: the spread is the noise.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tests.stack.profiles import LARGE_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
# distinct generated messages per backlog (the Java producer cycles through them)
DISTINCT = {"small": 200_000, "large": 50_000}
PROFILE_COLUMNS = {
    "small": ("id", "ts", "user_id", "kind", "country", "price", "qty", "mobile", "session"),
    "large": tuple(name for name, _type in LARGE_COLUMNS),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_s(pid: int) -> float:
    """utime+stime of a process (all threads) from /proc, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child(kind: str, *args: str) -> dict:
    cmd = [sys.executable, "-m", "bench.child", kind, *args]
    out = subprocess.run(cmd, cwd=str(ROOT), capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"bench child {kind} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_payloads(path, make, n, seed):
    """`n` distinct messages of a profile, one per line; returns their mean size in bytes."""
    rng = random.Random(seed)
    total = 0
    with open(path, "wb") as f:
        for i in range(n):
            v = make(i, rng)
            if b"\n" in v:
                raise ValueError("a payload line holds a newline")
            total += len(v)
            f.write(v + b"\n")
    return total / n


def java_producer(bootstrap, topic, rate, count, payload_path, partitions, warmup_s=0):
    """The Java client (see PacedProducer.java): `count` messages cycling through the payload file,
    record i to partition i % partitions, at `rate` msg/s (0: as fast as it can), after
    `warmup_s` seconds of the same at the same rate."""
    from tests.stack.kafka import fetch, java_bin
    libs = fetch(verbose=False)
    cmd = [java_bin(), "-Xmx512m", "-Dlog4j.configuration=file:/dev/null", "-cp", f"{libs}/*",
           str(ROOT / "bench" / "PacedProducer.java"),
           bootstrap, topic, str(rate), str(count), str(payload_path), str(partitions), str(warmup_s)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_producer(proc, timeout):
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"PacedProducer failed (exit {proc.returncode}):\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def produce_backlog(bootstrap, topic, n, make, partitions, distinct, workdir):
    """A backlog of n messages: `distinct` generated ones, cycled, produced by the Java client."""
    from tests.stack.kafka import create_topic
    create_topic(bootstrap, topic, partitions)
    payload = Path(workdir) / f"{topic}.payload"
    avg = write_payloads(payload, make, min(n, distinct), seed=1)
    t0 = time.perf_counter()
    res = finish_producer(java_producer(bootstrap, topic, 0, n, payload, partitions), timeout=900)
    payload.unlink()
    if res["sent"] != n:
        raise SystemExit(f"backlog: produced {res['sent']} of {n}")
    return time.perf_counter() - t0, avg


class Gate:
    """Start N sinker workers in one group; open the gate once they all hold partitions."""

    def __init__(self, workers: int, partitions: int):
        self.dir = Path(tempfile.mkdtemp(prefix="sinker-bench-gate-"))
        self.workers, self.partitions = workers, partitions

    def wait_assigned(self, procs, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            counts = []
            for i in range(self.workers):
                try:
                    counts.append(int((self.dir / f"worker-{i}.assigned").read_text() or 0))
                except (OSError, ValueError):
                    counts.append(0)
            if all(counts) and sum(counts) == self.partitions:
                return counts
            for p in procs:
                if p.poll() is not None:
                    raise SystemExit(f"a bench worker exited early:\n{p.stderr.read()[-3000:]}")
            time.sleep(0.05)
        for p in procs:
            p.kill()
        errs = "\n".join(p.communicate()[1][-2000:] for p in procs)
        raise SystemExit(f"workers did not all get partitions within {timeout}s: {counts}\n{errs}")

    def open(self):
        (self.dir / "open").write_text("go")

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def start_workers(n, gate, child_args):
    return [subprocess.Popen([sys.executable, "-m", "bench.child", "sinker", *child_args,
                              "--messages", "0", "--gate", str(gate.dir), "--worker-index", str(i)],
                             cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(n)]


def collect(procs, timeout=1800):
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        if p.returncode != 0:
            raise SystemExit(f"bench worker failed:\n{err[-4000:]}")
        outs.append(json.loads(out.strip().splitlines()[-1]))
    return outs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="make bench")
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--large-messages", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--latency-rate", type=int, default=50_000)
    ap.add_argument("--latency-seconds", type=int, default=30)
    ap.add_argument("--latency-warmup", type=int, default=5,
                    help="seconds produced at the same rate before the measured ones")
    ap.add_argument("--quick", action="store_true", help="small backlogs, to check the harness")
    ap.add_argument("--only", choices=["small", "large", "latency"], action="append",
                    help="run only these parts (repeatable); default: all")
    args = ap.parse_args(argv)
    if args.quick:
        args.messages, args.large_messages, args.latency_seconds, args.latency_warmup = \
            100_000, 20_000, 5, 3
    parts = set(args.only or ["small", "large", "latency"])

    # SIGTERM (timeout, Ctrl-C in make) must still run the clean-up below: workers, emulator, broker
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.path.insert(0, str(ROOT))
    from tests.stack.profiles import PROFILES
    from tests.stack.kafka import KafkaBroker, create_topic

    machine = machine_info()
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, Python {machine['python']}, "
          f"load average before: {machine['loadavg_before']}", flush=True)
    broker = KafkaBroker(log_path=str(ROOT / ".stack" / "kafka-bench.log"))
    broker.start()
    fe, be, qp = free_port(), free_port(), free_port()
    emu = subprocess.Popen([sys.executable, "-m", "tests.doris_emulator", "--fe-http-port", str(fe),
                            "--be-http-port", str(be), "--query-port", str(qp), "--bench"],
                           cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = {"machine": machine, "quick": args.quick, "partitions": args.partitions, "runs": []}
    sizes = {}
    procs: list[subprocess.Popen] = []
    workdir = tempfile.mkdtemp(prefix="sinker-bench-")
    try:
        wait_for_emulator(qp, PROFILES)
        common = ["--bootstrap", broker.bootstrap, "--fe-port", str(fe), "--query-port", str(qp)]

        def measure(name, profile, n, fn):
            """Run one workload; also record the broker's and the emulator's CPU meanwhile."""
            b0, e0 = proc_cpu_s(broker.pid), proc_cpu_s(emu.pid)
            res = fn()
            odd = {k: v for k, v in res.get("load_outcomes", {}).items() if k != "success"}
            odd.update(dead=res.get("dead", 0)) if res.get("dead") else None
            if odd:
                print(f"  WARNING {name}: loads other than success or dead letters: {odd}", flush=True)
            res["broker_cpu_pct"] = 100 * (proc_cpu_s(broker.pid) - b0) / res["wall_s"]
            res["emulator_cpu_pct"] = 100 * (proc_cpu_s(emu.pid) - e0) / res["wall_s"]
            res.update(name=name, profile=profile, msg_per_s=n / res["wall_s"],
                       mb_per_s=res.get("bytes", n * sizes[profile]) / res["wall_s"] / 1e6,
                       cpu_s_per_million=res["cpu_s"] * 1e6 / n,
                       cpu_pct=100 * res["cpu_s"] / res["wall_s"],
                       runq_wait_pct=100 * res["runq_wait_s"] / res["wall_s"])
            results["runs"].append(res)
            print(f"  {name:<24} {profile:<6} {res['msg_per_s']:>9,.0f} msg/s {res['mb_per_s']:>6.1f} MB/s"
                  f"  cpu {res['cpu_s_per_million']:>5.1f} s/M ({res['cpu_pct']:>3.0f}%)"
                  f"  rss {res['rss_mb']:>4.0f} MB  broker {res['broker_cpu_pct']:>3.0f}%"
                  f"  emulator {res['emulator_cpu_pct']:>3.0f}%  waited for a CPU "
                  f"{res['runq_wait_pct']:>3.0f}%"
                  + (f"  budget peak {res['budget_peak_mb']:.0f} MB" if "budget_peak_mb" in res else ""),
                  flush=True)

        def workers(n, base, fmt, profile, total):
            gate = Gate(n, args.partitions)
            try:
                ps = start_workers(n, gate, [*base, "--format", fmt, "--group",
                                             f"bench-{n}w-{fmt}-{uuid.uuid4().hex[:6]}"])
                procs.extend(ps)
                gate.wait_assigned(ps)
                gate.open()
                outs = collect(ps)
            finally:
                gate.close()
            got = sum(o["messages"] for o in outs)
            if got != total:
                raise SystemExit(f"{n} workers handled {got} messages, not {total}: {outs}")
            return {"wall_s": max(o["t_last"] for o in outs) - min(o["t_first"] for o in outs),
                    "cpu_s": sum(o["cpu_s"] for o in outs), "rss_mb": max(o["rss_mb"] for o in outs),
                    "runq_wait_s": sum(o["runq_wait_s"] for o in outs),
                    "dead": sum(o["dead"] for o in outs),
                    "load_outcomes": {k: sum(o["load_outcomes"].get(k, 0) for o in outs)
                                      for o2 in outs for k in o2["load_outcomes"]},
                    "workers": [{k: o[k] for k in ("messages", "loaded", "dead", "wall_s", "cpu_s",
                                                   "rss_mb")}
                                for o in outs]}

        for profile, n in (("small", args.messages), ("large", args.large_messages)):
            if profile not in parts:
                continue
            _ddl, make = PROFILES[profile]
            topic = f"bench_{profile}_{uuid.uuid4().hex[:8]}"
            took, avg = produce_backlog(broker.bootstrap, topic, n, make, args.partitions,
                                        DISTINCT[profile], workdir)
            sizes[profile] = avg
            results.setdefault("backlogs", {})[profile] = {"messages": n, "avg_bytes": avg,
                                                          "produce_s": took}
            print(f"{profile}: produced {n:,} messages of ~{avg:.0f} B in {took:.1f}s "
                  f"(load average {os.getloadavg()[0]:.2f})", flush=True)
            base = [*common, "--topic", topic, "--table", profile]
            counted = [*base, "--messages", str(n)]
            measure("raw consume (1st)", profile, n, lambda: child("raw", *counted))
            columns = ",".join(PROFILE_COLUMNS[profile])
            measure("naive", profile, n, lambda: child("naive", *counted, "--columns", columns,
                                                       "--batch-rows", "50000"))
            for fmt in ("json", "csv"):
                measure(f"sinker {fmt}", profile, n, lambda: child("sinker", *counted, "--format", fmt))
                if profile == "small":
                    measure(f"sinker {fmt}, at-least-once", profile, n,
                            lambda: child("sinker", *counted, "--format", fmt,
                                          "--delivery", "at_least_once"))
                    measure(f"sinker {fmt}, 2 workers", profile, n,
                            lambda: workers(2, base, fmt, profile, n))
            measure("raw confluent-kafka", profile, n, lambda: child("raw-confluent", *counted))
            confluent = [*base, "--client", "confluent-kafka"]
            for fmt in ("json", "csv"):
                measure(f"sinker {fmt}, confluent-kafka", profile, n,
                        lambda: child("sinker", *counted, "--format", fmt,
                                      "--client", "confluent-kafka"))
                if profile == "small":
                    measure(f"sinker {fmt}, confluent-kafka, 2 workers", profile, n,
                            lambda: workers(2, confluent, fmt, profile, n))
            measure("raw consume (2nd)", profile, n, lambda: child("raw", *counted))

        if "latency" in parts:
            # steady rate: the Java producer paces, one sinker worker loads as it arrives
            results["latency"] = {}
            n = args.latency_rate * args.latency_seconds
            for fmt, client in (("csv", "kafka-python"), ("json", "kafka-python"),
                                ("csv", "confluent-kafka"), ("json", "confluent-kafka")):
                topic = f"bench_latency_{fmt}_{uuid.uuid4().hex[:8]}"
                create_topic(broker.bootstrap, topic, args.partitions)
                gate = Gate(1, args.partitions)
                payload = gate.dir / "payload.txt"
                write_payloads(payload, PROFILES["small"][1], 20_000, seed=2)
                try:
                    ps = start_workers(1, gate, [*common, "--topic", topic, "--table", "small",
                                                 "--format", fmt, "--latency", "--interval", "1.0",
                                                 "--batch-rows", "100000", "--client", client])
                    procs.extend(ps)
                    gate.wait_assigned(ps)
                    gate.open()
                    time.sleep(1.0)
                    b0, e0 = proc_cpu_s(broker.pid), proc_cpu_s(emu.pid)
                    prod = java_producer(broker.bootstrap, topic, args.latency_rate, n, payload,
                                         args.partitions, args.latency_warmup)
                    procs.append(prod)
                    sent = finish_producer(prod, timeout=(args.latency_seconds + args.latency_warmup) * 4 + 60)
                    # the worker does not know how much is coming: stop it once it has all of it,
                    # and count the latency of the records produced after the warm-up
                    (gate.dir / "measure_from").write_text(str(sent["measured_from_ms"]))
                    # whole or not at all: the worker polls for this file and reads it at once
                    (gate.dir / "expect.tmp").write_text(str(sent["sent"]))
                    (gate.dir / "expect.tmp").rename(gate.dir / "expect")
                    out = collect(ps)[0]
                    wall = out["t_last"] - out["t_first"]
                finally:
                    gate.close()
                lat = {"format": fmt, "client": client,
                       "rate": args.latency_rate, "seconds": args.latency_seconds,
                       "warmup_s": args.latency_warmup, "warmup_messages": sent["warmup"],
                       "produced": sent["sent"], "produce_s": sent["seconds"],
                       "achieved_msg_per_s": sent["sent"] / sent["seconds"],
                       "cpu_pct": 100 * out["cpu_s"] / wall, "rss_mb": out["rss_mb"],
                       "runq_wait_pct": 100 * out["runq_wait_s"] / wall,
                       "whole_run_ms": out.get("latency_whole_run_ms", {}),
                       "broker_cpu_pct": 100 * (proc_cpu_s(broker.pid) - b0) / wall,
                       "emulator_cpu_pct": 100 * (proc_cpu_s(emu.pid) - e0) / wall,
                       **out.get("latency_ms", {})}
                results["latency"][f"{fmt}, {client}"] = lat
                print(f"latency at {lat['achieved_msg_per_s']:,.0f} msg/s ({fmt}, {client}, small): "
                      + ", ".join(f"{k} {lat[k]:,.0f} ms" for k in ("p50", "p90", "p99", "max")
                                  if k in lat)
                      + f" after a {args.latency_warmup} s warm-up (P99 "
                      + f"{lat['whole_run_ms'].get('p99', 0):,.0f} ms with it)"
                      + f"; sinker cpu {lat['cpu_pct']:.0f}%, waited for a CPU "
                      + f"{lat['runq_wait_pct']:.0f}%", flush=True)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        emu.terminate()
        emu.wait(10)
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    results["machine"]["loadavg_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    report(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("quick.json" if args.quick or args.only else "latest.json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten {out.relative_to(ROOT)}")
    return 0


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release(), "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "loadavg_before": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def wait_for_emulator(query_port, profiles):
    import pymysql
    deadline = time.time() + 30
    while True:
        try:
            conn = pymysql.connect(host="127.0.0.1", port=query_port, user="root", password="",
                                   autocommit=True)
            break
        except Exception:  # noqa: BLE001 - emulator still starting
            if time.time() > deadline:
                raise
            time.sleep(0.2)
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS bench")
        for name, (ddl, _make) in profiles.items():
            cur.execute(ddl.format(db="bench", table=name))
    conn.close()


def report(results):
    """Print the table (Markdown, as in the README) and add the ratios to `results`."""
    runs = results["runs"]
    by = {(r["name"], r["profile"]): r for r in runs}
    ceiling = {}
    for profile in ("small", "large"):
        a, b = by.get(("raw consume (1st)", profile)), by.get(("raw consume (2nd)", profile))
        if a and b:
            ceiling[profile] = (a["msg_per_s"] + b["msg_per_s"]) / 2
            spread = abs(a["msg_per_s"] - b["msg_per_s"]) / max(a["msg_per_s"], b["msg_per_s"])
            results.setdefault("noise", {})[profile] = spread
    print("\n| profile | run | msg/s | MB/s | CPU s / 1M msgs | CPU % | waited for CPU % "
          "| peak RSS MB | vs raw | vs naive | broker CPU % | emulator CPU % |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        raw, naive = ceiling.get(r["profile"]), by.get(("naive", r["profile"]))
        r["vs_raw"] = r["msg_per_s"] / raw if raw else None
        r["vs_naive"] = r["msg_per_s"] / naive["msg_per_s"] if naive else None
        print(f"| {r['profile']} | {r['name']} | {r['msg_per_s']:,.0f} | {r['mb_per_s']:.1f} | "
              f"{r['cpu_s_per_million']:.1f} | {r['cpu_pct']:.0f} | {r['runq_wait_pct']:.0f} | "
              f"{r['rss_mb']:.0f} | "
              f"{_ratio(r['vs_raw'])} | {_ratio(r['vs_naive'])} | {r['broker_cpu_pct']:.0f} | "
              f"{r['emulator_cpu_pct']:.0f} |")
    for profile, spread in results.get("noise", {}).items():
        print(f"\nnoise ({profile}): the raw loop ran first and last, {spread:.1%} apart "
              f"(vs raw uses their mean)")
    for fmt in ("json", "csv"):
        one, two = by.get((f"sinker {fmt}", "small")), by.get((f"sinker {fmt}, 2 workers", "small"))
        if one and two:
            results.setdefault("scaling", {})[fmt] = two["msg_per_s"] / one["msg_per_s"]
            print(f"scaling ({fmt}, small): 1 -> 2 workers = {two['msg_per_s'] / one['msg_per_s']:.2f}x")
    for fmt in ("json", "csv"):
        eo, alo = by.get((f"sinker {fmt}", "small")), by.get((f"sinker {fmt}, at-least-once", "small"))
        if eo and alo:
            ratio = eo["msg_per_s"] / alo["msg_per_s"]
            results.setdefault("exactly_once_vs_at_least_once", {})[fmt] = ratio
            print(f"exactly-once vs at-least-once ({fmt}, small): {ratio:.2f}x "
                  f"(target >= 0.90: {'met' if ratio >= 0.9 else 'missed'}, margin {ratio - 0.9:+.2f})")
    lat = results.get("latency") or {}
    if lat:
        print("\n(after the warm-up; the last column: P99 of every record, warm-up included)")
        print("| format, client | rate msg/s | p50 ms | p90 ms | p99 ms | max ms | sinker CPU % | "
              "waited for CPU % | P99 with warm-up ms |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for fmt, x in lat.items():
            print(f"| {fmt} | {x['achieved_msg_per_s']:,.0f} | {x.get('p50', 0):,.0f} | "
                  f"{x.get('p90', 0):,.0f} | {x.get('p99', 0):,.0f} | {x.get('max', 0):,.0f} | "
                  f"{x['cpu_pct']:.0f} | {x.get('runq_wait_pct', 0):.0f} | "
                  f"{x.get('whole_run_ms', {}).get('p99', 0):,.0f} |")
    targets = check_targets(results)
    if targets:
        print("\n| target (issue 14) | measured | wanted | met | margin |")
        print("|---|---:|---:|---|---:|")
        for t in targets:
            print(f"| {t['target']} | {t['measured']:,.2f} | {t['op']} {t['wanted']:,.2f} | "
                  f"{'met' if t['met'] else 'missed'} | {t['margin']:+.0%} |")
    m = results["machine"]
    print(f"\nload average: before {m['loadavg_before']}, after {m.get('loadavg_after')}")


def check_targets(results) -> list[dict]:
    """Each of issue 14's targets that this run measured: the figure, the bound, met or missed,
    and the margin as a fraction of the bound (+: room left, -: short by). Stored in results."""
    by = {(r["name"], r["profile"]): r for r in results["runs"]}
    raw = {"kafka-python": [by.get((f"raw consume ({k})", "small")) for k in ("1st", "2nd")],
           "confluent-kafka": [by.get(("raw confluent-kafka", "small"))]}
    raw = {c: sum(r["msg_per_s"] for r in rs) / len(rs) for c, rs in raw.items() if all(rs)}
    out = []

    def want(target, measured, wanted, op=">="):
        if measured is None:
            return
        met = measured >= wanted if op == ">=" else measured < wanted
        margin = (measured - wanted) / wanted if op == ">=" else (wanted - measured) / wanted
        out.append({"target": target, "measured": measured, "wanted": wanted, "op": op,
                    "met": met, "margin": margin})

    def run(name, profile="small", key="msg_per_s"):
        r = by.get((name, profile))
        return r[key] if r else None

    want("small json, confluent-kafka, msg/s", run("sinker json, confluent-kafka"), 200_000)
    if "confluent-kafka" in raw and run("sinker json, confluent-kafka"):
        want("small json, confluent-kafka, x raw confluent loop",
             run("sinker json, confluent-kafka") / raw["confluent-kafka"], 0.5)
    want("small csv, confluent-kafka, msg/s", run("sinker csv, confluent-kafka"), 130_000)
    for fmt, bound in (("json", 1.0), ("csv", 0.75)):
        if "kafka-python" in raw and run(f"sinker {fmt}"):
            want(f"small {fmt}, kafka-python, x raw kafka-python loop",
                 run(f"sinker {fmt}") / raw["kafka-python"], bound)
    want("large json, confluent-kafka, MB/s", run("sinker json, confluent-kafka", "large", "mb_per_s"), 60)
    want("large csv, confluent-kafka, MB/s", run("sinker csv, confluent-kafka", "large", "mb_per_s"), 25)
    for fmt in ("json", "csv"):
        for client, suffix in (("kafka-python", ""), ("confluent-kafka", ", confluent-kafka")):
            one, two = run(f"sinker {fmt}{suffix}"), run(f"sinker {fmt}{suffix}, 2 workers")
            if one and two:
                want(f"2 workers vs 1, {fmt}, {client}", two / one, 1.8)
        eo, alo = run(f"sinker {fmt}"), run(f"sinker {fmt}, at-least-once")
        if eo and alo:
            want(f"exactly-once vs at-least-once, {fmt}", eo / alo, 0.9)
    for r in results["runs"]:
        if r["name"].startswith("sinker") and "2 workers" not in r["name"]:
            bound = 300 if r["profile"] == "small" else 500
            want(f"peak RSS MB, {r['profile']}, {r['name']}", r["rss_mb"], bound, "<")
    for name, x in (results.get("latency") or {}).items():
        if "p99" in x:
            want(f"P99 produce -> visible ms at {x['rate']:,} msg/s, {name}", x["p99"], 2000, "<")
    results["targets"] = out
    return out


def _ratio(x):
    return f"{x:.2f}" if x is not None else "-"


if __name__ == "__main__":
    sys.exit(main())
