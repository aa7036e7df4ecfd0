"""Data samplers: pick a budget of preference pairs from a pool (ISA and seven baselines).

**ISA here is our reading of the paper, not its exact recipe.** Khera, Ghosh & Dutta (2024,
arXiv 2411.10545) select a small, high-information subset with embeddings, a two-component
Gaussian mixture and entropy-based sampling; the precise features, score and allocation are not
published. :class:`ISASampler` implements the following reading, with every choice a parameter:

1. Features per pair ``x = [e(prompt), e(chosen) - e(rejected)]``, ``e`` the L2-normalised
   MiniLM embedding; standardised, then PCA to ``dim`` components
   (:func:`effalign.features.make_features`).
2. A seeded scikit-learn ``GaussianMixture`` with ``n_components`` (2, as in the paper) and
   ``covariance_type`` ("full").
3. Per pair: self-information ``I(x) = -log p(x)`` under the mixture, and assignment entropy
   ``H(x) = -sum_k gamma_k(x) log gamma_k(x)``.
4. Score: ``"surprisal"`` (I), ``"entropy"`` (H) or ``"mixed"`` (z(I) + z(H)).
5. ``budget`` pairs without replacement: each component (hard label = argmax gamma) gets a share
   proportional to its mixture weight (largest remainder, capped by the component's size, excess
   redistributed), filled by Gumbel-top-k on ``z(score) / temperature`` (``z`` standardised over
   the pool, so the temperature is in standard deviations whatever the score's units;
   0 = plain top-k).

Baselines with the same interface: ``random`` (uniform), ``kcenter`` (greedy farthest-first
coreset), ``cluster`` (k-means, the pair nearest each centroid), ``longest`` (longest chosen
responses; Zhao et al. 2024), ``ref_margin_low`` / ``ref_margin_high`` (the reference policy's
own log-prob margin of chosen over rejected, smallest or largest first; summed or, with
``per_token``, per token; no published method, a baseline), and ``difficulty`` (Qi et al. 2025:
smallest implicit-reward gap of a DPO-trained scoring model, see :class:`DifficultySampler`).
The names ``margin_low``/``margin_high`` of earlier versions are refused with a message naming
the new ones (stored records keep them in their specs).

Every sampler follows the scikit-learn estimator idiom: constructor parameters only, one method
``select(pool, budget, seed) -> np.ndarray`` and fitted attributes with a trailing underscore
afterwards (``selected_`` for all). ``select`` returns unique int64 pool indices, exactly
``budget`` of them, **in selection order** (most preferred first where the sampler has an order:
highest key for ISA, greedy order for kcenter, cluster index for cluster, longest first,
margin or gap order; draw order for random); use ``np.sort`` for pool order. The same seed gives
the same indices. After ``select``, :meth:`Sampler.metadata` describes the selection for the run
record: parameters, the subset's length profile (mean chosen and rejected characters and their
difference, subset and pool), and what the sampler adds (ISA's mixture components, the
difficulty sampler's scoring split and cost). :func:`selection_overlap` compares the subsets of
several seeds.

``pool`` is a :class:`~effalign.data.PreferenceData` (or any sequence of
:class:`~effalign.data.PreferencePair`), a precomputed :class:`~effalign.features.PairFeatures`,
or, for the feature-based samplers (isa, kcenter, cluster) and random, a raw ``(n, d)`` feature
array (:mod:`effalign.features` builds them). :func:`get_sampler` builds a sampler by name;
:func:`effalign.export.export_subset` (``python -m effalign select``) writes a selected subset.

Determinism: pools under :data:`SMALL_POOL` pairs run with one BLAS/OpenMP thread, and
:mod:`effalign.features` loads every native thread pool at import, before such a block starts, so
their selections and scores are bit-identical whatever the process's thread count.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import itertools
import numbers
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from .embed import MINILM_ALIAS
from .features import (
    SMOLLM2_ALIAS,
    PairFeatures,
    Pool,
    check_finite,
    chosen_lengths,
    completion_token_counts,
    is_pair_pool,
    length_profile,
    make_features,
    pool_size,
    reference_margins,
)

__all__ = [
    "Sampler",
    "RandomSampler",
    "ISASampler",
    "KCenterSampler",
    "ClusterSampler",
    "LongestSampler",
    "RefMarginLowSampler",
    "RefMarginHighSampler",
    "DifficultySampler",
    "SAMPLERS",
    "RENAMED",
    "SMALL_POOL",
    "get_sampler",
    "available_samplers",
    "allocate_budget",
    "gumbel_top_k",
    "check_budget",
    "check_seed",
    "selection_overlap",
    "expected_random_overlap",
]


# --------------------------------------------------------------------------- checks


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


def _summarise(v: Any) -> Any:
    """A parameter value as JSON: arrays and long lists as ``"<array (n,)>"``, other objects as
    ``"<TypeName>"`` (a ``(model, tokenizer)`` tuple as ``"<Model, Tokenizer>"``)."""
    if isinstance(v, np.ndarray) or (isinstance(v, (list, tuple)) and len(v) > 16):
        return f"<array ({len(v)},)>"
    if isinstance(v, dict):
        return {str(k): _summarise(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        if all(isinstance(x, (str, int, float, bool, type(None))) for x in v):
            return list(v) if isinstance(v, list) else v
        return "<" + ", ".join(type(x).__name__ for x in v) + ">"
    if not isinstance(v, (str, int, float, bool, type(None))):
        return f"<{type(v).__name__}>"
    return v


class Sampler:
    """Base class: ``select(pool, budget, seed)`` validates, calls ``_select`` and checks the
    result; :meth:`metadata` then describes the selection."""

    name: ClassVar[str] = ""
    needs: ClassVar[str] = "any"  # what the sampler reads from a pool: features, lengths, margins, pairs
    one_thread_small_pools: ClassVar[bool] = True  # see SMALL_POOL

    def select(self, pool: Pool, budget: int, seed: int = 0) -> np.ndarray:
        """Unique int64 pool indices, exactly ``budget``, in selection order (see module doc).

        Pools under :data:`SMALL_POOL` pairs run with one BLAS/OpenMP thread (see there).
        """
        n = pool_size(pool)
        budget = check_budget(budget, n)
        seed = check_seed(seed)
        limit = _thread_limit(n) if self.one_thread_small_pools else contextlib.nullcontext()
        with limit:
            idx = np.asarray(self._select(pool, budget, seed), dtype=np.int64)
        if idx.shape != (budget,) or np.unique(idx).size != budget or idx.min() < 0 or idx.max() >= n:
            raise RuntimeError(f"{self.name}: internal error, selection is not {budget} unique indices < {n}")
        self.selected_ = idx
        self.n_pool_ = n
        self.seed_ = seed
        self.length_profile_ = length_profile(pool, idx)
        return idx

    def _select(self, pool: Pool, budget: int, seed: int) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def selection_info(self) -> dict[str, np.ndarray]:
        """Per-selected-row values (aligned with ``selected_``) worth recording, e.g. scores."""
        return {}

    def metadata(self) -> dict[str, Any]:
        """JSON-ready description of the last selection, for the run record: ``sampler``,
        ``params``, ``pool_size``, ``budget``, ``seed``, ``length_profile`` (mean characters of
        the chosen and rejected responses and of chosen − rejected, in the subset and the pool;
        None when the pool carries no texts or character lengths, see
        :func:`effalign.features.length_profile`) and the sampler's own entries."""
        if not hasattr(self, "selected_"):
            raise RuntimeError(f"{self.name}: metadata() needs a select() first")
        return {
            "sampler": self.name,
            "params": self.get_params(),
            "pool_size": int(self.n_pool_),
            "budget": int(self.selected_.shape[0]),
            "seed": int(self.seed_),
            "length_profile": self.length_profile_,
            **self._extra_metadata(),
        }

    def _extra_metadata(self) -> dict[str, Any]:
        return {}

    @classmethod
    def param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (arrays summarised as ``"<array (n,)>"``, objects by their
        type name), JSON-ready."""
        return {p: _summarise(getattr(self, p)) for p in self.param_names()}

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
    on ``z(score) / temperature``, ``z`` the score standardised over the pool: pair i is drawn
    before pair j with odds ``exp((z_i - z_j) / temperature)``, so 1 is a soft preference and
    0.1 nearly top-k, whatever the spread of the raw score, e.g. about 5 nats of surprisal),
    ``stratify`` (False: one global Gumbel-top-k), ``embedder`` (embedding model for pairs).

    Fitted: ``mixture_``, ``scaler_``, ``pca_``, ``features_``, ``surprisal_``, ``entropy_``,
    ``scores_`` (raw), ``zscores_`` (standardised), ``keys_`` (``zscores_ / temperature`` +
    Gumbel noise; ``zscores_`` when temperature is 0),
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
        z = _zscore(scores)
        self.zscores_ = z
        self.labels_ = resp.argmax(axis=1)
        self.component_sizes_ = np.bincount(self.labels_, minlength=self.n_components)
        rng = np.random.default_rng(seed)
        gumbel = rng.gumbel(size=n) if self.temperature > 0 else np.zeros(n)
        keys = z / self.temperature + gumbel if self.temperature > 0 else z
        self.keys_ = keys
        if self.stratify:
            self.component_budget_ = allocate_budget(budget, gmm.weights_, self.component_sizes_)
            chosen = []
            for k, quota in enumerate(self.component_budget_):
                if quota == 0:
                    continue
                members = np.flatnonzero(self.labels_ == k)
                top = gumbel_top_k(z[members], int(quota), self.temperature, gumbel[members])
                chosen.append(members[top])
            idx = np.concatenate(chosen)
        else:
            idx = gumbel_top_k(z, budget, self.temperature, gumbel)
            self.component_budget_ = np.bincount(self.labels_[idx], minlength=self.n_components)
        return idx[np.argsort(-keys[idx], kind="stable")]

    def selection_info(self) -> dict[str, np.ndarray]:
        s = self.selected_
        return {
            "score": self.scores_[s], "surprisal": self.surprisal_[s],
            "entropy": self.entropy_[s], "component": self.labels_[s],
        }

    def _extra_metadata(self) -> dict[str, Any]:
        n = self.n_pool_
        return {
            "components": {
                "weight": [round(float(w), 4) for w in self.mixture_.weights_],
                "pool_share": [round(float(c) / n, 4) for c in self.component_sizes_],
                "subset_count": np.bincount(self.labels_[self.selected_], minlength=self.n_components).tolist(),
            },
            "score_spread": {  # the raw score's spread, which the standardised temperature no longer depends on
                "sd": round(float(self.scores_.std()), 4),
                "p05": round(float(np.quantile(self.scores_, 0.05)), 4),
                "p95": round(float(np.quantile(self.scores_, 0.95)), 4),
            },
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



class _RefMarginSampler(Sampler):
    """Rank pairs by the reference policy's own margin of chosen over rejected.

    The margin is ``log pi_ref(chosen | x) - log pi_ref(rejected | x)`` summed over tokens
    (default), or with ``per_token=True`` the difference of per-token means
    ``logp_c / n_c - logp_r / n_r``. The summed margin mostly measures length (a long answer has
    a low total log-probability, so ``ref_margin_low`` favours long chosen answers; the length
    profile in :meth:`~Sampler.metadata` shows it); the per-token margin removes most of that.
    No published selector ranks by this; it is a baseline
    showing what the untrained reference alone prefers. (Qi et al. 2025 rank by the implicit
    reward gap of a DPO-*trained* model: :class:`DifficultySampler`.)

    Log-probs, first found: ``logps`` (an :class:`~effalign.logps.ReferenceLogps` or a mapping
    with ``chosen``/``rejected`` arrays, e.g. the run's pool reference), ``margins`` (summed
    margins; not with ``per_token``), ``PairFeatures.ref_margins`` (summed), else computed from
    the pairs under ``policy`` (a name or a ``(model, tokenizer)`` tuple) by
    :func:`effalign.features.reference_margins` (disk ``cache``), cut at ``max_prompt_tokens``
    / ``max_completion_tokens``. Per-token counts: ``token_counts`` (``(n, 2)``), else counted
    from the pairs with ``policy``'s tokenizer, cut at ``max_completion_tokens`` (give the same
    cut as the log-probs). Ties are broken by a seeded permutation.
    Fitted: ``margins_``, ``selected_`` (in margin order).
    """

    needs = "margins"
    descending: ClassVar[bool] = False

    def __init__(
        self,
        policy: Any = SMOLLM2_ALIAS,
        per_token: bool = False,
        logps: Any = None,
        margins: Any = None,
        token_counts: Any = None,
        cache: bool | str = True,
        max_prompt_tokens: int = 128,
        max_completion_tokens: int = 64,
    ) -> None:
        self.policy = policy
        self.per_token = per_token
        self.logps = logps
        self.margins = margins
        self.token_counts = token_counts
        self.cache = cache
        self.max_prompt_tokens = max_prompt_tokens
        self.max_completion_tokens = max_completion_tokens

    def _token_counts(self, pool: Pool) -> np.ndarray:
        if self.token_counts is not None:
            return np.asarray(self.token_counts, dtype=np.float64).reshape(-1, 2)
        if not is_pair_pool(pool):
            raise ValueError(f"{self.name} with per_token needs token counts: pass pairs or token_counts=...")
        if isinstance(self.policy, str):
            from .models import load_tokenizer

            tokenizer = load_tokenizer(self.policy)
        else:
            tokenizer = self.policy[1]
        return completion_token_counts(pool, tokenizer, self.max_completion_tokens)

    def _margins(self, pool: Pool) -> np.ndarray:
        if self.logps is not None:
            lp = self.logps
            chosen = np.asarray(lp["chosen"] if isinstance(lp, Mapping) else lp.chosen, dtype=np.float64).reshape(-1)
            rejected = np.asarray(lp["rejected"] if isinstance(lp, Mapping) else lp.rejected, dtype=np.float64).reshape(-1)
            if not self.per_token:
                return chosen - rejected
            counts = self._token_counts(pool)
            if counts.shape[0] != chosen.shape[0]:
                raise ValueError(f"{self.name}: {counts.shape[0]} token counts for {chosen.shape[0]} log-probs")
            return chosen / counts[:, 0] - rejected / counts[:, 1]
        if self.per_token and (self.margins is not None or not is_pair_pool(pool)):
            raise ValueError(
                f"{self.name} with per_token needs the chosen and rejected log-probs separately: "
                "pass logps=... (with token_counts=... for a feature pool) or the pairs"
            )
        if self.margins is not None:
            return np.asarray(self.margins, dtype=np.float64).reshape(-1)
        if isinstance(pool, PairFeatures) and pool.ref_margins is not None:
            return pool.ref_margins
        if not is_pair_pool(pool):
            raise ValueError(
                f"{self.name} needs reference margins: pass pairs, PairFeatures with ref_margins, logps=... or margins=..."
            )
        return reference_margins(
            pool, policy=self.policy, cache=self.cache, per_token=self.per_token,
            max_prompt_tokens=self.max_prompt_tokens, max_completion_tokens=self.max_completion_tokens,
        )

    def _select(self, pool: Pool, budget: int, seed: int) -> np.ndarray:
        margins = check_finite(self._margins(pool), "margins")
        if margins.shape[0] != pool_size(pool):
            raise ValueError(f"{self.name}: {margins.shape[0]} margins for a pool of {pool_size(pool)}")
        self.margins_ = margins
        return _ranked(margins, budget, seed, descending=self.descending)

    def selection_info(self) -> dict[str, np.ndarray]:
        return {"margin": self.margins_[self.selected_]}

    def _extra_metadata(self) -> dict[str, Any]:
        return {"margin": "per_token" if self.per_token else "summed"}


class RefMarginLowSampler(_RefMarginSampler):
    """Smallest reference margins first: pairs the untrained reference ranks worst (see base class)."""

    name = "ref_margin_low"
    descending = False


class RefMarginHighSampler(_RefMarginSampler):
    """Largest reference margins first: pairs the untrained reference already ranks best."""

    name = "ref_margin_high"
    descending = True


class DifficultySampler(Sampler):
    """Difficulty-based selection of Qi, Xu & Jin (2025, arXiv 2508.04149): the pairs with the
    smallest DPO implicit-reward gap, i.e. those a DPO-trained model separates least.

    1. Scoring split: a random ``scoring_fraction`` of the pool (at least 2 pairs), drawn from the
       selection ``seed`` (``numpy.random.default_rng([seed, 0xD1FF])``), is the scoring part;
       the rest are the candidates. The scoring part is never selected (a model scores the pairs
       it trained on as easy), so ``budget`` may not exceed the candidates.
    2. Scoring model: :func:`effalign.train.train_dpo` on the scoring part, from ``policy`` (a
       name or a ``(model, tokenizer)`` tuple, copied, never changed), with
       :class:`~effalign.train.DPOTrainConfig` defaults updated by ``scoring_train`` and
       ``seed`` = the selection seed. The untrained ``policy`` is the reference.
    3. Gap of each candidate: ``beta * [(log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log
       pi_ref(y_l))]`` with the scoring config's ``beta`` and tokenisation; reference log-probs
       come from the disk ``cache`` (shared with training when the tokenisation matches).
    4. The ``budget`` candidates with the smallest gaps, hardest first (ties: seeded permutation).

    Qi et al. score with an available DPO model and its reference; training the scoring model on
    a disjoint part of the pool is this implementation's choice. Its cost is part of the data
    selection's compute: :meth:`metadata` reports it under ``scoring_cost`` (seconds; tokens of
    training, of the reference pass over the pool and of the scoring pass over the candidates).
    Fitted: ``scoring_indices_``, ``candidates_``, ``gaps_`` (per pool pair, NaN for the scoring
    part), ``policy_logps_`` (``(candidates, 2)``: chosen and rejected log-probs under the scoring
    model), ``train_metrics_``, ``cost_``, ``selected_`` (smallest gap first).
    """

    name = "difficulty"
    needs = "pairs"
    one_thread_small_pools = False  # training: torch's own thread settings apply

    def __init__(
        self,
        policy: Any = SMOLLM2_ALIAS,
        scoring_fraction: float = 0.2,
        scoring_train: dict[str, Any] | None = None,
        cache: bool | str = True,
        batch_size: int = 8,
        progress: bool = True,
    ) -> None:
        self.policy = policy
        self.scoring_fraction = scoring_fraction
        self.scoring_train = scoring_train
        self.cache = cache
        self.batch_size = batch_size
        self.progress = progress

    def scoring_split(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scoring part, candidates)`` of a pool of ``n`` pairs for ``seed``, both sorted."""
        f = self.scoring_fraction
        if not (isinstance(f, numbers.Real) and 0 < f < 1):
            raise ValueError(f"difficulty: scoring_fraction must be in (0, 1), got {f!r}")
        k = max(2, int(round(f * n)))
        if k >= n:
            raise ValueError(f"difficulty: a pool of {n} pairs leaves no candidates after a scoring part of {k}")
        perm = np.random.default_rng([seed, 0xD1FF]).permutation(n)
        return np.sort(perm[:k]), np.sort(perm[k:])

    def _select(self, pool: Pool, budget: int, seed: int) -> np.ndarray:
        if not is_pair_pool(pool):
            raise ValueError("difficulty needs the pairs themselves (it trains and scores a model on their texts)")
        from .logps import ReferenceLogps, reference_logps, tokenize_pairs
        from .train import DPOTrainConfig, prepare_policy, train_dpo

        pairs = list(pool)
        n = len(pairs)
        scoring, candidates = self.scoring_split(n, seed)
        if budget > candidates.size:
            raise ValueError(
                f"difficulty: budget {budget} exceeds the {candidates.size} candidates left after the scoring part "
                f"({scoring.size} of {n} pairs, scoring_fraction={self.scoring_fraction}); lower scoring_fraction"
            )
        config = DPOTrainConfig.from_dict({**(self.scoring_train or {}), "seed": seed})
        t0 = time.perf_counter()
        policy = self.policy
        if not isinstance(policy, str):  # never change the caller's model (dtype or weights)
            policy = (copy.deepcopy(policy[0]), policy[1])
        ref_policy = prepare_policy(policy, config)
        ref = reference_logps(pairs, ref_policy, config=config.tokenize, batch_size=self.batch_size,
                              cache=self.cache, progress=self.progress)
        model, tokenizer = ref_policy
        result = train_dpo(
            (copy.deepcopy(model), tokenizer), [pairs[i] for i in scoring], config,
            ref=ReferenceLogps(ref.chosen[scoring], ref.rejected[scoring]), progress=self.progress,
        )
        cand_pairs = [pairs[i] for i in candidates]
        scored = reference_logps(cand_pairs, (result.model, result.tokenizer), config=config.tokenize,
                                 batch_size=self.batch_size, cache=False, progress=self.progress)
        gaps = config.beta * (
            (scored.chosen - ref.chosen[candidates]) - (scored.rejected - ref.rejected[candidates])
        )
        seconds = time.perf_counter() - t0
        result.model = None  # free the scoring model
        tokenized, _ = tokenize_pairs(pairs, tokenizer, config.tokenize)
        n_tokens = np.array([t.n_tokens for t in tokenized], dtype=np.int64)
        self.scoring_indices_ = scoring
        self.candidates_ = candidates
        self.gaps_ = np.full(n, np.nan)
        self.gaps_[candidates] = gaps
        self.policy_logps_ = np.stack([scored.chosen, scored.rejected], axis=1)
        self.train_metrics_ = {k: v for k, v in result.metrics.items() if k != "truncation"}
        train_tokens = int(result.metrics.get("tokens", 0))
        reference_tokens, score_tokens = int(n_tokens.sum()), int(n_tokens[candidates].sum())
        self.cost_ = {
            "seconds": round(seconds, 2),
            "train_seconds": float(result.metrics.get("wall_s", 0.0)),
            "train_steps": int(result.metrics.get("steps", 0)),
            "train_tokens": train_tokens,
            "reference_tokens": reference_tokens,
            "reference_pairs_computed": int(ref.computed),
            "score_tokens": score_tokens,
            "tokens": train_tokens + reference_tokens + score_tokens,
        }
        order = _ranked(check_finite(gaps, "implicit-reward gaps"), budget, seed, descending=False)
        return candidates[order]

    def selection_info(self) -> dict[str, np.ndarray]:
        return {"gap": self.gaps_[self.selected_]}

    def _extra_metadata(self) -> dict[str, Any]:
        return {
            "scoring": {
                "fraction": self.scoring_fraction,
                "split_seed": [int(self.seed_), 0xD1FF],
                "scoring_pairs": int(self.scoring_indices_.size),
                "candidates": int(self.candidates_.size),
                "train_loss": self.train_metrics_.get("train_loss"),
            },
            "scoring_cost": dict(self.cost_),
        }


# --------------------------------------------------------------------------- registry

SAMPLERS: dict[str, type[Sampler]] = {
    cls.name: cls
    for cls in (
        ISASampler, RandomSampler, KCenterSampler, ClusterSampler, LongestSampler,
        RefMarginLowSampler, RefMarginHighSampler, DifficultySampler,
    )
}

RENAMED: dict[str, str] = {"margin_low": "ref_margin_low", "margin_high": "ref_margin_high"}
"""Old sampler names and their new ones (records made before the rename keep the old names)."""


def available_samplers() -> list[str]:
    """Names accepted by :func:`get_sampler`."""
    return list(SAMPLERS)


def get_sampler(name: str | Sampler, **params: Any) -> Sampler:
    """A sampler by registry name with constructor parameters (a Sampler instance passes through).

    A renamed sampler (:data:`RENAMED`) raises a ValueError naming its new name.
    """
    if isinstance(name, Sampler):
        if params:
            raise ValueError("parameters given with a sampler instance; set them on the instance")
        return name
    key = str(name).lower().replace("-", "_")
    if key in RENAMED:
        raise ValueError(
            f"sampler {name!r} was renamed {RENAMED[key]!r}: it ranks pairs by the untrained reference "
            f"policy's log-prob margin (summed, or per_token=True); the difficulty selector of Qi et al. "
            f"2025 is 'difficulty'. Renamed: {', '.join(f'{a} -> {b}' for a, b in RENAMED.items())}"
        )
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


# --------------------------------------------------------------------------- overlap across seeds


def selection_overlap(subsets: Sequence[Sequence[int]]) -> float:
    """Mean Jaccard index ``|A ∩ B| / |A ∪ B|`` over all pairs of ``subsets`` (index sets, e.g.
    one sampler's selections from one pool under different seeds): 1 when every seed picks the
    same pairs; :func:`expected_random_overlap` is the value for independent uniform draws.
    Needs at least two subsets; an empty pair of sets counts as identical (1)."""
    sets = [set(np.asarray(s, dtype=np.int64).tolist()) for s in subsets]
    if len(sets) < 2:
        raise ValueError(f"selection_overlap needs at least two subsets, got {len(sets)}")
    values = [len(a & b) / len(a | b) if a | b else 1.0 for a, b in itertools.combinations(sets, 2)]
    return float(np.mean(values))


def expected_random_overlap(n: int, budget: int) -> float:
    """Expected Jaccard index of two independent uniform ``budget``-subsets of a pool of ``n``:
    their intersection ``X`` is hypergeometric, and the index is ``E[X / (2 budget - X)]``."""
    from scipy.stats import hypergeom

    if not 1 <= budget <= n:
        raise ValueError(f"budget must be between 1 and the pool size {n}, got {budget}")
    x = np.arange(0, budget + 1)
    p = hypergeom(n, budget, budget).pmf(x)
    return float(np.sum(p * x / (2 * budget - x)))
