"""Agents trained batched in one shard behave exactly as the same agents each in its own shard."""
from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
from torch import Tensor
from torch.func import functional_call, vmap

from osmotic.osml.agent import OsmoticAgent
from osmotic.osml.config import OsmlConfig
from osmotic.osml.shard import OsmoticShard, windows
from osmotic.osml.trainer import make_engine
from osmotic.runtime.population import Population

IDS = ["0", "M0"]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """As in a real run (OsmlConfig.threads): the ops are tiny, and a second intra-op thread
    only waits for a core on a loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _train_steps(shard: OsmoticShard, contexts: list[Tensor]) -> list[dict[str, Tensor]]:
    """Two lock-step updates; per step the embeddings, losses and gradients (Adam state counts)."""
    out = []
    for k, context in enumerate(contexts):
        e, _ = shard.embed("train", 20 * k, 20 * k + 20, train=True)
        loss = shard.step(context)
        out.append({"e": e, "loss": loss,
                    **{name: p.grad.clone() for name, p in shard.pop.params.items()}})
    return out


@pytest.mark.parametrize("preserve", ["infonce", "reconstruction", "reference"])
def test_batched_shard_equals_one_shard_per_agent(
        preserve: str, tiny_context: Callable, tiny_config: Callable[..., OsmlConfig]) -> None:
    train, test = tiny_context()
    config = tiny_config(preserve=preserve)
    g = torch.Generator().manual_seed(0)
    contexts = [torch.randn(len(IDS), 20, config.dim, generator=g) for _ in range(2)]
    shard = OsmoticShard(IDS, [train[a] for a in IDS], [test[a] for a in IDS], config)
    batched = _train_steps(shard, contexts)
    for i, aid in enumerate(IDS):
        alone = _train_steps(OsmoticShard([aid], [train[aid]], [test[aid]], config),
                             [c[i : i + 1] for c in contexts])
        for step_b, step_a in zip(batched, alone):
            for key, value in step_b.items():
                assert torch.allclose(value[i], step_a[key][0], atol=1e-5), (aid, key)


def test_engine_keeps_agent_order_across_shards(
        tiny_context: Callable, tiny_config: Callable[..., OsmlConfig]) -> None:
    """Agents of different feature counts live in different shards; the engine hides it."""
    train, test = tiny_context("complex")
    order = ["4", "0", "3"]  # agent 4 has two features: a shard of its own
    config = tiny_config()
    engine = make_engine(config, {a: train[a] for a in order}, {a: test[a] for a in order})
    E, _ = engine.embed("test", 0, 10)
    for i, aid in enumerate(order):
        alone = OsmoticShard([aid], [train[aid]], [test[aid]], config)
        assert torch.allclose(E[i], alone.embed("test", 0, 10)[0][0], atol=1e-6)



def test_shard_windows_are_views_equal_to_each_agents_own_windows(
        tiny_context: Callable, tiny_config: Callable[..., OsmlConfig]) -> None:
    """A shard keeps its agents' series once and windows them as a view (w times less memory
    than stacked windows); the values are each agent's windows of its standardised series."""
    train, test = tiny_context()
    config = tiny_config()
    shard = OsmoticShard(IDS, [train[a] for a in IDS], [test[a] for a in IDS], config)
    for split, data in (("train", train), ("test", test)):
        view = shard.windows[split]  # [agents, steps, w, k] over [agents, steps + w - 1, k]
        assert view.untyped_storage().nbytes() == 4 * view.shape[0] * (
            view.shape[1] + config.window - 1) * view.shape[3]
        for i, a in enumerate(IDS):
            mean, sd = train[a].mean(0), train[a].std(0) + 1e-8
            series = torch.from_numpy((data[a] - mean) / sd).float()
            assert torch.equal(view[i], windows((data[a] - mean) / sd, config.window))
            assert torch.equal(view[i, 3], series[3 : 3 + config.window])

@pytest.mark.parametrize("preserve", ["infonce", "reconstruction", "reference"])
def test_batched_forward_equals_vmap_over_the_module(preserve: str) -> None:
    """The agent's `batched_forward` (the Population's fast path) computes what vmap over its
    plain forward computes: embeddings, preservation losses and every parameter's gradient."""
    pop = Population(lambda: OsmoticAgent(2, 6, 8, 3, preserve), ["a", "b", "c"], seed=0)
    g = torch.Generator().manual_seed(0)
    x, noise = torch.randn(3, 9, 6, 2, generator=g), torch.randn(3, 9, 3, generator=g)

    def grads(out: tuple[Tensor, Tensor]) -> list[Tensor]:
        e, p = out
        return torch.autograd.grad((e.sin().sum((1, 2)) + p).sum(), list(pop.params.values()))

    fast = pop(x, noise)
    slow = vmap(lambda p, b, *a: functional_call(pop.template, (p, b), a))(
        pop.params, pop.buffers, x, noise)
    for f, s in zip((*fast, *grads(fast)), (*slow, *grads(slow))):
        torch.testing.assert_close(f, s, atol=1e-5, rtol=1e-5)
