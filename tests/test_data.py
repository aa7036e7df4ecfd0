"""The preference-data layer: four row formats, bad inputs, drops, the real HH file, the split."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from effalign.data import (
    DataError,
    PreferenceData,
    detect_format,
    load_preferences,
    resolve_source,
    split_by_prompt,
    write_jsonl_gz,
)

HH_ROW = {
    "chosen": "\n\nHuman: How do I bake bread?\n\nAssistant: Mix flour, water, yeast and salt, then knead.",
    "rejected": "\n\nHuman: How do I bake bread?\n\nAssistant: No idea.",
}
TRL_ROW = {
    "prompt": [{"role": "user", "content": "Name a colour."}],
    "chosen": [{"role": "assistant", "content": "Blue."}],
    "rejected": [{"role": "assistant", "content": "Seven."}],
}
PLAIN_ROW = {"prompt": "Name a fruit.", "chosen": "An apple.", "rejected": "A chair."}
UF_ROW = {
    "prompt": "Say hi.",
    "prompt_id": "abc",
    "chosen": [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi!"}],
    "rejected": [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "No."}],
    "score_chosen": 9.0,
    "score_rejected": 2.0,
}


def write_jsonl(path: Path, rows: list, gz: bool = False) -> Path:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "row, fmt", [(HH_ROW, "hh"), (TRL_ROW, "trl"), (PLAIN_ROW, "plain"), (UF_ROW, "ultrafeedback")]
)
def test_each_format_is_detected_and_parsed(tmp_path, row, fmt):
    data = load_preferences(write_jsonl(tmp_path / "d.jsonl", [row, row]))
    assert data.report.format == fmt
    assert len(data) == 2 and data.report.rows_read == 2 and data.report.rows_dropped == 0
    pair = data[0]
    assert pair.prompt[-1]["role"] == "user"
    assert [m["role"] for m in pair.chosen] == ["assistant"]
    assert pair.chosen != pair.rejected
    trl = pair.to_trl()
    assert set(trl) == {"prompt", "chosen", "rejected"}


def test_hh_prompt_is_the_shared_dialogue(tmp_path):
    row = {
        "chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke.\n\nAssistant: Why did the chicken...",
        "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke.\n\nAssistant: No.",
    }
    pair = load_preferences(write_jsonl(tmp_path / "d.jsonl", [row]))[0]
    assert [m["role"] for m in pair.prompt] == ["user", "assistant", "user"]
    assert pair.prompt[-1]["content"] == "Tell me a joke."
    assert pair.chosen_text == "Why did the chicken..." and pair.rejected_text == "No."


def test_ultrafeedback_scores_kept_in_metadata(tmp_path):
    pair = load_preferences(write_jsonl(tmp_path / "d.jsonl", [UF_ROW]))[0]
    assert pair.metadata["score_chosen"] == 9.0 and pair.metadata["prompt_id"] == "abc"


def test_gz_json_and_parquet_sources(tmp_path):
    assert len(load_preferences(write_jsonl(tmp_path / "d.jsonl.gz", [PLAIN_ROW] * 3, gz=True))) == 3
    (tmp_path / "d.json").write_text(json.dumps([TRL_ROW, TRL_ROW]))
    assert load_preferences(tmp_path / "d.json").report.format == "trl"
    pd = pytest.importorskip("pandas")
    pd.DataFrame([PLAIN_ROW, PLAIN_ROW]).to_parquet(tmp_path / "d.parquet")
    data = load_preferences(tmp_path / "d.parquet")
    assert len(data) == 2 and data.report.format == "plain"


def test_trl_round_trip_and_dataset(tmp_path):
    data = load_preferences(write_jsonl(tmp_path / "d.jsonl", [TRL_ROW, PLAIN_ROW | {"prompt": [{"role": "user", "content": "x"}], "chosen": [{"role": "assistant", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]}]))
    out = tmp_path / "rt.jsonl.gz"
    write_jsonl_gz(out, data.to_trl_rows())
    again = load_preferences(out)
    assert [p.to_trl() for p in again] == data.to_trl_rows()
    ds = data.to_dataset()
    assert ds.column_names == ["prompt", "chosen", "rejected"] and len(ds) == 2


def test_useless_rows_are_dropped_and_counted(tmp_path):
    same = dict(PLAIN_ROW, rejected=PLAIN_ROW["chosen"])
    mismatch = {"chosen": HH_ROW["chosen"], "rejected": "\n\nHuman: Other question?\n\nAssistant: No idea."}
    empty = {"chosen": "\n\nHuman: Hi?\n\nAssistant: ", "rejected": "\n\nHuman: Hi?\n\nAssistant: Hello."}
    data = load_preferences(write_jsonl(tmp_path / "a.jsonl", [HH_ROW, mismatch, empty, HH_ROW]))
    assert len(data) == 2
    assert data.report.dropped == {"prompt_mismatch": 1, "empty_response": 1}
    assert data.report.dropped_rows["prompt_mismatch"] == [2]
    assert "4 rows read, 2 kept, 2 dropped" in str(data.report)
    plain = load_preferences(write_jsonl(tmp_path / "b.jsonl", [PLAIN_ROW, same]))
    assert plain.report.dropped == {"chosen_equals_rejected": 1}
    with pytest.raises(DataError, match=r"b\.jsonl, row 2: dropped row \(chosen_equals_rejected\) with strict=True"):
        load_preferences(tmp_path / "b.jsonl", strict=True)


BAD_INPUTS = [
    ([PLAIN_ROW, '{"prompt": "x", "chosen": '], r"row 2: malformed JSON"),
    ([PLAIN_ROW, {"prompt": "x", "chosen": "y"}], r"row 2: missing field 'rejected'"),
    ([PLAIN_ROW, {"prompt": "x", "chosen": "y", "rejected": 3}], r"row 2: field 'rejected' must be str, got int"),
    ([PLAIN_ROW, {"prompt": "x", "chosen": "  ", "rejected": "z"}], r"row 2: field 'chosen' is empty text"),
    ([{"question": "x", "answer": "y"}], r"row 1: unknown row format .*supported: hh .*trl .*plain .*ultrafeedback"),
    ([TRL_ROW, dict(TRL_ROW, chosen=[{"content": "no role"}])], r"row 2: field 'chosen' item 0 must be an object with 'role' and 'content'"),
    ([TRL_ROW, dict(TRL_ROW, chosen=[{"role": "robot", "content": "x"}])], r"row 2: field 'chosen' item 0 has unknown role 'robot'"),
    ([PLAIN_ROW, [1, 2, 3]], r"row 2: expected a JSON object, got list"),
    ([HH_ROW, {"chosen": "preamble\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"}], r"row 2: field 'chosen' has text before the first"),
    ([HH_ROW, {"chosen": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c", "rejected": "\n\nHuman: a\n\nAssistant: c"}], r"row 2: field 'chosen' does not end with an assistant turn"),
    ([TRL_ROW, dict(TRL_ROW, prompt=[])], r"row 2: field 'prompt' is an empty list"),
]


@pytest.mark.parametrize("rows, message", BAD_INPUTS)
def test_bad_inputs_name_file_row_and_reason(tmp_path, rows, message):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError, match=message) as err:
        load_preferences(path)
    assert "bad.jsonl" in str(err.value)


def test_bad_files(tmp_path):
    with pytest.raises(DataError, match="missing.jsonl: file not found"):
        load_preferences(tmp_path / "missing.jsonl")
    (tmp_path / "d.json").write_text('{"rows": 1}')
    with pytest.raises(DataError, match=r"d\.json: a \.json file must hold a list of rows"):
        load_preferences(tmp_path / "d.json")
    (tmp_path / "e.json").write_text("[{]")
    with pytest.raises(DataError, match=r"e\.json: malformed JSON .* line 1"):
        load_preferences(tmp_path / "e.json")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="empty.jsonl: no rows found"):
        load_preferences(tmp_path / "empty.jsonl")
    (tmp_path / "bad.jsonl.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match=r"bad\.jsonl\.gz: cannot read file"):
        load_preferences(tmp_path / "bad.jsonl.gz")


def test_detect_format_lists_supported_formats():
    with pytest.raises(DataError, match="supported: hh"):
        detect_format({"text": "x"})


def test_hub_source_fails_clearly_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="could not load from the Hugging Face hub"):
        load_preferences("nobody/no-such-dataset-effalign")


def test_shared_hh_file(hh_path):
    data = load_preferences("hh-harmless")
    assert resolve_source("hh-harmless") == hh_path
    assert data.report.format == "hh"
    assert data.report.rows_read == 2312
    assert data.report.rows_kept + data.report.rows_dropped == 2312
    assert data.report.dropped == {"empty_response": 4, "prompt_mismatch": 5}
    assert len(data) == 2303
    pool, ev = split_by_prompt(data, eval_size=300, seed=0)
    assert len(pool) + len(ev) == len(data)
    assert 300 <= len(ev) < 310
    from effalign.data import normalise_prompt

    assert not {normalise_prompt(p) for p in pool} & {normalise_prompt(p) for p in ev}


def test_split_is_deterministic_prompt_disjoint_and_order_free(tmp_path):
    rows = [{"prompt": f"question {i % 40}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(200)]
    data = load_preferences(write_jsonl(tmp_path / "d.jsonl", rows))
    pool, ev = split_by_prompt(data, eval_size=0.2, seed=3)
    assert {p.prompt_text for p in pool}.isdisjoint({p.prompt_text for p in ev})
    assert len(ev) == 40  # 8 prompts x 5 rows each
    rev = PreferenceData(list(reversed(data.pairs)))
    pool2, ev2 = split_by_prompt(rev, eval_size=0.2, seed=3)
    assert sorted(p.chosen_text for p in ev) == sorted(p.chosen_text for p in ev2)
    _, ev3 = split_by_prompt(data, eval_size=0.2, seed=4)
    assert sorted(p.chosen_text for p in ev) != sorted(p.chosen_text for p in ev3)
    with pytest.raises(ValueError, match="eval_size"):
        split_by_prompt(data, eval_size=0)
