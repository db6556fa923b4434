"""Labels: deterministic, valid for Doris, distinct for distinct ranges, readable where they fit."""
import itertools
import subprocess
import sys

from sinker_lib.labels import make_label, subset_label, valid_label


def test_readable_and_valid():
    label = make_label("sinker", "demo.events", {("events", 0): (100, 199)})
    assert label.startswith("sinker_demo_events_events_p0-100-199_")
    assert valid_label(label) and len(label) <= 128


def test_same_inputs_same_label_whatever_the_dict_order():
    a = make_label("sinker", "db.t", {("a", 1): (5, 9), ("a", 0): (0, 4), ("b", 0): (7, 7)})
    b = make_label("sinker", "db.t", {("b", 0): (7, 7), ("a", 0): (0, 4), ("a", 1): (5, 9)})
    assert a == b
    assert "_a_p0-0-4_p1-5-9_b_p0-7-7_" in a


def test_same_label_in_another_process():
    """No per-process randomness (PYTHONHASHSEED): a restart must reproduce the label."""
    code = ("import sinker; from sinker_lib.labels import make_label;"
            "print(make_label('sinker', 'db.t', {('events', 3): (10, 20), ('x', 1): (1, 2)}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "12345", "PYTHONPATH": "."}).stdout.strip()
    assert out == make_label("sinker", "db.t", {("events", 3): (10, 20), ("x", 1): (1, 2)})


def test_distinct_inputs_distinct_labels():
    seen = {}
    for t, p, a, b, table, prefix in itertools.product(
            ["events", "ev.ents", "ev_ents"], [0, 1], [0, 10], [99, 100], ["db.t", "db_t"],
            ["sinker", "replay"]):
        label = make_label(prefix, table, {(t, p): (a, b)})
        key = (prefix, table, t, p, a, b)
        assert label not in seen, (key, seen.get(label))
        seen[label] = key


def test_sanitizes_characters_outside_the_set():
    label = make_label("sinker", "db.tbl", {("orders.v1+eu", 2): (0, 1)})
    assert valid_label(label)
    assert "orders_v1_eu_p2-0-1" in label


def test_long_inputs_are_cut_with_a_hash():
    ranges = {(f"topic-with-a-rather-long-name-{i}", p): (10 ** 12, 10 ** 12 + 999)
              for i in range(5) for p in range(20)}
    label = make_label("sinker", "warehouse.events_enriched", ranges)
    assert valid_label(label) and len(label) == 128
    assert label.startswith("sinker_warehouse_events_enriched_topic-with")
    other = dict(ranges)
    other[("topic-with-a-rather-long-name-4", 19)] = (10 ** 12, 10 ** 12 + 998)
    assert make_label("sinker", "warehouse.events_enriched", other) != label


def test_subset_label_depends_on_the_rows_only():
    """A round after rejected rows and a half found by halving get the same label when they
    hold the same rows, so no path can load the same rows under two labels."""
    label = make_label("sinker", "demo.events", {("events", 0): (100, 199)})
    a = subset_label(label, [("events", 0, o) for o in (101, 105, 150)])
    assert a == subset_label(label, [("events", 0, o) for o in (150, 101, 105)])   # order-free
    assert a != subset_label(label, [("events", 0, o) for o in (101, 105)])
    assert a != label and a.startswith(label) and valid_label(a) and len(a) <= 128


def test_subset_label_of_a_full_length_label():
    ranges = {(f"t{i}", p): (10 ** 15, 10 ** 15 + 1) for i in range(10) for p in range(10)}
    label = make_label("sinker", "db.t", ranges)
    assert len(label) == 128
    subsets = [subset_label(label, [("t0", 0, 10 ** 15 + k)]) for k in (0, 1)]
    assert len({label, *subsets}) == 3
    assert all(valid_label(x) and len(x) <= 128 for x in subsets)


def test_valid_label():
    assert valid_label("a-b_c:1")
    assert not valid_label("")
    assert not valid_label("a.b")
    assert not valid_label("x" * 129)
    assert valid_label("x" * 128)


def test_salt_changes_only_the_hash_and_is_deterministic():
    from sinker_lib.labels import make_label
    ranges = {("events", 0): (0, 99)}
    plain = make_label("sinker", "db.t", ranges)
    a = make_label("sinker", "db.t", ranges, salt="events:0:1700000000000")
    b = make_label("sinker", "db.t", ranges, salt="events:0:1700000000000")
    c = make_label("sinker", "db.t", ranges, salt="events:0:1800000000000")
    assert a == b and a != c and a != plain
    assert a.rsplit("_", 1)[0] == plain.rsplit("_", 1)[0]   # the readable part is the same


def test_label_window_from_the_load_rate():
    from sinker_lib.labels import LabelWindow
    w = LabelWindow()
    assert w.window_s("db", 0.0) == LabelWindow.KEEP_S          # no loads: 12 h
    for i in range(300):                                         # 1 load/s for five minutes
        w.observe("db", float(i))
    assert abs(w.window_s("db", 300.0) - 2000) < 20             # 2,000 labels last ~2,000 s
    for i in range(3000):                                        # then 10 loads/s
        w.observe("db", 300.0 + i / 10)
    assert w.window_s("db", 600.0) < 250 and w.window_s("other", 600.0) == LabelWindow.KEEP_S


def test_label_window_warns_once_per_database_per_ten_minutes():
    from sinker_lib.labels import LabelWindow
    w = LabelWindow()
    warned = [t for t in range(0, 1500) for _ in range(5) if w.observe("db", t / 1.0)[1]]
    assert warned[0] < 100 and all(b - a > LabelWindow.WARN_EVERY_S for a, b in zip(warned, warned[1:]))
    assert len(warned) == 3 and not w.observe("other", 1500.0)[1]
