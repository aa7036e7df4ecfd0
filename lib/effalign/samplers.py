"""Data samplers: pick a budget of preference pairs from a pool (ISA and six baselines).

**ISA here is our reading of the paper, not its exact recipe.** Khera, Ghosh & Dutta (2024,
arXiv 2411.10545) select a small, high-information subset with embeddings, a two-component
Gaussian mixture and entropy-based sampling; the precise features, score and allocation are not
published. :class:`ISASampler` implements the following reading, with every choice a parameter:

1. Features per pair ``x = [e(prompt), e(chosen) - e(rejected)]``, ``e`` the L2-normalised
   MiniLM embedding; standardised, then PCA to ``dim`` components (:func:`make_features`).
2. A seeded scikit-learn ``GaussianMixture`` with ``n_components`` (2, as in the paper) and
   ``covariance_type`` ("full").
3. Per pair: self-information ``I(x) = -log p(x)`` under the mixture, and assignment entropy
   ``H(x) = -sum_k gamma_k(x) log gamma_k(x)``.
4. Score: ``"surprisal"`` (I), ``"entropy"`` (H) or ``"mixed"`` (z(I) + z(H)).
5. ``budget`` pairs without replacement: each component (hard label = argmax gamma) gets a share
   proportional to its mixture weight (largest remainder, capped by the component's size, excess
   redistributed), filled by Gumbel-top-k on ``score / temperature`` (0 = plain top-k).

Baselines with the same interface: ``random`` (uniform), ``kcenter`` (greedy farthest-first
coreset), ``cluster`` (k-means, the pair nearest each centroid), ``longest`` (longest chosen
responses), ``margin_low`` / ``margin_high`` (reference log-prob margin of the policy, smallest
or largest first).

Every sampler follows the scikit-learn estimator idiom: constructor parameters only, one method
``select(pool, budget, seed) -> np.ndarray`` and fitted attributes with a trailing underscore
afterwards (``selected_`` for all). ``select`` returns unique int64 pool indices, exactly
``budget`` of them, **in selection order** (most preferred first where the sampler has an order:
highest key for ISA, greedy order for kcenter, cluster index for cluster, longest first,
margin order; draw order for random); use ``np.sort`` for pool order. The same seed gives the
same indices.

``pool`` is a :class:`~effalign.data.PreferenceData` (or any sequence of
:class:`~effalign.data.PreferencePair`), a precomputed :class:`PairFeatures`, or, for the
feature-based samplers (isa, kcenter, cluster) and random, a raw ``(n, d)`` feature array.
:func:`get_sampler` builds a sampler by name; :func:`export_subset` (``python -m effalign
select``) writes a selected subset in TRL's conversational format with a JSON sidecar.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Union

import numpy as np

from .embed import MINILM_ALIAS

SMOLLM2_ALIAS = "smollm2-135m-instruct"  # same alias as effalign.models (not imported: torch-free)

__all__ = [
    "PairFeatures",
    "Pool",
    "Sampler",
    "RandomSampler",
    "ISASampler",
    "KCenterSampler",
    "ClusterSampler",
    "LongestSampler",
    "MarginLowSampler",
    "MarginHighSampler",
    "SAMPLERS",
    "get_sampler",
    "available_samplers",
    "make_features",
    "reduce_features",
    "raw_features",
    "allocate_budget",
    "gumbel_top_k",
    "reference_margins",
    "check_budget",
    "check_finite",
    "export_subset",
    "sidecar_path",
]


# --------------------------------------------------------------------------- features


@dataclass
class PairFeatures:
    """Precomputed per-pair inputs of the samplers (no embedding model needed at select time).

    ``prompt_emb``, ``chosen_emb``, ``rejected_emb``: ``(n, d)`` embeddings. ``chosen_lengths``
    (for ``longest``) and ``ref_margins`` (for ``margin_*``) are optional ``(n,)`` arrays.
    """

    prompt_emb: np.ndarray
    chosen_emb: np.ndarray
    rejected_emb: np.ndarray
    chosen_lengths: np.ndarray | None = None
    ref_margins: np.ndarray | None = None

    def __post_init__(self) -> None:
        arrays = [np.asarray(a) for a in (self.prompt_emb, self.chosen_emb, self.rejected_emb)]
        for name, a in zip(("prompt_emb", "chosen_emb", "rejected_emb"), arrays):
            if a.ndim != 2:
                raise ValueError(f"PairFeatures.{name} must be 2-D (n, d); got shape {a.shape}")
        if not (arrays[0].shape[0] == arrays[1].shape[0] == arrays[2].shape[0]):
            raise ValueError(f"PairFeatures embeddings disagree on n: {[a.shape[0] for a in arrays]}")
        if arrays[1].shape != arrays[2].shape:
            raise ValueError(f"chosen_emb {arrays[1].shape} and rejected_emb {arrays[2].shape} differ in shape")
        self.prompt_emb, self.chosen_emb, self.rejected_emb = arrays
        n = arrays[0].shape[0]
        for name in ("chosen_lengths", "ref_margins"):
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value, dtype=np.float64).reshape(-1)
                if value.shape[0] != n:
                    raise ValueError(f"PairFeatures.{name} has {value.shape[0]} entries for {n} pairs")
                setattr(self, name, value)

    def __len__(self) -> int:
        return int(self.prompt_emb.shape[0])

    @classmethod
    def from_pairs(
        cls,
        pairs: Sequence[Any],
        *,
        model: str = MINILM_ALIAS,
        length_unit: str = "chars",
        ref_margins: np.ndarray | None = None,
        **embed_kwargs: Any,
    ) -> PairFeatures:
        """Embed pairs with :func:`effalign.embed.pair_embeddings` (disk-cached) and measure lengths."""
        from .embed import pair_embeddings

        emb = pair_embeddings(pairs, model=model, **embed_kwargs)
        return cls(
            emb["prompt"], emb["chosen"], emb["rejected"],
            chosen_lengths=chosen_lengths(pairs, unit=length_unit),
            ref_margins=ref_margins,
        )

    def raw(self) -> np.ndarray:
        """The un-reduced ISA features ``[e(prompt), e(chosen) - e(rejected)]``, float32 ``(n, 2d)``."""
        diff = self.chosen_emb.astype(np.float32) - self.rejected_emb.astype(np.float32)
        return np.concatenate([self.prompt_emb.astype(np.float32), diff], axis=1)


Pool = Union[Sequence[Any], PairFeatures, np.ndarray]


def chosen_lengths(pairs: Sequence[Any], unit: str = "chars", tokenizer: str = SMOLLM2_ALIAS) -> np.ndarray:
    """Length of each pair's chosen response: ``unit="chars"`` (characters of ``chosen_text``) or
    ``"tokens"`` (tokens of the policy tokenizer ``tokenizer``, no special tokens)."""
    texts = [p.chosen_text for p in pairs]
    if unit == "chars":
        return np.array([len(t) for t in texts], dtype=np.float64)
    if unit == "tokens":
        from .models import load_tokenizer

        tok = load_tokenizer(tokenizer)
        ids = tok(texts, add_special_tokens=False)["input_ids"]
        return np.array([len(i) for i in ids], dtype=np.float64)
    raise ValueError(f"unit must be 'chars' or 'tokens', got {unit!r}")


def pool_size(pool: Pool) -> int:
    """Number of pairs in a pool (rows of a feature array)."""
    if isinstance(pool, np.ndarray):
        if pool.ndim != 2:
            raise ValueError(f"a feature array pool must be 2-D (n, d); got shape {pool.shape}")
        return int(pool.shape[0])
    return len(pool)


def _is_pairs(pool: Pool) -> bool:
    return not isinstance(pool, (np.ndarray, PairFeatures))


def raw_features(pool: Pool, *, model: str = MINILM_ALIAS) -> np.ndarray:
    """The un-reduced feature matrix of a pool: an array as is, else :meth:`PairFeatures.raw`."""
    if isinstance(pool, np.ndarray):
        pool_size(pool)
        return pool
    if isinstance(pool, PairFeatures):
        return pool.raw()
    return PairFeatures.from_pairs(pool, model=model).raw()


def check_budget(budget: Any, n: int) -> int:
    """``budget`` as an int; ValueError unless it is an integer with ``1 <= budget <= n``."""
    if isinstance(budget, bool) or not isinstance(budget, numbers.Integral):
        raise ValueError(f"budget must be an integer, got {budget!r} ({type(budget).__name__}); pool size is {n}")
    budget = int(budget)
    if not 1 <= budget <= n:
        raise ValueError(f"budget must be between 1 and the pool size {n}; got budget={budget}")
    return budget


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def check_finite(values: np.ndarray, what: str = "features") -> np.ndarray:
    """Return ``values``; ValueError naming the count and first index of non-finite rows."""
    arr = np.asarray(values)
    if arr.size and not np.isfinite(arr).all():
        bad = ~np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1)
        idx = np.flatnonzero(bad)
        raise ValueError(
            f"{what} contain NaN or inf in {idx.size} of {arr.shape[0]} rows (first at index {int(idx[0])})"
        )
    return arr


def reduce_features(
    X: np.ndarray, *, dim: int | None = 32, standardize: bool = True, seed: int = 0
) -> tuple[np.ndarray, Any, Any]:
    """Standardise (optional) then PCA to ``min(dim, n, d)`` components (``dim=None``: no PCA).

    Returns ``(Z, scaler, pca)`` with ``Z`` float64 ``(n, dim)``; scaler/pca are None when skipped.
    """
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"features must be 2-D (n, d); got shape {X.shape}")
    check_finite(X, "features")
    X = X.astype(np.float32 if X.dtype == np.float32 else np.float64, copy=False)
    scaler = pca = None
    if standardize:
        scaler = StandardScaler()
        X = scaler.fit_transform(X)
    if dim is not None and dim > 0:
        k = min(int(dim), X.shape[0], X.shape[1])
        if k < X.shape[1]:
            pca = PCA(n_components=k, random_state=seed)
            X = pca.fit_transform(X)
    return np.ascontiguousarray(X, dtype=np.float64), scaler, pca


def make_features(
    pool: Pool, *, dim: int | None = 32, standardize: bool = True, seed: int = 0, model: str = MINILM_ALIAS
) -> tuple[np.ndarray, Any, Any]:
    """Features shared by isa, kcenter and cluster: :func:`raw_features` then :func:`reduce_features`."""
    return reduce_features(raw_features(pool, model=model), dim=dim, standardize=standardize, seed=seed)


def reference_margins(pairs: Sequence[Any], policy: Any = SMOLLM2_ALIAS, cache: bool | str | Path = True) -> np.ndarray:
    """``log pi_ref(chosen | prompt) - log pi_ref(rejected | prompt)`` per pair (summed log-probs),
    from :func:`effalign.logps.reference_logps`, which computes them once per pair and caches them
    on disk (``cache``: True for ``<cache>/ref_logps.sqlite``, a path, or False); DPO training
    reads the same cache. ``policy`` is a name or a ``(model, tokenizer)`` tuple."""
    try:
        from .logps import reference_logps
    except ImportError as err:
        raise RuntimeError(
            "margin samplers need effalign.logps.reference_logps, which could not be imported "
            f"({err}); pass margins=... (or PairFeatures.ref_margins) explicitly"
        ) from err
    lp = reference_logps(pairs, policy=policy, cache=cache)
    return np.asarray(lp["chosen"], dtype=np.float64) - np.asarray(lp["rejected"], dtype=np.float64)


# --------------------------------------------------------------------------- building blocks


def allocate_budget(budget: int, weights: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Split ``budget`` over groups proportionally to ``weights`` by largest remainder.

    No group gets more than its ``capacity``; the excess is redistributed over the groups with
    room left, again by weight (equally when all their weights are 0). Remainder ties go to the
    lower group index. Returns int64 counts summing to ``budget``.
    """
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    cap = np.asarray(capacity, dtype=np.int64).reshape(-1)
    if w.shape != cap.shape:
        raise ValueError(f"weights {w.shape} and capacity {cap.shape} differ in shape")
    if (w < 0).any() or not np.isfinite(w).all():
        raise ValueError("weights must be finite and non-negative")
    if budget > cap.sum() or budget < 0:
        raise ValueError(f"budget {budget} outside 0..{int(cap.sum())} (total capacity)")
    alloc = np.zeros_like(cap)
    remaining = int(budget)
    while remaining > 0:
        room = cap - alloc
        active = room > 0
        wa = np.where(active, w, 0.0)
        if wa.sum() <= 0:
            wa = active.astype(np.float64)
        quota = remaining * wa / wa.sum()
        base = np.floor(quota).astype(np.int64)
        left = remaining - int(base.sum())
        if left > 0:
            frac = np.where(active, quota - base, -1.0)
            base[np.argsort(-frac, kind="stable")[:left]] += 1
        take = np.minimum(base, room)
        alloc += take
        remaining -= int(take.sum())
    return alloc


def gumbel_top_k(scores: np.ndarray, k: int, temperature: float, gumbel: np.ndarray | None = None) -> np.ndarray:
    """Positions of the ``k`` largest keys ``score / temperature + G`` (G standard Gumbel noise),
    best first; ``temperature == 0`` is plain top-k on ``scores`` (ties to the lower position).
    Gumbel-top-k draws ``k`` items without replacement with probabilities ~ ``exp(score / T)``."""
    scores = np.asarray(scores, dtype=np.float64)
    if temperature < 0 or not np.isfinite(temperature):
        raise ValueError(f"temperature must be finite and >= 0, got {temperature}")
    if temperature == 0:
        keys = scores
    else:
        if gumbel is None:
            raise ValueError("temperature > 0 needs Gumbel noise")
        keys = scores / temperature + gumbel
    return np.argsort(-keys, kind="stable")[:k]


def _zscore(v: np.ndarray) -> np.ndarray:
    sd = v.std()
    return (v - v.mean()) / sd if sd > 0 else np.zeros_like(v)


def _ranked(values: np.ndarray, budget: int, seed: int, descending: bool) -> np.ndarray:
    """Top-``budget`` positions by value, ties broken by a seeded permutation."""
    perm = np.random.default_rng(seed).permutation(values.shape[0])
    v = values[perm]
    order = np.argsort(-v if descending else v, kind="stable")[:budget]
    return perm[order]


# --------------------------------------------------------------------------- base class

#: Pools smaller than this run single-threaded: on small problems the hand-off cost of OpenMP/BLAS
#: threads dominates (scikit-learn's k-means on 500 points: 5 ms with one thread, 0.5 s with two
#: on a busy 2-core machine). Larger pools use the process's thread settings.
SMALL_POOL = 20_000


def _thread_limit(n: int) -> Any:
    if n >= SMALL_POOL:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)



class Sampler:
    """Base class: ``select(pool, budget, seed)`` validates, calls ``_select`` and checks the result."""

    name: ClassVar[str] = ""
    needs: ClassVar[str] = "any"  # what the sampler reads from a pool: features, lengths, margins

    def select(self, pool: Pool, budget: int, seed: int = 0) -> np.ndarray:
        """Unique int64 pool indices, exactly ``budget``, in selection order (see module doc).

        Pools under :data:`SMALL_POOL` pairs run with one BLAS/OpenMP thread (see there).
        """
        n = pool_size(pool)
        budget = check_budget(budget, n)
        seed = check_seed(seed)
        with _thread_limit(n):
            idx = np.asarray(self._select(pool, budget, seed), dtype=np.int64)
        if idx.shape != (budget,) or np.unique(idx).size != budget or idx.min() < 0 or idx.max() >= n:
            raise RuntimeError(f"{self.name}: internal error, selection is not {budget} unique indices < {n}")
        self.selected_ = idx
        self.n_pool_ = n
        return idx

    def _select(self, pool: Pool, budget: int, seed: int) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def selection_info(self) -> dict[str, np.ndarray]:
        """Per-selected-row values (aligned with ``selected_``) worth recording, e.g. scores."""
        return {}

    @classmethod
    def param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (arrays summarised as ``"<array (n,)>"``), JSON-ready."""
        out: dict[str, Any] = {}
        for p in self.param_names():
            v = getattr(self, p)
            if isinstance(v, np.ndarray) or (isinstance(v, (list, tuple)) and len(v) > 16):
                v = f"<array ({len(v)},)>"
            elif not isinstance(v, (str, int, float, bool, type(None), list, tuple, dict)):
                v = f"<{type(v).__name__}>"
            elif isinstance(v, tuple) and not all(isinstance(x, (str, int, float, bool)) for x in v):
                v = "<" + ", ".join(type(x).__name__ for x in v) + ">"
            out[p] = v
        return out

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


class _FeatureSampler(Sampler):
    """Shared feature construction for isa, kcenter and cluster (sets ``features_``, ``pca_``)."""

    needs = "features"
    dim: int | None
    standardize: bool
    embedder: str

    def _features(self, pool: Pool, seed: int) -> np.ndarray:
        Z, self.scaler_, self.pca_ = make_features(
            pool, dim=self.dim, standardize=self.standardize, seed=seed, model=self.embedder
        )
        self.features_ = Z
        return Z


# --------------------------------------------------------------------------- samplers


class RandomSampler(Sampler):
    """Uniform sampling without replacement (``numpy.random.default_rng(seed).choice``)."""

    name = "random"

    def __init__(self) -> None:
        pass

    def _select(self, pool: Pool, budget: int, seed: int) -> np.ndarray:
        return np.random.default_rng(seed).choice(pool_size(pool), size=budget, replace=False)


class ISASampler(_FeatureSampler):
    """ISA, our reading (module doc): GMM surprisal/entropy scores, mixture-weighted strata,
    Gumbel-top-k within each component.

    Parameters: ``dim`` PCA components (None: no PCA), ``standardize``, ``n_components``,
    ``covariance_type``, ``reg_covar``, ``max_iter``, ``n_init`` (GaussianMixture; 3 restarts by
    default, the best lower bound kept, because one k-means start can split two blobs badly),
    ``score`` ("surprisal" | "entropy" | "mixed"), ``temperature`` (0 = top-k; else Gumbel-top-k
    on score/temperature, in the score's units), ``stratify`` (False: one global Gumbel-top-k),
    ``embedder`` (embedding model for pairs).

    Fitted: ``mixture_``, ``scaler_``, ``pca_``, ``features_``, ``surprisal_``, ``entropy_``,
    ``scores_``, ``keys_`` (score/temperature + Gumbel noise; the score when temperature is 0),
    ``responsibilities_``, ``labels_`` (argmax responsibility), ``component_sizes_``,
    ``component_budget_``, ``selected_`` (highest key first within the whole selection).
    """

    name = "isa"
    SCORES = ("surprisal", "entropy", "mixed")

    def __init__(
        self,
        dim: int | None = 32,
        n_components: int = 2,
        covariance_type: str = "full",
        score: str = "surprisal",
        temperature: float = 0.0,
        stratify: bool = True,
        standardize: bool = True,
        reg_covar: float = 1e-6,
        max_iter: int = 200,
        n_init: int = 3,
        embedder: str = MINILM_ALIAS,
    ) -> None:
        self.dim = dim
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.score = score
        self.temperature = temperature
        self.stratify = stratify
        self.standardize = standardize
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.embedder = embedder

    def _select(self, pool: Pool, budget: int, seed: int) -> np.ndarray:
        from sklearn.mixture import GaussianMixture

        if self.score not in self.SCORES:
            raise ValueError(f"score must be one of {self.SCORES}, got {self.score!r}")
        if not (isinstance(self.temperature, numbers.Real) and np.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature!r}")
        Z = self._features(pool, seed)
        n = Z.shape[0]
        if n < self.n_components:
            raise ValueError(f"isa: a {self.n_components}-component mixture needs at least {self.n_components} pairs; pool has {n}")
        gmm = GaussianMixture(
            n_components=self.n_components, covariance_type=self.covariance_type, reg_covar=self.reg_covar,
            max_iter=self.max_iter, n_init=self.n_init, random_state=seed,
        )
        from threadpoolctl import threadpool_limits

        # single-threaded: the mixture's products are thin (n x dim by dim x dim) and memory-bound;
        # two BLAS threads made the fit 3-50x slower on a busy 2-core machine (0.8 s vs 2.6-44 s
        # for 100k x 32)
        with warnings.catch_warnings(), threadpool_limits(limits=1):
            warnings.filterwarnings("ignore", message=".*did not converge.*")
            gmm.fit(Z)
        self.mixture_ = gmm
        self.surprisal_ = -gmm.score_samples(Z)
        resp = gmm.predict_proba(Z)
        self.responsibilities_ = resp
        with np.errstate(divide="ignore", invalid="ignore"):
            self.entropy_ = -np.where(resp > 0, resp * np.log(resp), 0.0).sum(axis=1)
        if self.score == "surprisal":
            scores = self.surprisal_
        elif self.score == "entropy":
            scores = self.entropy_
        else:
            scores = _zscore(self.surprisal_) + _zscore(self.entropy_)
        self.scores_ = scores
        self.labels_ = resp.argmax(axis=1)
        self.component_sizes_ = np.bincount(self.labels_, minlength=self.n_components)
        rng = np.random.default_rng(seed)
        gumbel = rng.gumbel(size=n) if self.temperature > 0 else np.zeros(n)
        keys = scores / self.temperature + gumbel if self.temperature > 0 else scores
        self.keys_ = keys
        if self.stratify:
            self.component_budget_ = allocate_budget(budget, gmm.weights_, self.component_sizes_)
            chosen = []
            for k, quota in enumerate(self.component_budget_):
                if quota == 0:
                    continue
                members = np.flatnonzero(self.labels_ == k)
                top = gumbel_top_k(scores[members], int(quota), self.temperature, gumbel[members])
                chosen.append(members[top])
            idx = np.concatenate(chosen)
        else:
            idx = gumbel_top_k(scores, budget, self.temperature, gumbel)
            self.component_budget_ = np.bincount(self.labels_[idx], minlength=self.n_components)
        return idx[np.argsort(-keys[idx], kind="stable")]

    def selection_info(self) -> dict[str, np.ndarray]:
        s = self.selected_
        return {
            "score": self.scores_[s], "surprisal": self.surprisal_[s],
            "entropy": self.entropy_[s], "component": self.labels_[s],
        }


class KCenterSampler(_FeatureSampler):
    """Greedy k-center coreset (farthest-first traversal) on the ISA features.

    The first centre is drawn by seed; each next centre is the point farthest (Euclidean) from
    all centres so far. Squared distances are updated incrementally as ``|x|^2 - 2 x.c + |c|^2``
    (float32, one single-threaded BLAS matrix-vector product per step: O(n * budget * dim));
    ``backend="torch"`` uses ``torch.mv`` on CPU instead. Fitted: ``features_``, ``pca_``, ``radii_`` (distance of each
    centre to the previous centres when chosen, inf for the first), ``selected_`` (greedy order).
    """

    name = "kcenter"

    def __init__(
        self, dim: int | None = 32, standardize: bool = True, backend: str = "numpy", embedder: str = MINILM_ALIAS
    ) -> None:
        self.dim = dim
        self.standardize = standardize
        self.backend = backend
        self.embedder = embedder

    def _select(self, pool: Pool, budget: int, seed: int) -> np.ndarray:
        if self.backend not in ("numpy", "torch"):
            raise ValueError(f"backend must be 'numpy' or 'torch', got {self.backend!r}")
        X = np.ascontiguousarray(self._features(pool, seed), dtype=np.float32)
        n = X.shape[0]
        first = int(np.random.default_rng(seed).integers(n))
        sel = np.empty(budget, dtype=np.int64)
        radii = np.empty(budget, dtype=np.float64)
        if self.backend == "torch":
            import torch

            Xt = torch.from_numpy(X)
            sq_t = (Xt * Xt).sum(dim=1)
            mind_t = torch.full((n,), float("inf"))
            neg = torch.tensor(float("-inf"))
            c = first
            for t in range(budget):
                sel[t] = c
                radii[t] = float(mind_t[c])
                mind_t[c] = neg
                if t == budget - 1:
                    break
                d = torch.mv(Xt, Xt[c]).mul_(-2.0).add_(sq_t).add_(sq_t[c])
                torch.minimum(mind_t, d, out=mind_t)
                c = int(torch.argmax(mind_t))
        else:
            # one matrix-vector product per step is memory-bound; a single BLAS thread avoids
            # the thread hand-off cost that dominates (40x slower on a busy 2-core machine)
            from threadpoolctl import threadpool_limits

            limiter = threadpool_limits(limits=1, user_api="blas")
            sq = np.einsum("ij,ij->i", X, X)
            mind = np.full(n, np.inf, dtype=np.float32)
            d = np.empty(n, dtype=np.float32)
            c = first
            for t in range(budget):
                sel[t] = c
                radii[t] = mind[c]
                mind[c] = -np.inf
                if t == budget - 1:
                    break
                np.dot(X, X[c], out=d)
                d *= -2.0
                d += sq
                d += sq[c]
                np.minimum(mind, d, out=mind)
                c = int(np.argmax(mind))
            limiter.restore_original_limits()
        self.radii_ = np.sqrt(np.maximum(radii, 0.0))
        return sel

    def selection_info(self) -> dict[str, np.ndarray]:
        return {"radius": self.radii_}


class ClusterSampler(_FeatureSampler):
    """k-means with ``budget`` clusters on the ISA features; the pair nearest each centroid.

    scikit-learn ``KMeans`` when the pool has at most ``minibatch_above`` pairs, else
    ``MiniBatchKMeans`` (``batch_size``, ``max_iter``, ``max_no_improvement``); both seeded, with
    ``n_init`` restarts and ``init`` ("k-means++" or "random"). Centroids are visited in index
    order; each takes its nearest pair not yet taken (so two centroids never share a pair).
    Fitted: ``kmeans_``, ``features_``, ``pca_``, ``distances_`` (pair to its centroid),
    ``selected_`` (centroid order).
    """

    name = "cluster"

    def __init__(
        self,
        dim: int | None = 32,
        standardize: bool = True,
        minibatch_above: int = 10_000,
        batch_size: int = 4096,
        max_iter: int = 100,
        max_no_improvement: int | None = 10,
        n_init: int = 1,
        init: str = "k-means++",
        embedder: str = MINILM_ALIAS,
    ) -> None:
        self.dim = dim
        self.standardize = standardize
        self.minibatch_above = minibatch_above
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.max_no_improvement = max_no_improvement
        self.n_init = n_init
        self.init = init
        self.embedder = embedder

    def _select(self, pool: Pool, budget: int, seed: int) -> np.ndarray:
        from sklearn.cluster import KMeans, MiniBatchKMeans
        from sklearn.exceptions import ConvergenceWarning

        X = np.ascontiguousarray(self._features(pool, seed), dtype=np.float32)
        n = X.shape[0]
        if n <= self.minibatch_above:
            km = KMeans(n_clusters=budget, init=self.init, n_init=self.n_init, max_iter=self.max_iter, random_state=seed)
        else:
            km = MiniBatchKMeans(
                n_clusters=budget, init=self.init, n_init=self.n_init, max_iter=self.max_iter,
                batch_size=self.batch_size, max_no_improvement=self.max_no_improvement, random_state=seed,
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # fewer distinct points than clusters
            km.fit(X)
        self.kmeans_ = km
        sel, dist = _nearest_unused(X, np.asarray(km.cluster_centers_, dtype=np.float32))
        self.distances_ = dist
        return sel

    def selection_info(self) -> dict[str, np.ndarray]:
        return {"cluster": np.arange(self.selected_.shape[0]), "distance": self.distances_}


def _nearest_unused(X: np.ndarray, centers: np.ndarray, n_candidates: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """For each centre in order, the nearest row of ``X`` not taken by an earlier centre."""
    n, k = X.shape[0], centers.shape[0]
    sqX = np.einsum("ij,ij->i", X, X)
    used = np.zeros(n, dtype=bool)
    sel = np.empty(k, dtype=np.int64)
    dist = np.empty(k, dtype=np.float64)
    chunk = max(1, int(2e7 // max(n, 1)))
    m = min(n_candidates, n)
    for start in range(0, k, chunk):
        C = centers[start : start + chunk]
        D = (C @ X.T) * -2.0
        D += sqX[None, :]
        D += np.einsum("ij,ij->i", C, C)[:, None]
        cand = np.argpartition(D, m - 1, axis=1)[:, :m] if m < n else np.tile(np.arange(n), (len(C), 1))
        cd = np.take_along_axis(D, cand, axis=1)
        cand = np.take_along_axis(cand, np.argsort(cd, axis=1, kind="stable"), axis=1)
        for r in range(len(C)):
            pick = next((int(j) for j in cand[r] if not used[j]), -1)
            if pick < 0:  # all candidates taken: scan the full row
                order = np.argsort(D[r], kind="stable")
                pick = int(order[~used[order]][0])
            used[pick] = True
            sel[start + r] = pick
            dist[start + r] = np.sqrt(max(float(D[r, pick]), 0.0))
    return sel, dist


class LongestSampler(Sampler):
    """The pairs with the longest chosen responses ("Long is more for alignment", Zhao et al. 2024).

    Lengths come from ``lengths`` (constructor), else ``PairFeatures.chosen_lengths``, else the
    pairs: ``unit="chars"`` (characters, default) or ``"tokens"`` (``tokenizer``'s tokens). Ties
    are broken by a seeded permutation. Fitted: ``lengths_``, ``selected_`` (longest first).
    """

    name = "longest"
    needs = "lengths"

    def __init__(self, unit: str = "chars", tokenizer: str = SMOLLM2_ALIAS, lengths: Any = None) -> None:
        self.unit = unit
        self.tokenizer = tokenizer
        self.lengths = lengths

    def _lengths(self, pool: Pool) -> np.ndarray:
        if self.lengths is not None:
            return np.asarray(self.lengths, dtype=np.float64).reshape(-1)
        if isinstance(pool, PairFeatures):
            if pool.chosen_lengths is None:
                raise ValueError("longest: PairFeatures.chosen_lengths is None; pass lengths=...")
            return pool.chosen_lengths
        if isinstance(pool, np.ndarray):
            raise ValueError("longest needs response lengths: pass pairs, PairFeatures with chosen_lengths, or lengths=...")
        return chosen_lengths(pool, unit=self.unit, tokenizer=self.tokenizer)

    def _select(self, pool: Pool, budget: int, seed: int) -> np.ndarray:
        lengths = check_finite(self._lengths(pool), "lengths")
        if lengths.shape[0] != pool_size(pool):
            raise ValueError(f"longest: {lengths.shape[0]} lengths for a pool of {pool_size(pool)}")
        self.lengths_ = lengths
        return _ranked(lengths, budget, seed, descending=True)

    def selection_info(self) -> dict[str, np.ndarray]:
        return {"length": self.lengths_[self.selected_]}


class _MarginSampler(Sampler):
    """Reference-margin ranking; ``margins`` (constructor) > ``PairFeatures.ref_margins`` >
    :func:`reference_margins` of the pairs under ``policy`` (a name or a ``(model, tokenizer)``
    tuple; disk ``cache`` as there). Ties broken by a seeded permutation.
    Fitted: ``margins_``, ``selected_`` (in margin order)."""

    needs = "margins"
    descending: ClassVar[bool] = False

    def __init__(self, policy: Any = SMOLLM2_ALIAS, margins: Any = None, cache: bool | str = True) -> None:
        self.policy = policy
        self.margins = margins
        self.cache = cache

    def _margins(self, pool: Pool) -> np.ndarray:
        if self.margins is not None:
            return np.asarray(self.margins, dtype=np.float64).reshape(-1)
        if isinstance(pool, PairFeatures) and pool.ref_margins is not None:
            return pool.ref_margins
        if not _is_pairs(pool):
            raise ValueError(f"{self.name} needs reference margins: pass pairs, PairFeatures with ref_margins, or margins=...")
        return reference_margins(pool, policy=self.policy, cache=self.cache)

    def _select(self, pool: Pool, budget: int, seed: int) -> np.ndarray:
        margins = check_finite(self._margins(pool), "margins")
        if margins.shape[0] != pool_size(pool):
            raise ValueError(f"{self.name}: {margins.shape[0]} margins for a pool of {pool_size(pool)}")
        self.margins_ = margins
        return _ranked(margins, budget, seed, descending=self.descending)

    def selection_info(self) -> dict[str, np.ndarray]:
        return {"margin": self.margins_[self.selected_]}


class MarginLowSampler(_MarginSampler):
    """Smallest reference margins first: the hardest pairs (difficulty-based selection, Qi et al. 2025)."""

    name = "margin_low"
    descending = False


class MarginHighSampler(_MarginSampler):
    """Largest reference margins first (margin maximisation, Deng et al. 2025)."""

    name = "margin_high"
    descending = True


# --------------------------------------------------------------------------- registry

SAMPLERS: dict[str, type[Sampler]] = {
    cls.name: cls
    for cls in (ISASampler, RandomSampler, KCenterSampler, ClusterSampler, LongestSampler, MarginLowSampler, MarginHighSampler)
}


def available_samplers() -> list[str]:
    """Names accepted by :func:`get_sampler`."""
    return list(SAMPLERS)


def get_sampler(name: str | Sampler, **params: Any) -> Sampler:
    """A sampler by registry name with constructor parameters (a Sampler instance passes through)."""
    if isinstance(name, Sampler):
        if params:
            raise ValueError("parameters given with a sampler instance; set them on the instance")
        return name
    key = str(name).lower().replace("-", "_")
    if key not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; known samplers: {', '.join(available_samplers())}")
    cls = SAMPLERS[key]
    unknown = sorted(set(params) - set(cls.param_names()))
    if unknown:
        raise ValueError(
            f"sampler {key!r} does not take parameter(s) {', '.join(unknown)}; "
            f"its parameters: {', '.join(cls.param_names()) or 'none'}"
        )
    return cls(**params)


# --------------------------------------------------------------------------- export


def sidecar_path(out: str | Path) -> Path:
    """The sidecar of ``subset.jsonl`` (or ``subset.jsonl.gz``): ``subset.meta.json`` beside it."""
    out = Path(out)
    name = out.name
    for suffix in (".jsonl.gz", ".jsonl"):
        if name.endswith(suffix):
            return out.with_name(name[: -len(suffix)] + ".meta.json")
    raise ValueError(f"output must end with .jsonl or .jsonl.gz, got {out}")


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return [_jsonable(x) for x in v.tolist()]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if np.isfinite(f) else None
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _mean_lengths(pairs: Sequence[Any]) -> dict[str, float]:
    return {
        side: float(np.mean([len(getattr(p, f"{side}_text")) for p in pairs])) if len(pairs) else 0.0
        for side in ("prompt", "chosen", "rejected")
    }


def export_subset(
    source: str,
    sampler: str | Sampler,
    out: str | Path,
    fraction: float | None = None,
    budget: int | None = None,
    seed: int = 0,
    split: str | None = None,
    params: dict[str, Any] | None = None,
) -> str:
    """Select a subset of ``source`` and write it; returns a short text summary.

    Loads with :func:`effalign.data.load_preferences`; the budget is ``budget`` or
    ``max(1, round(fraction * N))``. Writes ``out`` (``.jsonl``, or gzip ``.jsonl.gz``) with the
    chosen rows in pool order, in TRL's conversational format (``prompt``/``chosen``/``rejected``
    message lists plus ``metadata`` with the original metadata and ``pool_index``), and the
    sidecar :func:`sidecar_path` (``subset.meta.json``): the spec (source, load report, pool
    fingerprint, sampler and params, budget, seed, effalign version), the selected indices (pool
    order, aligned with the rows, and selection order), per-row scores the sampler exposes, and
    the summary numbers.
    """
    from . import __version__
    from .data import load_preferences, write_jsonl_gz

    meta_path = sidecar_path(out)
    if (fraction is None) == (budget is None):
        raise ValueError("give exactly one of fraction and budget")
    data = load_preferences(source, split=split)
    n = len(data)
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        budget = max(1, int(round(fraction * n)))
    smp = get_sampler(sampler, **(params or {}))
    sel = smp.select(data, budget, seed)
    order = np.argsort(sel, kind="stable")
    rows_idx = sel[order]
    info = {k: np.asarray(v)[order] for k, v in smp.selection_info().items()}
    subset = data.subset(rows_idx)

    rows = []
    for i, pair in zip(rows_idx, subset):
        row = pair.to_trl(with_metadata=True)
        row["metadata"] = {**pair.metadata, "pool_index": int(i)}
        rows.append(row)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.name.endswith(".gz"):
        write_jsonl_gz(out, rows)
    else:
        tmp = out.with_name(out.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
        tmp.replace(out)

    pool_len, sub_len = _mean_lengths(data), _mean_lengths(subset)
    summary: dict[str, Any] = {"pool_size": n, "budget": int(budget), "mean_chars_pool": pool_len, "mean_chars_subset": sub_len}
    if isinstance(smp, ISASampler):
        k = smp.n_components
        summary["components"] = {
            "weight": smp.mixture_.weights_.tolist(),
            "pool_share": (smp.component_sizes_ / n).tolist(),
            "subset_count": np.bincount(smp.labels_[sel], minlength=k).tolist(),
        }
    spec = {
        "source": str(source),
        "split": split,
        "load_report": data.report.to_dict() if data.report else None,
        "pool_fingerprint": data.fingerprint(),
        "sampler": smp.name,
        "params": smp.get_params(),
        "fraction": fraction,
        "budget": int(budget),
        "seed": int(seed),
        "effalign_version": __version__,
    }
    sidecar = {
        "spec": spec,
        "indices": rows_idx,
        "selection_order": sel,
        "scores": info,
        "summary": summary,
    }
    meta_path.write_text(json.dumps(_jsonable(sidecar), indent=1, sort_keys=True) + "\n", encoding="utf-8")

    lines = [
        f"{smp.name}: {budget} of {n} pairs ({budget / n:.1%}) from {source}, seed {seed}",
        f"wrote {out} and {meta_path}",
        "mean characters  prompt / chosen / rejected",
        "  pool    " + " / ".join(f"{pool_len[s]:8.1f}" for s in ("prompt", "chosen", "rejected")),
        "  subset  " + " / ".join(f"{sub_len[s]:8.1f}" for s in ("prompt", "chosen", "rejected")),
    ]
    if "components" in summary:
        c = summary["components"]
        for j in range(len(c["weight"])):
            lines.append(
                f"  component {j}: weight {c['weight'][j]:.3f}, pool share {c['pool_share'][j]:.3f}, "
                f"subset {c['subset_count'][j]} ({c['subset_count'][j] / budget:.3f})"
            )
    if info:
        lines.append("scores in sidecar: " + ", ".join(sorted(info)))
    return "\n".join(lines)
