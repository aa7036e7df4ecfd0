"""Tests of the embedded testbed: checkers, prompt generator, reward API, generation/resume/assembly."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import effalign.testbed as tb
from effalign.testbed.build import AppendLog, select_pair
from effalign.testbed.constraints import (
    REGISTRY,
    Constraint,
    bullet_lines,
    compatible,
    count_word,
    ends_with_phrase,
    parse_json_object,
    sentences,
    starts_with_phrase,
    words,
)

C = Constraint

# (constraint, satisfying responses, violating responses) for every kind
CASES: list[tuple[Constraint, list[str], list[str]]] = [
    (C("max_words", {"n": 5}), ["One two three four five.", "  naïve café ok  \n"], ["one two three four five six", "", "!!!"]),
    (C("min_words", {"n": 4}), ["It's a well-known fact.\n", "un deux trois quatre"], ["too short here", "- a\n- b\n- c"]),
    (C("max_chars", {"n": 20}), ["Short answer.   \n\n", "naïve résumé"], ["This answer is definitely too long.", "   "]),
    (
        C("max_sentences", {"n": 2}),
        ["First one. Second one!", "Only one sentence without a stop", "Is it? Yes.\n"],
        ["One. Two. Three.", "Line one\nLine two\nLine three", ""],
    ),
    (
        C("exact_sentences", {"n": 2}),
        ["Hello there. How are you?", "“Quoted.” And another one.  "],
        ["Just one.", "A. B. C.", "A.\nB.\nC."],
    ),
    (
        C("paragraphs", {"n": 2}),
        ["First para.\n\nSecond para.", "First.\n   \nSecond.\n\n"],
        ["Only one paragraph.", "One.\n\nTwo.\n\nThree."],
    ),
    (
        C("bullets", {"n": 3}),
        ["- a\n- b\n- c", "Intro:\n* one\n* two\n* three\n", "• x\n• y\n+ z", "  - a\n  - b\n  - c  "],
        ["- a\n- b", "1. a\n2. b\n3. c", "**bold**\n**bold**\n**bold**", "-a\n-b\n-c"],
    ),
    (
        C("numbered_list", {"n": 3}),
        ["1. a\n2. b\n3. c", "Steps:\n1) x\n2) y\n3) z\nDone."],
        ["1. a\n2. b", "- a\n- b\n- c", "In 2024. we did 3. things"],
    ),
    (
        C("json_object", {"keys": ["title", "summary"]}),
        ['{"title": "Sea", "summary": "Big."}', '```json\n{"Title": "x", "summary": "y", "extra": 1}\n```\n', "{“title”: “a”, “summary”: “b”}"],
        ['{"title": "Sea"}', '["title", "summary"]', 'Here: {"title": "a", "summary": "b"}', '{"title": "a", "summary": '],
    ),
    (
        C("include_word", {"word": "ocean"}),
        ["The OCEAN is big.", "Oceans cover the earth.", "ocean"],
        ["The oceanic crust.", "The sea is big.", ""],
    ),
    (
        C("word_frequency", {"word": "tea", "n": 2}),
        ["Tea is great; I drink teas daily.", "tea tea"],
        ["Tea is great.", "steam and team"],
    ),
    (
        C("avoid_word", {"word": "the"}),
        ["There is a cat.", "A cat sat on a mat.", "Theory is fine"],
        ["The cat.", "I saw THE cat.", "“the” cat"],
    ),
    (C("include_number", {}), ["There are 3 cats.", "In 2024 ..."], ["There are three cats.", "No digits here"]),
    (
        C("lowercase", {}),
        ["all lowercase here, naïve café.", "  lower  \n"],
        ["Not lowercase.", "all lower except É", "123 456"],
    ),
    (
        C("capital_words", {"n": 2}),
        ["This is VERY IMPORTANT.", "NASA and UNESCO"],
        ["Only ONE here.", "I A"],
    ),
    (
        C("start_with", {"phrase": "Sure"}),
        ["Sure, here it is.", "  **Sure!** Here.", "sure thing", '"Sure" I said'],
        ["Surely not.", "Yes, sure.", ""],
    ),
    (
        C("end_with", {"phrase": "Thank you for reading."}),
        ["Text. Thank you for reading.", "Text. Thank you for reading!  \n", "text. *Thank you for reading*", "thank you for reading"],
        ["Thank you for reading. More text.", "Thanks for reading.", "Text. Thank you for reading it."],
    ),
    (
        C("end_question", {}),
        ["What do you think?", "Really?  \n", "Is it *true?*", "Why? (really?)"],
        ["I think so.", "Why? No.", ""],
    ),
    (
        C("postscript", {}),
        ["Main text.\n\nP.S. See you soon.", "Main text. P.S. bye", "Text\n**P.S.** bye", "text\np.s. bye"],
        ["No postscript here.", "PS bye", "tops.sales"],
    ),
    (
        C("quotation", {}),
        ['"The whole answer."', "“Curly quotes work.”  \n"],
        ["No quotes.", '"Only at the start.', '""'],
    ),
    (
        C("title_brackets", {}),
        ["<<My Title>>\nText.", "Text <<a title>> text"],
        ["<My Title>", "<<>> text", "<<\ntitle>>"],
    ),
    (
        C("title_markdown", {}),
        ["# My Title\nText.", "\n\n## Subtitle\ntext"],
        ["#NoSpace\ntext", "Text first\n# Title", "**Title**"],
    ),
    (C("bold", {"n": 2}), ["**one** and **two**", "A **b** c **d e**."], ["**one** only", "*italic* *two*", "****"]),
    (
        C("placeholder", {}),
        ["Dear [name], hi.", "Meet at [address]."],
        ["[link](http://x.org)", "No placeholders.", "[]"],
    ),
    (C("no_commas", {}), ["No commas here.", "Dash - fine; ok."], ["One, two.", "Full width，comma"]),
    (C("exclamation", {}), ["Wow!", "Great！"], ["Calm.", "Question?"]),
]


def test_cases_cover_every_kind_and_at_least_15_kinds() -> None:
    assert len(REGISTRY) >= 15
    assert {c.kind for c, _, _ in CASES} == set(REGISTRY)


@pytest.mark.parametrize("constraint, good, bad", CASES, ids=[c.kind for c, _, _ in CASES])
def test_checker_satisfying_and_violating(constraint: Constraint, good: list[str], bad: list[str]) -> None:
    # the checkers alone (gate=False: these answers are shorter than the content gate's minimum)
    for text in good:
        assert constraint.check(text) and tb.gold_reward([constraint], text, gate=False) == 1.0, text
    for text in bad:
        assert tb.gold_reward([constraint], text, gate=False) == 0.0, text


@pytest.mark.parametrize("constraint", [c for c, _, _ in CASES], ids=[c.kind for c, _, _ in CASES])
def test_instruction_phrase_and_roundtrip(constraint: Constraint) -> None:
    phrase = constraint.instruction()
    assert phrase and phrase[0].isupper() and phrase.rstrip('"')[-1] in ".)"
    assert Constraint.from_dict(json.loads(json.dumps(constraint.to_dict()))) == constraint


def test_text_helpers() -> None:
    assert words("It's well-known: naïve café, 3 items.") == ["It's", "well-known", "naïve", "café", "3", "items"]
    assert len(sentences("- one\n- two\n\nThree. Four?")) == 4
    assert len(bullet_lines("- a\n* b\n• c\n+ d\n---\n**e**")) == 4
    assert count_word("Cats, cat; CAT. category", "cat") == 3
    assert count_word("I’m naïve", "naïve") == 1
    assert starts_with_phrase("# Sure thing", "Sure") and not starts_with_phrase("Sureness", "Sure")
    assert ends_with_phrase("It is all.  ", "That is all.") is False
    assert ends_with_phrase("...and that is all!\n", "That is all.")
    assert parse_json_object("```\n{\"a\": 1}\n```") == {"a": 1}
    assert parse_json_object("{bad json}") is None


def test_gold_reward_is_share_of_constraints() -> None:
    cons = [C("include_word", {"word": "ocean"}), C("max_words", {"n": 12}), C("end_question", {})]
    whole = "Did you know that the ocean covers most of our planet's surface?"
    assert tb.gold_reward(cons, whole, "the ocean") == 1.0
    assert tb.gold_reward(cons, "The ocean is big and holds more water than anything else.", "the ocean") == pytest.approx(2 / 3)
    assert tb.gold_reward(cons, "The sea is big and wide and I will say so at great length here.", "the ocean") == 0.0
    assert tb.gold_reward([c.to_dict() for c in cons], whole, "the ocean") == 1.0
    assert tb.gold_reward(cons, "Ocean?", gate=False) == 1.0  # the version-1 reward, no gate
    # content-free responses score 0 even on negative constraints
    assert tb.gold_reward([C("no_commas", {}), C("avoid_word", {"word": "the"})], " \n ", gate=False) == 0.0
    assert tb.gold_reward([], "anything") == 0.0


def test_content_gate_reasons_and_topic_terms() -> None:
    from effalign.testbed.constraints import MIN_WORDS

    assert tb.gate_failure(" ** ") == "empty"
    assert tb.gate_failure("OK.") == tb.gate_failure("Sure! Here is a short answer.") == "too_short"
    assert tb.gate_failure("coffee " * 12, "coffee") == "repetitive"
    long_generic = "Sure! Here is a short answer for you, and I hope that it is useful to you today."
    assert tb.gate_failure(long_generic) is None and tb.gate_failure(long_generic, "coffee") == "off_topic"
    assert tb.gate_failure("I drink a big mug of espresso with milk every single morning.", "coffee") is None
    assert tb.gate_failure(" ".join(["word"] * (MIN_WORDS - 1))) == "too_short"
    # singular forms of plural topic words, plurals of singular ones; common name words excluded
    assert tb.addresses_topic("My dog loves long walks in the park.", "dogs")
    assert tb.addresses_topic("Three VOLCANO eruptions.", "volcanoes")
    assert tb.addresses_topic("Two bikes.", "bicycles") and not tb.addresses_topic("A bicycle-free zone", "coffee")
    assert "first" not in tb.topic_terms("first aid") and "aid" in tb.topic_terms("first aid")
    assert "other" not in tb.topic_terms("kindness") and "others" in tb.topic_terms("kindness")
    assert tb.topic_terms("underwater basket weaving") == ("underwater", "basket", "weaving")  # unknown topic: its name
    for topic in tb.TOPICS:  # every topic can be addressed by its own name
        assert tb.addresses_topic(f"A few words about {topic.name}.", topic), topic.name


def test_gaming_answers_score_zero_on_every_eval_prompt() -> None:
    prompts = tb.load_eval_prompts()
    assert len(prompts) == 400
    padded = "Sure! Here is a short answer for you, and I hope that it is useful to you today."
    for answer in ("OK.", "Sure! Here is a short answer."):
        assert all(p.reward(answer) == 0.0 for p in prompts), answer
        # without the gate these constant answers score well (the reason for the gate)
        assert sum(tb.gold_reward(p.constraints, answer, gate=False) for p in prompts) / len(prompts) > 0.2
    # a padded constant answer clears the length check but not the topic check
    assert sum(p.reward(padded) > 0 for p in prompts) == sum(tb.addresses_topic(padded, p.topic) for p in prompts) == 0


def test_committed_testbed_is_scored_with_the_gate_and_keeps_the_ranking() -> None:
    """The committed pairs carry the current reward; the gate keeps most of the old ranking."""
    from effalign.testbed.audit import reward_gate_audit

    root = tb.default_dir()
    sheet = json.loads((root / "datasheet.json").read_text())
    assert sheet["reward_version"] == tb.REWARD_VERSION == 2
    train = tb.read_jsonl_gz(root / "train.jsonl.gz")
    for row in train[::20]:
        m = row["metadata"]
        assert m["reward_version"] == 2
        assert tb.reward_from_metadata(m, row["chosen"][0]["content"]) == m["chosen_reward"]
        assert tb.reward_from_metadata(m, row["rejected"][0]["content"]) == m["rejected_reward"]
    samples = tb.read_jsonl_gz(root / "samples.jsonl.gz")
    audit = reward_gate_audit(samples[::8])  # every 8th prompt: 400 prompts, 50 of them evaluation prompts
    for g in audit["gaming"].values():
        assert g["before"]["eval_all"] > 0.2 and g["after"]["eval_all"] == 0.0
    rank = audit["ranking"]
    assert rank["spearman_all_samples"] > 0.7  # old and new rewards agree on the order of the samples
    assert rank["old_pairs_kept_share"]["chosen_above"] > 0.7  # most old chosen answers still beat their rejected
    assert rank["old_pairs_kept_share"]["reversed"] < 0.06
    assert sheet["reward_gate"]["ranking"]["spearman_all_samples"] > 0.7


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_checkers_total_on_arbitrary_text(text: str) -> None:
    for constraint, _, _ in CASES:
        r = tb.gold_reward([constraint], text)
        assert r in (0.0, 1.0)
        assert tb.gold_reward([constraint], text + "  \n") == r or constraint.kind in {"max_chars"}


def test_conflicts_excluded() -> None:
    assert not compatible(C("max_words", {"n": 30}), C("min_words", {"n": 50}))
    assert not compatible(C("json_object", {"keys": ["a", "b"]}), C("bullets", {"n": 3}))
    assert not compatible(C("lowercase", {}), C("capital_words", {"n": 2}))
    assert not compatible(C("end_with", {"phrase": "The end."}), C("end_question", {}))
    assert not compatible(C("avoid_word", {"word": "the"}), C("end_with", {"phrase": "The end."}))
    assert not compatible(C("avoid_word", {"word": "tea"}), C("word_frequency", {"word": "tea", "n": 2}))
    assert not compatible(C("no_commas", {}), C("json_object", {"keys": ["a", "b"]}))
    assert not compatible(C("quotation", {}), C("start_with", {"phrase": "Sure"}))
    assert compatible(C("lowercase", {}), C("start_with", {"phrase": "Sure"}))
    assert compatible(C("include_word", {"word": "tea"}), C("max_words", {"n": 30}))


def test_prompt_generator_deterministic_distinct_and_prefix_stable() -> None:
    cfg = tb.TestbedConfig()
    prompts = tb.generate_prompts(cfg.n_prompts, seed=cfg.seed, n_eval=cfg.n_eval)
    assert len(prompts) >= 3000 and cfg.n_eval >= 300
    assert len({p.instruction for p in prompts}) == len(prompts) == len({p.id for p in prompts})
    assert [p.split for p in prompts].count("eval") == cfg.n_eval
    assert all(p.split == "eval" for p in prompts[: cfg.n_eval])
    assert all(1 <= len(p.constraints) <= 3 and tb.all_compatible(p.constraints) for p in prompts)
    assert {c.kind for p in prompts for c in p.constraints} == set(REGISTRY)
    again = tb.generate_prompts(500, seed=cfg.seed, n_eval=cfg.n_eval)
    assert [p.to_metadata() for p in again] == [p.to_metadata() for p in prompts[:500]]
    assert tb.generate_prompts(50, seed=cfg.seed + 1)[0].instruction != prompts[0].instruction
    spec = tb.PromptSpec.from_metadata(json.loads(json.dumps(prompts[7].to_metadata())))
    assert spec == prompts[7]


def test_reward_api_on_metadata() -> None:
    p = tb.generate_prompts(3, seed=5, n_eval=1)[0]
    meta = p.to_metadata()
    resp = "Some answer."
    expected = p.reward(resp)
    assert tb.reward_from_metadata(meta, resp) == expected
    assert tb.reward_from_metadata(json.dumps(meta), resp) == expected
    assert tb.reward_from_metadata({"prompt": [], "metadata": meta}, resp) == expected
    msgs = [[{"role": "assistant", "content": resp}]]
    assert tb.gold_reward_fn([meta], [resp]) == tb.gold_reward_fn([meta], msgs) == [expected]
    assert tb.trl_reward_func(prompts=[p.messages()], completions=msgs, metadata=[meta]) == [expected]
    with pytest.raises(ValueError):
        tb.gold_reward_fn([meta], [])


def test_select_pair() -> None:
    assert select_pair([0.5, 1.0, 0.0, 1.0]) == (1, 2)
    assert select_pair([0.5, 0.5]) is None
    assert select_pair([0.0, 0.5, 0.0], ["", "a", "b"]) == (1, 2)
    assert select_pair([0.0, 0.5], [" ", "a"]) is None


def test_append_log_tolerates_torn_tail_and_duplicates(tmp_path: Path) -> None:
    log = AppendLog(tmp_path / "x.jsonl")
    log.append([{"id": "a", "v": 1}, {"id": "b", "v": 2}])
    log.append([{"id": "a", "v": 99}])
    with open(log.path, "ab") as fh:
        fh.write(b'{"id": "c", "v"')  # crash mid-write
    assert {k: r["v"] for k, r in log.read().items()} == {"a": 1, "b": 2}
    log.repair()
    log.append([{"id": "c", "v": 3}])
    assert {k: r["v"] for k, r in log.read().items()} == {"a": 1, "b": 2, "c": 3}
    assert log.path.read_bytes().count(b"\n") == 4


# --------------------------------------------------------------------------- generation with a tiny model


@pytest.fixture(scope="module")
def tiny() -> tuple[object, object]:
    models = pytest.importorskip("effalign.models")
    return models.tiny_policy(seed=0)


SMALL = dict(n_prompts=6, n_eval=2, k=2, batch_size=2, max_new_tokens=6, policy="tiny-random", dtype="float32")


def _read(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def test_build_resume_and_assembly(tiny: tuple[object, object], tmp_path: Path) -> None:
    model, tok = tiny
    full = tb.build_testbed(tmp_path / "full", model=model, tokenizer=tok, progress=False, **SMALL)
    assert full.complete and full.n_sampled == 6 and full.n_greedy == 2
    assert full.n_train_pairs + full.n_tied_train == 4 and full.n_eval_pairs + full.n_tied_eval == 2

    # interrupted build: a few prompts per call, plus a torn line, then resume
    out = tmp_path / "resumed"
    part = tb.build_testbed(out, model=model, tokenizer=tok, progress=False, limit=1, **SMALL)
    assert not part.complete and part.n_greedy == 2 and part.n_sampled == 2  # whole batches
    with open(out / "work" / "samples.jsonl", "ab") as fh:
        fh.write(b'{"id": "tb-torn", "respo')
    tb.build_testbed(out, model=model, tokenizer=tok, progress=False, limit=2, **SMALL)
    done = tb.build_testbed(out, model=model, tokenizer=tok, progress=False, **SMALL)
    assert done.complete
    lines = (out / "work" / "samples.jsonl").read_text().splitlines()
    assert len(lines) == len({json.loads(x)["id"] for x in lines}) == 6
    for name in ("train.jsonl.gz", "eval.jsonl.gz", "eval_prompts.jsonl.gz"):
        assert (out / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name

    def untimed(rows: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in ("seconds", "greedy")} for r in rows]

    assert untimed(_read(out / "samples.jsonl.gz")) == untimed(_read(tmp_path / "full" / "samples.jsonl.gz"))

    rows = _read(out / "samples.jsonl.gz")
    assert all(len(r["responses"]) == 2 and len(r["scores"]) == 2 for r in rows)
    for r in _read(out / "train.jsonl.gz") + _read(out / "eval.jsonl.gz"):
        m = r["metadata"]
        assert m["chosen_reward"] > m["rejected_reward"]
        assert tb.reward_from_metadata(m, r["chosen"][0]["content"]) == m["chosen_reward"]
        assert r["prompt"][0]["content"] == m["instruction"]
    evals = _read(out / "eval_prompts.jsonl.gz")
    assert len(evals) == 2 and all(e["metadata"]["greedy"] is not None for e in evals)
    assert {e["metadata"]["id"] for e in evals}.isdisjoint({r["metadata"]["id"] for r in _read(out / "train.jsonl.gz")})
    sheet = json.loads((out / "datasheet.json").read_text())
    assert sheet["complete"] and sheet["counts"]["prompts"] == 6
    assert "Reference policy, greedy" in (out / "DATASHEET.md").read_text()

    # changed generation settings are refused; a fresh work/ is re-seeded from samples.jsonl.gz
    with pytest.raises(ValueError):
        tb.build_testbed(out, model=model, tokenizer=tok, progress=False, **{**SMALL, "seed": 1})
    import shutil

    shutil.rmtree(out / "work")
    again = tb.build_testbed(out, model=None, tokenizer=None, progress=False, **SMALL)  # no model needed
    assert again.complete
    assert (out / "train.jsonl.gz").read_bytes() == (tmp_path / "full" / "train.jsonl.gz").read_bytes()


def test_assembly_from_work_log_and_load_preferences(tmp_path: Path) -> None:
    """Assemble from hand-written samples (no model: limit=0) and read them with effalign.data."""
    data = pytest.importorskip("effalign.data")
    cfg = {**SMALL, "n_prompts": 20, "n_eval": 5}
    prompts = tb.generate_prompts(cfg["n_prompts"], seed=tb.TestbedConfig().seed, n_eval=cfg["n_eval"])
    def long(p: tb.PromptSpec) -> str:  # passes the content gate: long, varied, names the topic
        return f"Some facts about {p.topic}, " + "water, " * 60 + "and that is all there is to say, why?"

    AppendLog(tmp_path / "work" / "samples.jsonl").append(
        [{"id": p.id, "responses": ["", "ok", long(p)], "n_tokens": [1, 2, 96], "finished": [True, True, False]} for p in prompts]
    )
    report = tb.build_testbed(tmp_path, limit=0, progress=False, **cfg)
    assert not report.complete and report.n_greedy == 0 and report.n_sampled == 20
    n_pairs = sum(1 for p in prompts if p.reward("ok") != p.reward(long(p)))
    assert report.n_train_pairs + report.n_eval_pairs == n_pairs > 0
    rows = _read(tmp_path / "train.jsonl.gz")
    assert all(r["metadata"]["scores"][0] == 0 and r["metadata"]["rejected_index"] != 0 for r in rows)
    pairs = data.load_preferences(str(tmp_path / "train.jsonl.gz"))
    assert len(pairs) == report.n_train_pairs and pairs[0].metadata["constraints"]
    assert tb.reward_from_metadata(pairs[0].metadata, pairs[0].chosen_text) == pairs[0].metadata["chosen_reward"]
    assert "incomplete" in (tmp_path / "DATASHEET.md").read_text()
