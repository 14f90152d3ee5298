import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.storage.collation import (
    decode_key,
    decode_value,
    encode_key,
    encode_value,
    validate_global_name,
)

numbers = st.one_of(
    st.integers(min_value=-(2**200), max_value=2**200),
    st.integers(min_value=-1000, max_value=1000),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
)
strings = st.text(alphabet=st.characters(codec=None, min_codepoint=0), max_size=12)
subscripts = st.one_of(numbers, strings, st.sampled_from([0, "", "\x00", 1, 1.0, -0.0, "a"]))
sub_tuples = st.lists(subscripts, max_size=5).map(tuple)
global_names = st.from_regex(r"\A[%A-Za-z][A-Za-z0-9]{0,8}\Z")


def collation_key(subs):
    """Reference order: numbers (exactly, as fractions) before strings (by code point)."""
    out = []
    for s in subs:
        if isinstance(s, str):
            out.append((1, Fraction(0), [ord(c) for c in s]))
        else:
            out.append((0, Fraction(s), []))
    return out


def same_subscript(a, b):
    if isinstance(a, str) or isinstance(b, str):
        return type(a) is type(b) and a == b
    return Fraction(a) == Fraction(b)


@settings(max_examples=400, deadline=None)
@given(sub_tuples, sub_tuples)
def test_encoded_byte_order_equals_collation_order(a, b):
    ka, kb = encode_key("g", a), encode_key("g", b)
    ra, rb = collation_key(a), collation_key(b)
    assert (ka < kb) == (ra < rb)
    assert (ka == kb) == (ra == rb)


@settings(max_examples=400, deadline=None)
@given(global_names, sub_tuples)
def test_keys_round_trip(gname, subs):
    g, back = decode_key(encode_key(gname, subs))
    assert g == gname
    assert len(back) == len(subs)
    for x, y in zip(subs, back, strict=True):
        assert same_subscript(x, y)
        if not isinstance(x, str) and float(x).is_integer():
            assert type(y) is int  # integral numbers decode as int


@settings(max_examples=200, deadline=None)
@given(sub_tuples, sub_tuples)
def test_a_node_key_is_a_byte_prefix_of_its_descendants_keys(parent, tail):
    assert encode_key("g", parent + tail).startswith(encode_key("g", parent))


@settings(max_examples=200, deadline=None)
@given(global_names, global_names, sub_tuples, sub_tuples)
def test_globals_sort_by_name_before_subscripts(g1, g2, a, b):
    if g1 != g2:
        assert (encode_key(g1, a) < encode_key(g2, b)) == (g1 < g2)


def test_int_and_float_with_the_same_value_are_the_same_subscript():
    assert encode_key("x", (1,)) == encode_key("x", (1.0,))
    assert encode_key("x", (-0.0,)) == encode_key("x", (0,))
    assert encode_key("x", (2**60,)) == encode_key("x", (float(2**60),))
    assert decode_key(encode_key("x", (3.0,)))[1] == (3,)


def test_numbers_collate_before_strings_and_numerically():
    subs = ["10", "9", 10, 9, -1.5, "", 1e-300, -(10**30), "a", "B"]
    got = sorted(subs, key=lambda s: encode_key("x", (s,)))
    assert got == [-(10**30), -1.5, 1e-300, 9, 10, "", "10", "9", "B", "a"]


@pytest.mark.parametrize(
    "bad",
    [float("nan"), float("inf"), -math.inf, None, True, b"x", (1,), 2**40000],
    ids=["nan", "inf", "-inf", "None", "True", "bytes", "tuple", "huge-int"],
)
def test_unsupported_subscripts_are_rejected_with_a_reason(bad):
    with pytest.raises(ValueError, match="subscript|number"):
        encode_key("x", (bad,))


@pytest.mark.parametrize("bad", ["", "1abc", "a b", "a^", "x.", "a" * 32, "é", 5])
def test_invalid_global_names_are_rejected_with_a_reason(bad):
    with pytest.raises(ValueError, match="global name"):
        validate_global_name(bad)
    with pytest.raises(ValueError):
        encode_key(bad, ())


@pytest.mark.parametrize("good", ["a", "%sys", "Acct.Hist2", "x" * 31])
def test_valid_global_names_are_accepted(good):
    assert validate_global_name(good) == good


values = st.one_of(
    st.text(alphabet=st.characters(codec=None)),
    st.binary(),
    st.integers(min_value=-(2**300), max_value=2**300),
    st.floats(allow_nan=False),
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_values_round_trip_exactly_with_their_type(v):
    back = decode_value(encode_value(v))
    assert type(back) is type(v)
    assert back == v
    if isinstance(v, float):
        assert math.copysign(1, back) == math.copysign(1, v)


def test_unsupported_values_are_rejected_with_a_reason():
    with pytest.raises(ValueError, match="cannot be stored"):
        encode_value(None)
    with pytest.raises(ValueError, match="cannot be stored"):
        encode_value([1])
