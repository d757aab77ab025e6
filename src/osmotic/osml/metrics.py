"""OSM-L's similarity (paper Eq. 14) and the measures built on it, vectorised over steps.

Embeddings are arrays E of shape [agents, steps, d], the steps time-aligned across agents.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import adjusted_rand_score
from torch import Tensor


def sim(cos: Tensor, beta: float = 2.0) -> Tensor:
    """Paper Eq. 14 applied to cosines: sign(cos)·|cos|^β accentuates strong agreement."""
    return torch.sign(cos) * cos.abs() ** beta


def pair_scores(E: Tensor, beta: float = 2.0, max_elements: int = 1 << 24) -> Tensor:
    """Mean over steps of |sim(e_i^(t), e_j^(t))| = |cos|^β: [agents, agents], the diagonal is 1.
    Computed for as many rows at a time as fit in `max_elements` (at least one), each block's
    cosines turned into |cos|^β in place, so the one temporary stays ~64 MiB however many
    agents and steps (64 rows at a time held 0.9 GiB per temporary at 4,096 agents and 891
    test steps; `sim`'s sign and power as new tensors, four of them at once)."""
    En = F.normalize(E, dim=-1)
    rows = max(1, max_elements // (En.shape[0] * En.shape[1]))
    return torch.cat([torch.einsum("itd,jtd->ijt", En[k : k + rows], En).abs_().pow_(beta).mean(-1)
                      for k in range(0, len(En), rows)])


def pair_scores_of(E: Tensor, ii: np.ndarray, jj: np.ndarray, beta: float = 2.0,
                   max_elements: int = 1 << 24) -> Tensor:
    """`pair_scores` of the pairs (ii[p], jj[p]) only: [pairs], in blocks of pairs that keep
    the gathered embeddings within `max_elements`."""
    En = F.normalize(E, dim=-1)
    ii, jj = torch.as_tensor(ii, dtype=torch.long), torch.as_tensor(jj, dtype=torch.long)
    rows = max(1, max_elements // (En.shape[1] * En.shape[2]))
    return torch.cat([(En[ii[k : k + rows]] * En[jj[k : k + rows]]).sum(-1).abs_().pow_(beta).mean(-1)
                      for k in range(0, len(ii), rows)] or [En.new_zeros(0)])


def _off_diagonal_mean(m: Tensor) -> float:
    n = len(m)
    return float((m.sum() - m.diagonal().sum()) / (n * (n - 1)))


def context_accuracy(E: Tensor, groups: Sequence[Sequence[int]], beta: float = 2.0) -> list[float]:
    """Paper Eq. 15 per group: mean of |sim| over pairs of *distinct* agents and over steps.

    Self-pairs are never counted (the published simulator's matrix mean includes its diagonal of
    ones, reporting (1 + s)/2 for two agents). A group of fewer than two agents has no pairs: nan.
    """
    return [_off_diagonal_mean(pair_scores(E[list(g)], beta)) if len(g) > 1 else float("nan")
            for g in groups]


def _rank_from_sign_sums(signs: Tensor, T: int, higher: bool) -> Tensor:
    """Mean over steps t of 1 − (rank of s = t)/(T − 1), from signs = Σ_t Σ_s sign(c_ts − c_tt)
    (= better − worse, ties other than s = t counting half): 1 − rank/(T − 1) =
    ½ − (better − worse)/(2(T − 1)), and 1 when T = 1. `higher`: a higher score ranks first."""
    m = max(T - 1, 1)
    return 1 - (T - 1) / (2 * m) - (signs if higher else -signs) / (2 * m * T)


@functools.cache
def _kernels() -> dict[str, Callable[..., np.ndarray]]:
    """The compiled rank kernels, built on first use: importing Numba costs ~85 MiB and 0.2 s
    that only rank scores need. Numba caches the machine code (beside this file, or in a
    per-user directory where that is read-only), so a later process loads them in ~0.4 s.

    Each kernel holds one pair's T × T scores in a T-vector at a time, so the work is
    arithmetic, not memory traffic, and sums each pair in one thread in one order: the result
    does not depend on the number of threads.

    The kernels use Numba's `workqueue` threading layer unless the user chose one
    (`NUMBA_THREADING_LAYER`): its OpenMP layer kills any child forked after a parallel call
    (multiprocessing's default on Linux) and resets the OpenMP thread count torch shares. Set
    here, when the kernels are built, not when osmotic is imported."""
    import os

    import numba

    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER = "workqueue"

    @numba.njit(cache=True)
    def signs(Q: np.ndarray, a: int, K: np.ndarray, j: int, v: np.ndarray) -> int:
        """Σ_t Σ_s sign(⟨Q[a, t], K[j, :, s]⟩ − ⟨Q[a, t], K[j, :, t]⟩) for Q [r, T, d] and
        K [m, d, T] (keys transposed: the loop over s reads contiguous memory); v: a T-vector
        to work in."""
        T, d = Q.shape[1], Q.shape[2]
        total = 0
        for t in range(T):
            q = Q[a, t, 0]
            for s in range(T):
                v[s] = q * K[j, 0, s]
            for k in range(1, d):
                q = Q[a, t, k]
                for s in range(T):
                    v[s] += q * K[j, k, s]
            own = v[t]
            for s in range(T):
                total += (v[s] > own) - (v[s] < own)
        return total

    @numba.njit(parallel=True, cache=True)
    def cosine(Q: np.ndarray, K: np.ndarray) -> np.ndarray:
        """out[a, j] = `signs` of every query agent a of Q against every key agent j of K."""
        r, m = Q.shape[0], K.shape[0]
        out = np.empty((r, m), dtype=np.int64)
        for a in numba.prange(r):
            v = np.empty(Q.shape[1], dtype=Q.dtype)
            for j in range(m):
                out[a, j] = signs(Q, a, K, j, v)
        return out

    @numba.njit(parallel=True, cache=True)
    def cosine_pairs(Q: np.ndarray, K: np.ndarray, ii: np.ndarray, jj: np.ndarray) -> np.ndarray:
        """out[p] = `signs` of query agent ii[p] against key agent jj[p]."""
        out = np.empty(len(ii), dtype=np.int64)
        for p in numba.prange(len(ii)):
            out[p] = signs(Q, ii[p], K, jj[p], np.empty(Q.shape[1], dtype=Q.dtype))
        return out

    @numba.njit(cache=True)
    def mapped_signs(A: np.ndarray, i: int, W: np.ndarray, Y: np.ndarray, j: int,
                     pred: np.ndarray, v: np.ndarray) -> int:
        """Σ_t Σ_s sign(‖ŷ_t − y_s‖² − ‖ŷ_t − y_t‖²) for predictions ŷ = A[i] W (A [n, S, k],
        W [k, d]: one pair's map) of the targets y = Y[j] (Y [m, d, S], transposed); pred, v:
        a d- and an S-vector to work in."""
        S, k = A.shape[1], A.shape[2]
        d = Y.shape[1]
        total = 0
        for t in range(S):
            for c in range(d):
                acc = A[i, t, 0] * W[0, c]
                for l in range(1, k):
                    acc += A[i, t, l] * W[l, c]
                pred[c] = acc
            for s in range(S):
                diff = pred[0] - Y[j, 0, s]
                v[s] = diff * diff
            for c in range(1, d):
                for s in range(S):
                    diff = pred[c] - Y[j, c, s]
                    v[s] += diff * diff
            own = v[t]
            for s in range(S):
                total += (v[s] > own) - (v[s] < own)
        return total

    @numba.njit(parallel=True, cache=True)
    def distance(A: np.ndarray, W: np.ndarray, Y: np.ndarray, ii: np.ndarray,
                 jj: np.ndarray) -> np.ndarray:
        """out[p] = `mapped_signs` of pair p = (i, j) = (ii[p], jj[p]) by its map W[i, :, j]
        (W [n, k, m, d])."""
        out = np.empty(len(ii), dtype=np.int64)
        for p in numba.prange(len(ii)):
            out[p] = mapped_signs(A, ii[p], W[ii[p], :, jj[p]], Y, jj[p],
                                  np.empty(Y.shape[1], dtype=A.dtype),
                                  np.empty(A.shape[1], dtype=A.dtype))
        return out

    @numba.njit(parallel=True, cache=True)
    def distance_pairs(A: np.ndarray, W: np.ndarray, Y: np.ndarray, ii: np.ndarray,
                       jj: np.ndarray) -> np.ndarray:
        """out[p] = `mapped_signs` of pair p = (ii[p], jj[p]) by its own map W[p] (W [P, k, d])."""
        out = np.empty(len(ii), dtype=np.int64)
        for p in numba.prange(len(ii)):
            out[p] = mapped_signs(A, ii[p], W[p], Y, jj[p], np.empty(Y.shape[1], dtype=A.dtype),
                                  np.empty(A.shape[1], dtype=A.dtype))
        return out

    return {"cosine": cosine, "cosine_pairs": cosine_pairs, "distance": distance,
            "distance_pairs": distance_pairs}


def _run_kernel(name: str, *arrays: np.ndarray) -> Tensor:
    """`_kernels()[name]` on as many threads as torch uses here. Numba runs them on its own
    pool (osmotic selects its `workqueue` layer, which survives a fork but not two threads
    calling at once); under its OpenMP layer, the first parallel call resets OpenMP's thread
    count, which is torch's: that is put back."""
    import numba

    threads = torch.get_num_threads()
    kernel = _kernels()[name]
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        return torch.from_numpy(kernel(*arrays))
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def _ranks(kernel: str, Q: Tensor, K: Tensor, *pairs: np.ndarray) -> Tensor:
    """Rank scores by a cosine kernel (`_kernels`) on unit vectors of Q [r, T, d] and K
    [m, T, d] (transposed for the kernel), in Q's dtype (float32 unless it is float64)."""
    dtype = Q.dtype if Q.dtype in (torch.float32, torch.float64) else torch.float32

    def unit(x: Tensor) -> Tensor:
        return F.normalize(x.detach().to("cpu", dtype), dim=-1)

    signs = _run_kernel(kernel, unit(Q).contiguous().numpy(),
                        unit(K).transpose(1, 2).contiguous().numpy(), *pairs)
    return _rank_from_sign_sums(signs.to(dtype), Q.shape[1], higher=True)


def ranks_between(Q: Tensor, K: Tensor) -> Tensor:
    """`rank_scores` of every (query agent a of Q [r, T, d], key agent j of K [m, T, d]):
    [r, m], the query agents shared among the threads."""
    return _ranks("cosine", Q, K)


def pair_ranks(E: Tensor, ii: np.ndarray, jj: np.ndarray) -> Tensor:
    """`rank_scores` of the ordered pairs (ii[p], jj[p]) of E's agents only: [pairs], each
    equal to `pairwise_ranks(E)[ii[p], jj[p]]` (the same kernel arithmetic)."""
    return _ranks("cosine_pairs", E, E, np.asarray(ii, np.int64), np.asarray(jj, np.int64))


def rank_scores(E: Tensor, i: int, js: Sequence[int]) -> Tensor:
    """For each j in `js`: mean over t of 1 − (rank of s = t − 1)/(T − 1), ranking agent j's
    embeddings e_j^(s) by cosine to e_i^(t); ties share their mean rank. 0.5 is chance, and a
    constant embedding scores exactly 0.5. (One query agent: one thread.)"""
    return ranks_between(E[i].unsqueeze(0), E[list(js)])[0]


def pairwise_ranks(E: Tensor) -> Tensor:
    """`rank_scores` of every ordered pair [agents, agents] (the diagonal is 1), by one compiled
    kernel (`_kernels`, Numba). As tensor operations, the [agents·T, agents·T] cosines
    went through memory four times (product, subtraction, signs, sum): 31 s of a 4,096-agent
    clustering on two cores, against 11 s for the kernel."""
    return ranks_between(E, E)


def mapped_ranks(X: Tensor, Y: Tensor, block: int = 50, samples: int = 50,
                 ridge: float = 1e-3) -> Tensor:
    """Agreement that needs no prior alignment, [n, m] for X [n, T, d] and Y [m, T, d].

    For each pair: how well one side's embeddings, through the best linear map, tell which step
    is which on the other's. The map (least squares with an intercept, a little ridge) is fitted
    on up to 4·`samples` evenly spaced steps of the even blocks of `block` steps and scored on
    `samples` evenly spaced steps of the odd blocks: for each scored step t, the rank of the
    other side's step t among the scored steps by distance to the prediction (coordinates
    standardised), as in `rank_scores`. Fitting and scoring on different stretches of time
    keeps a chance fit between two slow, unrelated series from scoring: unrelated and collapsed
    embeddings score about 0.5, and a rotation, scaling or any invertible linear map of the same
    embeddings about 1. Both directions are averaged.

    A map that predicts the scored steps no better than their mean (R² ≤ 0) scores 0.5 without
    being ranked: ranking costs O(samples²) per pair, and with hundreds of agents in no
    sub-context nearly all pairs are such.
    """
    fit, scored = _fitted_and_scored(X, block, samples)
    there = _mapped_one_way(X, Y, fit, scored, ridge)
    back = _mapped_one_way(Y, X, fit, scored, ridge)
    return (there + back.T) / 2


def mapped_pair_ranks(X: Tensor, Y: Tensor, ii: np.ndarray, jj: np.ndarray, block: int = 50,
                      samples: int = 50, ridge: float = 1e-3) -> Tensor:
    """`mapped_ranks(X, Y, ...)[ii, jj]` for the pairs (ii[p], jj[p]) only: [pairs]. The maps
    are fitted per pair (another order of the same sums), so a near-tie of two distances may
    rank the other way: values differ from `mapped_ranks`' by a few 1e-4 at most."""
    fit, scored = _fitted_and_scored(X, block, samples)
    ii, jj = torch.as_tensor(ii, dtype=torch.long), torch.as_tensor(jj, dtype=torch.long)
    return (_mapped_pairs_one_way(X, Y, ii, jj, fit, scored, ridge)
            + _mapped_pairs_one_way(Y, X, jj, ii, fit, scored, ridge)) / 2


def _fitted_and_scored(X: Tensor, block: int, samples: int) -> tuple[Tensor, Tensor]:
    """The steps a map is fitted on and those it is scored on (see `mapped_ranks`)."""
    T = X.shape[1]
    blocks = torch.arange(T) // block
    even, odd = (torch.nonzero(blocks % 2 == r).squeeze(1) for r in (0, 1))
    if len(odd) < 2 or len(even) <= X.shape[2] + 1:
        raise ValueError(f"mapped_ranks: {T} steps are too few for blocks of {block}")
    return _evenly(even, 4 * samples), _evenly(odd, samples)


def _standardised(B: Tensor, scored: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """B's scored steps standardised per agent and coordinate [m, S, d], with their means and
    sds [m, d]."""
    target = B[:, scored]
    mu, sd = target.mean(1), target.std(1, correction=0).clamp_min(1e-6)  # [m, d]
    return (target - mu[:, None]) / sd[:, None], mu, sd


def _mapped_pairs_one_way(A: Tensor, B: Tensor, ii: Tensor, jj: Tensor, fit: Tensor,
                          scored: Tensor, ridge: float, chunk: int = 4096) -> Tensor:
    """`_mapped_one_way(A, B, ...)[ii, jj]`: each pair's map fitted on its own (`chunk` pairs at
    a time), the same R² shortcut, the pairs that pass ranked by the compiled kernel."""
    target, mu, sd = _standardised(B, scored)
    target_T = target.transpose(1, 2).contiguous().detach().numpy()
    A1 = torch.cat([A, A.new_ones(*A.shape[:2], 1)], dim=-1)
    Af, As = A1[:, fit], A1[:, scored]
    k = A1.shape[-1]
    inverse = torch.linalg.inv(Af.transpose(1, 2) @ Af + ridge * len(fit) * torch.eye(k))
    Gs = As.transpose(1, 2) @ As
    as_array = As.detach().contiguous().numpy()
    out = A.new_full((len(ii),), 0.5)
    for c in range(0, len(ii), chunk):
        i, j = ii[c : c + chunk], jj[c : c + chunk]
        W = inverse[i] @ (Af[i].transpose(1, 2) @ B[j][:, fit])  # [pairs, k, d]
        W = W / sd[j][:, None]
        W[:, -1] -= mu[j] / sd[j]
        fitted = ((Gs[i] @ W) * W).sum((1, 2))
        cross = ((As[i].transpose(1, 2) @ target[j]) * W).sum((1, 2))
        keep = torch.nonzero(fitted < 2 * cross).squeeze(1)
        if len(keep):
            signs = _run_kernel("distance_pairs", as_array, W[keep].detach().contiguous().numpy(),
                                target_T, i[keep].numpy(), j[keep].numpy())
            out[c + keep] = _rank_from_sign_sums(signs.to(out.dtype), len(scored), higher=False)
    return out


def _evenly(steps: Tensor, k: int) -> Tensor:
    """At most k of `steps`, evenly spaced."""
    return steps[torch.linspace(0, len(steps) - 1, min(k, len(steps))).round().long().unique()]


def _mapped_one_way(A: Tensor, B: Tensor, fit: Tensor, scored: Tensor, ridge: float,
                    max_elements: int = 1 << 22) -> Tensor:
    """Rank score of B_j's scored steps after the least-squares map A_i → B_j, [n, m]; as many
    rows of A at a time as keep the [rows, d + 1, m, d] maps within `max_elements` (16 MiB:
    a block holds three tensors of that size at once). B's side is prepared once for all
    blocks: its fitted steps as right-hand sides [fit, m·d], its scored steps standardised
    (per agent and coordinate) [m, d, S] and flattened [S, m·d], with their means and sds."""
    target, mu, sd = _standardised(B, scored)
    side = (B[:, fit].transpose(0, 1).reshape(len(fit), -1),
            target.transpose(1, 2).contiguous(), target.transpose(0, 1).reshape(len(scored), -1),
            mu, sd)
    rows = max(1, max_elements // (B.shape[0] * (A.shape[2] + 1) * B.shape[2]))
    return torch.cat([_mapped_rows(A[k : k + rows], side, fit, scored, ridge)
                      for k in range(0, len(A), rows)])


def _mapped_rows(A: Tensor, side: tuple[Tensor, ...], fit: Tensor, scored: Tensor,
                 ridge: float) -> Tensor:
    """The maps W [n, d + 1, m, d] are fitted for all pairs at once (one inverse per row of
    A, applied to the m·d targets as its right-hand sides), with B's standardisation of the
    scored steps folded in. Whether a map beats the mean (R² > 0) then needs no [n, m, S, d]
    predictions: Σ‖pred − target‖² = Σ W·(Gs W) − 2 Σ W·(A_sᵀ target) + Σ target², with
    Gs = A_sᵀA_s. Only the useful pairs are predicted and ranked, by a compiled kernel
    (`_kernels`) that holds one pair's predictions and distances at a time: as tensor
    operations (gathered inputs and maps, a bmm, cdist, signs), ranking them took 5 s of a
    4,096-agent clustering."""
    fitted_B, target_T, target_flat, mu, sd = side
    n, (m, d, S) = A.shape[0], target_T.shape
    A1 = torch.cat([A, A.new_ones(n, A.shape[1], 1)], dim=-1)  # [n, T, k], k = d_A + 1
    Af, As = A1[:, fit], A1[:, scored]
    k = A1.shape[-1]
    gram = Af.transpose(1, 2) @ Af + ridge * len(fit) * torch.eye(k)
    rhs = Af.transpose(1, 2).reshape(n * k, -1) @ fitted_B
    # gram is (d + 1) × (d + 1) and positive definite (the ridge): its inverse times the m·d
    # right-hand sides is one bmm, 25x faster than `linalg.solve` with that many of them
    W = (torch.linalg.inv(gram) @ rhs.view(n, k, m * d)).view(n, k, m, d)
    del rhs  # the temporaries below are W's size: in place where possible, at most three live
    W.div_(sd)
    W[:, -1] -= mu / sd  # the intercept row: predictions come out standardised
    Gs = As.transpose(1, 2) @ As  # [n, k, k]
    cross = (As.transpose(1, 2).reshape(n * k, -1) @ target_flat).view(n, k, m, d)
    fitted = torch.einsum("nkl,nlmd->nkmd", Gs, W).mul_(W).sum((1, 3))  # Σ pred²
    out = A.new_full((n, m), 0.5)
    # R² > 0: Σ(pred − target)² < Σ target², i.e. Σ pred² < 2 Σ pred·target
    i, j = torch.nonzero(fitted < 2 * cross.mul_(W).sum((1, 3)), as_tuple=True)
    if len(i):
        signs = _run_kernel("distance", As.detach().contiguous().numpy(), W.detach().numpy(),
                            target_T.detach().numpy(), i.numpy(), j.numpy())
        out[i, j] = _rank_from_sign_sums(signs.to(out.dtype), S, higher=False)
    return out


def rank_score(E: Tensor, groups: Sequence[Sequence[int]], max_pairs: int | None = None,
               seed: int = 0) -> list[float]:
    """Collapse-aware agreement per group: rank_scores averaged over ordered pairs i ≠ j.

    Ranking costs O(steps²) per pair, so a group with more than `max_pairs` ordered pairs is
    scored on a sample of that many (drawn with `seed`): the mean of 2,000 pairs is within
    about 0.005 of the full mean, at a fraction of the cost for hundreds of agents.
    """
    gen = torch.Generator().manual_seed(seed)
    out = []
    for g in groups:
        m = len(g)
        if m < 2:
            out.append(float("nan"))
            continue
        n_pairs = m * (m - 1)  # ordered pair k is (k // (m − 1), the k % (m − 1)-th other agent)
        k = (torch.arange(n_pairs) if max_pairs is None or n_pairs <= max_pairs
             else torch.randperm(n_pairs, generator=gen)[:max_pairs].sort().values)
        i, jj = k // (m - 1), k % (m - 1)
        j = jj + (jj >= i).long()
        by_i: dict[int, list[int]] = {}
        for a, b in zip(i.tolist(), j.tolist()):
            by_i.setdefault(g[a], []).append(g[b])
        out.append(float(torch.cat([rank_scores(E, i, js) for i, js in by_i.items()]).mean()))
    return out


def spread(E: Tensor) -> Tensor:
    """Per agent: mean distance to the temporal mean over mean norm (near 0 means collapse)."""
    centre = E.mean(1, keepdim=True)
    return (E - centre).norm(dim=-1).mean(1) / E.norm(dim=-1).mean(1).clamp_min(1e-12)


def against_truth(found: Sequence[Sequence[str]], agents: Sequence[str],
                  truth: Mapping[str, Any]) -> dict[str, Any]:
    """How the sub-contexts `found` among `agents` compare with a scenario's `truth.json`.

    `ari`: adjusted Rand index of the two partitions of `agents`, every agent outside a
    sub-context (a loner, a noise agent, a missed group member) a singleton; 1 is a perfect
    match, 0 what chance gives. `exact`: the same groups. `intruders`: loners and noise agents
    placed in a sub-context, which should never happen."""
    known = set(truth["agents"])
    unknown = [a for a in agents if a not in known]
    if unknown:
        raise ValueError(f"agent {unknown[0]!r} is not in the truth file")

    def labels(groups: Sequence[Sequence[str]]) -> list[int]:
        of = {a: k for k, g in enumerate(groups) for a in g}
        return [of.get(a, len(groups) + i) for i, a in enumerate(agents)]

    present = set(agents)
    expected = [sorted(a for a in g if a in present) for g in truth["groups"]]
    expected = [g for g in expected if len(g) > 1]
    outsiders = set(truth["loners"]) | set(truth["noise"])
    return {
        "ari": float(adjusted_rand_score(labels(expected), labels(found))),
        "exact": sorted(map(sorted, found)) == sorted(expected),
        "intruders": sorted((a for g in found for a in g if a in outsiders), key=_numeric_first),
        "expected": expected,
        "found": [sorted(g, key=_numeric_first) for g in found],
    }


def _numeric_first(agent: str) -> tuple[int, str]:
    return (len(agent), agent)
