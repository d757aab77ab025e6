"""Secure aggregation by pairwise additive masks (Bonawitz et al. 2017, "Practical Secure
Aggregation for Privacy-Preserving Machine Learning"), simulated faithfully in one process.

Each member of a head's round encodes its update as fixed-point integers modulo 2**64 and adds,
for every other member, a mask that member can compute too: the member with the smaller id adds
it, the other subtracts it. One message alone is uniformly random; in the head's sum every mask
meets its negation and cancels exactly, leaving the sum of the updates and nothing else.

Integers, not floats: cancellation must be exact, and float addition is neither exact nor
associative. The arithmetic is NumPy `uint64`, whose wrap-around is defined (signed overflow is
not relied on anywhere); negative values travel as two's complement and the sum is read back by
viewing it as `int64`.

Pair keys stand in for the Diffie-Hellman agreement of the paper: the key of pair {i, j} in one
head's round is a SHA-256 digest of (run seed, head, round, sorted ids), so it depends on neither
member order nor anything but the pair, and a member's mask with a peer is a PCG64 stream seeded
by it. SHA-256 rather than `population.agent_seed`: that seed is a CRC-32 offset, so distinct
pairs would collide (same mask) once a run has tens of thousands of them.

Dropouts after masking are recovered as in the paper: the survivors reveal the keys they shared
with each member that did not send, and the head removes those masks. The paper's second,
self mask (which protects a member whose message is merely late when its keys are revealed) is
not simulated: a member here either sends or does not.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

KEY_BYTES = 32
"""Bytes of one public key (X25519) or of one revealed pair key."""


@dataclass(frozen=True)
class Overhead:
    """What secure aggregation adds to one head's round over plain float32 messages.

    key_bytes: key agreement, `KEY_BYTES` of public key per member per peer (n * (n - 1) * 32);
    recovery_bytes: `KEY_BYTES` per pair key a survivor reveals for a dropped member;
    message_bytes: the size change of the messages received, 8 bytes (uint64) instead of 4
    (float32) per coordinate; mask_seconds: time the members spent masking (summed: run one
    after another here, in parallel in a deployment); unmask_seconds: the head's summing and
    recovery.
    """

    key_bytes: int
    recovery_bytes: int
    message_bytes: int
    mask_seconds: float
    unmask_seconds: float

    @property
    def total_bytes(self) -> int:
        return self.key_bytes + self.recovery_bytes + self.message_bytes


class SecureAggregation:
    """Pairwise-masked sums of the updates of a head's members, round by round.

    Encoding: x becomes round(x * 2**frac_bits) modulo 2**64, so the resolution is
    2**-frac_bits (2**-24 ≈ 6e-8 by default, finer than float32's at magnitudes above 0.25).
    No sum can overflow: a member's encoded coordinate must be at most (2**63 - 1) //
    max_members in absolute value, so up to `max_members` of them sum within int64. With the
    defaults (24 bits, 2**16 members) that is |x| < 2**23 ≈ 8.4e6 per coordinate: ample for
    thousands of members' updates of magnitude 1e3. A larger |x| (or a non-finite one) is a
    ValueError naming the member.

    Cost: every member draws one mask per peer, so a round of n members and P coordinates draws
    n * (n - 1) * P integers in all (each pair's mask twice, once by either member), all with
    vectorised NumPy calls. The head's recovery draws one mask per (survivor, dropped) pair.

    "Smaller id" is Python's string order. Masking time is accumulated per (head, round) and
    handed back, with the bytes, in the `Overhead` that `unmask` returns for that round (which
    forgets it).
    """

    def __init__(self, seed: int, frac_bits: int = 24, max_members: int = 2**16):
        if not 0 <= frac_bits < 63:
            raise ValueError(f"frac_bits must be in [0, 62], got {frac_bits}")
        if max_members < 2:
            raise ValueError(f"max_members must be at least 2, got {max_members}")
        self.seed = seed
        self.frac_bits = frac_bits
        self.max_members = max_members
        self.limit = (2**63 - 1) // max_members
        """The largest |encoded coordinate| a member may send."""
        self._mask_seconds: dict[tuple[str, int], float] = {}

    # -- fixed point --------------------------------------------------------------------------
    def encode(self, update: np.ndarray | torch.Tensor, member: str = "?") -> np.ndarray:
        """`update` as fixed-point uint64 (two's complement), same shape; ValueError naming
        `member` if a coordinate is not finite or exceeds the bound of the class docstring."""
        if isinstance(update, torch.Tensor):
            update = update.detach().cpu().numpy()
        scaled = np.rint(np.asarray(update, dtype=np.float64) * 2.0**self.frac_bits)
        # Integer-valued floats below float(limit + 1) are at most limit, even when
        # float(limit + 1) is rounded: the comparison never admits an overflowing value.
        ok = np.isfinite(scaled) & (np.abs(scaled) < float(self.limit + 1))
        if not ok.all():
            bad = np.asarray(update, dtype=np.float64).reshape(-1)[int(np.argmin(ok.reshape(-1)))]
            raise ValueError(f"member {member!r}: update value {bad} cannot be encoded with "
                             f"{self.frac_bits} fractional bits for up to {self.max_members} "
                             f"members (|x| must be below {self.limit / 2.0**self.frac_bits:.4g})")
        return np.asarray(scaled).astype(np.int64).view(np.uint64)  # asarray: 0-d stays array

    def decode(self, total: np.ndarray) -> np.ndarray:
        """A uint64 sum of encoded updates back to float64."""
        return total.view(np.int64) / 2.0**self.frac_bits

    # -- masks --------------------------------------------------------------------------------
    def pair_key(self, head: str, round_: int, a: str, b: str) -> int:
        """The 256-bit key pair {a, b} agreed on in `head`'s round `round_` (symmetric)."""
        lo, hi = sorted((a, b))
        text = json.dumps([self.seed, head, round_, lo, hi])  # unambiguous, unlike a joined str
        return int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")

    def _pair_mask(self, head: str, round_: int, a: str, b: str, shape: tuple[int, ...]
                   ) -> np.ndarray:
        gen = np.random.Generator(np.random.PCG64(self.pair_key(head, round_, a, b)))
        return np.asarray(gen.integers(0, 2**64, size=shape, dtype=np.uint64, endpoint=False))

    def mask(self, head: str, round_: int, members: Sequence[str], member: str,
             update: np.ndarray | torch.Tensor) -> np.ndarray:
        """What `member` sends to `head` in round `round_`: its encoded update plus its masks
        with every other member of `members` (those that agreed on keys this round), uint64.

        A lone member is refused: its message would be its update, and no masking can hide one
        member from the head that receives its sum.
        """
        start = time.perf_counter()
        _check_members(members, self.max_members)
        if member not in members:
            raise ValueError(f"member {member!r} is not among the round's members {list(members)}")
        message = self.encode(update, member)  # a fresh array: masks are added in place
        for peer in members:
            if peer == member:
                continue
            r = self._pair_mask(head, round_, member, peer, message.shape)
            (np.add if member < peer else np.subtract)(message, r, out=message)
        key = (head, round_)
        self._mask_seconds[key] = self._mask_seconds.get(key, 0.0) + time.perf_counter() - start
        return message

    def unmask_encoded(self, head: str, round_: int, members: Sequence[str],
                       messages: Mapping[str, np.ndarray]) -> tuple[np.ndarray, Overhead]:
        """The exact uint64 sum of the encoded updates of the members that sent `messages`.

        Members of `members` with no message dropped out after masking: each survivor reveals
        its key with each of them and the head removes those masks, so the survivors' sum comes
        out exactly. A single survivor's sum is its own update (the paper's threshold t, below
        which a server aborts, is the caller's policy); no survivor at all is a ValueError.
        """
        start = time.perf_counter()
        _check_members(members, self.max_members)
        unknown = sorted(set(messages) - set(members))
        if unknown:
            raise ValueError(f"messages from non-members {unknown} of the round {list(members)}")
        survivors = [m for m in members if m in messages]
        dropped = [m for m in members if m not in messages]
        if not survivors:
            raise ValueError(f"every member of head {head!r} dropped out in round {round_}: "
                             "nothing to aggregate")
        shape = messages[survivors[0]].shape
        if any(messages[s].shape != shape or messages[s].dtype != np.uint64 for s in survivors):
            raise ValueError("masked messages must be uint64 arrays of one shape")
        total = np.zeros(shape, dtype=np.uint64)
        for s in survivors:
            np.add(total, messages[s], out=total)
        for d in dropped:
            for s in survivors:  # s revealed key {s, d}: undo what s applied with it
                r = self._pair_mask(head, round_, s, d, shape)
                (np.subtract if s < d else np.add)(total, r, out=total)
        n = len(members)
        overhead = Overhead(
            key_bytes=KEY_BYTES * n * (n - 1),
            recovery_bytes=KEY_BYTES * len(survivors) * len(dropped),
            message_bytes=(8 - 4) * int(np.prod(shape, dtype=np.int64)) * len(survivors),
            mask_seconds=self._mask_seconds.pop((head, round_), 0.0),
            unmask_seconds=time.perf_counter() - start,
        )
        return total, overhead

    def unmask(self, head: str, round_: int, members: Sequence[str],
               messages: Mapping[str, np.ndarray]) -> tuple[np.ndarray, Overhead]:
        """The decoded (float64) sum of the senders' updates; see `unmask_encoded`."""
        total, overhead = self.unmask_encoded(head, round_, members, messages)
        return self.decode(total), overhead


def _check_members(members: Sequence[str], max_members: int) -> None:
    if len(members) < 2:
        raise ValueError("secure aggregation needs at least 2 members: a lone member's message "
                         "would be its update")
    if len(set(members)) != len(members):
        raise ValueError(f"duplicate member ids: {list(members)}")
    if len(members) > max_members:
        raise ValueError(f"{len(members)} members exceed max_members={max_members}: their sum "
                         "could overflow")
