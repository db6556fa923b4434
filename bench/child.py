"""One measured workload in its own process, so CPU time and peak RSS are its own.

Prints one JSON line: {"wall_s", "cpu_s", "rss_mb", "messages", ...}. The clock starts when the
first message arrives (group join and connection set-up are not the workload) and stops when
the last message is confirmed by the Doris emulator (or, for the raw loop, when it is read).
"""
from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import os
import resource
import sys
import threading
import time
import uuid
from array import array


def usage():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_maxrss / 1024


def runq_wait_s() -> float:
    """Seconds this process's threads spent runnable but waiting for a CPU (/proc schedstat):
    how much other processes on the machine slowed this run down."""
    total = 0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/schedstat") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return total / 1e9


def raw(args):
    """The ceiling: kafka-python's poll loop touching every record and nothing else."""
    from kafka import KafkaConsumer

    from sinker_lib.config import KafkaConfig
    k = KafkaConfig()                     # fetch sizes as sinker sets them for this client
    c = KafkaConsumer(args.topic, bootstrap_servers=[args.bootstrap], group_id=f"raw-{uuid.uuid4().hex[:6]}",
                      enable_auto_commit=False, auto_offset_reset="earliest",
                      max_poll_records=args.max_poll_records,
                      max_partition_fetch_bytes=k.partition_fetch_bytes, fetch_max_bytes=k.fetch_max_bytes)
    n = nbytes = 0
    t0 = cpu0 = None
    while n < args.messages:
        for records in c.poll(timeout_ms=500).values():
            if t0 is None:
                t0, cpu0, wait0 = time.perf_counter(), usage()[0], runq_wait_s()
            n += len(records)
            for r in records:
                nbytes += len(r.value)
    wall = time.perf_counter() - t0
    cpu, rss = usage()
    wait = runq_wait_s() - wait0
    c.close(autocommit=False)
    return {"wall_s": wall, "cpu_s": cpu - cpu0, "rss_mb": rss, "messages": n, "bytes": nbytes,
            "runq_wait_s": wait}


def raw_confluent(args):
    """The ceiling of confluent-kafka (librdkafka): its consume loop touching every record."""
    from confluent_kafka import Consumer

    from sinker_lib.config import KafkaConfig
    from sinker_lib.kafka_client_confluent import (FETCH_QUEUE_BACKOFF_MS, QUEUED_MAX_KBYTES,
                                                   QUEUED_MIN_MESSAGES)
    k = KafkaConfig(client="confluent-kafka")
    # fetch sizes and the local queue as sinker sets them; with librdkafka's 1 s
    # fetch.queue.backoff.ms the loop would idle on big backlogs
    c = Consumer({"bootstrap.servers": args.bootstrap, "group.id": f"raw-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "max.partition.fetch.bytes": k.partition_fetch_bytes, "fetch.max.bytes": k.fetch_max_bytes,
                  "queued.max.messages.kbytes": QUEUED_MAX_KBYTES,
                  "queued.min.messages": QUEUED_MIN_MESSAGES,
                  "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS})
    c.subscribe([args.topic])
    n = nbytes = 0
    t0 = cpu0 = None
    while n < args.messages:
        msgs = c.consume(args.max_poll_records, 0.5)
        if msgs and t0 is None:
            t0, cpu0, wait0 = time.perf_counter(), usage()[0], runq_wait_s()
        for m in msgs:
            if m.error() is None:
                n += 1
                nbytes += len(m.value())
    wall = time.perf_counter() - t0
    cpu, rss = usage()
    wait = runq_wait_s() - wait0
    c.close()
    return {"wall_s": wall, "cpu_s": cpu - cpu0, "rss_mb": rss, "messages": n, "bytes": nbytes,
            "runq_wait_s": wait}


def naive(args):
    """What a user would write first: stdlib json, a dict per row, the csv module, one PUT per
    batch, waiting for each load before reading on."""
    import urllib3
    from kafka import KafkaConsumer
    columns = args.columns.split(",")
    c = KafkaConsumer(args.topic, bootstrap_servers=[args.bootstrap], group_id=f"naive-{uuid.uuid4().hex[:6]}",
                      enable_auto_commit=False, auto_offset_reset="earliest")
    http = urllib3.PoolManager()
    auth = "Basic " + base64.b64encode(b"root:").decode()
    n = loads = 0
    t0 = cpu0 = None
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    rows = 0

    def flush():
        nonlocal buf, w, rows, loads
        body = buf.getvalue().encode()
        url = f"http://127.0.0.1:{args.fe_port}/api/{args.db}/{args.table}/_stream_load"
        headers = {"Authorization": auth, "Expect": "100-continue", "format": "csv",
                   "column_separator": "\t", "columns": ",".join(columns),
                   "label": f"naive_{uuid.uuid4().hex}"}
        r = http.request("PUT", url, body=body, headers=headers, redirect=False)
        if r.status == 307:
            loc = r.headers["Location"].replace("root:@", "")
            r = http.request("PUT", loc, body=body, headers=headers, redirect=False)
        answer = json.loads(r.data)
        assert answer.get("Status") == "Success", answer
        c.commit()
        loads += 1
        buf = io.StringIO()
        w = csv.writer(buf, delimiter="\t", lineterminator="\n")
        rows = 0

    while n < args.messages:
        for records in c.poll(timeout_ms=500).values():
            if t0 is None:
                t0, cpu0, wait0 = time.perf_counter(), usage()[0], runq_wait_s()
            for rec in records:
                obj = json.loads(rec.value)
                row = []
                for col in columns:
                    v = obj.get(col)
                    if v is None:
                        row.append("\\N")
                    elif isinstance(v, bool):
                        row.append("1" if v else "0")
                    elif isinstance(v, (dict, list)):
                        row.append(json.dumps(v))
                    else:
                        row.append(str(v))
                w.writerow(row)
                rows += 1
            n += len(records)
            if rows >= args.batch_rows:
                flush()
    if rows:
        flush()
    wall = time.perf_counter() - t0
    cpu, rss = usage()
    wait = runq_wait_s() - wait0
    c.close(autocommit=False)
    return {"wall_s": wall, "cpu_s": cpu - cpu0, "rss_mb": rss, "messages": n, "loads": loads,
            "runq_wait_s": wait}


def _gated_consumer_class(gate_dir: str, index: int):
    """A ConsumerThread that joins the group with every partition paused and starts reading only
    when the parent opens the gate (all workers hold partitions), so no worker gets a head start
    and no rebalance happens mid-run. Bench-only: it writes its assignment and share to files.
    (It never touches the consumer from the rebalance listener: that runs on kafka-python's I/O
    thread, and pausing from there can deadlock with a poll() in progress.)"""
    from pathlib import Path

    from sinker_lib import consumer as consumer_mod
    from sinker_lib.records import fields
    gate = Path(gate_dir)

    class GatedConsumer(consumer_mod.ConsumerThread):
        share = None                    # messages in this worker's partitions (known at the gate)
        gate_open = False

        def _step(self):
            if self.gate_open:
                return super()._step()
            c = self.reader
            got = c.poll(timeout_ms=100)      # joins / rebalances
            for tp, recs in got.items():      # fetched before we could pause: read it again later
                if recs:
                    c.seek(tp, fields(recs[0]).offset(recs[0]))
            self._after_rebalance()
            parts = sorted(c.assignment(), key=lambda tp: tp.partition)
            if parts:
                c.pause(*parts)
            (gate / f"worker-{index}.assigned").write_text(str(len(parts)))
            if parts and (gate / "open").exists():
                ends = c.end_offsets(parts)
                starts = {tp: c.position(tp) for tp in parts}
                type(self).share = sum(ends[tp] - starts[tp] for tp in parts)
                self.gate_open = True
                c.resume(*parts)

    return GatedConsumer


def sinker(args):
    """sinker's own pipeline, in-process (the same code `sinker run` runs)."""
    from sinker_lib import batcher as batcher_mod
    from sinker_lib import pipeline as pipeline_mod
    from sinker_lib.config import config_from_dict
    from sinker_lib.pipeline import Pipeline
    cfg = config_from_dict({
        "kafka": {"brokers": [args.bootstrap], "topics": [args.topic], "client": args.client,
                  "group_id": args.group or f"bench-{uuid.uuid4().hex[:6]}", "start_from": "earliest",
                  "max_poll_records": args.max_poll_records, "heartbeat_interval_ms": 1000},
        "doris": {"fe_hosts": [f"127.0.0.1:{args.fe_port}"], "http_port": args.fe_port,
                  "query_port": args.query_port, "database": args.db, "table": args.table},
        "mapping": {"format": args.format},
        "batch": {"max_rows": args.batch_rows, "max_bytes": args.batch_mb * 1024 * 1024,
                  "max_interval_s": args.interval},
        "writer": {"workers": 2},
        "delivery": args.delivery,
        "dead_letter": {"type": "file", "path": f"/tmp/sinker-bench-dead-{uuid.uuid4().hex[:6]}.jsonl"},
        "server": {"listen": ""},
        "logging": {"format": "json", "level": "warning"},
    }, env={})
    if os.environ.get("SINKER_BENCH_DEBUG"):
        import logging
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(name)s %(levelname)s %(message)s")
        logging.getLogger("kafka.conn").setLevel(logging.WARNING)
    gated = None
    if args.gate:
        gated = _gated_consumer_class(args.gate, args.worker_index)
        pipeline_mod.ConsumerThread = gated
    latencies, stamps = array("f"), array("d")     # per record: ms to visible, CreateTime
    lock = threading.Lock()

    def on_loaded(batch, acked_at):
        if not args.latency:
            return
        ack_ms = acked_at * 1000
        with lock:
            for kept in batch.sources:             # lib/records.py's Slice
                ts = kept.timestamps
                stamps.extend(iter(ts))                # array('q') or a list, into array('d')
                latencies.extend(ack_ms - t for t in ts)

    # Labels are a function of (prefix, table, offset ranges): every measured run reads the same
    # backlog, so give each its own prefix, or the emulator would answer "Label Already Exists"
    # to a later run without reading its body.
    p = Pipeline(cfg, on_loaded=on_loaded, label_prefix=f"bench{uuid.uuid4().hex[:8]}")
    runner = threading.Thread(target=p.run, daemon=True)
    runner.start()
    t0 = cpu0 = None
    target = args.messages
    next_seal = 0.0
    while True:
        snap = p.accounting.snapshot()
        now = time.perf_counter()
        if t0 is None and snap["consumed"] > 0:
            t0, cpu0, wait0 = now, usage()[0], runq_wait_s()
        if gated is not None and not target:
            expect = os.path.join(args.gate, "expect")   # steady-rate runs: the parent says how many
            if os.path.exists(expect):
                target = int(open(expect).read())
            elif gated.share:
                target = gated.share
        if target and not args.latency and snap["consumed"] >= target and now >= next_seal \
                and p.polled.empty():
            # The whole backlog is read: seal the open batches now, as a shutdown would, instead
            # of waiting out max_interval_s (a config constant, not a cost) before the last load.
            # Again every 100 ms until done: the consumer counts a poll result as consumed just
            # before it queues it, so one SEAL_ALL could overtake the last records (their batch
            # then waited out max_interval_s: 5 s added to 6 of 26 runs of 1M small messages).
            p.polled.put(batcher_mod.SEAL_ALL)
            next_seal = now + 0.1
        done = snap["loaded"] + snap["dead_lettered"]
        if target and done >= target:
            break
        if not runner.is_alive():
            raise SystemExit(f"pipeline stopped early: {snap}")
        time.sleep(0.01)
    wall = time.perf_counter() - t0
    cpu, rss = usage()
    wait = runq_wait_s() - wait0
    t_last = time.time()
    outcomes = p.metrics.snapshot()["loads"]       # Stream Load outcomes: all "success" expected
    p.request_stop()
    runner.join(60)
    out = {"wall_s": wall, "cpu_s": cpu - cpu0, "rss_mb": rss, "messages": target,
           "t_first": t_last - wall, "t_last": t_last, "runq_wait_s": wait,
           "loaded": snap["loaded"], "dead": snap["dead_lettered"], "load_outcomes": outcomes,
           # lib/budget.py's estimate of what batches held at most, beside the measured peak RSS
           "budget_peak_mb": p.budget.peak / 2**20, "budget_pauses": p.budget.pauses}
    if args.latency and latencies:
        # the parent wrote the CreateTime of the first record after the producer's warm-up
        since = float(open(os.path.join(args.gate, "measure_from")).read())
        out["latency_ms"] = percentiles([x for x, t in zip(latencies, stamps) if t >= since])
        out["latency_whole_run_ms"] = percentiles(latencies)
    return out


def percentiles(values) -> dict:
    s = sorted(values)
    if not s:
        return {}
    return {q: s[min(len(s) - 1, int(len(s) * f))] for q, f in
            (("p50", .5), ("p90", .9), ("p99", .99), ("max", 1.0))}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["raw", "raw-confluent", "naive", "sinker"])
    ap.add_argument("--client", default="kafka-python", choices=["kafka-python", "confluent-kafka"])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--messages", type=int, required=True)
    ap.add_argument("--fe-port", type=int)
    ap.add_argument("--query-port", type=int)
    ap.add_argument("--db", default="bench")
    ap.add_argument("--table")
    ap.add_argument("--columns", default="")
    ap.add_argument("--format", default="csv")
    ap.add_argument("--delivery", default="exactly_once", choices=["exactly_once", "at_least_once"])
    ap.add_argument("--group")
    ap.add_argument("--batch-rows", type=int, default=100_000)     # sinker's default max_rows
    ap.add_argument("--interval", type=float, default=5.0)         # sinker's default max_interval_s
    ap.add_argument("--max-poll-records", type=int, default=5000)
    ap.add_argument("--latency", action="store_true")
    ap.add_argument("--batch-mb", type=int, default=64)
    ap.add_argument("--gate", help="directory of the start gate (several workers in one group)")
    ap.add_argument("--worker-index", type=int, default=0)
    args = ap.parse_args(argv)
    result = {"raw": raw, "raw-confluent": raw_confluent, "naive": naive,
              "sinker": sinker}[args.kind](args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
