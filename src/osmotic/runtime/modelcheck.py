"""Before a run starts: does a model (a registered one or the user's) build, take the data and
run batched over agents? One line naming the failing operation otherwise, not a traceback from
deep inside the first training step."""
from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

import osmotic.models
from osmotic.models import ModelError
from osmotic.runtime.population import Population

_NOT_THE_MODEL = (str(Path(torch.__file__).parent), osmotic.models.__file__,
                  str(Path(__file__).parent))
"""Frames that are never the failing operation: torch, the model registry, the runtime (this
check and the population)."""


def check_batched(build: Callable[[], nn.Module], sample: Tensor, classes: int | None,
                  name: str) -> None:
    """Refuse, in one line, a model that cannot map `sample` [batch, ...] to `classes` logits
    (None: to any [batch, width] output), or that `torch.func.vmap` cannot batch over agents
    (forward and backward): then the line names the operation and where in the model's code
    it failed."""
    try:
        module = build()
    except ModelError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's constructor
        raise ModelError(f"model {name}: cannot be built ({type(e).__name__}: {e})") from None
    width = int(getattr(module, "NOISE_WIDTH", 0))
    noise = [torch.rand(len(sample), width, generator=torch.Generator().manual_seed(0))] \
        if width else []
    try:
        with torch.no_grad():
            out = module(sample, *noise)
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"model {name}: cannot take inputs of shape {tuple(sample.shape[1:])}"
                         f" ({_where(e)})") from None
    ok = isinstance(out, Tensor) and out.ndim == 2 and len(out) == len(sample) and \
        (classes is None or out.shape[1] == classes)
    if not ok:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        want = f"logits [{len(sample)}, {classes}] ({classes} classes in the data)" \
            if classes is not None else f"[{len(sample)}, width]"
        raise ModelError(f"model {name}: returns {got} for a batch of {len(sample)}; expected "
                         f"{want}")
    pop = Population(build, ["check-a", "check-b"], seed=0)
    try:
        logits = pop(sample.expand(2, *sample.shape), *[n.expand(2, *n.shape) for n in noise])
        logits.sum().backward()
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"model {name}: cannot run batched over agents (torch.func.vmap): "
                         f"{_where(e)}") from None


def _where(e: BaseException) -> str:
    """`file:line `code`: first line of the error`, at the deepest frame outside torch (the
    user's operation that failed)."""
    frames = [f for f in traceback.extract_tb(e.__traceback__)
              if not f.filename.startswith(_NOT_THE_MODEL)]
    head = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if not frames:
        return head
    f = frames[-1]
    return f"{f.filename}:{f.lineno} `{(f.line or '').strip()}`: {head}"

