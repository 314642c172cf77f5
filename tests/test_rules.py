"""The pure rule engine: gluon_finetune.rules.resolve (and explain(net, rules) on top of it)."""
import itertools
import math
import re
import warnings

import mxnet as mx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mxnet.gluon import nn

from gluon_finetune.reporting.explain import explain
from gluon_finetune.rules.resolution import RuleError, Setting, resolve
from gluon_finetune.structure.listing import block_names, structural_paths

# A fixed universe: three blocks a, b, c (weight + bias each) and a parent path "ab".
NAMES = ("a_weight", "a_bias", "b_weight", "b_bias", "c_weight", "c_bias")
A, B, C = (frozenset(NAMES[i:i + 2]) for i in (0, 2, 4))
PATHS = {"a": A, "b": B, "c": C, "ab": A | B}
BLOCKS = [("a", A), ("b", B), ("c", C)]


def table(rules, **kwargs):
    return resolve(rules, NAMES, paths=PATHS, block_list=BLOCKS, **kwargs)


def by_name(settings_):
    return {s.name: s for s in settings_}


def summary(settings_):
    """{name: (rule label, lr_mult, frozen)}"""
    return {s.name: (s.rule, s.lr_mult, s.frozen) for s in settings_}


def net_table(net, rules, **kwargs):
    names = list(net.collect_params().keys())
    return resolve(rules, names, paths=structural_paths(net), block_list=block_names(net),
                   **kwargs)


# ----------------------------------------------------------------- key forms

KEY_FORMS = [
    # (key, label, matched names)
    ("a", "a", A),
    ("ab", "ab", A | B),
    ("c_bias", "c_bias", {"c_bias"}),
    ("*_bias", "*_bias", {"a_bias", "b_bias", "c_bias"}),
    ("?_weight", "?_weight", {"a_weight", "b_weight", "c_weight"}),
    ("re:^[ab]_weight$", "re:^[ab]_weight$", {"a_weight", "b_weight"}),
    ("re:ias", "re:ias", {"a_bias", "b_bias", "c_bias"}),  # re.search, not fullmatch
    ("*", "*", set(NAMES)),
    (0, "block 0", A),
    (1, "block 1", B),
    (-1, "block -1", C),
    (-3, "block -3", A),
    (slice(1, 3), "blocks 1:3", B | C),
    (slice(None, None, 2), "blocks ::2", A | C),
    (slice(-2, None), "blocks -2:", B | C),
    (slice(None, 1), "blocks :1", A),
    ("1:3", "blocks 1:3", B | C),
    (":1", "blocks :1", A),
    ("-1:", "blocks -1:", C),
    ("::2", "blocks ::2", A | C),
    (" 0 : 2 ", "blocks 0:2", A | B),
    (("a", "c_bias"), "(a, c_bias)", A | {"c_bias"}),
    ((0, "*_bias"), "(block 0, *_bias)", A | {"b_bias", "c_bias"}),
    (["b", slice(2, 3)], "(b, blocks 2:3)", B | C),
]


@pytest.mark.parametrize("key,label,matched", KEY_FORMS,
                         ids=[repr(k) for k, _, _ in KEY_FORMS])
def test_key_forms_select_the_right_parameters(key, label, matched):
    got = by_name(table([(key, 2.0)]))
    for name in NAMES:
        s = got[name]
        if name in matched:
            assert (s.rule, s.lr_mult, s.frozen) == (label, 2.0, False)
        else:
            assert s == Setting(name)


def test_plain_dict_and_pairs_agree():
    rules = {"*": 0.1, "a": 2.0, -1: 0}
    assert table(rules) == table(list(rules.items())) == table(tuple(rules.items()))


@pytest.mark.parametrize("rules", [None, {}, []])
def test_no_rules_leaves_every_parameter_alone(rules):
    assert table(rules) == tuple(Setting(n) for n in NAMES)


def test_result_follows_the_order_of_names():
    names = list(reversed(NAMES))
    got = resolve({"a": 3}, names, paths=PATHS, block_list=BLOCKS)
    assert [s.name for s in got] == names


# ----------------------------------------------------------------- value forms

def _plain_scheduler(step):
    return 0.1 / (1 + step)


FACTOR = mx.lr_scheduler.FactorScheduler(step=10, factor=0.5)

VALUE_FORMS = [
    # (value, base_lr, expected fields of the Setting for block "a")
    (2.0, None, dict(lr_mult=2.0, frozen=False)),
    (3, None, dict(lr_mult=3.0, frozen=False)),
    (-1.5, None, dict(lr_mult=-1.5, frozen=False)),
    (0, None, dict(lr_mult=0.0, frozen=True)),
    (0.0, None, dict(lr_mult=0.0, frozen=True)),
    (None, None, dict(lr_mult=0.0, frozen=True)),
    ({"lr_mult": 0.5}, None, dict(lr_mult=0.5, frozen=False)),
    ({"lr_mult": -2}, None, dict(lr_mult=-2.0, frozen=False)),
    ({"lr_mult": 0}, None, dict(lr_mult=0.0, frozen=True)),
    ({"learning_rate": 0.05}, 0.1, dict(lr_mult=0.5, learning_rate=0.05, frozen=False)),
    ({"learning_rate": 0.05}, None, dict(lr_mult=None, learning_rate=0.05, frozen=False)),
    ({"learning_rate": 0}, 0.1, dict(lr_mult=0.0, learning_rate=None, frozen=True)),
    ({"wd_mult": 0.0}, None, dict(lr_mult=1.0, wd_mult=0.0, frozen=False)),
    ({"wd_mult": 2, "lr_mult": 0.1}, None, dict(lr_mult=0.1, wd_mult=2.0, frozen=False)),
    ({"frozen": True}, None, dict(lr_mult=0.0, frozen=True)),
    ({"frozen": True, "wd_mult": 0.5}, None, dict(lr_mult=0.0, wd_mult=0.5, frozen=True)),
    ({"frozen": True, "learning_rate": 0}, 0.1, dict(lr_mult=0.0, frozen=True)),
    ({"frozen": False}, None, dict(lr_mult=1.0, frozen=False)),
    ({"frozen": False, "lr_mult": 4}, None, dict(lr_mult=4.0, frozen=False)),
    ({"lr_scheduler": _plain_scheduler}, 0.1,
     dict(lr_mult=1.0, lr_scheduler=_plain_scheduler, frozen=False)),
    ({"lr_scheduler": FACTOR, "lr_mult": 0.5}, 0.1,
     dict(lr_mult=0.5, lr_scheduler=FACTOR, frozen=False)),
    ({"lr_scheduler": FACTOR, "learning_rate": 0.02}, 0.1,
     dict(lr_mult=0.2, learning_rate=0.02, lr_scheduler=FACTOR, frozen=False)),
]


@pytest.mark.parametrize("value,base_lr,expected", VALUE_FORMS,
                         ids=[f"{v!r}@{b}" for v, b, _ in VALUE_FORMS])
def test_value_forms(value, base_lr, expected):
    got = by_name(table({"a": value, "*": 1.0}, base_lr=base_lr))
    full = dict(lr_mult=None, learning_rate=None, wd_mult=None, lr_scheduler=None)
    full.update(expected)
    sets_rate = not (isinstance(value, dict) and set(value) == {"wd_mult"})
    for name in A:
        s = got[name]
        assert s.rule == ("a" if sets_rate else "*")  # a wd-only rule leaves the rate alone
        assert s.wd_rule == ("a" if isinstance(value, dict) and "wd_mult" in value else None)
        assert s.frozen is full["frozen"]
        if full["lr_mult"] is None:
            assert s.lr_mult is None
        else:
            assert s.lr_mult == pytest.approx(full["lr_mult"])
        assert s.learning_rate == full["learning_rate"]
        assert s.wd_mult == full["wd_mult"]
        assert s.lr_scheduler is full["lr_scheduler"]
    for name in B | C:  # the catch-all rule is untouched by the value of "a"
        assert got[name] == Setting(name, "*", 1.0)


def test_one_scheduler_object_is_carried_to_every_rule_that_names_it():
    got = by_name(table({"a": {"lr_scheduler": FACTOR, "lr_mult": 1.0},
                         "c": {"lr_scheduler": FACTOR, "lr_mult": 3.0}}))
    assert got["a_weight"].lr_scheduler is FACTOR
    assert got["c_bias"].lr_scheduler is FACTOR
    assert got["b_weight"].lr_scheduler is None


def test_learning_rate_with_a_zero_base_rate_is_an_error():
    with pytest.raises(RuleError, match=re.escape("learning_rate=0.05")):
        table({"a": {"learning_rate": 0.05}}, base_lr=0)


# ----------------------------------------------------------------- specificity and conflicts

def test_more_specific_rule_wins_in_every_order():
    rules = [("*", 0.1), ("ab", 0.2), ("a", 0.3), ("a_weight", 0.4)]
    expected = {"a_weight": ("a_weight", 0.4, False), "a_bias": ("a", 0.3, False),
                "b_weight": ("ab", 0.2, False), "b_bias": ("ab", 0.2, False),
                "c_weight": ("*", 0.1, False), "c_bias": ("*", 0.1, False)}
    for order in itertools.permutations(rules):
        assert summary(table(list(order))) == expected
        assert summary(table(dict(order))) == expected


def test_index_and_slice_rules_are_ranked_by_the_sets_they_match():
    rules = [(slice(0, 3), 0.5), ("0:2", 1.5), (-1, 0)]
    for order in itertools.permutations(rules):
        got = summary(table(list(order)))
        assert got["a_weight"] == ("blocks 0:2", 1.5, False)
        assert got["b_bias"] == ("blocks 0:2", 1.5, False)
        assert got["c_weight"] == ("block -1", 0.0, True)


def test_incomparable_rules_resolved_by_a_narrower_third_rule():
    # "*_weight" and "a" overlap on a_weight only; the exact name settles it.
    rules = {"*_weight": 0.5, "a": 2.0, "a_weight": 1.0}
    got = summary(table(rules))
    assert got["a_weight"] == ("a_weight", 1.0, False)
    assert got["a_bias"] == ("a", 2.0, False)
    assert got["b_weight"] == ("*_weight", 0.5, False)
    assert got["b_bias"] == (None, None, False)


CONFLICTS = [
    ({"*_weight": 0.5, "a": 2.0}, ("*_weight", "a"), "a_weight"),   # incomparable sets
    ({"a": 1.0, "re:^a_": 2.0}, ("a", "re:^a_"), "a_weight"),       # equal sets
    ({0: 0.1, "a": None}, ("block 0", "a"), "a_weight"),                   # index == path
    ({-1: 2.0, "2:": 3.0}, ("block -1", "blocks 2:"), "c_weight"),        # index == range
    ({"ab": 0.1, ("a", "b"): 0.2}, ("ab", "(a, b)"), "a_weight"),    # path == tuple
    ({"c": {"wd_mult": 1.0}, "re:^c": {"lr_mult": 1.0, "wd_mult": 0}}, ("c", "re:^c"),
     "c_weight"),                                                   # the weight decay group
    ({"b": {"lr_scheduler": _plain_scheduler},
      "re:^b_": {"lr_scheduler": lambda t: 0.1 / (1 + t)}}, ("b", "re:^b_"), "b_weight"),
]


@pytest.mark.parametrize("rules,labels,param", CONFLICTS, ids=[repr(c[1]) for c in CONFLICTS])
def test_conflicting_rules_name_both_rules_and_the_parameter(rules, labels, param):
    messages = set()
    for order in itertools.permutations(rules.items()):
        with pytest.raises(RuleError) as err:
            table(dict(order))
        msg = str(err.value)
        for label in labels:
            assert repr(label) in msg
        assert repr(param) in msg
        messages.add(msg)
    assert len(messages) == 1  # the same message whatever the order


@pytest.mark.parametrize("rules", [
    {0: 0.5, "a": 0.5},
    {"a": None, "re:^a_": 0, "a_*": {"frozen": True}},
    {"*_weight": 2.0, "a": 2.0},
    {"b": {"lr_scheduler": FACTOR, "lr_mult": 2}, "re:^b": {"lr_scheduler": FACTOR,
                                                          "lr_mult": 2.0}},
])
def test_equally_specific_rules_that_agree_are_fine(rules):
    results = {table(dict(order)) for order in itertools.permutations(rules.items())}
    assert len(results) == 1


def test_same_key_twice_with_different_values():
    with pytest.raises(RuleError, match=r"rule 'a' is given twice"):
        table([("a", 1.0), ("a", 2.0)])
    assert table([("a", 1.0), ("a", 1)]) == table({"a": 1.0})


def test_duplicate_keys_with_bad_values_give_one_message_in_any_order():
    pairs = [("a", "x"), ("a", "y")]
    messages = set()
    for order in (pairs, pairs[::-1]):
        with pytest.raises(TypeError) as err:
            table(order)
        messages.add(str(err.value))
    assert len(messages) == 1


def test_conflict_message_tells_the_two_rules_apart():
    names = ["p0", "p1", "p2"]
    paths = {str(i): frozenset([n]) for i, n in enumerate(names)}
    block_list = list(paths.items())
    with pytest.raises(RuleError) as err:
        resolve([("1", 0.5), (1, 2.0)], names, paths=paths, block_list=block_list)
    first, second = re.search(r"rules '(.*?)' and '(.*?)'", str(err.value)).groups()
    assert {first, second} == {"1", "block 1"}


@pytest.mark.parametrize("text", ["0:2", " 0 : 2 ", "0:2:"])
def test_a_range_string_and_its_slice_are_one_rule_with_one_label(text):
    names = ["p0", "p1", "p2"]
    paths = {str(i): frozenset([n]) for i, n in enumerate(names)}
    block_list = list(paths.items())
    same = resolve([(text, 0.5), (slice(0, 2), 0.5)], names, paths=paths, block_list=block_list)
    assert [s.rule for s in same] == ["blocks 0:2", "blocks 0:2", None]
    with pytest.raises(RuleError, match=r"rule 'blocks 0:2' is given twice with different"):
        resolve([(text, 0.5), (slice(0, 2), 2.0)], names, paths=paths, block_list=block_list)


# ----------------------------------------------------------------- rules that match nothing

def test_unknown_name_suggests_the_close_one():
    with pytest.raises(RuleError, match=r"Did you mean 'a_weight'") as err:
        table({"a_wieght": 0.1})
    assert "'a_wieght'" in str(err.value)
    assert "strict=False" in str(err.value)


def test_unknown_layer_of_a_net_suggests_the_close_one(three):
    with pytest.raises(RuleError, match=r"no block path or parameter is named 'l4'.*"
                                        r"Did you mean 'l3'"):
        net_table(three, {"l4": 0.1})


@pytest.mark.parametrize("rules,text", [
    ({"a_wieght": 0.1, "*": 1.0}, "'a_wieght'"),
    ({"*_gamma": 0.1, "*": 1.0}, "'*_gamma'"),
    ({"re:gamma$": 0.1, "*": 1.0}, "'re:gamma$'"),
    ({("a", "zz"): 0.1, "*": 1.0}, "'zz'"),
])
def test_strict_false_warns_and_ignores_the_rule(rules, text):
    with pytest.raises(RuleError, match=re.escape(text)):
        table(rules)
    with pytest.warns(UserWarning, match=re.escape(text)):
        got = table(rules, strict=False)
    assert got == table({"*": 1.0})


def test_strict_false_still_rejects_other_errors():
    with pytest.raises(RuleError, match="out of range"):
        table({7: 0.1}, strict=False)
    with pytest.raises(RuleError, match="given twice"):
        table([("a", 1.0), ("a", 2.0)], strict=False)


def test_path_without_parameters_matches_nothing():
    net = nn.HybridSequential(prefix="seq_")
    with net.name_scope():
        net.add(nn.Dense(3, in_units=2), nn.Activation("relu"), nn.Dense(1, in_units=3))
    with pytest.raises(RuleError, match=r"rule '1' matches no parameter"):
        net_table(net, {"1": 0})


# ----------------------------------------------------------------- real networks

@pytest.mark.parametrize("rules", [{"*": 0.1, "l3": 0}, {"l3": 0, "*": 0.1}])
def test_three_layer_seed_case(three, rules):
    got = net_table(three, rules)
    l3 = set(three.l3.collect_params().keys())
    for s in got:
        if s.name in l3:
            assert (s.rule, s.lr_mult, s.frozen) == ("l3", 0.0, True)
        else:
            assert (s.rule, s.lr_mult, s.frozen) == ("*", 0.1, False)


def test_three_layer_seed_case_is_order_independent(three):
    assert net_table(three, {"*": 0.1, "l3": 0}) == net_table(three, {"l3": 0, "*": 0.1})
    one = explain(three, {"*": 0.1, "l3": 0}, learning_rate=0.1)
    two = explain(three, {"l3": 0, "*": 0.1}, learning_rate=0.1)
    assert one.rows == two.rows
    assert str(one) == str(two)
    for name in three.l3.collect_params():
        row = one[name]
        assert (row["rule"], row["lr_mult"], row["lr"], row["frozen"]) == ("l3", 0.0, 0.0, True)
        assert row["block"] == "2:l3"
    l1_weight = one[three.l1.weight.name]
    assert l1_weight["rule"] == "*" and l1_weight["frozen"] is False
    assert l1_weight["lr"] == pytest.approx(0.01)


def test_explain_reports_the_same_errors(three):
    with pytest.raises(RuleError, match=r"Did you mean 'l3'"):
        explain(three, {"l4": 0})
    with pytest.warns(UserWarning, match="'l4'"):
        rows = explain(three, {"l4": 0, "*": 2.0}, strict=False).rows
    assert [r["lr_mult"] for r in rows] == [2.0] * 6


def test_shared_parameter_appears_once(shared):
    names = list(shared.collect_params().keys())
    assert len(names) == 2
    got = net_table(shared, {"a": 0.5})
    assert [s.name for s in got] == names
    assert all((s.rule, s.lr_mult) == ("a", 0.5) for s in got)
    # both paths reach the same parameters, so they are equally specific
    assert net_table(shared, {"a": 0.5, "b": 0.5}) == net_table(shared, {"b": 0.5, "a": 0.5})
    with pytest.raises(RuleError, match=r"rules 'a' and 'b' both match parameter"):
        net_table(shared, {"b": 0.5, "a": 2.0})
    rows = explain(shared, {"b": 0}).rows
    assert [r["parameter"] for r in rows] == names
    assert all(r["frozen"] for r in rows)


@pytest.fixture
def two_layers():
    net = nn.HybridSequential(prefix="two_")
    with net.name_scope():
        net.add(nn.Dense(4, in_units=3, activation="relu"), nn.Dense(2, in_units=4))
    return net


@pytest.mark.parametrize("rules", [{0: 0.5, -1: 2.0}, {-1: 2.0, 0: 0.5}])
def test_index_rules_on_two_layers(two_layers, rules):
    got = summary(net_table(two_layers, rules))
    first = set(two_layers[0].collect_params().keys())
    for name, value in got.items():
        assert value == (("block 0", 0.5, False) if name in first else ("block -1", 2.0, False))


@pytest.mark.parametrize("pairs", [
    [(slice(0, 1), 0), ("1:", 3.0)],
    [("1:", 3.0), (slice(0, 1), 0)],
    [("-2:-1", 0), (slice(-1, None), 3.0)],
    [("*", 3.0), (":1", None)],
])
def test_slice_rules_on_two_layers(two_layers, pairs):
    got = net_table(two_layers, pairs)
    first = set(two_layers[0].collect_params().keys())
    for s in got:
        assert (s.lr_mult, s.frozen) == ((0.0, True) if s.name in first else (3.0, False))


def test_index_and_path_of_the_same_block_conflict(two_layers):
    with pytest.raises(RuleError, match=r"rules 'block -1' and 'block 1' both match"):
        net_table(two_layers, {1: 0.5, -1: 2.0})


# ----------------------------------------------------------------- bad input matrix

class _Weird:
    def __repr__(self):
        return "<weird key>"


def _plain(t):
    return 0.1


BAD = [
    # (id, rules, resolve kwargs, exception, texts the message must contain)
    ("float key", {1.5: 1.0}, {}, TypeError, ["1.5"]),
    ("bool key", {True: 1.0}, {}, TypeError, ["rule key True"]),
    ("None key", {None: 1.0}, {}, TypeError, ["rule key None"]),
    ("object key", {_Weird(): 1.0}, {}, TypeError, ["<weird key>"]),
    ("nested tuple", {("a", ("b",)): 1.0}, {}, TypeError, ["('b',)"]),
    ("unknown value key", {"a": {"lr": 0.1}}, {}, ValueError, ["'lr'", "'a'"]),
    ("learning_rate and lr_mult", {"a": {"learning_rate": 0.1, "lr_mult": 2}}, {}, ValueError,
     ["learning_rate", "lr_mult", "'a'"]),
    ("nan", {"a": math.nan}, {}, ValueError, ["nan", "'a'"]),
    ("inf", {"a": math.inf}, {}, ValueError, ["inf"]),
    ("-inf", {"a": -math.inf}, {}, ValueError, ["-inf"]),
    ("nan lr_mult", {"a": {"lr_mult": math.nan}}, {}, ValueError, ["lr_mult", "nan"]),
    ("inf learning_rate", {"a": {"learning_rate": math.inf}}, {}, ValueError,
     ["learning_rate", "inf"]),
    ("nan wd_mult", {"a": {"wd_mult": math.nan}}, {}, ValueError, ["wd_mult", "nan"]),
    ("string number", {"a": "0.1"}, {}, TypeError, ["'0.1'"]),
    ("string lr_mult", {"a": {"lr_mult": "2"}}, {}, TypeError, ["lr_mult", "'2'"]),
    ("bool value", {"a": True}, {}, TypeError, ["True"]),
    ("list value", {"a": [0.1]}, {}, TypeError, ["[0.1]"]),
    ("complex value", {"a": 1j}, {}, TypeError, ["1j"]),
    ("negative wd_mult", {"a": {"wd_mult": -1}}, {}, ValueError, ["wd_mult", "-1"]),
    ("frozen int", {"a": {"frozen": 1}}, {}, TypeError, ["frozen", "1"]),
    ("frozen str", {"a": {"frozen": "yes"}}, {}, TypeError, ["frozen", "'yes'"]),
    ("frozen with learning_rate", {"a": {"frozen": True, "learning_rate": 0.1}}, {}, ValueError,
     ["frozen=True", "'a'"]),
    ("frozen with lr_mult", {"a": {"frozen": True, "lr_mult": 2}}, {}, ValueError,
     ["frozen=True"]),
    ("frozen with scheduler", {"a": {"frozen": True, "lr_scheduler": _plain}}, {}, ValueError,
     ["frozen=True", "schedule"]),
    ("scheduler number", {"a": {"lr_scheduler": 0.5}}, {}, TypeError, ["lr_scheduler", "0.5"]),
    ("scheduler str", {"a": {"lr_scheduler": "cosine"}}, {}, TypeError, ["'cosine'"]),
    ("plain scheduler with rate", {"a": {"lr_scheduler": _plain, "lr_mult": 2}}, {},
     ValueError, ["lr_scheduler", "lr_mult"]),
    ("index too large", {3: 1.0}, {}, RuleError, ["block index 3", "3 blocks"]),
    ("index too small", {-4: 1.0}, {}, RuleError, ["block index -4"]),
    ("empty slice", [(slice(2, 2), 1.0)], {}, RuleError, ["'blocks 2:2'", "selects no blocks"]),
    ("empty slice string", {"3:3": 1.0}, {}, RuleError, ["'blocks 3:3'", "selects no blocks"]),
    ("float slice bound", [(slice(0.5, 2), 1.0)], {}, TypeError, ["0.5"]),
    ("str slice bound", [(slice("a", None), 1.0)], {}, TypeError, ["'a'"]),
    ("slice step 0", [(slice(0, 2, 0), 1.0)], {}, ValueError, ["'blocks 0:2:0'", "zero"]),
    ("slice string step 0", {"0:3:0": 1.0}, {}, ValueError, ["'blocks 0:3:0'", "zero"]),
    ("invalid regex", {"re:(": 1.0}, {}, ValueError, ["'re:('"]),
    ("path without net", {"ab": 1.0}, {"paths": None, "block_list": None}, RuleError,
     ["'ab'", "net="]),
    ("index without net", {0: 1.0}, {"paths": None, "block_list": None}, RuleError,
     ["'block 0'", "net="]),
    ("range without net", {"0:2": 1.0}, {"paths": None, "block_list": None}, RuleError,
     ["'blocks 0:2'", "net="]),
    ("slice without net", [(slice(1, None), 1.0)], {"paths": None, "block_list": None},
     RuleError, ["'blocks 1:'", "net="]),
    ("empty string", {"": 1.0}, {}, ValueError, ["rule ''", "empty"]),
    ("blank string", {"  ": 1.0}, {}, ValueError, ["rule '  '"]),
    ("empty tuple", {(): 1.0}, {}, ValueError, ["'()'", "empty tuple"]),
    ("unknown tuple part", {("a", "zz"): 1.0}, {}, RuleError, ["'zz'"]),
    ("rules str", "a", {}, TypeError, ["'a'"]),
    ("rules int", 3, {}, TypeError, ["int: 3"]),
    ("rules set", {"a"}, {}, TypeError, ["{'a'}"]),
    ("rules list of names", ["a"], {}, TypeError, ["'a'"]),
    ("rules triple", [("a", 1.0, 2.0)], {}, TypeError, ["('a', 1.0, 2.0)"]),
    ("base_lr str", {"a": 1.0}, {"base_lr": "0.1"}, TypeError, ["'0.1'"]),
    ("base_lr nan", {"a": 1.0}, {"base_lr": math.nan}, ValueError, ["nan"]),
    ("strict str", {"a": 1.0}, {"strict": "no"}, TypeError, ["strict", "'no'"]),
]


@pytest.mark.parametrize("rules,kwargs,error,texts", [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_bad_input(rules, kwargs, error, texts):
    call = dict(paths=PATHS, block_list=BLOCKS)
    call.update(kwargs)
    assert issubclass(error, (ValueError, TypeError))
    with pytest.raises(error, match=re.escape(texts[0])) as err:
        resolve(rules, NAMES, **call)
    for text in texts[1:]:
        assert text in str(err.value)


@pytest.mark.parametrize("key,value", [("learning_rate", 0.1), ("lr_mult", 2.0)])
def test_frozen_contradiction_names_the_conflicting_key(key, value):
    with pytest.raises(ValueError) as err:
        table({"a": {"frozen": True, key: value}})
    assert key in str(err.value) and repr(value) in str(err.value)


# ----------------------------------------------------------------- order never matters

_SCHED = mx.lr_scheduler.FactorScheduler(step=5, factor=0.9)

VALID_KEYS = [
    "*", "a", "b", "c", "ab", "a_weight", "b_bias", "*_bias", "*_weight", "re:^b",
    "re:weight$", 0, 1, -1, 2, "0:2", "1:", ("a", "c_bias"), ("ab", -1), (0, "*_weight"),
]
ODD_KEYS = ["d", "a_wieght", "*_gamma", ("b", "zz"), 5, -7, "re:("]  # unknown or invalid
HASHABLE_KEYS = VALID_KEYS * 3 + ODD_KEYS  # mostly valid, so that most examples resolve
SLICE_KEYS = [slice(0, 2), slice(1, None), slice(None, None, 2), slice(-1, None)]
GOOD_VALUES = [
    0.5, 2.0, 1, -1.0, 0, None, {"lr_mult": 0.5}, {"wd_mult": 0.0}, {"frozen": True},
    {"learning_rate": 0.05}, {"lr_scheduler": _SCHED, "lr_mult": 2.0},
    {"lr_scheduler": _plain_scheduler}, {"wd_mult": 2.0}, {"lr_mult": 0.5, "wd_mult": 0.0},
]
VALUES = GOOD_VALUES * 3 + ["bad", math.nan]  # both groups of fields, mixed


def outcome(rules, strict):
    """The table and the warnings, or the error's type and message."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = ("table", table(rules, base_lr=0.1, strict=strict))
        except (TypeError, ValueError) as err:
            result = ("error", type(err), str(err))
    return result + (tuple(str(w.message) for w in caught),)


@settings(max_examples=100, deadline=None)
@given(rules=st.dictionaries(st.sampled_from(HASHABLE_KEYS), st.sampled_from(VALUES),
                             max_size=6),
       strict=st.booleans(), data=st.data())
def test_any_order_of_a_rule_dict_gives_the_same_result(rules, strict, data):
    shuffled = data.draw(st.permutations(list(rules.items())))
    expected = outcome(rules, strict)
    assert outcome(dict(shuffled), strict) == expected
    assert outcome(shuffled, strict) == expected


def _canonical(key):
    return (type(key).__name__, repr(key))


@settings(max_examples=100, deadline=None)
@given(pairs=st.lists(st.tuples(st.sampled_from(HASHABLE_KEYS + SLICE_KEYS),
                                st.sampled_from(VALUES)),
                      max_size=6, unique_by=lambda kv: _canonical(kv[0])),
       strict=st.booleans(), data=st.data())
def test_any_order_of_rule_pairs_gives_the_same_result(pairs, strict, data):
    shuffled = data.draw(st.permutations(pairs))
    assert outcome(shuffled, strict) == outcome(pairs, strict)


def test_specificity_is_a_strict_subset_and_the_conflict_says_how_to_settle_it():
    """A bigger and a smaller rule that merely overlap are a conflict, not a win for the
    smaller one: 'smallest set wins' would make the result depend on set sizes alone."""
    rules = {"*_weight": 0.5, "ab": 2.0}  # 3 parameters and 4: they overlap on two
    with pytest.raises(RuleError) as err:
        table(rules)
    message = str(err.value)
    assert "strict subset" in message and "a rule just for the overlap" in message
    settled = summary(table({**rules, "a_weight": 2.0, "b_weight": 2.0}))
    assert settled["a_weight"] == ("a_weight", 2.0, False)
    import pathlib
    root = pathlib.Path(__file__).parents[1]
    for page in (root / "README.md", root / "docs" / "guide" / "rules.md"):
        text = page.read_text()
        assert "strict subset" in text and "smallest" not in text, page


# ----------------------------------------------------------------- field by field

MIXED_VALUES = GOOD_VALUES + [{"frozen": True, "wd_mult": 1.0},
                              {"learning_rate": 0.2, "wd_mult": 0.5}]
RATE_FIELDS = ("rule", "lr_mult", "learning_rate", "lr_scheduler", "frozen")
WD_FIELDS = ("wd_rule", "wd_mult")


def only(rules, group):
    """The rules cut down to what they set of ``group`` ('rate' or 'wd')."""
    out = {}
    for key, value in rules.items():
        if not isinstance(value, dict):
            if group == "rate":
                out[key] = value
            continue
        part = {k: v for k, v in value.items() if (k == "wd_mult") == (group == "wd")}
        if part:
            out[key] = part
    return out


def fields(settings_, names):
    return [tuple(getattr(s, f) for f in names) for s in settings_]


def resolved_or_error(rules):
    try:
        return table(rules, base_lr=0.1)
    except RuleError as err:
        return type(err)


@settings(max_examples=150, deadline=None)
@given(rules=st.dictionaries(st.sampled_from(VALID_KEYS), st.sampled_from(MIXED_VALUES),
                             max_size=7), data=st.data())
def test_each_group_resolves_as_if_the_other_were_not_there(rules, data):
    rate, wd = only(rules, "rate"), only(rules, "wd")
    full = resolved_or_error(dict(data.draw(st.permutations(list(rules.items())))))
    by_rate, by_wd = resolved_or_error(rate), resolved_or_error(wd)
    if isinstance(full, type):  # an error in the whole set is an error in one group
        assert isinstance(by_rate, type) or isinstance(by_wd, type)
        return
    assert fields(full, RATE_FIELDS) == fields(by_rate, RATE_FIELDS)
    assert fields(full, WD_FIELDS) == fields(by_wd, WD_FIELDS)


def test_a_rule_that_matches_nothing_is_a_public_error_type():
    import traceback

    from gluon_finetune import NoMatchError
    with pytest.raises(NoMatchError) as err:
        table({"nothing_like_this": 1.0})
    assert isinstance(err.value, RuleError)
    shown = "".join(traceback.format_exception(err.type, err.value, err.tb))
    assert "_NoMatchError" not in shown and "NoMatchError: rule 'nothing_like_this'" in shown


def test_a_numpy_index_and_an_int_are_one_rule():
    """Issue 21 item 11: one canonical key for resolve and combine."""
    import numpy as np
    same = table([(np.int64(2), 0.5), (2, 0.5)])
    assert [s.rule for s in same][-1] == "block 2"
    with pytest.raises(RuleError, match=r"rule 'block 2' is given twice with different"):
        table([(np.int64(2), 0.5), (2, 2.0)])
    # the message shows both spellings (it named one rule the user wrote twice otherwise)
    with pytest.raises(RuleError, match=r"rule 'blocks 0:2' is given twice with different "
                                        r"values, as '0 : 2' and '0:2'.*; give it once"):
        table([("0:2", 0.5), ("0 : 2", 2.0)])


@pytest.mark.parametrize("key,advice", [
    ("trainable:-1", "'trainable:-1:' is block -1"),
    ("trainable:-2", "'trainable:-2:-1' is block -2"),
    ("-1", "A block index is an int key: -1, not the string '-1'"),
])
def test_an_index_written_as_text_is_told_how_to_write_it(key, advice):
    """Issue 21 item 24: {"trainable:-1": 2} suggested '1' (the second block, not the
    head)."""
    names = ["p0", "p1", "p2", "p3"]
    paths = {"0": frozenset(names[:2]), "1": frozenset(names[2:])}
    with pytest.raises(RuleError) as err:
        resolve({key: 2.0}, names, paths=paths, block_list=list(paths.items()))
    assert advice in str(err.value)
    assert "Did you mean" not in str(err.value)
    fixed = advice.split("'")[1] if key.startswith("trainable:") else int(key)
    got = resolve({fixed: 2.0}, names, paths=paths, block_list=list(paths.items()))
    block = int(key.split(":")[-1])
    assert [s.name for s in got if s.rule is not None] == names[2 * block:][:2]
