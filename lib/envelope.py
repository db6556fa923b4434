"""Change data: which rows a message upserts or deletes, and whether the table can take that.

``mapping.envelope: debezium`` reads Debezium's JSON change event, bare (``{op, before, after,
source, ts_ms}``) or inside the JSON converter's ``{schema, payload}`` wrapper, told apart per
message because one topic may carry both during a connector's reconfiguration. ``c`` (create),
``r`` (snapshot read) and ``u`` (update) load ``after``; ``d`` deletes the key held in ``before``.
``mapping.delete_when`` marks deletes in any other producer's messages by one field's value.

Deletes reach Doris as rows with the hidden ``__DORIS_DELETE_SIGN__`` = 1, which only UNIQUE KEY
tables accept (``fit`` says so before anything loads). Ordering between changes of one key comes
from the table's sequence column when it has one; without one the last row loaded wins, which
sinker keeps in offset order per partition.
"""
from __future__ import annotations

from typing import NamedTuple

DELETE_SIGN = "__DORIS_DELETE_SIGN__"
UPSERT_OPS = frozenset(("c", "r", "u"))


class EnvelopeError(Exception):
    """The message is not a change this envelope can apply: ``category`` and ``detail`` make the
    dead letter's reason."""

    def __init__(self, category: str, detail: str):
        super().__init__(f"{category}: {detail}")
        self.category, self.detail = category, detail


class TableModel(NamedTuple):
    """What SHOW CREATE TABLE says about how Doris merges rows of one key."""
    keys_type: str                 # UNIQUE | DUPLICATE | AGGREGATE
    sequence_col: str | None       # PROPERTIES "function_column.sequence_col"
    sequence_type: bool = False    # PROPERTIES "function_column.sequence_type" (hidden column)


def is_cdc(mapping_cfg) -> bool:
    """True when the mapping can delete rows (each row then carries the delete sign)."""
    return mapping_cfg.envelope == "debezium" or mapping_cfg.delete_when is not None


def debezium(obj) -> tuple[bool, dict, dict]:
    """(is_delete, row, event) of one decoded Debezium message; raises EnvelopeError."""
    event = obj
    if "payload" in obj and "schema" in obj:
        event = obj["payload"]
        if type(event) is not dict:
            raise EnvelopeError("cdc_envelope", "the {schema, payload} wrapper holds no event "
                                "object in payload")
    op = event.get("op")
    if op in UPSERT_OPS:
        row = event.get("after")
        if type(row) is not dict:
            raise EnvelopeError("cdc_envelope", f"op {op!r} without an 'after' object")
        return False, row, event
    if op == "d":
        row = event.get("before")
        if type(row) is not dict:
            raise EnvelopeError("cdc_envelope", "op 'd' without a 'before' object: the source "
                                "must log the old row's key (e.g. Postgres REPLICA IDENTITY)")
        return True, row, event
    if op is None:
        raise EnvelopeError("cdc_envelope", "no 'op' field: not a Debezium change event (set "
                            "mapping.envelope: none for plain rows)")
    raise EnvelopeError("cdc_op", f"op {op!r} is not one of c, r, u, d (truncates and schema "
                        "changes are not loaded)")


def delete_when(path: tuple[str, ...], equals):
    """The splitter for ``mapping.delete_when``: a message whose field equals the value (same
    JSON type) deletes its key; any other message is a row."""
    want = type(equals)

    def split(obj) -> tuple[bool, dict, dict]:
        v = obj
        for k in path:
            v = v.get(k) if type(v) is dict else None
        return (type(v) is want and v == equals), obj, obj
    return split


def fit(mapping_cfg, model: TableModel | None, *, writers: int = 1,
        group_commit: str = "off") -> tuple[list[str], list[str]]:
    """(errors, warnings) for this mapping on a table of this model; None: not known (the
    columns come from mapping.schema). ``writers`` and ``group_commit``: without a sequence
    column the last load wins, so loads of one partition must land in offset order — one
    writer, labelled loads."""
    errors, warnings = [], []
    if model is None:
        return errors, warnings
    how = "envelope: debezium" if mapping_cfg.envelope == "debezium" else "delete_when"
    if is_cdc(mapping_cfg) and model.keys_type != "UNIQUE":
        errors.append(f"mapping.{how} deletes rows, but the table is {model.keys_type} KEY: Doris "
                      "loads deletes (__DORIS_DELETE_SIGN__) only into UNIQUE KEY tables. Create "
                      "the table with UNIQUE KEY(<the source's primary key>), or remove "
                      f"mapping.{how.split(':')[0]}")
    has_sequence = model.sequence_col is not None or model.sequence_type
    if mapping_cfg.sequence_from is not None and not has_sequence:
        errors.append("mapping.sequence_from is set, but the table has no sequence column: give "
                      "the (UNIQUE KEY) table PROPERTIES (\"function_column.sequence_col\" = "
                      "\"<column>\"), or remove mapping.sequence_from")
    if model.sequence_type and model.sequence_col is None and mapping_cfg.sequence_from is not None \
            and mapping_cfg.sequence_column is None:
        errors.append("the table has a hidden sequence column (function_column.sequence_type): "
                      "set mapping.sequence_column to the column whose value it takes")
    if is_cdc(mapping_cfg) and model.keys_type == "UNIQUE" and not has_sequence:
        unordered = [x for x, on in (
            (f"writer.workers is {writers} (two batches of one partition can load at once, a "
             "retried one after a newer one)", writers > 1),
            (f"doris.group_commit is {group_commit} (Doris groups loads per BE, not in the order "
             "sent)", group_commit != "off")) if on]
        if unordered:
            errors.append(f"mapping.{how} on a table without a sequence column: the last row "
                          "loaded wins, so the loads of a partition must land in offset order, "
                          f"and {' and '.join(unordered)}. Add function_column.sequence_col to "
                          "the table (and set mapping.sequence_from), or set writer.workers: 1 "
                          "and doris.group_commit: off")
        else:
            warnings.append(f"mapping.{how} on a table without a sequence column: the last row "
                            "loaded wins; one writer loads each partition in offset order, but "
                            "changes of one key in two partitions, or a partition moving between "
                            "members under at_least_once, can land out of order; add "
                            "function_column.sequence_col to the table and set "
                            "mapping.sequence_from")
    return errors, warnings
