"""D-SSL on the Ray engine: the in-process numbers (MAR's latent exchange included) for any
number of actors."""
from __future__ import annotations

from pathlib import Path

from osmotic.dssl.runner import load_data, run
from tests.dssl.conftest import tiny
from tests.dssl.test_runs import same_numbers


def test_parity_with_inprocess(ray_local, tmp_path: Path) -> None:
    config = tiny(method="mar", mar_target="reference", framework="decl", degree=2)
    data = load_data(config)
    local = run(config, tmp_path / "local", data)
    two = run(config.with_overrides(engine="ray", actors=2), tmp_path / "two", data)
    assert two["engine"] == "ray"
    same_numbers({**local, "engine": "ray"}, two, atol=1e-5)
