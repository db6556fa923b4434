"""sinker: stream JSON events from Apache Kafka into Apache Doris.

This is the only place that knows about click, exit codes and terminal output; the library in
lib/ raises typed errors (lib/errors.py) and this layer turns them into messages and exit codes.

The library lives in the folder lib/ and is imported as the package ``sinker_lib``: installed,
pip puts it there under that name (pyproject.toml's package-dir), so it cannot collide with any
other project's top-level ``lib``.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
import sys

import click


def _bind_checkout_lib() -> None:
    """In a checkout (a pyproject.toml beside this file), the package sinker_lib is this
    checkout's lib/ folder: without this, `python sinker.py` would fail with no install, and with
    an editable install shared by several checkouts it would run another one's lib/. Installed
    wheels and the one-file binary have no pyproject.toml here and import sinker_lib as usual."""
    root = os.path.dirname(os.path.abspath(__file__))
    init = os.path.join(root, "lib", "__init__.py")
    if "sinker_lib" in sys.modules or not (os.path.isfile(init)
                                           and os.path.isfile(os.path.join(root, "pyproject.toml"))):
        return
    spec = importlib.util.spec_from_file_location("sinker_lib", init,
                                                  submodule_search_locations=[os.path.dirname(init)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["sinker_lib"] = module
    spec.loader.exec_module(module)


_bind_checkout_lib()

from sinker_lib import __version__  # noqa: E402 - bound above
from sinker_lib.errors import SinkerError  # noqa: E402

CONTEXT = dict(help_option_names=["-h", "--help"], max_content_width=100)


def _redact(text: str) -> str:
    from sinker_lib.observability.logs import redact
    return redact(text)


def _fail(err: BaseException) -> None:
    if isinstance(err, SinkerError):
        click.echo(_redact(f"sinker: error: {err}"), err=True)
        sys.exit(err.exit_code)
    click.echo(_redact(f"sinker: internal error: {type(err).__name__}: {err}\n"
                       "This is a bug: please report it with the log."), err=True)
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


def load(config_path, overrides=None, *, with_log=False, log_stream=None):
    """The validated config, its secrets registered for redaction before anything can print
    them. With ``with_log`` (run, replay) the log is set up (on ``log_stream``, default stdout)
    and takes the config's warnings; the other commands own stdout, so their warnings go to
    stderr."""
    from sinker_lib.config import SECRETS, load_config
    from sinker_lib.observability import logs
    warnings: list[str] = []
    cfg = load_config(config_path, overrides=overrides, warnings=warnings)
    for section, key in SECRETS:
        logs.register_secret(getattr(getattr(cfg, section), key))
    if with_log:
        logs.setup_logging(cfg.logging, log_stream)
        for w in warnings:
            logging.getLogger("sinker.config").warning("%s", w)
    else:
        for w in warnings:
            click.echo(_redact(f"sinker: warning: {w}"), err=True)
    return cfg


config_option = click.option(
    "-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False),
    envvar="SINKER_CONFIG", help="YAML config file (env SINKER_CONFIG).")


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="sinker")
def cli():
    """Stream JSON events from Apache Kafka into Apache Doris, never losing or duplicating a row.

    Exit codes: 0 done; 1 internal error; 2 usage/config error; 3 Doris or Kafka refused for
    good (auth, TLS trust, table, schema, a topic that does not exist); 4 retries exhausted or
    dependency down (nothing past it committed); 5 some messages failed (dry-run/replay), check
    found a misfit, or interrupted twice; 6 another run of the same replay holds its lock.
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
    from sinker_lib.commands.workers import run_workers
    from sinker_lib.worker_process import child_overrides
    cfg = load(config_path, {**(overrides or {}), **child_overrides()}, with_log=True)
    if workers > 1:
        result = run_workers(cfg, workers, config_path, overrides)
        sys.exit(result.failed if result.failed is not None else _worst_exit(result.codes))
    from sinker_lib.pipeline import Pipeline
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
@click.option("--table", "table", metavar="DB.TABLE",
              help="Describe this table only (one of the routes' tables; with a config of one "
                   "table, any table).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@handle_errors
def schema_describe(config_path, table, fmt):
    """Each column's Doris type, nullability, key and default, beside how sinker fills it
    (every table of the config's routes, or the one --table names)."""
    cfg = load(config_path)
    from sinker_lib.commands import describe as d
    from sinker_lib.config import one_table, target_configs
    from sinker_lib.envelope import is_cdc
    from sinker_lib.schema import table_columns, table_model
    described = []
    for tc in [one_table(cfg, table, "schema describe")] if table else target_configs(cfg):
        ordered = is_cdc(tc.mapping) or tc.mapping.sequence_from is not None
        rows, warnings = d.describe(table_columns(tc), tc.mapping,
                                    table_model(tc) if ordered else None,
                                    writers=tc.writer.workers, group_commit=tc.doris.group_commit)
        described.append((f"{tc.doris.database}.{tc.doris.table}", tc.mapping.format, rows, warnings))
    if fmt == "json":
        import json
        docs = [d.as_json(rows, warnings, name) for name, _f, rows, warnings in described]
        click.echo(json.dumps(docs[0] if len(docs) == 1 else {"tables": docs}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table
    # piped output is not cut to 80 columns: keep whole rows for grep and scripts
    console = Console() if sys.stdout.isatty() else Console(width=200)
    for name, fmt_name, rows, warnings in described:
        t = Table(title=f"{name} ({fmt_name})")
        for col in ("column", "doris type", "null", "key", "default", "filled from", "converter",
                    "when missing"):
            t.add_column(col)
        for r in rows:
            t.add_row(r.name, r.type, "yes" if r.nullable else "no", "yes" if r.key else "",
                      "" if r.default is None else r.default, r.source, r.converter, r.when_missing)
        console.print(t)
        for w in warnings:
            console.print(f"[yellow]warning:[/] {w}", highlight=False)


@cli.command(context_settings=CONTEXT)
@click.option("--table", "table", metavar="DB.TABLE", required=True, help="The Doris table to load into.")
@click.option("-c", "--config", "out_path", type=click.Path(dir_okay=False), default="sinker.yaml",
              show_default=True, help="Where to write the config.")
@click.option("--brokers", metavar="HOST:PORT,...", envvar="SINKER_KAFKA_BROKERS",
              help="Kafka bootstrap brokers (env SINKER_KAFKA_BROKERS); unset: a CHANGE ME placeholder.")
@click.option("--topic", help="The topic to read (default: the table's name).")
@click.option("--fe-host", default="127.0.0.1", show_default=True, metavar="HOST[:HTTP_PORT]",
              help="A Doris FE to read the schema from.")
@click.option("--http-port", type=click.IntRange(1, 65535), default=8030, show_default=True,
              help="The FE's HTTP (Stream Load) port, written into the config.")
@click.option("--query-port", type=click.IntRange(1, 65535), default=9030, show_default=True,
              help="The FE's MySQL-protocol port.")
@click.option("--user", default="root", show_default=True, envvar="SINKER_DORIS_USER",
              help="Doris user (env SINKER_DORIS_USER); the password comes from SINKER_DORIS_PASSWORD.")
@click.option("--force", is_flag=True, help="Overwrite the file if it exists.")
@handle_errors
def init(table, out_path, brokers, topic, fe_host, http_port, query_port, user, force):
    """Write a commented starting config for DB.TABLE from the table's schema (DESCRIBE).

    Every column is listed with its type and what a message without it loads. Refuses to
    overwrite an existing file without --force. Next: sinker check -c FILE.
    """
    import os
    from sinker_lib.commands.init import render_config
    from sinker_lib.config import DorisConfig, config_from_dict
    from sinker_lib.schema import fetch_schema
    import yaml
    db, tbl = _table_override(table).values()
    if os.path.exists(out_path) and not force:
        raise click.UsageError(f"{out_path} exists; pass --force to overwrite it, or -c NEW_FILE")
    broker_list = [b.strip() for b in (brokers or "").split(",") if b.strip()]
    fe = fe_host if ":" in fe_host else f"{fe_host}:{http_port}"
    doris = DorisConfig(fe_hosts=(fe,), http_port=http_port, query_port=query_port, user=user,
                        password=os.environ.get("SINKER_DORIS_PASSWORD", ""))
    columns = fetch_schema(doris, db, tbl)
    text = render_config(columns, database=db, table=tbl, brokers=broker_list or ["kafka-1:9092"],
                         topic=topic or tbl, fe_hosts=[fe_host], http_port=http_port,
                         query_port=query_port, user=user, brokers_given=bool(broker_list))
    config_from_dict(yaml.safe_load(text), env={})     # what we write must load as written
    tmp = f"{out_path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, out_path)
    click.echo(f"wrote {out_path}: {len(columns)} columns of {db}.{tbl}, topic {topic or tbl}"
               + ("" if broker_list else "; set kafka.brokers (CHANGE ME)")
               + f"\nnext: sinker check -c {out_path}")


@cli.group("dead-letters", context_settings=CONTEXT)
def dead_letters():
    """Work with the dead-letter file: load corrected messages back into Doris."""


@dead_letters.command("resend", context_settings=CONTEXT)
@config_option
@click.option("--file", "path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="A dead-letter file (JSON lines), its `value` fields corrected.")
@click.option("--table", metavar="DB.TABLE",
              help="Load every line into this table (default: doris.table, only lines recorded for it).")
@click.option("--dry-run", is_flag=True, help="Map the lines and report; load nothing, write nothing.")
@handle_errors
def dead_letters_resend(config_path, path, table, dry_run):
    """Load the dead letters of FILE into Doris through the same mapping and checks as `run`.

    Each line's `value` (the text; or `value_b64` when `value` is absent) is mapped again and
    loaded under labels made from the file's name, its line ranges and the lines' Kafka
    offsets: running the same file again loads nothing twice while Doris remembers the labels
    (12 hours by default). Rows that fail again go to FILE's name with .failed.jsonl (rewritten
    by every run); exit 5 when there are any.
    """
    from sinker_lib.config import one_table
    cfg = one_table(load(config_path, with_log=True), table, "dead-letters resend")
    from sinker_lib.commands import resend as r
    from sinker_lib.schema import SchemaSource
    mapper = SchemaSource(cfg).mapper()
    target = f"{cfg.doris.database}.{cfg.doris.table}"
    summary = r.resend(cfg, path, mapper, only_table=None if table else target, dry_run=dry_run)
    verb = "would load" if dry_run else "loaded"
    ok = summary.sent - len(summary.failed)
    click.echo(f"dead-letters resend{' (dry run)' if dry_run else ''}: {summary.lines} lines in "
               f"{path}, {summary.sent} sent to {target} in {summary.chunks} loads: {ok} {verb}"
               + ("" if dry_run else " (rows an earlier resend of this file loaded count as loaded)")
               + f", {len(summary.failed)} failed")
    for reason, n in summary.skipped.most_common():
        click.echo(f"  skipped {n}: {reason}")
    for reason, n in summary.failed_reasons().most_common():
        click.echo(f"  failed {n}: {reason}")
    if summary.failed_path:
        click.echo(f"rows that failed again: {summary.failed_path} (fix them and resend that file)")
    if any(s.kafka == "key" for s in cfg.mapping.columns) and not dry_run:
        click.echo("note: @kafka.key columns load the key the dead letter kept (key or key_b64); "
                   "lines without one (written by an older sinker, or edited) load NULL",
                   err=True)
    sys.exit(5 if summary.failed else 0)


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
@click.option("--table", "table", metavar="DB.TABLE",
              help="The table whose body to show (required when the routes load several).")
@handle_errors
def dry_run_cmd(config_path, limit, start, output, wait_s, table):
    """Map up to N messages exactly as `run` would and print the Stream Load body.

    Never commits offsets and never writes to Doris. A summary goes to stderr; the exit status
    is 5 when any message would go to the dead-letter output.
    """
    from sinker_lib.config import one_table
    whole = load(config_path)
    cfg = one_table(whole, table, "dry-run")
    from sinker_lib.commands.dry_run import dry_run
    from sinker_lib.dead_letter import category
    from sinker_lib.schema import SchemaSource
    mapper = SchemaSource(cfg).mapper()
    out = open(output, "wb") if output else click.get_binary_stream("stdout")
    try:
        summary = dry_run(cfg, mapper, limit, start, out, wait_s=wait_s, routes=whole)
    finally:
        if output:
            out.close()
    err = click.get_text_stream("stderr")
    other = f", {summary.other_tables} routed to other tables" if summary.other_tables else ""
    err.write(f"dry-run: {summary.messages} messages read{other}, {summary.rows} rows mapped "
              f"({summary.bytes} bytes), {len(summary.dead)} would go to the dead-letter output\n")
    err.write(_curl_lines(cfg, summary.headers, output or "body." + cfg.mapping.format))
    for reason, n in summary.reasons().most_common():
        err.write(f"  {reason}: {n}\n")
        for dl in [x for x in summary.dead if category(x.reason) == reason][:3]:
            err.write(f"    partition {dl.partition} offset {dl.offset}: {dl.reason}\n")
    sys.exit(5 if summary.dead else 0)


def _curl_lines(cfg, headers, body_path) -> str:
    """The load as a curl command (without a label), each header as it goes on the wire (``\\x09`` is Doris's hex
    form, sent as those four characters), shell-quoted so it can be pasted as is."""
    import shlex
    from sinker_lib.stream_load import load_headers
    fe = cfg.doris.fe_addresses[0]
    url = (f"{'https' if cfg.doris.https else 'http'}://{fe.netloc}/api/{cfg.doris.database}/"
           f"{cfg.doris.table}/_stream_load")
    hdrs = load_headers(cfg.doris, headers, None if cfg.doris.group_commit != "off" else "")
    hdrs.pop("label", None)  # sinker's labels are per batch; without one Doris makes one up
    lines = [f"curl --location-trusted -u {shlex.quote(cfg.doris.user)} -T {shlex.quote(body_path)}"]
    lines += [f"  -H {shlex.quote(f'{k}: {v}')}" for k, v in hdrs.items()]
    return "Stream Load headers, as curl sends them:\n" + " \\\n".join(lines + [f"  {url}"]) + "\n"


@cli.command(context_settings=CONTEXT)
@config_option
@click.option("--from-offset", help="First offset: N, or per partition P:N,P:N.")
@click.option("--from-timestamp", help="First message at or after this time (ISO 8601 or epoch ms).")
@click.option("--to-offset", help="Last offset, inclusive: N or P:N,P:N (default: the end when it starts).")
@click.option("--to-timestamp", help="Stop before the first message at or after this time.")
@click.option("--partitions", help="Only these partitions, e.g. 0,2 (default: all).")
@click.option("--topic", help="Topic to replay (default: the first of kafka.topics; required when only kafka.topics_pattern is set).")
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
    from sinker_lib.config import one_table
    cfg = one_table(load(config_path, {"server.listen": listen or ""}, with_log=True,
                         log_stream=sys.stderr if fmt == "json" or plan_only else None),
                    table, "replay")
    from sinker_lib.commands import replay as r
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
        from sinker_lib.errors import ConfigError
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
        click.echo(_redact(f"replay incomplete: {why}\nresume with:\n  {outcome.resume}"), err=True)
    sys.exit(code)


def _overlap_text(overlap, group) -> str:
    parts = "; ".join(f"partition {p} offsets {first}..{last} (committed {done})"
                      for p, (first, last, done) in sorted(overlap.items()))
    return (f"the range overlaps what consumer group {group} already committed: {parts}; `sinker "
            "run` loaded those rows under its own labels, so replaying them loads them twice")


def _print_plan(plan, overlap, group, fmt):
    from sinker_lib.commands.replay import plan_as_dict
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
    from sinker_lib.commands.status import default_url
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
    from sinker_lib.commands import status as st
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

    from sinker_lib.commands import status as st
    from sinker_lib.errors import StatusUnavailable
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
              help="Messages to map as a schema check (read after the group's commits).")
@click.option("--max-bad-ratio", type=click.FloatRange(0, 1), default=0.01, show_default=True,
              help="Fail the sample step only when more than this share would be dead letters.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@handle_errors
def check(config_path, sample, max_bad_ratio, fmt):
    """Connect to Kafka and Doris as `run` would; print PASS/FAIL/SKIP per step.

    Nothing is loaded, nothing is committed. Exit status: 0 all steps passed; 2 the config is
    invalid; 3 refused (Kafka login or certificate, Doris user or password); 4 unreachable (a
    broker, FE, BE or the query port did not answer); 5 misfit (topic or table missing, mapped
    columns the table lacks, sampled messages that would be dead letters above --max-bad-ratio,
    a dead-letter output run could not write). When several steps fail, the lowest code wins.
    """
    cfg = load(config_path)
    from sinker_lib.commands.check import exit_code, run_checks
    steps = run_checks(cfg, sample=sample, max_bad_ratio=max_bad_ratio)
    if fmt == "json":
        import json
        click.echo(json.dumps([s.as_dict() for s in steps], indent=2))
    else:
        for s in steps:
            click.echo(f"{s.status}  {s.name}: {s.detail}")
    sys.exit(exit_code(steps))


def main():
    cli(prog_name="sinker")


if __name__ == "__main__":
    main()
