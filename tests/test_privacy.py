"""Differential privacy in the averaging modes: a block that does nothing changes nothing, the
ε reported is Opacus' own, a target ε is kept, what a head sees is clipped and noised as said,
and bad privacy settings are one line naming the field."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from opacus.accountants import RDPAccountant

import osmotic
from osmotic.cli import EXIT
from osmotic.holarchy.builders import fedavg
from osmotic.holarchy.privacy import HolarchyPrivacy
from osmotic.holarchy.schedule import Participation
from osmotic.runtime.privacy import PrivacySettings
from tests.test_modes import TINY
from tests.test_trust import cli, numbers, one_line

FEDAVG = {"holarchy": {"id": "R", "members": [str(i) for i in range(10)]}}
HOLONIC = {**TINY["holonic"], "rounds": 3}
NOTHING = [{"clip": None, "noise_multiplier": 0}, {"clip": math.inf, "noise_multiplier": 0}]


def opacus_epsilon(sigma: float, rate: float, steps: int, delta: float) -> float:
    acc = RDPAccountant()
    acc.history = [(sigma, rate, steps)]
    return acc.get_epsilon(delta)


@pytest.mark.parametrize("block", NOTHING)
@pytest.mark.parametrize("mode", ["holonic", "dssl"])
def test_no_clip_and_no_noise_is_the_run_without_privacy(mode: str, block: dict[str, Any],
                                                         tmp_path: Path) -> None:
    settings = HOLONIC if mode == "holonic" else TINY[mode]
    plain = osmotic.run(mode=mode, out=tmp_path / "plain", progress=False, **settings).summary
    private = osmotic.run(mode=mode, out=tmp_path / "private", progress=False, privacy=block,
                          **settings).summary
    assert private.pop("privacy")["epsilon"] is None  # no noise: no guarantee claimed
    assert numbers(private) == numbers(plain)
    rows = [json.loads(line) for line in (tmp_path / "private" / "metrics.jsonl").open()]
    assert [r["epsilon"] for r in rows] == [None] * len(rows)


@pytest.mark.parametrize("where", ["central", "local"])
def test_the_epsilon_reported_is_opacus_own(where: str, tmp_path: Path) -> None:
    run = osmotic.run(mode="holonic", out=tmp_path / "r", progress=False,
                      **{**HOLONIC, "structure": None, "holarchy": FEDAVG, "participation": 0.3,
                         "privacy": {"clip": 1.0, "noise_multiplier": 1.3, "where": where,
                                     "delta": 1e-3}})
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").open()]
    if where == "central":  # a head draws 3 of its 10 terminals a round: rate 0.3
        expected = [opacus_epsilon(1.3, 0.3, r, 1e-3) for r in (1, 2, 3)]
    else:  # the head knows who sent: rate 1, each round the busiest terminal reported in
        counts = Participation(fedavg(10), 0.3, 0.0, 0).draw
        reported = [set(counts(r)[1]) for r in (1, 2, 3)]
        busiest = [max(sum(str(t) in got for got in reported[:r]) for t in range(10))
                   for r in (1, 2, 3)]
        expected = [opacus_epsilon(1.3, 1.0, n, 1e-3) for n in busiest]
    assert [r["epsilon"] for r in rows] == pytest.approx(expected, rel=1e-12)
    assert run.summary["privacy"]["epsilon"] == pytest.approx(expected[-1], rel=1e-12)


@pytest.mark.parametrize("where", ["central", "local"])
def test_a_target_epsilon_is_kept(where: str, tmp_path: Path) -> None:
    run = osmotic.run(mode="holonic", out=tmp_path / "r", progress=False,
                      **{**HOLONIC, "structure": None, "holarchy": FEDAVG, "participation": 0.5,
                         "privacy": {"clip": 0.5, "target_epsilon": 4.0, "where": where,
                                     "delta": 1e-3}})
    privacy = run.summary["privacy"]
    assert 3.5 < privacy["epsilon"] <= 4.0 and privacy["noise_multiplier"] > 0


def holarchy_privacy(where: str, noise: float, clip: float = 1.0) -> HolarchyPrivacy:
    h = fedavg(4)
    return HolarchyPrivacy(PrivacySettings(clip=clip, noise_multiplier=noise, where=where,
                                           delta=1e-3), h, Participation(h), dict.fromkeys(
                                               h.terminals(), 100), 3, batch_size=10,
                           epochs=1, seed=0)


def test_updates_are_clipped_and_local_noise_is_the_terminals_own() -> None:
    received = torch.zeros(50)
    trained = torch.full((50,), 3.0)
    sent, update = holarchy_privacy("central", 1.0).sent(1, "0", trained, received)
    assert update.norm() == pytest.approx(1.0) and torch.equal(sent, received + update)
    local = holarchy_privacy("local", 1.0)
    a, _ = local.sent(1, "0", trained, received)
    again, _ = local.sent(1, "0", trained, received)
    other, _ = local.sent(1, "1", trained, received)
    assert torch.equal(a, again) and not torch.equal(a, other)  # seeded per terminal, round
    assert (a - received).norm() > 1.5  # clipped to 1, then noise of std 1 per coordinate
    small = torch.full((50,), 0.01)
    kept, _ = holarchy_privacy("central", 0.0, clip=10.0).sent(1, "0", small, received)
    assert kept is small  # nothing to clip, no noise: the very same tensor


def test_central_noise_is_added_once_by_the_head_over_a_fixed_denominator() -> None:
    from osmotic.holarchy.schedule import SyncSchedule

    p = holarchy_privacy("central", 0.5, clip=1.0)
    h = fedavg(4)
    schedule = SyncSchedule(h, dict.fromkeys(h.terminals(), 1.0), 1, torch.zeros(3), p)
    trained = torch.tensor([[3.0, 4.0, 0.0], [0.3, 0.4, 0.0], [0.0, 0.0, 0.0],
                            [0.0, 0.0, 0.0]])
    out = schedule.step(trained, reported=["0", "1"])  # two of the four drawn reported
    noise = p.head_noise(1, h.root, torch.Size([3]), torch.float32)
    assert noise is not None and noise.std() > 0.1
    expected = (torch.tensor([0.6, 0.8, 0.0]) + torch.tensor([0.3, 0.4, 0.0]) + noise) / 4
    assert torch.allclose(out, expected.expand(4, -1))  # clipped, summed, noised once, / 4


@pytest.mark.parametrize(("block", "field"), [
    ("{clip: 0, noise_multiplier: 1}", "privacy.clip"),
    ("{clip: 1, noise_multiplier: -1}", "privacy.noise_multiplier"),
    ("{clip: 1, target_epsilon: 0.00001}", "privacy.target_epsilon"),
    ("{clip: 1, noise_multiplier: 1, delta: 0}", "privacy.delta"),
    ("{clip: 1, noise_multiplier: 1, delta: 1}", "privacy.delta"),
    ("{noise_multiplier: 1}", "privacy"),
    ("{clip: 1, noise_multiplier: 1, target_epsilon: 3}", "privacy"),
])
def test_bad_privacy_settings_are_one_line_naming_the_field(block: str, field: str,
                                                            tmp_path: Path,
                                                            capsys: pytest.CaptureFixture
                                                            ) -> None:
    code, err = cli(capsys, "holonic", "run", "--structure", "1P", "--data", "digits",
                    "--rounds", "2", "--privacy", f"{{where: local, {block[1:]}",
                    "--out", str(tmp_path / "r"))
    assert code == EXIT["input"]
    assert f"{field}:" in one_line(err)
    assert not (tmp_path / "r" / "checkpoint.safetensors").exists()


def test_central_noise_with_neighbours_is_refused(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    code, err = cli(capsys, "holonic", "run", "--structure", "2L", "--data", "digits",
                    "--privacy", "{clip: 1, noise_multiplier: 1}", "--out", str(tmp_path / "r"))
    assert code == EXIT["input"]
    assert "privacy.where: central noise is added by a head" in one_line(err)


def test_a_delta_too_large_for_the_population_is_a_one_line_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, err = cli(capsys, "holonic", "run", "--structure", "1P", "--data", "digits",
                    "--rounds", "1", "--local-epochs", "1", "--privacy",
                    "{clip: 1, noise_multiplier: 1, where: local, delta: 0.2}",
                    "--out", str(tmp_path / "r"))
    assert code == EXIT["done"]
    warnings = [line for line in err.splitlines() if line.startswith("warning: privacy.delta")]
    assert len(warnings) == 1 and "1 / 10 terminals" in warnings[0]


# -- secure aggregation ----------------------------------------------------------------------


def test_secure_aggregation_shows_the_head_only_the_exact_sum(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    from osmotic.runtime.secagg import SecureAggregation

    plain: dict[tuple[int, str], Any] = {}
    sums: list[tuple[bool, bool]] = []  # (exact, someone dropped out after masking)
    mask, unmask = SecureAggregation.mask, SecureAggregation.unmask_encoded

    def masking(self: SecureAggregation, head: str, round_: int, members: Any, member: str,
                update: Any) -> Any:
        plain[round_, member] = self.encode(update, member)
        message = mask(self, head, round_, members, member, update)
        assert (message != plain[round_, member]).all()  # no coordinate of the update shows
        return message

    def summing(self: SecureAggregation, head: str, round_: int, members: Any,
                messages: Any) -> Any:
        total, overhead = unmask(self, head, round_, members, messages)
        expected = np.zeros_like(total)
        for m in messages:
            expected += plain[round_, m]  # uint64: wraps as the masks do
        sums.append((bool((total == expected).all()), len(messages) < len(members)))
        return total, overhead

    monkeypatch.setattr(SecureAggregation, "mask", masking)
    monkeypatch.setattr(SecureAggregation, "unmask_encoded", summing)
    settings = {**HOLONIC, "structure": None, "holarchy": FEDAVG, "participation": 0.5,
                "dropout_rate": 0.3}
    masked = osmotic.run(mode="holonic", out=tmp_path / "masked", progress=False,
                         privacy={"secure_aggregation": True}, **settings).summary
    monkeypatch.undo()
    open_ = osmotic.run(mode="holonic", out=tmp_path / "open", progress=False, **settings).summary
    assert sums and all(exact for exact, _ in sums)
    assert any(dropped for _, dropped in sums)  # a dropout's masks were removed, exactly
    assert masked["mean_test_accuracy"] == pytest.approx(open_["mean_test_accuracy"], abs=0.01)
    assert masked["bytes"]["vertical"] > open_["bytes"]["vertical"]  # keys and wider messages
    last = json.loads((tmp_path / "masked" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["secure_aggregation_seconds"] > 0  # the time it cost, beside the bytes


def test_secure_aggregation_sums_equal_plain_sums_to_the_fixed_point() -> None:
    from osmotic.holarchy.schedule import SyncSchedule

    h = fedavg(4)
    settings = PrivacySettings(secure_aggregation=True)
    p = HolarchyPrivacy(settings, h, Participation(h), dict.fromkeys(h.terminals(), 10), 2,
                        batch_size=5, epochs=1)
    trained = torch.randn(4, 1000)
    masked = SyncSchedule(h, dict.fromkeys(h.terminals(), 1.0), 1, torch.zeros(1000), p)
    open_ = SyncSchedule(h, dict.fromkeys(h.terminals(), 1.0), 1, torch.zeros(1000))
    got, want = masked.step(trained), open_.step(trained)
    assert not torch.equal(got, want) and torch.allclose(got, want, atol=4 * 2**-24)


@pytest.mark.parametrize(("changes", "says"), [
    ({"structure": "1P"}, "neighbours"),
    ({"structure": None, "holarchy": FEDAVG, "participation": 0.1}, "draws 1 of its 10"),
])
def test_secure_aggregation_where_masks_cannot_hide_is_refused(
        changes: dict[str, Any], says: str, tmp_path: Path) -> None:
    from osmotic.settings import InputError

    with pytest.raises(InputError, match=f"privacy.secure_aggregation: .*{says}"):
        osmotic.run(mode="holonic", out=tmp_path / "r", progress=False,
                    privacy={"secure_aggregation": True}, **{**HOLONIC, **changes})


def test_record_level_dp_sgd_spends_what_opacus_says_and_keeps_its_target(
        tmp_path: Path) -> None:
    run = osmotic.run(mode="holonic", out=tmp_path / "r", progress=False,
                      **{**HOLONIC, "structure": None, "holarchy": FEDAVG, "model": "mlp",
                         "batch_size": 16, "privacy": {"clip": 1.0, "target_epsilon": 4.0,
                                                       "level": "record", "delta": 1e-4}})
    privacy = run.summary["privacy"]
    assert 3.0 < privacy["epsilon"] <= 4.0 and privacy["noise_multiplier"] > 0
    rate, steps = privacy["sample_rate"], privacy["releases_per_round"]
    assert steps == math.ceil(round(16 / rate) / 16)  # one epoch of the smallest terminal
    expected = opacus_epsilon(privacy["noise_multiplier"], rate, steps * 3, 1e-4)
    assert privacy["epsilon"] == pytest.approx(expected, rel=1e-12)
