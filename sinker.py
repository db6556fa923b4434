"""sinker: stream JSON events from Apache Kafka into Apache Doris.

This is the only place that knows about click, exit codes and terminal output; the library in
lib/ raises typed errors (lib/errors.py) and this layer turns them into messages and exit codes.
"""
from __future__ import annotations

import contextlib
import functools
import sys

import click

from lib import __version__
from lib.errors import SinkerError

CONTEXT = dict(help_option_names=["-h", "--help"], max_content_width=100)


def _fail(err: BaseException) -> None:
    if isinstance(err, SinkerError):
        click.echo(f"sinker: error: {err}", err=True)
        sys.exit(err.exit_code)
    click.echo(f"sinker: internal error: {type(err).__name__}: {err}\n"
               "This is a bug: please report it with the log.", err=True)
    sys.exit(1)


def handle_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except click.exceptions.Exit:
            raise
        except click.ClickException:
            raise
        except SinkerError as e:
            _fail(e)
    return wrapper


def load(config_path, overrides=None):
    from lib.config import load_config
    return load_config(config_path, overrides=overrides)


def setup_logs(cfg, stream=None):
    from lib.observability import logs
    logs.setup_logging(cfg.logging, stream)
    from lib.config import SECRETS
    for section, key in SECRETS:
        secret = getattr(getattr(cfg, section), key)
        if secret:
            logs.register_secret(secret)


config_option = click.option(
    "-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False),
    envvar="SINKER_CONFIG", help="YAML config file (env SINKER_CONFIG).")


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="sinker")
def cli():
    """Stream JSON events from Apache Kafka into Apache Doris, never losing or duplicating a row.

    Exit codes: 0 done; 1 internal error; 2 usage/config error; 3 Doris or Kafka refused for
    good (auth, TLS trust, table, schema, a topic that does not exist); 4 retries exhausted or
    dependency down (nothing past it committed); 5 some messages failed (dry-run/check/replay)
    or interrupted twice; 6 another run of the same replay holds its lock.
    """


@cli.command(context_settings=CONTEXT)
def version():
    """Print sinker's version and its key libraries."""
    import kafka
    import urllib3
    click.echo(f"sinker {__version__} (python {sys.version.split()[0]}, kafka-python "
               f"{kafka.__version__}, urllib3 {urllib3.__version__})")


@cli.command(context_settings=CONTEXT)
@config_option
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Consumer processes in the same consumer group (Kafka spreads the partitions).")
@click.option("--group-id", help="Override kafka.group_id.")
@handle_errors
def run(config_path, workers, group_id):
    """Consume the topics and load them into Doris until SIGINT/SIGTERM."""
    overrides = {"kafka.group_id": group_id} if group_id else None
    from lib.commands.workers import child_overrides, run_workers
    cfg = load(config_path, {**(overrides or {}), **child_overrides()})
    setup_logs(cfg)
    if workers > 1:
        result = run_workers(cfg, workers, config_path, overrides)
        sys.exit(result.failed if result.failed is not None else _worst_exit(result.codes))
    from lib.pipeline import Pipeline
    p = Pipeline(cfg)
    p.install_signal_handlers()
    result = p.run()
    if result.error is not None:
        _fail(result.error)
    sys.exit(result.exit_code)


@cli.group(context_settings=CONTEXT)
def schema():
    """Inspect the Doris table and how messages map onto it."""


@schema.command("describe", context_settings=CONTEXT)
@config_option
@click.option("--table", "table", metavar="DB.TABLE", help="Describe this table instead of doris.table.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@handle_errors
def schema_describe(config_path, table, fmt):
    """Each column's Doris type, nullability, key and default, beside how sinker fills it."""
    overrides = _table_override(table)
    cfg = load(config_path, overrides)
    from lib.commands import describe as d
    from lib.schema import table_columns
    columns = table_columns(cfg)
    rows, warnings = d.describe(columns, cfg.mapping)
    name = f"{cfg.doris.database}.{cfg.doris.table}"
    if fmt == "json":
        import json
        click.echo(json.dumps(d.as_json(rows, warnings, name), indent=2))
    else:
        from rich.console import Console
        from rich.table import Table
        t = Table(title=f"{name} ({cfg.mapping.format})")
        for col in ("column", "doris type", "null", "key", "default", "filled from", "converter",
                    "when missing"):
            t.add_column(col)
        for r in rows:
            t.add_row(r.name, r.type, "yes" if r.nullable else "no", "yes" if r.key else "",
                      "" if r.default is None else r.default, r.source, r.converter, r.when_missing)
        # piped output is not cut to 80 columns: keep whole rows for grep and scripts
        console = Console() if sys.stdout.isatty() else Console(width=200)
        console.print(t)
        for w in warnings:
            console.print(f"[yellow]warning:[/] {w}", highlight=False)


def _table_override(table):
    if not table:
        return None
    if "." not in table:
        raise click.BadParameter("expected DB.TABLE", param_hint="--table")
    db, tbl = table.split(".", 1)
    return {"doris.database": db, "doris.table": tbl}


@cli.command("dry-run", context_settings=CONTEXT)
@config_option
@click.option("--limit", type=click.IntRange(1), default=1000, show_default=True,
              help="Read at most this many messages.")
@click.option("--from", "start", type=click.Choice(["earliest", "latest", "committed"]),
              default="committed", show_default=True,
              help="Where to start reading; committed previews what `run` loads next.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True),
              help="Write the body here instead of stdout.")
@click.option("--wait", "wait_s", type=float, default=5.0, show_default=True,
              help="Stop after this many seconds without new messages.")
@handle_errors
def dry_run_cmd(config_path, limit, start, output, wait_s):
    """Map up to N messages exactly as `run` would and print the Stream Load body.

    Never commits offsets and never writes to Doris. A summary goes to stderr; the exit status
    is 5 when any message would go to the dead-letter output.
    """
    cfg = load(config_path)
    from lib.commands.dry_run import dry_run
    from lib.dead_letter import category
    from lib.schema import SchemaSource
    mapper = SchemaSource(cfg).mapper()
    out = open(output, "wb") if output else click.get_binary_stream("stdout")
    try:
        summary = dry_run(cfg, mapper, limit, start, out, wait_s=wait_s)
    finally:
        if output:
            out.close()
    err = click.get_text_stream("stderr")
    err.write(f"dry-run: {summary.messages} messages read, {summary.rows} rows mapped "
              f"({summary.bytes} bytes), {len(summary.dead)} would go to the dead-letter output\n")
    err.write("headers: " + ", ".join(f"{k}={v!r}" for k, v in summary.headers.items()) + "\n")
    for reason, n in summary.reasons().most_common():
        err.write(f"  {reason}: {n}\n")
        for dl in [x for x in summary.dead if category(x.reason) == reason][:3]:
            err.write(f"    partition {dl.partition} offset {dl.offset}: {dl.reason}\n")
    sys.exit(5 if summary.dead else 0)


@cli.command(context_settings=CONTEXT)
@config_option
@click.option("--from-offset", help="First offset: N, or per partition P:N,P:N.")
@click.option("--from-timestamp", help="First message at or after this time (ISO 8601 or epoch ms).")
@click.option("--to-offset", help="Last offset, inclusive: N or P:N,P:N (default: the end when it starts).")
@click.option("--to-timestamp", help="Stop before the first message at or after this time.")
@click.option("--partitions", help="Only these partitions, e.g. 0,2 (default: all).")
@click.option("--topic", help="Topic to replay (default: the first of kafka.topics).")
@click.option("--table", metavar="DB.TABLE", help="Load into this table instead of doris.table.")
@click.option("--lock-dir", type=click.Path(file_okay=False), help="Where the overlap lock lives.")
@click.option("--plan", "plan_only", is_flag=True,
              help="Print the partitions, offset ranges and messages it would load; touch nothing.")
@click.option("--force", is_flag=True,
              help="Replay offsets the consumer group already committed past (loads them again).")
@click.option("--listen", metavar="HOST:PORT",
              help="Serve /metrics and /health here while it runs (default: no status server, so "
                   "it runs beside `sinker run` on the same config).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="The plan and the summary as text or one JSON object.")
@handle_errors
def replay(config_path, from_offset, from_timestamp, to_offset, to_timestamp, partitions, topic,
           table, lock_dir, plan_only, force, listen, fmt):
    """Bounded backfill, safe to re-run from cron: loads a fixed offset range once.

    End offsets are fixed when it starts; only the given partitions are read and the consumer
    group's offsets are never touched. Labels come from (topic, partition, offset range), so a
    re-run loads nothing twice while Doris remembers the labels (12 hours by default). A range
    below the group's committed offsets was loaded by `run` under other labels: replaying it
    needs --force. Exit 0 done, 2 bad range or overlap without --force, 4 stopped early (it
    prints the command that resumes it), 5 dead letters or interrupted, 6 already running.
    """
    if (from_offset is None) == (from_timestamp is None):
        raise click.UsageError("give exactly one of --from-offset and --from-timestamp")
    if to_offset is not None and to_timestamp is not None:
        raise click.UsageError("give at most one of --to-offset and --to-timestamp")
    cfg = load(config_path, {**(_table_override(table) or {}), "server.listen": listen or ""})
    setup_logs(cfg, sys.stderr if fmt == "json" or plan_only else None)
    from lib.commands import replay as r
    parts = None
    if partitions:
        try:
            parts = [int(x) for x in partitions.split(",") if x.strip()]
        except ValueError:
            raise click.BadParameter("expected partition numbers like 0,2", param_hint="--partitions")
    plan = r.plan_replay(cfg, topic=topic, partitions=parts,
                         from_offset=r.parse_offsets(from_offset, "--from-offset"),
                         from_timestamp_ms=_timestamp_ms(from_timestamp, "--from-timestamp"),
                         to_offset=r.parse_offsets(to_offset, "--to-offset"),
                         to_timestamp_ms=_timestamp_ms(to_timestamp, "--to-timestamp"))
    overlap = r.overlaps_group(plan, r.group_committed(cfg, plan))
    if plan_only:
        _print_plan(plan, overlap, cfg.kafka.group_id, fmt)
        sys.exit(0)
    if overlap and not force:
        from lib.errors import ConfigError
        raise ConfigError(_overlap_text(overlap, cfg.kafka.group_id) + "; add --force to load "
                          "them again anyway, or start at the committed offsets")
    if overlap:
        import logging
        logging.getLogger("sinker.replay").warning(
            "--force: %s", _overlap_text(overlap, cfg.kafka.group_id))
    if sys.stderr.isatty() and fmt == "text":
        with _progress_bars(plan) as on_progress:
            outcome = r.run_replay(cfg, plan, config_path, lock_dir=lock_dir, on_progress=on_progress)
    else:
        outcome = r.run_replay(cfg, plan, config_path, lock_dir=lock_dir)
    code = (5 if outcome.dead_lettered else 0) if outcome.done else \
        (getattr(outcome.error, "exit_code", 4) or 4)
    if fmt == "json":
        import json
        click.echo(json.dumps({
            "done": outcome.done, "exit_code": code, "messages": plan.total,
            "loaded": outcome.loaded, "dead_lettered": outcome.dead_lettered,
            "error": None if outcome.error is None else str(outcome.error),
            "resume": None if outcome.done else outcome.resume, "plan": r.plan_as_dict(plan)}))
    elif outcome.done:
        click.echo(f"replay done: {plan.total} messages in range, {outcome.loaded} rows loaded "
                   f"(rows an earlier run loaded count as loaded), {outcome.dead_lettered} dead letters")
    else:
        why = outcome.error or "stopped before the end of the range"
        click.echo(f"replay incomplete: {why}\nresume with:\n  {outcome.resume}", err=True)
    sys.exit(code)


def _overlap_text(overlap, group) -> str:
    parts = "; ".join(f"partition {p} offsets {first}..{last} (committed {done})"
                      for p, (first, last, done) in sorted(overlap.items()))
    return (f"the range overlaps what consumer group {group} already committed: {parts}; `sinker "
            "run` loaded those rows under its own labels, so replaying them loads them twice")


def _print_plan(plan, overlap, group, fmt):
    from lib.commands.replay import plan_as_dict
    doc = plan_as_dict(plan)
    if fmt == "json":
        import json
        doc["group_overlap"] = {str(p): {"from_offset": a, "to_offset": b, "committed": c}
                                for p, (a, b, c) in sorted(overlap.items())}
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f"replay plan for topic {plan.topic} (batches cut every {plan.chunk_rows} offsets):")
    for p in doc["partitions"]:
        span = (f"offsets {p['from_offset']}..{p['to_offset']}" if p["messages"]
                else "nothing to load")
        click.echo(f"  partition {p['partition']}: {span}, {p['messages']} messages")
    click.echo(f"total: {doc['messages']} messages at most (compaction and transaction markers "
               "leave gaps); nothing was loaded")
    if overlap:
        click.echo(f"warning: {_overlap_text(overlap, group)}; running it needs --force")


@contextlib.contextmanager
def _progress_bars(plan):
    """A bar per partition on the terminal; yields the callback replay feeds with progress."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), transient=False) as bar:
        tasks = {tp.partition: bar.add_task(f"partition {tp.partition}",
                                            total=plan.end[tp] - plan.start[tp])
                 for tp in plan.partitions}

        def update(progress):
            for p, (done, _total) in progress.items():
                bar.update(tasks[p], completed=done)
        yield update


def _worst_exit(codes) -> int:
    """The worst of the workers' exit codes, always one of the table's: a worker killed by a
    signal (negative return code) left nothing committed past what Doris confirmed, like 4."""
    return max((4 if c < 0 else c for c in codes), default=0)


def _timestamp_ms(value, hint):
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    from datetime import datetime, timezone
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter("expected ISO 8601 (2024-05-01T00:00:00Z) or epoch milliseconds",
                                 param_hint=hint)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def _status_url(config_path, url):
    if url:
        return url
    if not config_path:
        raise click.UsageError("give --url or -c CONFIG (whose server.listen names the instance)")
    from lib.commands.status import default_url
    return default_url(load(config_path))


status_options = [
    click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False),
                 envvar="SINKER_CONFIG", help="Config of the instance: its server.listen is the URL."),
    click.option("--url", help="Status URL of the instance, e.g. http://127.0.0.1:9108."),
]


def _with(options):
    def apply(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn
    return apply


@cli.command(context_settings=CONTEXT)
@_with(status_options)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@handle_errors
def status(config_path, url, fmt):
    """What a running sinker is doing: state and why, partitions, loads, dead letters, last error.

    Exit 0 when it is ready, 5 when it runs but is not ready or failed, 4 when it cannot be reached.
    """
    from lib.commands import status as st
    url = _status_url(config_path, url)
    doc = st.fetch(url)
    if fmt == "json":
        import json
        click.echo(json.dumps(doc, indent=2))
    else:
        from rich.console import Console
        console = Console() if sys.stdout.isatty() else Console(width=200)
        console.print(st.render(doc, url))
    sys.exit(0 if doc["ready"] else 5)


@cli.command(context_settings=CONTEXT)
@_with(status_options)
@click.option("--interval", type=click.FloatRange(0.2), default=2.0, show_default=True,
              help="Seconds between refreshes.")
@handle_errors
def top(config_path, url, interval):
    """A live view of a running sinker, refreshed every --interval seconds; q or Ctrl-C quits.

    When stdout is not a terminal it prints one view after the other instead (batch mode).
    """
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    from lib.commands import status as st
    from lib.errors import StatusUnavailable
    url = _status_url(config_path, url)

    def view():
        try:
            return st.render(st.fetch(url), url)
        except StatusUnavailable as e:
            return Text(f"{e}\n(retrying every {interval:g}s; q quits)", style="red")

    try:
        if not sys.stdout.isatty():
            console = Console(width=200)
            with _keys() as key:
                while True:
                    console.print(view())
                    console.file.flush()
                    if key(interval) == "q":
                        break
            return
        with _keys() as key, Live(view(), console=Console(), auto_refresh=False) as live:
            while key(interval) != "q":
                live.update(view(), refresh=True)
    except KeyboardInterrupt:
        pass


@contextlib.contextmanager
def _keys():
    """Yields key(timeout): the key pressed within timeout seconds, or None. On a terminal,
    keys are read one at a time without echo; otherwise it only waits (Ctrl-C still quits)."""
    import select
    import time
    if not sys.stdin.isatty():
        yield lambda timeout: time.sleep(timeout)
        return
    import termios
    import tty
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        def key(timeout):
            ready, _, _ = select.select([fd], [], [], timeout)
            return sys.stdin.read(1) if ready else None
        yield key
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@cli.command(context_settings=CONTEXT)
@config_option
@click.option("--sample", type=click.IntRange(0), default=100, show_default=True,
              help="Messages to map as a schema check.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@handle_errors
def check(config_path, sample, fmt):
    """Connect to Kafka and Doris as `run` would; print pass/fail per step (exit 0 if all pass)."""
    cfg = load(config_path)
    from lib.commands.check import run_checks
    steps = run_checks(cfg, sample=sample)
    if fmt == "json":
        import json
        click.echo(json.dumps([s.__dict__ for s in steps], indent=2))
    else:
        for s in steps:
            mark = "PASS" if s.ok else "FAIL"
            click.echo(f"{mark}  {s.name}: {s.detail}")
    sys.exit(0 if all(s.ok for s in steps) else 5)


def main():
    cli(prog_name="sinker")


if __name__ == "__main__":
    main()
