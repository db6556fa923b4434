"""Routes: the config's routes: list (validated in config.py) and the Router that splits each
partition's records by target table; the batchers cut one batch per table."""
import json

import pytest

from sinker_lib import batcher as b
from sinker_lib.config import config_from_dict, target_configs
from sinker_lib.errors import ConfigError
from sinker_lib.routing import Router
from sinker_lib.kafka_client import TopicPartition
from tests.fakes import FakeMapper, Rec

BASE = {"kafka": {"brokers": ["k:9092"], "group_id": "g"}, "doris": {"database": "shop"}}


def routed(routes, **top):
    return config_from_dict({**BASE, **top, "routes": routes}, env={})


def problems(routes, **top):
    with pytest.raises(ConfigError) as e:
        routed(routes, **top)
    return str(e.value).splitlines()


def test_a_single_table_config_is_one_route():
    cfg = config_from_dict({"kafka": {"brokers": ["k:9092"], "topics": ["t"]},
                            "doris": {"database": "d", "table": "x"}}, env={})
    assert cfg.tables == ("d.x",) and cfg.kafka.group_id == "sinker.d.x"
    assert target_configs(cfg) == [cfg]
    assert Router(cfg).single


def test_routes_take_their_own_mapping_batch_and_delivery():
    cfg = routed([{"topics": ["o"], "table": "orders"},
                  {"topics": ["e"], "table": "other.clicks", "mapping": {"format": "json"},
                   "batch": {"max_rows": 5}, "delivery": "at_least_once",
                   "group_commit": "async_mode"}],
                 mapping={"format": "csv", "strict_mode": False})
    assert cfg.tables == ("shop.orders", "other.clicks") and cfg.kafka.topics == ("o", "e")
    orders, clicks = target_configs(cfg)
    assert (orders.mapping.format, orders.batch.max_rows, orders.delivery) == ("csv", 100_000, "exactly_once")
    assert (clicks.doris.database, clicks.doris.table, clicks.mapping.format) == ("other", "clicks", "json")
    assert clicks.mapping.strict_mode is False              # the top-level mapping underneath
    assert (clicks.batch.max_rows, clicks.delivery, clicks.doris.group_commit) == \
        (5, "at_least_once", "async_mode")
    assert cfg.exactly_once                                 # one table is: cuts are recorded


def test_route_problems_name_the_route():
    got = problems([{"topics": ["o"], "table": "x", "mapping": {"format": "xml"}},
                    {"topics": ["p"], "table": "y", "group_commit": "async_mode"},
                    {"table": "z", "bogus": 1}])
    assert got[0].startswith("routes[0].mapping.format: expected one of csv, json")
    assert got[1].startswith("routes[1].group_commit: async_mode needs delivery: at_least_once")
    assert any(p.startswith("routes[2].bogus: unknown key") for p in got)
    assert any(p.startswith("routes[2]: name its topics") for p in got)


def test_one_table_one_route_and_a_group_for_many_tables():
    assert problems([{"topics": ["o"], "table": "x"}, {"topics": ["p"], "table": "x"}])[0] \
        .startswith("routes[1]: table shop.x is also a target of routes[0]")
    with pytest.raises(ConfigError, match="kafka.group_id: required with routes into more"):
        config_from_dict({"kafka": {"brokers": ["k:9092"]}, "doris": {"database": "s"},
                          "routes": [{"topics": ["o"], "table": "x"},
                                     {"topics": ["p"], "table": "y"}]}, env={})


def test_topics_and_table_belong_in_the_routes():
    got = problems([{"topics": ["o"], "table": "x"}], kafka={**BASE["kafka"], "topics": ["o"]})
    assert got == ["kafka.topics: set with routes: list each route's topics in the route"]


def test_table_from_needs_its_allow_list():
    got = problems([{"topics": ["o"], "table_from": "payload.table"}])
    assert got[0].startswith("routes[0].tables: required with table_from")


def _records(topic, values, partition=0):
    return [Rec(topic, partition, i, 1000 + i, None, v) for i, v in enumerate(values)]


def _msg(**kv):
    return json.dumps(kv).encode()


def test_router_splits_by_where_and_table_from_first_match_wins():
    cfg = routed([{"topics": ["e"], "where": {"field": "type", "equals": "click"}, "table": "clicks"},
                  {"topics": ["e"], "table_from": "meta.table", "tables": ["a", "b"]},
                  {"topics": ["o"], "table": "orders"}])
    r = Router(cfg)
    names = {t.index: t.full_name or "unrouted" for t in r.targets}
    recs = _records("e", [_msg(type="click"), _msg(meta={"table": "b"}), _msg(meta={"table": "zz"}),
                          b"[1]", _msg(type="click", meta={"table": "a"}), b"{bad", _msg(type=1)])
    got = {names[t]: [x.offset for x in rs] for t, rs in r.split("e", recs)}
    assert got["shop.clicks"] == [0, 4] and got["shop.b"] == [1]
    assert [x.offset for x in dict(r.split("e", recs))[r.unmatched.index]] == [2, 6]
    assert [x.offset for x in dict(r.split("e", recs))[r.unreadable.index]] == [3, 5]
    whole = _records("o", [b"anything"])
    assert r.split("o", whole) == [(2 + 0 + 1, whole)]      # orders: no rule, no parsing
    assert r.split("unknown", whole) == [(r.unmatched.index, whole)]


def test_where_compares_type_and_value():
    cfg = routed([{"topics": ["e"], "where": {"field": "n", "equals": 1}, "table": "ones"}])
    r = Router(cfg)
    recs = _records("e", [_msg(n=1), _msg(n=True), _msg(n="1"), _msg(n=1.0)])
    assert [x.offset for x in dict(r.split("e", recs))[0]] == [0]


def test_a_field_rule_reads_a_number_json_forbids_as_unreadable_not_as_a_value():
    """The router decodes as the mapper does: `{"t": -}` is not 0 and `1.` is not 1.0, so such a
    message is an invalid_json dead letter naming the number, also with unmatched: skip."""
    r = Router(routed([{"topics": ["e"], "where": {"field": "t", "equals": 1}, "table": "x"}],
                      unmatched="skip"))
    recs = _records("e", [b'{"t": 1}', b'{"t": -}', b'{"t": 1.}', b'{"t": 1, "v": 012}',
                          b'{"t": 1, "v": NaN}'])
    split = dict(r.split("e", recs))
    assert [x.offset for x in split[0]] == [0, 4]            # NaN is the mapper's to judge
    assert [x.offset for x in split[r.unreadable.index]] == [1, 2, 3]
    dead: list = []
    r.unrouted_mappers[r.unreadable.index].map_records(split[r.unreadable.index], [], dead)
    assert [d.reason for d in dead] == [
        f"invalid_json: {t!r} is not a JSON number (no leading zero, a digit after '-' and after "
        "'.'): fix the producer's encoder, or send the value as a string" for t in ("-", "1.", "012")]


def test_unrouted_mappers_dead_letter_or_skip():
    r = Router(routed([{"topics": ["e"], "where": {"field": "t", "equals": "x"}, "table": "x"}]))
    dead: list = []
    recs = _records("e", [b"{bad", b""])
    r.unrouted_mappers[r.unreadable.index].map_records(recs, [], dead)
    assert [d.reason.split(":")[0] for d in dead] == ["invalid_json", "empty"]
    dead = []
    r.unrouted_mappers[r.unmatched.index].map_records(recs, [], dead)
    assert [d.reason.split(":")[0] for d in dead] == ["no_route", "no_route"]
    skip = Router(routed([{"topics": ["e"], "where": {"field": "t", "equals": "x"}, "table": "x"}],
                         unmatched="skip"))
    dead = []
    skip.unrouted_mappers[skip.unmatched.index].map_records(recs, [], dead)
    assert dead == []


def _routes(cfg):
    router = Router(cfg)
    factories = [(lambda t=t: b.Batch(t.db, t.table, FakeMapper(), 0.0, target=t)) for t in router.targets]
    return b.Routed(router, factories)


SPLIT = [{"topics": ["e"], "where": {"field": "k", "equals": "a"}, "table": "a"},
         {"topics": ["e"], "where": {"field": "k", "equals": "b"}, "table": "b"}]


def test_exactly_once_chunks_seal_every_tables_batch_with_the_chunks_range():
    cfg = routed(SPLIT, batch={"max_rows": 3})
    cuts = b.PartitionBatches(cfg.batch, None, _routes(cfg))
    tp = TopicPartition("e", 0)
    recs = _records("e", [_msg(k="a"), _msg(k="b"), _msg(k="a"), _msg(k="a"), _msg(k="b")])
    sealed = cuts.add({tp: recs}, 0.0)
    assert [(x.table, x.ranges, x.rows) for x, _ in sealed] == \
        [("a", {("e", 0): (0, 4)}, 3), ("b", {("e", 0): (0, 4)}, 2)]
    assert {x.first_ts[("e", 0)] for x, _ in sealed} == {recs[0].timestamp}


def test_at_least_once_batches_per_table_hold_their_partitions():
    cfg = routed(SPLIT, delivery="at_least_once", batch={"max_rows": 2})
    held = []
    cuts = b.OpenBatch(cfg.batch, None, _routes(cfg), hold=lambda owner, key, first: held.append(
        (owner.table, key, first)))
    tp = TopicPartition("e", 0)
    recs = _records("e", [_msg(k="b"), _msg(k="a"), _msg(k="a"), _msg(k="b"), _msg(k="b")])
    sealed = cuts.add({tp: recs}, 0.0)
    assert [(x.table, x.ranges) for x, _ in sealed] == [("b", {("e", 0): (0, 4)}),
                                                         ("a", {("e", 0): (1, 2)})]
    assert held == [("b", ("e", 0), 0), ("a", ("e", 0), 1)]
    more = [Rec("e", 0, 5, 1005, None, _msg(k="a"))]
    assert cuts.add({tp: more}, 0.0) == [] and held[-1] == ("a", ("e", 0), 5)
    assert [(x.table, x.ranges) for x, _ in cuts.seal_all("shutdown")] == [("a", {("e", 0): (5, 5)})]


def test_replay_and_resend_load_every_route_with_labels():
    from sinker_lib.config import with_labels
    cfg = routed([{"topics": ["e"], "table": "x", "delivery": "at_least_once",
                   "group_commit": "async_mode"}])
    assert target_configs(cfg)[0].doris.group_commit == "async_mode"
    assert target_configs(with_labels(cfg))[0].doris.group_commit == "off"


def test_tombstones_of_a_debezium_route_are_skipped_not_dead_lettered():
    """Debezium sends a null value after each delete; under a field rule it cannot be read, but
    the Debezium route would have skipped it: so does the router (counted as skipped)."""
    cdc = routed([{"topics": ["db"], "where": {"field": "payload.source.table", "equals": "items"},
                   "table": "items", "mapping": {"envelope": "debezium"}}])
    r = Router(cdc)
    recs = _records("db", [None])
    [(t, _)] = r.split("db", recs)
    assert t == r.tombstone.index
    dead: list = []
    r.unrouted_mappers[t].map_records(recs, [], dead)
    assert dead == []
    plain = Router(routed([{"topics": ["e"], "where": {"field": "t", "equals": "x"}, "table": "x"}]))
    assert plain.split("e", _records("e", [None]))[0][0] == plain.unreadable.index


def test_a_route_behind_one_that_takes_the_whole_topic_is_an_error():
    got = problems([{"topics": ["e", "f"], "table": "all"},
                    {"topics": ["e"], "where": {"field": "t", "equals": "x"}, "table": "x"}])
    assert got == ["routes[1]: never takes a message of e: routes[0] takes every message of it "
                   "first (routes are tried in order): move it before, or give routes[0] a where"]


def test_the_group_error_names_the_group_a_single_table_config_had():
    with pytest.raises(ConfigError, match="keeps its offsets with that table's default group, "
                                          "group_id: sinker.s.x"):
        config_from_dict({"kafka": {"brokers": ["k:9092"]}, "doris": {"database": "s"},
                          "routes": [{"topics": ["o"], "table": "x"},
                                     {"topics": ["p"], "table": "y"}]}, env={})


def test_table_of_a_single_config_takes_that_tables_default_group():
    from sinker_lib.config import one_table
    cfg = config_from_dict({"kafka": {"brokers": ["k:9092"], "topics": ["t"]},
                            "doris": {"database": "d", "table": "x"}}, env={})
    other = one_table(cfg, "d2.y", "replay")
    assert (other.doris.database, other.doris.table, other.kafka.group_id) == ("d2", "y", "sinker.d2.y")
    own = config_from_dict({"kafka": {"brokers": ["k:9092"], "topics": ["t"], "group_id": "mine"},
                            "doris": {"database": "d", "table": "x"}}, env={})
    assert one_table(own, "d2.y", "replay").kafka.group_id == "mine"


def test_routes_topics_patterns_make_one_subscription_checked_per_route():
    cfg = routed([{"topics_pattern": "orders\\..*", "table": "o"},
                  {"topics_pattern": "^users_[0-9]+$", "table": "u"}, {"topics": ["x"], "table": "x"}])
    assert cfg.kafka.topics == ("x",) and cfg.kafka.topics_pattern == "(orders\\..*|users_[0-9]+)"
    r = Router(cfg)
    assert [t for t, _ in r.split("orders.eu", _records("orders.eu", [b"{}"]))] == [0]
    assert [t for t, _ in r.split("users_12", _records("users_12", [b"{}"]))] == [1]
    got = problems([{"topics_pattern": "orders\\d+", "table": "o"}])
    assert got[0].startswith("routes[0].topics_pattern: 'orders\\\\d+': '\\d' at position 6")


def test_a_single_table_config_with_a_topics_pattern_routes_its_topics_to_the_table():
    cfg = config_from_dict({"kafka": {"brokers": ["k:9092"], "topics_pattern": "orders\\..*"},
                            "doris": {"database": "d", "table": "x"}}, env={})
    r = Router(cfg)
    recs = _records("orders.eu", [b"{}"])
    assert r.single and r.split("orders.eu", recs) == [(0, recs)]
    assert target_configs(cfg)[0].kafka.topics_pattern == "orders\\..*"
