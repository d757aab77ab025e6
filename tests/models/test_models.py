"""Models by name or import path, data-decided arguments, and the one-time batched check."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from osmotic.holonic.config import HolonicConfig
from osmotic.models import (
    MODELS,
    ModelError,
    data_arguments,
    locate_model,
    make_model,
    register_model,
    resolve_model,
)
from osmotic.models.mlp import MLP
from osmotic.runtime.modelcheck import check_batched
from tests.models.usernets import unmarked_tabular

X = torch.randn(4, 6)


def check(name: str, x: torch.Tensor = X, classes: int = 3, **params: object) -> None:
    kwargs = data_arguments(name, params, tuple(x.shape[1:]), classes)
    check_batched(lambda: make_model(name, **kwargs), x, classes, name)


def test_mlp_and_import_paths_pass() -> None:
    check("mlp")
    check("mlp", hidden=[8])
    check("tests.models.usernets:TabularNet", width=5)
    check("tests.models.usernets:wide_tabular")
    assert data_arguments("mlp", {"hidden": [4]}, (1, 8, 8), 10) == \
        {"input_shape": (1, 8, 8), "num_classes": 10, "hidden": [4]}
    assert data_arguments("tests.models.usernets:TabularNet", {"num_classes": 2}, (6,), 3) == \
        {"in_features": 6, "num_classes": 2}  # model_params win over the data
    mlp = MLP((6,), 3, hidden=[7, 5])
    assert [m.out_features for m in mlp.net if isinstance(m, torch.nn.Linear)] == [7, 5, 3]


def test_refused_when_not_batchable_naming_the_operation() -> None:
    with pytest.raises(ModelError) as e:
        check("tests.models.usernets:ItemNet")
    text = str(e.value)
    assert "cannot run batched over agents (torch.func.vmap)" in text
    assert "usernets.py" in text and "`if h.sum().item() > 0:`" in text and "\n" not in text
    with pytest.raises(ModelError, match="usernets.py:[0-9]+ `return self.body\\(self.drop"
                       "\\(x\\)\\)`: vmap: called random operation"):
        check("tests.models.usernets:DropoutNet")


def test_refused_when_it_does_not_fit_the_data() -> None:
    with pytest.raises(ModelError, match="model cnn: cannot take inputs of shape \\(1, 8, 8\\)"):
        check("cnn", torch.randn(4, 1, 8, 8), 10)
    with pytest.raises(ModelError, match="returns \\(4, 6\\) for a batch of 4; expected "
                       "logits \\[4, 3\\]"):
        check("tests.models.usernets:WrongOutput")


@pytest.mark.parametrize(("name", "message"), [
    ("resnet", "unknown 'resnet'; choose from"),
    ("no_such_pkg.mod:Net", "cannot import 'no_such_pkg.mod' \\(ModuleNotFoundError"),
    ("tests.models.usernets:Nope", "has no attribute 'Nope'"),
])
def test_unknown_models_are_one_line(name: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        resolve_model(name)
    with pytest.raises(ValueError, match=message):
        HolonicConfig(structure="2L", model=name)


@pytest.mark.parametrize("name", ["subprocess:getoutput", "os:system", "builtins:print",
                                  "os.path:join", "osmotic.models:MODELS",
                                  "tests.models.usernets:unmarked_tabular"])
def test_only_models_and_model_factories_are_called(name: str) -> None:
    """A settings file is data: an import path naming other code is refused before any call."""
    with pytest.raises(ModelError, match="refused, .* is neither an nn.Module subclass nor a "
                       "model factory"):
        resolve_model(name)
    with pytest.raises(ValueError, match="refused"):
        HolonicConfig(structure="2L", model=name)


def test_classes_annotated_and_marked_factories_and_registered_names_are_models() -> None:
    check("tests.models.usernets:marked_tabular")  # @model_factory, no annotation
    assert resolve_model("torch.nn:Linear") is torch.nn.Linear
    register_model("my-tabular", unmarked_tabular)  # the Python API trusts its own code
    try:
        check("my-tabular")
    finally:
        MODELS.pop("my-tabular")


def test_a_module_file_in_a_folder_is_located_and_imported(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """Not on the Python path: found in the given folder (default: the working directory) and
    named by its absolute file, which imports it from anywhere."""
    (tmp_path / "located_nets.py").write_text(
        "from tests.models.usernets import TabularNet\n\nclass Net(TabularNet):\n    pass\n")
    monkeypatch.delitem(sys.modules, "located_nets", raising=False)
    file_form = f"{(tmp_path / 'located_nets.py').resolve()}:Net"
    assert locate_model("located_nets:Net", tmp_path) == file_form
    assert locate_model("located_nets:Net", tmp_path / "elsewhere") == "located_nets:Net"
    assert locate_model("tests.models.usernets:TabularNet", tmp_path) == \
        "tests.models.usernets:TabularNet"  # on the Python path: left as it is
    with pytest.raises(ModelError, match="not on the Python path, beside the settings file "
                       "or in /"):
        resolve_model("located_nets:Net")
    monkeypatch.chdir(tmp_path)
    assert locate_model("located_nets:Net") == file_form
    monkeypatch.chdir(tmp_path.parent)
    assert resolve_model(file_form).__module__ == "located_nets"
    check(file_form)
    with pytest.raises(ModelError, match="no such file"):
        resolve_model(f"{tmp_path / 'gone.py'}:Net")
