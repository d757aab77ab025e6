"""Secure aggregation by pairwise masks: exact cancellation, hiding, dropouts, keys, bounds."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from osmotic.runtime.secagg import KEY_BYTES, Overhead, SecureAggregation

PROPERTY = settings(max_examples=40, deadline=None)

member_ids = st.lists(st.text("abcxyz0189", min_size=1, max_size=4), min_size=2, max_size=6,
                      unique=True)
value = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@st.composite
def rounds(draw: st.DrawFn) -> tuple[list[str], dict[str, np.ndarray]]:
    """Members and one float32 update of a common size per member."""
    members = draw(member_ids)
    size = draw(st.integers(1, 5))
    updates = {m: np.array(draw(st.lists(value, min_size=size, max_size=size)), np.float32)
               for m in members}
    return members, updates


def _masked(sa: SecureAggregation, members: list[str], updates: dict[str, np.ndarray],
            head: str = "h", round_: int = 0) -> dict[str, np.ndarray]:
    return {m: sa.mask(head, round_, members, m, updates[m]) for m in members}


def _encoded_sum(sa: SecureAggregation, updates: dict[str, np.ndarray]) -> np.ndarray:
    """The plain sum of the encoded updates, by Python integers (no wrap-around at all)."""
    ints = [sa.encode(u).view(np.int64).astype(object) for u in updates.values()]
    return np.array(sum(ints[1:], ints[0]), dtype=np.int64)


# -- 1. exactness -------------------------------------------------------------------------------
@PROPERTY
@given(r=rounds(), seed=st.integers(0, 2**63 - 1), frac_bits=st.integers(8, 32))
def test_sum_is_exact(r: tuple[list[str], dict[str, np.ndarray]], seed: int,
                      frac_bits: int) -> None:
    members, updates = r
    sa = SecureAggregation(seed, frac_bits=frac_bits)
    total, _ = sa.unmask_encoded("h", 3, members, _masked(sa, members, updates, round_=3))
    assert total.view(np.int64).tolist() == _encoded_sum(sa, updates).tolist()
    decoded, _ = sa.unmask("h", 3, members, _masked(sa, members, updates, round_=3))
    float_sum = np.sum([u.astype(np.float64) for u in updates.values()], axis=0)
    assert np.all(np.abs(decoded - float_sum) <= len(members) * 2.0**-frac_bits)


def test_torch_and_numpy_updates_agree() -> None:
    sa = SecureAggregation(0)
    x = np.array([[0.5, -1.25], [3.0, -7.0]], np.float32)
    assert np.array_equal(sa.mask("h", 0, ["a", "b"], "a", x),
                          sa.mask("h", 0, ["a", "b"], "a", torch.from_numpy(x)))


def test_negative_values_are_twos_complement() -> None:
    sa = SecureAggregation(0, frac_bits=4)
    assert sa.encode(np.array([-1.0, 1.0])).tolist() == [2**64 - 16, 16]
    assert sa.decode(np.array([2**64 - 16], np.uint64)).tolist() == [-1.0]


# -- 2. hiding ----------------------------------------------------------------------------------
@PROPERTY
@given(r=rounds(), seed=st.integers(0, 2**32))
def test_no_message_is_the_update(r: tuple[list[str], dict[str, np.ndarray]], seed: int) -> None:
    members, updates = r
    sa = SecureAggregation(seed)
    for m, message in _masked(sa, members, updates).items():
        assert np.all(message != sa.encode(updates[m]))


def test_messages_look_uniform() -> None:
    """An all-zero update masked is not near zero: each coordinate is a uniform 64-bit word."""
    sa = SecureAggregation(7)
    members = [f"t{i}" for i in range(3)]
    message = sa.mask("h", 0, members, "t0", np.zeros(4096, np.float32))
    assert np.count_nonzero(message == 0) == 0
    assert abs(float(np.mean(message / 2.0**64)) - 0.5) < 0.02
    high_bit = np.count_nonzero(message >> np.uint64(63))
    assert 1800 < high_bit < 2300


def test_a_lone_member_is_refused() -> None:
    sa = SecureAggregation(0)
    with pytest.raises(ValueError, match="at least 2 members"):
        sa.mask("h", 0, ["a"], "a", np.ones(3))
    with pytest.raises(ValueError, match="at least 2 members"):
        sa.unmask("h", 0, ["a"], {"a": np.zeros(3, np.uint64)})


def test_member_lists_are_checked() -> None:
    sa = SecureAggregation(0)
    with pytest.raises(ValueError, match="not among"):
        sa.mask("h", 0, ["a", "b"], "c", np.ones(3))
    with pytest.raises(ValueError, match="duplicate"):
        sa.mask("h", 0, ["a", "b", "a"], "a", np.ones(3))
    with pytest.raises(ValueError, match="non-members"):
        sa.unmask("h", 0, ["a", "b"], {"a": np.zeros(3, np.uint64), "z": np.zeros(3, np.uint64)})


# -- 3. dropouts --------------------------------------------------------------------------------
@PROPERTY
@given(r=rounds(), seed=st.integers(0, 2**32), data=st.data())
def test_dropouts_after_masking(r: tuple[list[str], dict[str, np.ndarray]], seed: int,
                                data: st.DataObject) -> None:
    members, updates = r
    survivors = data.draw(st.lists(st.sampled_from(members), min_size=1, unique=True))
    sa = SecureAggregation(seed)
    messages = _masked(sa, members, updates)
    total, overhead = sa.unmask_encoded("h", 0, members, {s: messages[s] for s in survivors})
    expected = _encoded_sum(sa, {s: updates[s] for s in survivors})
    assert total.view(np.int64).tolist() == expected.tolist()
    n, size = len(members), updates[members[0]].size
    dropped = n - len(survivors)
    assert overhead.recovery_bytes == KEY_BYTES * len(survivors) * dropped
    assert overhead.key_bytes == KEY_BYTES * n * (n - 1)
    assert overhead.message_bytes == 4 * size * len(survivors)


def test_overhead_of_one_round() -> None:
    sa = SecureAggregation(1)
    members = ["a", "b", "c", "d"]
    messages = _masked(sa, members, {m: np.ones(10, np.float32) for m in members})
    total, overhead = sa.unmask("h", 0, members, {m: messages[m] for m in ("a", "c", "d")})
    assert total.tolist() == [3.0] * 10
    assert (overhead.key_bytes, overhead.recovery_bytes, overhead.message_bytes) == (
        32 * 4 * 3, 32 * 3 * 1, 4 * 10 * 3)
    assert overhead.total_bytes == 384 + 96 + 120
    assert overhead.mask_seconds > 0 and overhead.unmask_seconds > 0
    _, again = sa.unmask("h", 0, members, messages)  # masking time was handed over once
    assert isinstance(again, Overhead) and again.mask_seconds == 0.0


def test_everyone_dropped_is_an_error() -> None:
    sa = SecureAggregation(0)
    with pytest.raises(ValueError, match="every member"):
        sa.unmask("h", 0, ["a", "b"], {})


# -- 4. keys ------------------------------------------------------------------------------------
@PROPERTY
@given(r=rounds(), seed=st.integers(0, 2**32), data=st.data())
def test_keys_do_not_depend_on_member_order(r: tuple[list[str], dict[str, np.ndarray]],
                                            seed: int, data: st.DataObject) -> None:
    members, updates = r
    shuffled = data.draw(st.permutations(members))
    sa = SecureAggregation(seed)
    a, b = _masked(sa, members, updates), _masked(sa, shuffled, updates)
    assert all(np.array_equal(a[m], b[m]) for m in members)
    assert sa.pair_key("h", 0, members[0], members[1]) == sa.pair_key("h", 0, members[1],
                                                                      members[0])
    total, _ = sa.unmask_encoded("h", 0, shuffled, a)
    assert total.view(np.int64).tolist() == _encoded_sum(sa, updates).tolist()


def test_masks_differ_across_rounds_heads_and_seeds() -> None:
    members = ["a", "b", "c"]
    x = np.linspace(-1, 1, 64)
    base = SecureAggregation(5).mask("h", 0, members, "a", x)
    for other in (SecureAggregation(5).mask("h", 1, members, "a", x),
                  SecureAggregation(5).mask("g", 0, members, "a", x),
                  SecureAggregation(6).mask("h", 0, members, "a", x),
                  SecureAggregation(5).mask("h", 0, ["a", "b", "d"], "a", x)):
        assert np.count_nonzero(base == other) == 0
    assert np.array_equal(base, SecureAggregation(5).mask("h", 0, members, "a", x))


def test_key_encoding_is_unambiguous() -> None:
    """Ids that would join to the same string still get different keys."""
    sa = SecureAggregation(0)
    assert sa.pair_key("h", 0, "a", "b:c") != sa.pair_key("h", 0, "a:b", "c")
    assert sa.pair_key("h:1", 0, "a", "b") != sa.pair_key("h", 10, "a", "b")


# -- 5. bounds ----------------------------------------------------------------------------------
def test_too_large_values_name_the_member() -> None:
    sa = SecureAggregation(0)  # |x| < 2**23 with the defaults
    ok = np.array([2.0**23 - 1, -(2.0**23 - 1)])
    sa.mask("h", 0, ["a", "b"], "a", ok)
    for bad in (2.0**23 + 1, -(2.0**23) - 1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="member 'b'"):
            sa.mask("h", 0, ["a", "b"], "b", np.array([0.0, bad]))


def test_the_bound_holds_at_max_members() -> None:
    """max_members updates at the bound sum within int64, both signs."""
    sa = SecureAggregation(0, frac_bits=20, max_members=4)
    members = ["a", "b", "c", "d"]
    top = sa.limit >> 20  # the largest whole number within the bound
    for sign in (1, -1):
        updates = {m: np.array([float(sign * top)]) for m in members}
        total, _ = sa.unmask_encoded("h", 0, members, _masked(sa, members, updates))
        assert total.view(np.int64).tolist() == [sign * 4 * (top << 20)]
        assert 4 * (top << 20) > 2**62  # near the edge of int64 indeed
    with pytest.raises(ValueError, match="exceed max_members"):
        sa.mask("h", 0, [*members, "e"], "a", np.ones(1))
