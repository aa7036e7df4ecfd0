"""Per-pair inputs of the samplers: embeddings, response lengths, reference log-prob margins.

:class:`PairFeatures` holds precomputed inputs (so a sampler needs no embedding model at select
time); :func:`make_features` builds the feature matrix shared by isa, kcenter and cluster
(``[e(prompt), e(chosen) - e(rejected)]``, standardised, PCA); :func:`reference_margins` gives
the reference policy's log-prob margins (summed or per token); :func:`length_profile`
describes a subset's response lengths for the sampler metadata.

Determinism: the samplers run small pools inside a one-thread ``threadpool_limits`` block. Such a
block limits only the native thread pools already loaded when it starts, so the libraries the
samplers use are loaded here, at import: NumPy's and SciPy's OpenBLAS and scikit-learn's OpenMP
runtime. Otherwise a library first loaded inside the block (scikit-learn's OpenMP on the first
k-means, SciPy's OpenBLAS on the first PCA) would run with every core, and the same selection
would differ between a 1-thread and a 2-thread process.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

# Loaded at import, before any one-thread block (see the module docstring): SciPy's OpenBLAS
# and scikit-learn's OpenMP runtime.
import scipy.linalg  # noqa: F401
import sklearn.cluster  # noqa: F401
import sklearn.decomposition  # noqa: F401
import sklearn.mixture  # noqa: F401

from .embed import MINILM_ALIAS

SMOLLM2_ALIAS = "smollm2-135m-instruct"  # same alias as effalign.models (not imported: torch-free)

__all__ = [
    "SMOLLM2_ALIAS",
    "PairFeatures",
    "Pool",
    "check_finite",
    "chosen_lengths",
    "completion_token_counts",
    "is_pair_pool",
    "length_profile",
    "make_features",
    "pair_char_lengths",
    "pool_size",
    "raw_features",
    "reduce_features",
    "reference_margins",
    "response_lengths",
]


@dataclass
class PairFeatures:
    """Precomputed per-pair inputs of the samplers (no embedding model needed at select time).

    ``prompt_emb``, ``chosen_emb``, ``rejected_emb``: ``(n, d)`` embeddings. Optional ``(n,)``
    arrays: ``chosen_lengths`` (for ``longest``) and ``rejected_lengths``, both in
    ``length_unit`` ("chars" or "tokens"; character lengths also give the samplers' length
    profile), and ``ref_margins`` (summed reference margins, for ``ref_margin_*``).
    """

    prompt_emb: np.ndarray
    chosen_emb: np.ndarray
    rejected_emb: np.ndarray
    chosen_lengths: np.ndarray | None = None
    ref_margins: np.ndarray | None = None
    rejected_lengths: np.ndarray | None = None
    length_unit: str = "chars"

    def __post_init__(self) -> None:
        arrays = [np.asarray(a) for a in (self.prompt_emb, self.chosen_emb, self.rejected_emb)]
        for name, a in zip(("prompt_emb", "chosen_emb", "rejected_emb"), arrays):
            if a.ndim != 2:
                raise ValueError(f"PairFeatures.{name} must be 2-D (n, d); got shape {a.shape}")
        if not (arrays[0].shape[0] == arrays[1].shape[0] == arrays[2].shape[0]):
            raise ValueError(f"PairFeatures embeddings disagree on n: {[a.shape[0] for a in arrays]}")
        if arrays[1].shape != arrays[2].shape:
            raise ValueError(f"chosen_emb {arrays[1].shape} and rejected_emb {arrays[2].shape} differ in shape")
        if self.length_unit not in ("chars", "tokens"):
            raise ValueError(f"PairFeatures.length_unit must be 'chars' or 'tokens', got {self.length_unit!r}")
        self.prompt_emb, self.chosen_emb, self.rejected_emb = arrays
        n = arrays[0].shape[0]
        for name in ("chosen_lengths", "rejected_lengths", "ref_margins"):
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
            chosen_lengths=response_lengths(pairs, "chosen", unit=length_unit),
            rejected_lengths=response_lengths(pairs, "rejected", unit=length_unit),
            ref_margins=ref_margins,
            length_unit=length_unit,
        )

    def raw(self) -> np.ndarray:
        """The un-reduced ISA features ``[e(prompt), e(chosen) - e(rejected)]``, float32 ``(n, 2d)``."""
        diff = self.chosen_emb.astype(np.float32) - self.rejected_emb.astype(np.float32)
        return np.concatenate([self.prompt_emb.astype(np.float32), diff], axis=1)


Pool = Union[Sequence[Any], PairFeatures, np.ndarray]
"""What a sampler selects from: pairs (:class:`~effalign.data.PreferenceData` or a sequence of
:class:`~effalign.data.PreferencePair`), :class:`PairFeatures`, or a raw ``(n, d)`` feature array."""


def response_lengths(
    pairs: Sequence[Any], side: str = "chosen", unit: str = "chars", tokenizer: str = SMOLLM2_ALIAS
) -> np.ndarray:
    """Length of each pair's ``side`` ("chosen" or "rejected") response: ``unit="chars"``
    (characters of its text) or ``"tokens"`` (tokens of ``tokenizer``, no special tokens)."""
    if side not in ("chosen", "rejected"):
        raise ValueError(f"side must be 'chosen' or 'rejected', got {side!r}")
    texts = [getattr(p, f"{side}_text") for p in pairs]
    if unit == "chars":
        return np.array([len(t) for t in texts], dtype=np.float64)
    if unit == "tokens":
        from .models import load_tokenizer

        tok = load_tokenizer(tokenizer)
        ids = tok(texts, add_special_tokens=False)["input_ids"]
        return np.array([len(i) for i in ids], dtype=np.float64)
    raise ValueError(f"unit must be 'chars' or 'tokens', got {unit!r}")


def chosen_lengths(pairs: Sequence[Any], unit: str = "chars", tokenizer: str = SMOLLM2_ALIAS) -> np.ndarray:
    """Length of each pair's chosen response (see :func:`response_lengths`)."""
    return response_lengths(pairs, "chosen", unit=unit, tokenizer=tokenizer)


def pool_size(pool: Pool) -> int:
    """Number of pairs in a pool (rows of a feature array)."""
    if isinstance(pool, np.ndarray):
        if pool.ndim != 2:
            raise ValueError(f"a feature array pool must be 2-D (n, d); got shape {pool.shape}")
        return int(pool.shape[0])
    return len(pool)


def is_pair_pool(pool: Pool) -> bool:
    """Whether ``pool`` holds the pairs themselves (texts), not precomputed features."""
    return not isinstance(pool, (np.ndarray, PairFeatures))


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


def raw_features(pool: Pool, *, model: str = MINILM_ALIAS) -> np.ndarray:
    """The un-reduced feature matrix of a pool: an array as is, else :meth:`PairFeatures.raw`."""
    if isinstance(pool, np.ndarray):
        pool_size(pool)
        return pool
    if isinstance(pool, PairFeatures):
        return pool.raw()
    return PairFeatures.from_pairs(pool, model=model).raw()


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


def completion_token_counts(pairs: Sequence[Any], tokenizer: Any, max_completion_tokens: int) -> np.ndarray:
    """``(n, 2)`` token counts of each pair's chosen and rejected completion as the log-prob code
    scores them: text tokens plus the end-of-turn token, cut at ``max_completion_tokens``
    (:func:`effalign.logps.tokenize_pairs`)."""
    from .logps import completion_token_ids

    counts = [
        [min(len(completion_token_ids(tokenizer, side)), max_completion_tokens) for side in (p.chosen, p.rejected)]
        for p in pairs
    ]
    return np.asarray(counts, dtype=np.float64).reshape(len(pairs), 2)


def reference_margins(
    pairs: Sequence[Any],
    policy: Any = SMOLLM2_ALIAS,
    cache: bool | str | Path = True,
    *,
    per_token: bool = False,
    max_prompt_tokens: int = 128,
    max_completion_tokens: int = 64,
) -> np.ndarray:
    """The reference policy's margin per pair: ``log pi_ref(chosen | prompt) - log pi_ref(rejected |
    prompt)`` summed over tokens, or with ``per_token`` the difference of per-token means
    (``logp_c / n_c - logp_r / n_r``, :func:`completion_token_counts`).

    Log-probs come from :func:`effalign.logps.reference_logps`, computed once per pair and
    cached on disk (``cache``: True for ``<cache>/ref_logps.sqlite``, a path, or False); DPO
    training reads the same cache. ``policy`` is a name or a ``(model, tokenizer)`` tuple.
    """
    from .logps import TokenizeConfig, reference_logps

    config = TokenizeConfig(max_prompt_tokens, max_completion_tokens)
    lp = reference_logps(pairs, policy=policy, config=config, cache=cache)
    chosen, rejected = np.asarray(lp.chosen, dtype=np.float64), np.asarray(lp.rejected, dtype=np.float64)
    if not per_token:
        return chosen - rejected
    if isinstance(policy, str):
        from .models import load_tokenizer

        tokenizer = load_tokenizer(policy)
    else:
        tokenizer = policy[1]
    counts = completion_token_counts(pairs, tokenizer, max_completion_tokens)
    return chosen / counts[:, 0] - rejected / counts[:, 1]


def pair_char_lengths(pool: Pool) -> tuple[np.ndarray, np.ndarray] | None:
    """Characters of each pair's chosen and rejected response, or None when the pool carries no
    character lengths (a feature array, or :class:`PairFeatures` without both in "chars")."""
    if isinstance(pool, np.ndarray):
        return None
    if isinstance(pool, PairFeatures):
        if pool.length_unit != "chars" or pool.chosen_lengths is None or pool.rejected_lengths is None:
            return None
        return pool.chosen_lengths, pool.rejected_lengths
    return response_lengths(pool, "chosen"), response_lengths(pool, "rejected")


def length_profile(pool: Pool, selected: np.ndarray) -> dict[str, Any] | None:
    """Mean characters of the chosen and rejected responses, and of chosen − rejected, in the
    subset ``selected`` and in the whole pool; None when the pool carries no lengths
    (:func:`pair_char_lengths`). Samplers that prefer long or short answers show up here."""
    lengths = pair_char_lengths(pool)
    if lengths is None:
        return None
    chosen, rejected = lengths
    idx = np.asarray(selected, dtype=np.int64)

    def profile(c: np.ndarray, r: np.ndarray) -> dict[str, float]:
        return {
            "chosen_mean": round(float(c.mean()), 1),
            "rejected_mean": round(float(r.mean()), 1),
            "chosen_minus_rejected_mean": round(float((c - r).mean()), 1),
        }

    return {"unit": "chars", "subset": profile(chosen[idx], rejected[idx]), "pool": profile(chosen, rejected)}
