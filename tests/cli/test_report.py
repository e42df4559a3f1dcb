"""The summary and plan tables on a plain 80-column console: stage and status never
wrap, the reason gets the room it needs first, long artifact paths are shortened in
their middle (first folder and file name kept)."""
from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from tfbuild.cli.report import Reporter, shorten_path
from tfbuild.engine.reasons import Reason
from tfbuild.engine.results import BuildResult, StageResult

STORE = Path("/home/someone/projects/a-rather-long-project-name/build/store")
HASH = "5e2ebd6de44ae0c60f7d6988"


def render(report: dict, width: int = 80) -> str:
    out = io.StringIO()
    Reporter(Console(file=out, width=width, color_system=None, highlight=False, emoji=False)).summary(report)
    return out.getvalue()


def table_lines(text: str) -> list:
    return [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]


def rows(text: str) -> list:
    """The header's and each table row's cells, stripped (a wrapped row gives several)."""
    return [[c.strip() for c in line.replace("┃", "│").strip().strip("│").split("│")]
            for line in text.splitlines() if line[:1] in "┃│"]


def stage(name, status, reasons, artifact=None, link=None, size=None, seconds=0.2) -> StageResult:
    return StageResult(name, status, tuple(reasons), "f" * 24, seconds=seconds,
                       artifact=Path(artifact) if artifact else None, size=size,
                       link=Path(link) if link else None)


NOT_BUILT = [Reason("not-built")]


def store_build(ok: bool = True) -> dict:
    """A build whose artifacts are shown by their store paths (no links: a failed build)."""
    if ok:
        stages = (stage("train", "built", NOT_BUILT, STORE / "train" / HASH, size=360857, seconds=4.6),
                  stage("tflite", "built", NOT_BUILT, STORE / "tflite" / HASH / "model.tflite", size=21402))
    else:
        stages = (stage("train", "built", NOT_BUILT, STORE / "train" / HASH, size=360857, seconds=4.6),
                  stage("placeholder", "fresh", [Reason("up-to-date")], STORE / "placeholder" / HASH,
                        size=465510, seconds=0.0),
                  stage("freeze", "failed", [Reason("failed", "freeze: output 'logits' is not in the "
                                                              "graph; the graph's outputs are probs, "
                                                              "dense/BiasAdd: set freeze.outputs")]),
                  stage("tflite", "skipped", [Reason("not-reached")], seconds=0.0))
    return BuildResult("tiny_tflite", ok, stages).to_json()


def test_shorten_path_keeps_the_first_folder_and_the_file_name():
    path = f"build/store/tflite/{HASH}/model.tflite"
    assert shorten_path(path, 80) == path
    assert shorten_path(path, 26) == "build/store/…/model.tflite"
    assert shorten_path(path, 20) == "build/…/model.tflite"
    assert shorten_path(path, 15) == "…/model.tflite"
    assert shorten_path(path, 8) == "mode…ite" and len(shorten_path(path, 8)) == 8
    assert shorten_path(f"{STORE}/tflite/{HASH}/model.tflite", 22) == "/home/…/model.tflite"
    assert shorten_path(path, 40) == "build/store/tflite/…/model.tflite"
    assert shorten_path(f"{STORE}/tflite/{HASH}/model.tflite", 60).endswith(f"/{HASH}/model.tflite")
    for width in range(1, 60):
        assert len(shorten_path(str(STORE / "tflite" / HASH / "model.tflite"), width)) <= width


def test_long_store_paths_are_shortened_not_the_other_columns():
    text = render(store_build())
    assert all(len(line) <= 80 for line in text.splitlines()[:-1]), text   # last: the artifact line
    assert rows(text)[0][:4] == ["stage", "status", "reason", "time"]
    cells = rows(text)[1:]
    assert [r[:4] for r in cells] == [["train", "built", "not built yet", "4.6s"],
                                      ["tflite", "built", "not built yet", "0.2s"]], text
    assert "…/model.tflite (20.9 KB)" in cells[1][4] and str(STORE) not in cells[1][4], text


def test_a_failed_build_still_shows_stage_status_and_reason():
    text = render(store_build(ok=False))
    lines = table_lines(text)
    assert lines and all(len(line) <= 80 for line in lines), text
    cells = rows(text)
    assert [r[0] for r in cells if r[0]] == ["stage", "train", "placeholder", "freeze", "tflite"], text
    assert [r[1] for r in cells if r[1]] == ["status", "built", "fresh", "failed", "skipped"], text
    # the skipped stage's reason, wrapped at words, reads whole
    skipped = cells[[r[0] for r in cells].index("tflite"):]
    assert " ".join(r[2] for r in skipped).strip() == "not reached: an earlier stage failed", text
    assert "(352.4 KB)" in text and "(454.6 KB)" in text
    assert "freeze failed: freeze: output 'logits' is not in the graph" in text


def test_a_long_reason_wraps_at_words_and_the_artifact_keeps_its_file_name():
    report = BuildResult("tiny_tflite", True, (
        stage("freeze", "fresh", [Reason("up-to-date")], STORE / "freeze" / HASH / "frozen.pb",
              "build/tiny_tflite/freeze/frozen.pb", 164659, 0.0),
        stage("tflite", "built", [Reason("setting", "tflite.precision", "FP32", "FP16")],
              STORE / "tflite" / HASH / "model.tflite", "build/tiny_tflite/tflite/model.tflite", 85299, 2.2),
    )).to_json()
    text = render(report)
    assert all(len(line) <= 80 for line in table_lines(text)), text
    cells = rows(text)
    assert " ".join(r[2] for r in cells[2:]).split() == "tflite.precision changed: FP32 → FP16".split()
    assert any(r[2] == "tflite.precision" or r[2].startswith("tflite.precision ") for r in cells), text
    assert cells[2][4].endswith("model.tflite (83.3 KB)"), text


# The README's tour, captured at 80 columns: tables that fit stay as they were.
README_FIRST_BUILD = """\
tiny_tflite: ok (in build/tiny_tflite/)
┏━━━━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━━━━━┳━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┓
┃ stage       ┃ status ┃ reason        ┃ time ┃ artifact, size                 ┃
┡━━━━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━━━━━╇━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┩
│ train       │ built  │ not built yet │ 4.6s │ train (350.0 KB)               │
│ placeholder │ built  │ not built yet │ 0.4s │ placeholder (454.6 KB)         │
│ freeze      │ built  │ not built yet │ 0.2s │ freeze/frozen.pb (160.8 KB)    │
│ tflite      │ built  │ not built yet │ 0.2s │ tflite/model.tflite (129.9 KB) │
└─────────────┴────────┴───────────────┴──────┴────────────────────────────────┘"""


def test_a_table_that_fits_is_unchanged(tmp_path):
    files = {"train": ("", 358400, 4.6), "placeholder": ("", 465510, 0.4),
             "freeze": ("frozen.pb", 164659, 0.2), "tflite": ("model.tflite", 133018, 0.2)}
    report = BuildResult("tiny_tflite", True, tuple(
        stage(name, "built", NOT_BUILT, tmp_path / "build/store" / name / HASH / file,
              Path("build/tiny_tflite", name, file), size, seconds)
        for name, (file, size, seconds) in files.items())).to_json()
    text = render(report)
    assert [line.rstrip() for line in text.splitlines()[:9]] == README_FIRST_BUILD.splitlines(), text


def test_the_plan_table_fits_and_wraps_only_the_reason():
    out = io.StringIO()
    long = ("code changed: tfbuild/tf/measure.py; input freeze artifact changed; "
            "freeze.outputs changed: [probs] → [probs, logits]")
    Reporter(Console(file=out, width=80, color_system=None)).plan("a_target_with_a_long_name", [
        SimpleNamespace(name="placeholder_with_a_long_name", stale=True, reason="not built yet"),
        SimpleNamespace(name="freeze", stale=True, reason=long)])
    text = out.getvalue()
    assert all(len(line) <= 80 for line in table_lines(text)), text
    cells = rows(text)
    assert cells[1] == ["placeholder_with_a_long_name", "stale", "not built yet"], text
    assert [r[1] for r in cells[2:]] == ["stale"] + [""] * (len(cells) - 3)
    assert " ".join(r[2] for r in cells[2:]).split() == long.split()


@pytest.mark.parametrize("width", [40, 60, 100])
def test_other_widths_do_not_crash(width):
    for report in (store_build(), store_build(ok=False)):
        assert "tiny_tflite" in render(report, width)


def test_a_real_build_fits_80_columns(tfbuild, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    first = tfbuild("target=tiny_tflite")
    assert first.code == 0, first.err
    again = tfbuild("target=tiny_tflite", "tflite.precision=fp16")
    assert again.code == 0, again.err
    for run in (first, again):
        lines = table_lines(run.out)
        assert lines and all(len(line) <= 80 for line in lines), run.out
        assert all(r[0] != "" or r[1] == "" for r in rows(run.out))   # stage, status: one line
    assert sum("not built yet" in line for line in first.out.splitlines()) == 4, first.out
    assert any("tflite.precision" in r[2] for r in rows(again.out)), again.out   # not cut in a word
    assert "model.tflite (" in again.out
