"""Building the book safely: all-or-nothing execution, build stamps, refusal to render broken or
stale chapters (lib/effalign/book.py). Small synthetic notebooks in a throwaway repository; two
papermill executions of one-line notebooks (a few seconds), no model and no Jupyter Book run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import nbformat
import pytest

from effalign import book, cli
from effalign.book import BookError, BuildStamp, build_stamp, check_executed, execute_notebooks, read_stamp

TOC = """format: jb-book
root: book/intro
chapters:
  - file: book/executed/a_ok
  - file: book/executed/b_more
"""


def _notebook(*sources: str, parameters: str = "x = 1") -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, *(nbformat.v4.new_code_cell(s) for s in sources)]
    return nb


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """A throwaway repository: two notebooks, a profile, a table of contents, one commit."""
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "p.yaml").write_text("common: {x: 2}\n")
    (tmp_path / "_toc.yml").write_text(TOC)
    nbformat.write(_notebook("print('ok', x)"), tmp_path / "notebooks" / "a_ok.ipynb")
    nbformat.write(_notebook("y = x + 1"), tmp_path / "notebooks" / "b_more.ipynb")
    (tmp_path / ".gitignore").write_text("book/executed/\n_build/\nbook/.executed.executing-*/\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return tmp_path


def _executed(root: Path, name: str, nb: nbformat.NotebookNode, stamp: BuildStamp | None) -> Path:
    path = root / "book" / "executed" / f"{name}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    if stamp is not None:
        nb.metadata["effalign"] = {"commit": stamp.commit, "dirty": stamp.dirty, "profile": stamp.profile}
    nbformat.write(nb, path)
    return path


def test_execution_stamps_commit_profile_and_parameters(repo):
    written = execute_notebooks("p", root=repo, overrides={"x": 5})
    assert [p.name for p in written] == ["a_ok.ipynb", "b_more.ipynb"]
    stamp = read_stamp(written[0])
    assert stamp == BuildStamp(commit=_git(repo, "rev-parse", "HEAD"), dirty=False, profile="p")
    nb = nbformat.read(written[0], as_version=4)
    assert nb.metadata["effalign"]["overrides"] == {"x": 5}
    assert "ok 5" in "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert check_executed(repo, build_stamp("p", repo)) == []
    assert not list((repo / "book").glob(".executed.executing-*")), "the staging folder is removed"


def test_failed_execution_leaves_executed_folder_as_it_was(repo):
    old = _executed(repo, "a_ok", _notebook("print('previous build')"), build_stamp("p", repo))
    before = old.read_bytes()
    nbformat.write(_notebook("raise ValueError('broken on purpose')"), repo / "notebooks" / "b_more.ipynb")
    with pytest.raises(BookError) as err:
        execute_notebooks("p", root=repo)
    message = str(err.value)
    assert "b_more.ipynb failed" in message and "ValueError: broken on purpose" in message
    assert "left as it was" in message
    assert old.read_bytes() == before, "a_ok succeeded but must not replace the previous build's copy"
    assert not (repo / "book" / "executed" / "b_more.ipynb").exists()
    assert (repo / "_build" / "failed" / "b_more.ipynb").exists(), "the failed notebook is kept for inspection"
    assert not list((repo / "book").glob(".executed.executing-*"))


def test_unknown_override_and_notebook_are_refused(repo):
    with pytest.raises(BookError, match="declares the parameter"):
        execute_notebooks("p", root=repo, overrides={"not_a_parameter": 1})
    with pytest.raises(BookError, match="no notebook named"):
        execute_notebooks("p", root=repo, only=["zz"])


def test_check_executed_accepts_a_matching_build(tmp_path):
    (tmp_path / "_toc.yml").write_text(TOC)
    stamp = BuildStamp(commit="abc123", dirty=False, profile="default")
    for name in ("a_ok", "b_more"):
        _executed(tmp_path, name, _notebook("1"), stamp)
    assert check_executed(tmp_path, stamp) == []


def test_check_executed_refuses_errors_tracebacks_and_missing_chapters(tmp_path):
    (tmp_path / "_toc.yml").write_text(TOC)
    stamp = BuildStamp(commit="abc123", dirty=False, profile="default")
    nb = _notebook("1", "2")
    nb.cells[1].outputs = [nbformat.v4.new_output("error", ename="KeyError", evalue="'gen_kl'", traceback=["..."])]
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stderr",
                                                  text="Traceback (most recent call last):\n  File ...\n")]
    _executed(tmp_path, "a_ok", nb, stamp)
    problems = check_executed(tmp_path, stamp)
    assert any("a_ok.ipynb, cell 1" in p and "KeyError" in p for p in problems), problems
    assert any("cell 2" in p and "traceback" in p for p in problems), problems
    assert any("b_more.ipynb is missing" in p for p in problems), problems


def test_check_executed_refuses_other_commit_profile_or_no_stamp(tmp_path):
    (tmp_path / "_toc.yml").write_text(TOC)
    _executed(tmp_path, "a_ok", _notebook("1"), BuildStamp(commit="0ld0ld0ld0", dirty=False, profile="smoke"))
    _executed(tmp_path, "b_more", _notebook("1"), None)
    problems = check_executed(tmp_path, BuildStamp(commit="abc123", dirty=False, profile="default"))
    assert any("profile 'smoke', not 'default'" in p for p in problems), problems
    assert any("commit 0ld0ld0ld0" in p and "abc123" in p for p in problems), problems
    assert any("b_more.ipynb has no build stamp" in p for p in problems), problems


def test_cli_book_no_execute_refuses_a_broken_chapter(repo, monkeypatch, capsys):
    stamp = build_stamp("p", repo)
    nb = _notebook("1")
    nb.cells[1].outputs = [nbformat.v4.new_output("error", ename="RuntimeError", evalue="boom", traceback=[])]
    _executed(repo, "a_ok", nb, stamp)
    _executed(repo, "b_more", _notebook("1"), stamp)
    monkeypatch.setattr(book, "repo_dir", lambda: repo)
    rendered, run = [], subprocess.run

    def no_jupyter_book(cmd, *args, **kwargs):  # git may run; Jupyter Book must not
        if "jupyter-book" in str(cmd[0]):
            rendered.append(cmd)
        return run(cmd, *args, **kwargs) if cmd[0] == "git" else subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(book.subprocess, "run", no_jupyter_book)
    code = cli.main(["book", "--no-execute", "--profile", "p"])
    err = capsys.readouterr().err
    assert code != 0
    assert "refusing to render" in err and "a_ok.ipynb, cell 1 ([ ]) shows an error: RuntimeError: boom" in err
    assert "python -m effalign book --profile p" in err
    assert not rendered


def test_cli_book_rejects_parameters_without_execution():
    assert cli.main(["book", "--no-execute", "-p", "seeds", "[3]"]) != 0


def test_dotted_parameter_changes_one_entry_of_a_mapping():
    from effalign.book import notebook_parameters

    profile = {"profile": "p", "common": {"gpu_dpo": {"track": "testbed", "fraction": 0.1, "cpu": {"data": {}}},
                                          "seeds": [0, 1]}, "notebooks": {}}
    params = notebook_parameters(profile, "04", {"gpu_dpo", "seeds"},
                                 {"gpu_dpo.fraction": 0.05, "gpu_dpo.cpu.experiment": "hh_subsets", "seeds": [3]})
    assert params["gpu_dpo"] == {"track": "testbed", "fraction": 0.05, "cpu": {"data": {}, "experiment": "hh_subsets"}}
    assert params["seeds"] == [3]
    assert profile["common"]["gpu_dpo"]["fraction"] == 0.1, "the profile itself is not changed"
    with pytest.raises(BookError, match="not a mapping"):
        notebook_parameters(profile, "04", None, {"seeds.first": 1})
