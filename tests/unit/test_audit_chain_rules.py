"""Pure audit rules (app/utils/hashchain.py): stored details text, heads, divergence."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.utils.canonical import canonical_json
from app.utils.hashchain import details_problem, divergence, head_problem, parse_head, verify_chain

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)
H = "a" * 64
G = "b" * 64


# ------------------------------------------------------------ stored details
@given(json_values)
def test_the_canonical_text_is_the_one_text_that_verifies(value):
    text = canonical_json(value)
    assert details_problem(text) == (value, None)
    for other in (json.dumps(value), json.dumps(value, indent=1), json.dumps(value, sort_keys=True),
                  " " + text, text + "\n"):
        if other != text:
            assert details_problem(other)[1] == "details_not_canonical"


@given(st.dictionaries(st.text(min_size=1, max_size=4), st.integers(), min_size=1, max_size=4),
       st.integers())
def test_a_duplicate_key_never_verifies(value, first):
    key = sorted(value)[0]
    text = canonical_json(value)
    duplicated = "{" + json.dumps(key, ensure_ascii=False) + ":" + str(first) + "," + text[1:]
    assert json.loads(duplicated) == value  # a parser keeps the last one...
    assert details_problem(duplicated)[1] == "details_not_canonical"  # ...the verifier refuses


@pytest.mark.parametrize(("stored", "reason"), [
    ("{", "details_invalid_json"), ("", "details_invalid_json"), ("[" * 100_000, "details_invalid_json"),
    (b'{"a":1}', "details_not_text"), (7, "details_not_text"), (None, "details_not_text"),
    ('{"a":1.5}', "details_not_canonical"), ('{"a":NaN}', "details_not_canonical"),
])
def test_damaged_details_are_named_never_raised(stored, reason):
    assert details_problem(stored)[1] == reason


# --------------------------------------------------------------------- heads
@pytest.mark.parametrize(("value", "parsed"), [
    (f"3,{H}", (3, H)), (f"0,{H}", (0, H)), ("3", None), (f"x,{H}", None), (f"-1,{H}", None),
    (f"3,{H.upper()}", None), (f"3,{H},4", None), (f" 3,{H}", None), (b"3,hash", None), (None, None),
])
def test_parse_head(value, parsed):
    assert parse_head(value) == parsed


@pytest.mark.parametrize(("head", "entries", "last", "problem"), [
    (None, 0, None, None),
    (f"5,{H}", 5, H, None),
    (None, 5, H, (5, "head_missing")),
    ("garbage", 5, H, (5, "head_malformed")),
    ("garbage", 0, None, (1, "head_malformed")),
    (f"7,{H}", 5, H, (6, "truncated")),
    (f"1,{H}", 0, None, (1, "truncated")),
    (f"3,{H}", 5, H, (4, "head_moved")),
    (f"5,{G}", 5, H, (5, "head_moved")),
])
def test_head_problem(head, entries, last, problem):
    assert head_problem(head, entries, last) == problem


# ---------------------------------------------------------------- divergence
def page(*pairs: tuple[int, str]) -> list[dict]:
    return [{"seq": s, "hash": h} for s, h in pairs]


@pytest.mark.parametrize(("ours", "seen", "entries", "head", "known", "reason"), [
    (None, None, page((1, H)), (1, H), True, None),                      # first copy
    ((3, H), None, page((3, H), (4, G)), (4, G), True, None),             # extends ours
    ((3, H), (3, H), page((3, H)), (3, H), True, None),                   # nothing new
    ((3, H), None, page((3, G), (4, G)), (4, G), True, "rewritten"),     # our entry changed
    ((3, H), None, page((4, G)), (4, G), True, "rewritten"),             # ours is gone, longer chain
    ((3, H), None, [], (2, G), True, "truncated"),                        # head below ours
    ((3, H), None, [], None, True, "wiped"),                              # no chain at all
    ((3, H), None, [], None, False, "truncated"),                         # an older peer: no head
    ((3, H), (9, G), page((3, H), (4, G)), (4, G), True, "truncated"),   # below what it showed
    ((3, H), (4, G), page((3, H), (4, H)), (4, H), True, "rewritten"),   # seen entry changed
    ((3, H), (5, G), page((3, H)), (5, H), True, "rewritten"),           # seen head changed
    (None, (5, G), [], None, True, "wiped"),
])
def test_divergence(ours, seen, entries, head, known, reason):
    assert divergence(ours, seen, entries, head, known) == reason


@given(st.lists(st.sampled_from([H, G, "c" * 64]), min_size=1, max_size=12), st.data())
def test_any_chain_that_extends_ours_is_not_a_divergence(hashes, data):
    chain = [(i, h) for i, h in enumerate(hashes, start=1)]
    k = data.draw(st.integers(min_value=1, max_value=len(chain)))
    ours = chain[k - 1]
    assert divergence(ours, ours, page(*chain[k - 1:]), chain[-1], True) is None
    # ...and any change of the entry we hold, or a head below it, is one.
    changed = page(*chain[k - 1:])
    changed[0]["hash"] = "d" * 64
    assert divergence(ours, None, changed, chain[-1], True) == "rewritten"
    if k > 1:
        assert divergence(ours, None, [], chain[k - 2], True) == "truncated"


# ------------------------------------------------------------ chain + damage
def test_damage_found_by_the_caller_is_the_reported_reason():
    rows = [{"seq": 1, "prev_hash": "0" * 64, "hash": H, "entry": {}, "damage": "details_invalid_json"}]
    assert verify_chain(rows)["broken_at"] == {"seq": 1, "reason": "details_invalid_json"}
    rows = [{"seq": 3.5, "prev_hash": "0" * 64, "hash": H, "entry": {}, "damage": "seq_not_integer"}]
    assert verify_chain(rows)["broken_at"] == {"seq": 1, "reason": "seq_not_integer"}


def test_a_missing_row_before_a_damaged_one_is_reported_as_missing():
    rows = [{"seq": 2, "prev_hash": "0" * 64, "hash": H, "entry": {}, "damage": "details_invalid_json"}]
    assert verify_chain(rows)["broken_at"] == {"seq": 1, "reason": "missing_seq"}
