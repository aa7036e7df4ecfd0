"""Tokenisation of preference pairs and completion log-probabilities (reference and policy).

TRL 1.16 truncates with ``keep_start`` only and silently drops pairs whose prompt alone reaches
``max_length`` (a quarter of HH pairs at 192 tokens). This module tokenises pairs itself: the
prompt through the chat template (generation prompt included) keeping its **last**
``max_prompt_tokens`` tokens, each completion keeping its **first** ``max_completion_tokens``
tokens (the end-of-turn token included when it fits), and counts every cut in a
:class:`TruncationReport`. No pair is dropped.

:func:`completion_logps` computes summed log-probabilities of the completion tokens, running the
LM head only on completion positions (a bf16 matmul, log-softmax in float32), which is where
most CPU time goes otherwise. :func:`reference_logps` computes them once per pair under the
reference policy and caches them on disk (SQLite, keyed by a hash of the model's whole weights,
a hash of the tokenizer (vocabulary, merges, special tokens, chat template), the tokenisation
settings and the pair content), so one pool's reference numbers serve every subset: the margin
samplers and DPO training read the same cache. A damaged cache file is moved aside and rebuilt
(:mod:`effalign.caches`).

Reference and policy log-probs are only comparable when computed in the same precision: float32
weights under bf16 autocast (full fine-tuning) or bf16 weights (LoRA on a bf16 base); see
:func:`training_dtype` and :func:`precision_path`. :func:`reference_logps` given a policy *name*
loads it as the training mode of its ``config`` does (a :class:`~effalign.train.DPOTrainConfig`),
records the precision it used, and :func:`check_same_precision` refuses to compare numbers made
in different precisions. :func:`truncation_warning` tells when a setting cuts more than a
quarter of the completion tokens.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .caches import SqliteCache
from .models import cache_dir
from .progress import auto_progress


@dataclass(frozen=True)
class TokenizeConfig:
    """How pairs are cut to length (the prompt keeps its end, completions their start)."""

    max_prompt_tokens: int = 128
    max_completion_tokens: int = 64

    @property
    def max_length(self) -> int:
        return self.max_prompt_tokens + self.max_completion_tokens


@dataclass
class TokenizedPair:
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]

    @property
    def n_tokens(self) -> int:
        return 2 * len(self.prompt_ids) + len(self.chosen_ids) + len(self.rejected_ids)


@dataclass
class TruncationReport:
    """How many pairs lost prompt or completion tokens (nothing is dropped)."""

    pairs: int = 0
    prompt_truncated: int = 0
    chosen_truncated: int = 0
    rejected_truncated: int = 0
    prompt_tokens_cut: int = 0
    completion_tokens_cut: int = 0
    #: completion tokens before any cut (chosen and rejected; 0 in reports made before it was counted)
    completion_tokens: int = 0

    @property
    def completion_cut_share(self) -> float:
        """Share of the completion tokens that the cut removed (0 when nothing was counted)."""
        return self.completion_tokens_cut / self.completion_tokens if self.completion_tokens else 0.0

    def __str__(self) -> str:
        return (
            f"{self.pairs} pairs tokenised: prompt cut in {self.prompt_truncated}, chosen cut in "
            f"{self.chosen_truncated}, rejected cut in {self.rejected_truncated} "
            f"({self.prompt_tokens_cut} prompt and {self.completion_tokens_cut} completion tokens removed)"
        )

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def _prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = out["input_ids"]
    return list(out)


def completion_token_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of an assistant completion: its text then the end-of-turn (EOS) token."""
    text = "\n".join(m["content"] for m in messages)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return list(ids) + [tokenizer.eos_token_id]


def tokenize_pairs(
    pairs: Sequence[Any], tokenizer: Any, config: TokenizeConfig = TokenizeConfig()
) -> tuple[list[TokenizedPair], TruncationReport]:
    """Tokenise pairs, cutting prompts from the left and completions from the right; count cuts."""
    report = TruncationReport()
    out = []
    for pair in pairs:
        p = _prompt_ids(tokenizer, pair.prompt)
        c = completion_token_ids(tokenizer, pair.chosen)
        r = completion_token_ids(tokenizer, pair.rejected)
        report.pairs += 1
        if len(p) > config.max_prompt_tokens:
            report.prompt_truncated += 1
            report.prompt_tokens_cut += len(p) - config.max_prompt_tokens
            p = p[-config.max_prompt_tokens :]
        for name, ids in (("chosen", c), ("rejected", r)):
            report.completion_tokens += len(ids)
            if len(ids) > config.max_completion_tokens:
                setattr(report, f"{name}_truncated", getattr(report, f"{name}_truncated") + 1)
                report.completion_tokens_cut += len(ids) - config.max_completion_tokens
        out.append(TokenizedPair(p, c[: config.max_completion_tokens], r[: config.max_completion_tokens]))
    return out, report


#: a cut removing more than this share of the completion tokens is warned about
TRUNCATION_WARN_SHARE = 0.25


class TruncationWarning(UserWarning):
    """Tokenisation cut a large share of the completion tokens (raise ``max_completion_tokens``)."""


def truncation_warning(report: TruncationReport, config: TokenizeConfig, where: str = "training") -> str | None:
    """Warn (:class:`TruncationWarning`) when the cut removed more than a quarter of the completion
    tokens, with the share and the setting to change; returns the message (None: no warning)."""
    share = report.completion_cut_share
    if share <= TRUNCATION_WARN_SHARE:
        return None
    message = (f"{where}: max_completion_tokens={config.max_completion_tokens} cuts {share:.0%} of the completion "
               f"tokens ({report.completion_tokens_cut} of {report.completion_tokens}; chosen cut in "
               f"{report.chosen_truncated} and rejected in {report.rejected_truncated} of {report.pairs} pairs): "
               "the model learns from the first tokens of each answer only. Raise train.max_completion_tokens "
               "(grid or profile `train`, DPOTrainConfig.max_completion_tokens) to keep more of each answer")
    warnings.warn(TruncationWarning(message), stacklevel=2)
    return message


@dataclass
class Batch:
    """Right-padded prompt+completion sequences with a mask over completion targets."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    target_mask: torch.Tensor  # 1 where input_ids[t] is a completion token (predicted from t-1)
    n_tokens: int = 0

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), self.target_mask.to(device), self.n_tokens)


def collate(sequences: Sequence[tuple[list[int], list[int]]], pad_id: int) -> Batch:
    """Build a right-padded batch from (prompt ids, completion ids) tuples."""
    length = max(len(p) + len(c) for p, c in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    attn = torch.zeros((len(sequences), length), dtype=torch.long)
    target = torch.zeros((len(sequences), length), dtype=torch.bool)
    n = 0
    for i, (p, c) in enumerate(sequences):
        seq = p + c
        ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        attn[i, : len(seq)] = 1
        target[i, len(p) : len(seq)] = True
        n += len(seq)
    return Batch(ids, attn, target, n)


def pair_batch(tokenized: Sequence[TokenizedPair], pad_id: int) -> Batch:
    """Chosen sequences first, then rejected ones (rows i and i + n belong to pair i)."""
    seqs = [(t.prompt_ids, t.chosen_ids) for t in tokenized] + [(t.prompt_ids, t.rejected_ids) for t in tokenized]
    return collate(seqs, pad_id)


def _decoder_and_head(model: Any) -> tuple[Any, Any]:
    """The transformer body and the LM head of a causal LM (PEFT-wrapped models included)."""
    base = model
    if hasattr(base, "get_base_model"):
        base = base.get_base_model()
    body = getattr(base, base.base_model_prefix, None) if hasattr(base, "base_model_prefix") else None
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if body is None or head is None:
        raise TypeError(f"{type(model).__name__} does not expose a decoder body and an LM head")
    return body, head


def training_dtype(lora: bool) -> torch.dtype:
    """The weights' dtype in a training mode: bf16 for LoRA (a frozen bf16 base), float32 master
    weights for full fine-tuning (run under bf16 autocast, :func:`autocast_default`)."""
    return torch.bfloat16 if lora else torch.float32


def precision_path(model: Any) -> str:
    """How log-probs of ``model`` are computed: ``"autocast"`` (float32 weights, bf16 autocast) or
    the weights' dtype (``"bfloat16"``)."""
    return "autocast" if autocast_default(model) else str(next(model.parameters()).dtype).replace("torch.", "")


def check_same_precision(model: Any, ref: Any, what: str = "the policy") -> None:
    """Refuse (ValueError) to compare ``model``'s log-probs with reference log-probs ``ref`` made
    in another precision (an untrained policy would not tie with its own reference)."""
    made = getattr(ref, "precision", "")
    now = precision_path(model)
    if made and made != now:
        describe = {"autocast": "float32 weights under bf16 autocast (full fine-tuning)",
                    "bfloat16": "bf16 weights (LoRA)"}
        raise ValueError(
            f"the reference log-probs were computed with {describe.get(made, made)} but {what} runs with "
            f"{describe.get(now, now)}: their differences would be rounding, not training. Compute the reference "
            "as the policy is trained: reference_logps(pairs, model_name, config=<the run's DPOTrainConfig>)")


def autocast_default(model: Any) -> bool:
    """Whether log-probs of ``model`` run under bf16 autocast: yes for float32 weights.

    Float32 weights are the master copy of full fine-tuning; bf16 autocast makes their matmuls
    about four times faster on this CPU. bf16 models (and LoRA on a bf16 base) run as they are.
    Reference and policy log-probs of one model always take the same path.
    """
    return next(model.parameters()).dtype == torch.float32


def completion_log_softmax(model: Any, batch: Batch, *, autocast: bool | None = None
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-probabilities over the vocabulary at every position that predicts a completion token.

    Runs the decoder body once, then the LM head only at those positions, with log-softmax in
    float32. Returns ``(rows, targets, logp)``: the batch row of each position, the completion
    token it predicts, and its ``(positions, vocabulary)`` log-probabilities. ``autocast``
    (default :func:`autocast_default`) wraps the forward in bf16 autocast.
    """
    device = next(model.parameters()).device
    batch = batch.to(device)
    body, head = _decoder_and_head(model)
    if autocast is None:
        autocast = autocast_default(model)
    ctx = torch.autocast(device.type, dtype=torch.bfloat16) if autocast else nullcontext()
    with ctx:
        hidden = body(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        # position t predicts token t+1
        pred_mask = batch.target_mask[:, 1:]
        rows, cols = pred_mask.nonzero(as_tuple=True)
        h = hidden[:, :-1][rows, cols]
        logits = head(h)
    targets = batch.input_ids[:, 1:][rows, cols]
    return rows, targets, torch.log_softmax(logits.float(), dim=-1)


def completion_logps(model: Any, batch: Batch, *, autocast: bool | None = None) -> torch.Tensor:
    """Summed log-probabilities of the completion tokens of each row of ``batch``
    (see :func:`completion_log_softmax` for the numeric path)."""
    rows, targets, logp = completion_log_softmax(model, batch, autocast=autocast)
    token_logp = logp.gather(-1, targets[:, None]).squeeze(-1)
    out = torch.zeros(batch.input_ids.shape[0], dtype=torch.float32, device=logp.device)
    return out.index_add(0, rows, token_logp)


def model_fingerprint(model: Any) -> str:
    """A content hash of a model's architecture and every value of every weight tensor.

    Values are hashed as float32, so a float32 copy of bf16 weights has the same fingerprint
    (the storage dtype is left out); any edit of any weight changes it. LoRA adapters are left
    out (they start as a no-op; the base weights define the reference).
    """
    digest = hashlib.sha256()
    config = getattr(model, "config", None)
    if config is not None:
        arch = {k: v for k, v in config.to_dict().items() if k not in {"dtype", "torch_dtype", "transformers_version", "_name_or_path", "use_cache"}}
        digest.update(json.dumps(arch, sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            if "lora_" in name:  # adapters start as a no-op; the base weights define the reference
                continue
            digest.update(name.encode() + str(tuple(tensor.shape)).encode())
            flat = tensor.detach().reshape(-1)
            for start in range(0, flat.numel(), 1 << 24):  # float32 copies of at most 64 MiB at a time
                digest.update(flat[start : start + (1 << 24)].float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A content hash of what turns a pair into token ids: the tokenizer's vocabulary and merges
    (the fast tokenizer's whole definition, its padding and truncation state left out), its
    special and added tokens, and the chat template."""
    digest = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        definition = json.loads(backend.to_str())
        definition.pop("padding", None)
        definition.pop("truncation", None)
        digest.update(json.dumps(definition, sort_keys=True).encode())
    else:
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    special = {
        "map": getattr(tokenizer, "special_tokens_map", {}),
        "ids": [getattr(tokenizer, f"{k}_token_id", None) for k in ("bos", "eos", "pad", "unk")],
        "added": sorted((int(i), str(t)) for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items()),
    }
    digest.update(json.dumps(special, sort_keys=True, default=str).encode())
    digest.update(str(getattr(tokenizer, "chat_template", None)).encode())
    return digest.hexdigest()[:16]


def pair_key(pair: Any) -> str:
    """Content hash of one pair (prompt, chosen, rejected)."""
    payload = json.dumps([pair.prompt, pair.chosen, pair.rejected], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


class LogpCache(SqliteCache):
    """SQLite table ``(namespace, pair key) -> (chosen logp, rejected logp)`` (a damaged file is
    moved aside and rebuilt, see :mod:`effalign.caches`)."""

    schema = ("CREATE TABLE IF NOT EXISTS logps (ns TEXT, key TEXT, chosen REAL, rejected REAL, PRIMARY KEY (ns, key))",)

    def __init__(self, path: str | Path | None = None):
        super().__init__(Path(path) if path else cache_dir() / "ref_logps.sqlite")

    def get(self, ns: str, keys: Sequence[str]) -> dict[str, tuple[float, float]]:
        def read(con: Any) -> dict[str, tuple[float, float]]:
            found: dict[str, tuple[float, float]] = {}
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                q = f"SELECT key, chosen, rejected FROM logps WHERE ns = ? AND key IN ({marks})"
                for key, c, r in con.execute(q, [ns, *chunk]):
                    if isinstance(c, float) and isinstance(r, float):  # a damaged value is computed again
                        found[key] = (c, r)
            return found

        return self.run(read)

    def put(self, ns: str, items: dict[str, tuple[float, float]]) -> None:
        rows = [(ns, k, c, r) for k, (c, r) in items.items()]
        self.run(lambda con: con.executemany("INSERT OR REPLACE INTO logps VALUES (?, ?, ?, ?)", rows), write=True)


@dataclass
class ReferenceLogps:
    """Reference log-probs of each pair's chosen and rejected completion, and what it cost."""

    chosen: np.ndarray
    rejected: np.ndarray
    computed: int = 0  # pairs computed now (the rest came from the cache)
    forward_calls: int = 0
    tokens: int = 0  # tokens (prompt + completion, padding excluded) run through the model now
    seconds: float = 0.0  # time spent computing them now (cache reads excluded)
    truncation: dict[str, int] = field(default_factory=dict)
    #: the precision they were computed in (:func:`precision_path`; "" when unknown)
    precision: str = ""

    @property
    def margins(self) -> np.ndarray:
        return self.chosen - self.rejected

    def __getitem__(self, key: str) -> np.ndarray:  # dict-style access: ref["chosen"]
        return {"chosen": self.chosen, "rejected": self.rejected, "margin": self.margins}[key]


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first), to cut padding."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@torch.no_grad()
def reference_logps(
    pairs: Sequence[Any],
    policy: str | tuple[Any, Any] = "smollm2-135m-instruct",
    *,
    config: Any = TokenizeConfig(),
    batch_size: int = 8,
    cache: bool | str | Path = True,
    progress: bool | None = None,
    dtype: torch.dtype | None = None,
) -> ReferenceLogps:
    """Reference log-probs for every pair, computed once per (model, tokenisation, pair).

    ``policy`` is a policy name or a ``(model, tokenizer)`` tuple (used as it is). ``config`` is a
    :class:`TokenizeConfig` or a :class:`~effalign.train.DPOTrainConfig`; with the latter a
    policy name is loaded in the precision its training mode uses (:func:`training_dtype`: float32
    under bf16 autocast for full fine-tuning, bf16 for LoRA), so the untrained policy ties with
    its reference; ``dtype`` chooses the weights' dtype explicitly (default bf16 for a name with a
    :class:`TokenizeConfig`). The result records its :attr:`~ReferenceLogps.precision`. Cached
    values are reused; only missing pairs are run, in length-grouped batches with a progress bar
    (for more than 64 pairs on a terminal, never in a notebook: :func:`effalign.progress.auto_progress`;
    ``progress`` True/False forces it).
    """
    lora = getattr(config, "lora", None)
    config = getattr(config, "tokenize", config)
    if isinstance(policy, str):
        from .models import load_policy

        if dtype is None:
            dtype = training_dtype(bool(lora)) if lora is not None else torch.bfloat16
        model, tokenizer = load_policy(policy, dtype=dtype)
    else:
        model, tokenizer = policy
    path = precision_path(model)
    ns = (f"{model_fingerprint(model)}:{tokenizer_fingerprint(tokenizer)}:{path}:"
          f"{config.max_prompt_tokens}:{config.max_completion_tokens}")
    keys = [pair_key(p) for p in pairs]
    store = LogpCache(None if cache is True else cache) if cache else None
    found = store.get(ns, list(dict.fromkeys(keys))) if store else {}
    missing_idx = [i for i, k in enumerate(keys) if k not in found]
    # one computation per distinct missing pair
    first_of: dict[str, int] = {}
    for i in missing_idx:
        first_of.setdefault(keys[i], i)
    todo = list(first_of.values())
    result = ReferenceLogps(np.zeros(len(pairs)), np.zeros(len(pairs)), precision=path)
    if todo:
        started = time.perf_counter()
        tokenized, report = tokenize_pairs([pairs[i] for i in todo], tokenizer, config)
        result.truncation = report.to_dict()
        was_training = model.training
        model.eval()
        batches = length_sorted_batches([t.n_tokens for t in tokenized], batch_size)
        show = auto_progress(progress, len(todo) > 64)
        new: dict[str, tuple[float, float]] = {}
        for idx in tqdm(batches, desc="reference log-probs", disable=not show, unit="batch"):
            batch = pair_batch([tokenized[j] for j in idx], tokenizer.pad_token_id)
            lp = completion_logps(model, batch).cpu().numpy()
            result.forward_calls += 1
            result.tokens += batch.n_tokens
            n = len(idx)
            for row, j in enumerate(idx):
                new[keys[todo[j]]] = (float(lp[row]), float(lp[row + n]))
            if store and len(new) >= 256:  # persist progressively: an interrupted run resumes
                store.put(ns, new)
                found.update(new)
                new = {}
        if store and new:
            store.put(ns, new)
        found.update(new)
        model.train(was_training)
        result.computed = len(todo)
        result.seconds = time.perf_counter() - started
    for i, k in enumerate(keys):
        result.chosen[i], result.rejected[i] = found[k]
    return result
