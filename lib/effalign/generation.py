"""Batched text generation with a KV-cached decoding loop that drops finished sequences.

``transformers``' ``generate`` keeps computing sequences that have already emitted their
end-of-turn token until the longest one in the batch is done; on short chat answers that wastes
about a third of the decoding steps on this CPU. :func:`decode` is a plain loop over
left-padded prompts that removes a row from the batch (and its KV cache) as soon as it ends.
Sampling is ancestral with ``temperature``, optional ``top_k`` (0 = off) and ``top_p``
(1.0 = off), drawn from a CPU ``torch.Generator`` seeded with ``seed``, so results do not depend
on the device's random state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def render_chat(tokenizer: Any, messages: Sequence[dict[str, str]]) -> str:
    """The chat-template text of a prompt with the generation prompt appended."""
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)


def prompt_token_ids(tokenizer: Any, text: str) -> list[int]:
    """The token ids :func:`decode` conditions on for a rendered prompt text (before padding)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def next_tokens(
    logits: Any, *, do_sample: bool, temperature: float, top_p: float, top_k: int, generator: Any
) -> Any:
    """Greedy argmax, or a sample from the tempered, top-k/top-p filtered distribution."""
    if not do_sample:
        return logits.argmax(dim=-1)
    logits = logits / max(temperature, 1e-6)
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True, dim=-1)
        drop = sorted_p.cumsum(-1) - sorted_p > top_p  # keep the smallest prefix reaching top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def decode(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    k: int = 1,
    do_sample: bool = True,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    max_new_tokens: int = 96,
    seed: int = 0,
) -> list[list[dict[str, Any]]]:
    """Generate ``k`` continuations of each rendered prompt text (``k`` is 1 when greedy), one batch.

    Returns, per text, dicts ``{"text", "ids", "n_tokens", "finished"}``: ``ids`` are the
    sampled token ids exactly as drawn (the end-of-turn token last when the response finished;
    nothing appended when it hit ``max_new_tokens``, then ``finished`` is False), so that
    log-probabilities of a sample need no decode → re-tokenise round trip.
    """
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    k = k if do_sample else 1
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        enc = tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    device = next(model.parameters()).device
    ids = enc["input_ids"].repeat_interleave(k, dim=0).to(device)
    mask = enc["attention_mask"].repeat_interleave(k, dim=0).to(device)
    eos = int(tokenizer.eos_token_id)
    n_rows = ids.shape[0]
    tokens = torch.full((n_rows, max_new_tokens), eos, dtype=torch.long)
    lengths = torch.full((n_rows,), max_new_tokens, dtype=torch.long)
    finished = torch.zeros(n_rows, dtype=torch.bool)
    active = torch.arange(n_rows)
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    past = None
    step_ids, step_pos = ids, positions
    with torch.inference_mode():
        for step in range(max_new_tokens):
            out = model(
                input_ids=step_ids,
                attention_mask=mask,
                position_ids=step_pos,
                past_key_values=past,
                use_cache=True,
                logits_to_keep=1,
            )
            past = out.past_key_values
            logits = out.logits[:, -1, :].float().cpu()
            nxt = next_tokens(
                logits, do_sample=do_sample, temperature=temperature, top_p=top_p, top_k=top_k, generator=generator
            )
            tokens[active, step] = nxt
            done = nxt == eos
            if bool(done.any()):
                lengths[active[done]] = step + 1
                finished[active[done]] = True
            keep = (~done).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            last_pos = step_pos[:, -1:]
            if keep.numel() < active.numel():
                past.batch_select_indices(keep.to(device))
                active, nxt, mask, last_pos = active[keep], nxt[keep], mask[keep.to(device)], last_pos[keep.to(device)]
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            step_ids, step_pos = nxt[:, None].to(device), last_pos + 1
    results: list[list[dict[str, Any]]] = [[] for _ in texts]
    for row in range(n_rows):
        n = int(lengths[row])
        ids = tokens[row, :n].tolist()
        text = tokenizer.decode(ids, skip_special_tokens=True).strip()
        results[row // k].append({"text": text, "ids": ids, "n_tokens": n, "finished": bool(finished[row])})
    return results


