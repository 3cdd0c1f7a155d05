"""The experiment report, written from a real experiment (real training, real MLflow store, real
backtest) and read back as a reader would: the HTML parsed, the PNGs decoded, the page opened in
headless Chromium where the machine has it.

Expected numbers come from the store (the merged runs' metrics and artifacts, the window runs'
``task`` artifacts) or are recomputed here with Qlib's own formulas, never from the report's code.
"""

from __future__ import annotations

import base64
import io
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from report_fixture import make_report_experiment

from qroll.errors import CollectError
from qroll.record import ExpManager
from qroll.report import FIGURE_NAMES, write_report
from qroll.report.derived import group_returns
from qroll.report.page import png_size

pytestmark = pytest.mark.slow

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PORTFOLIO_FIGURES = {"cumulative_return", "excess_return", "drawdown", "turnover"}
SCREENSHOT = Path(__file__).resolve().parents[2] / ".." / "shared" / "tools" / "screenshot"


class Page(HTMLParser):
    """The parts of the report a test reads: tables (rows of cells), images, notes, all text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: dict[str, list[dict]] = {}
        self.images: list[dict[str, str]] = []
        self.notes: list[str] = []
        self.missing: list[str] = []
        self._table: str | None = None
        self._row: dict | None = None
        self._cell: dict | None = None
        self._in_head = False
        self._li = self._p = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        if tag == "table":
            self._table = attrs.get("id", "")
            self.tables[self._table] = []
        elif tag == "thead":
            self._in_head = True
        elif tag == "tbody":
            self._in_head = False
        elif tag == "tr" and self._table and not self._in_head:
            self._row = {"attrs": attrs, "cells": []}
        elif tag in ("td", "th") and self._row is not None:
            self._cell = {"attrs": attrs, "text": ""}
        elif tag == "code" and self._cell is not None:
            self._cell["code_title"] = attrs.get("title", "")
        elif tag == "img":
            self.images.append(attrs)
        elif tag == "li":
            self._li = True
            self.notes.append("")
        elif tag == "p" and "missing" in attrs.get("class", ""):
            self._p = True
            self.missing.append("")

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row["cells"].append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "li":
            self._li = False
        elif tag == "p":
            self._p = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data
        if self._li:
            self.notes[-1] += data
        if self._p:
            self.missing[-1] += data


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("report")
    mp.setenv("QROLL_HOME", str(home / "home"))
    yield home, make_report_experiment(home)
    mp.undo()


@pytest.fixture(scope="session")
def full(store, tmp_path_factory):
    home, exp = store
    lines: list[str] = []
    index = write_report(exp, tmp_path_factory.mktemp("out") / "report", progress=lines.append)
    return exp, index, Page(index.read_text(encoding="utf-8")), lines


def window_runs(exp):
    return [r for r in exp.list_recorders(status={"FINISHED"}) if "qroll.kind" not in r.tags]


def merged_runs(exp):
    return {r.tags["qroll.model"]: r for r in exp.list_recorders(status={"FINISHED"})
            if r.tags.get("qroll.kind") == "merged"}


def pct(value: float) -> str:
    return f"{value * 100:.2f}%"


def test_the_comparison_table_has_one_row_per_model_with_the_merged_runs_metrics(full):
    exp, _, page, _ = full
    merged = merged_runs(exp)
    rows = {row["attrs"]["data-model"]: row["cells"] for row in page.tables["comparison-table"]}
    assert set(rows) == set(merged) == {"LGBModel", "LinearModel"}
    for model, rec in merged.items():
        cells = rows[model]
        texts = [c["text"].strip() for c in cells]
        m = rec.metrics
        assert texts[0] == model and cells[1]["code_title"] == rec.id
        pred = rec.load_object("pred.pkl")
        assert int(texts[3]) == pred.index.get_level_values("datetime").nunique()
        assert texts[4:8] == [f"{m[k]:.4f}" for k in ("IC", "ICIR", "Rank IC", "Rank ICIR")]
        assert [float(c["attrs"]["data-value"]) for c in cells[4:8]] == [m[k] for k in ("IC", "ICIR", "Rank IC",
                                                                                        "Rank ICIR")]
        assert texts[8] == pct(m["1day.excess_return_without_cost.annualized_return"])
        assert texts[9] == pct(m["1day.excess_return_with_cost.annualized_return"])
        assert texts[10] == f"{m['1day.excess_return_with_cost.information_ratio']:.2f}"
        # The max drawdown, recomputed from the stored daily report with Qlib's formula.
        report = rec.load_object("portfolio_analysis/report_normal_1day.pkl")
        summed = (report["return"] - report["bench"] - report["cost"]).cumsum()
        mdd = float((summed - summed.cummax()).min())
        assert float(cells[11]["attrs"]["data-value"]) == pytest.approx(mdd, abs=1e-12)
        assert texts[11] == pct(mdd) and mdd < 0
        assert len(texts) == 12  # one benchmark for all: said once, above the table
    assert 'Benchmark: <b>equal-weighted mean of market all</b>' in full[1].read_text(encoding="utf-8")


def test_the_window_table_has_one_row_per_window_run_with_its_segments(full):
    exp, _, page, _ = full
    runs = {r.id: r for r in window_runs(exp)}
    rows = page.tables["window-table"]
    assert len(rows) == len(runs) == 6
    assert {row["attrs"]["data-run-id"] for row in rows} == set(runs)
    for row in rows:
        rec = runs[row["attrs"]["data-run-id"]]
        texts = [c["text"].strip() for c in row["cells"]]
        segments = rec.load_object("task")["dataset"]["kwargs"]["segments"]
        spans = [" – ".join(f"{pd.Timestamp(p):%Y-%m-%d}" for p in segments[k]) for k in ("test", "train", "valid")]
        assert texts[0] == rec.tags["qroll.model"]
        assert texts[1:4] == spans
        assert texts[4] == f"{rec.metrics['IC']:.4f}" and texts[5] == f"{rec.metrics['Rank IC']:.4f}"
        if rec.tags["qroll.model"] == "LGBModel":
            assert texts[6] == f"{rec.metrics['best_iteration']:,.0f}"
        else:
            assert texts[6] == "—"  # a ridge has no boosting rounds
        assert float(row["cells"][7]["attrs"]["data-value"]) == rec.metrics["fit_seconds"]
    tests = [row["cells"][1]["text"] for row in rows]
    assert tests == sorted(tests[:3]) + sorted(tests[3:])  # by model, then test start


def test_every_figure_is_an_embedded_png_also_written_to_disk(full):
    _, index, page, lines = full
    assert len(page.images) == len(FIGURE_NAMES) == 8
    for img, name in zip(page.images, FIGURE_NAMES, strict=True):
        src = img["src"]
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert png[:8] == PNG_MAGIC
        width, height = png_size(png)
        assert 900 <= width <= 1400 and 250 <= height <= 3000, (name, width, height)
        assert (int(img["width"]), int(img["height"])) == (width, height)
        assert (index.parent / f"{name}.png").read_bytes() == png
        from PIL import Image

        with Image.open(io.BytesIO(png)) as im:
            im.load()
            assert im.size == (width, height)
            assert len(im.convert("RGB").getcolors(1 << 20) or []) > 20, f"{name} looks blank"
    assert any(line.startswith("drawing") for line in lines) and lines[-1] == "writing the page"
    assert sorted(p.name for p in index.parent.iterdir()) == sorted(["index.html"] + [f"{n}.png" for n in
                                                                                      FIGURE_NAMES])


def test_the_page_references_nothing_outside_itself(full):
    _, index, _, _ = full
    text = index.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    assert not re.search(r"<(link|iframe|object|embed)\b", text)
    assert re.findall(r'\bsrc="([^"]{0,22})', text) == ["data:image/png;base64,"] * 8
    assert "url(" not in text and "@import" not in text
    assert "sqlite&#58;//" in text  # the store is named, its scheme written so no one follows it


def test_strings_from_the_store_are_escaped(store, tmp_path):
    home, exp = store
    nasty = "exp <script>alert(1)</script> & co"
    copy = make_report_experiment(home, name=nasty, backtest=False, windows_from=exp)
    rec = merged_runs(copy)["LGBModel"]
    rec.set_tags(**{"qroll.benchmark": "<b>index</b>"})
    text = write_report(copy, tmp_path / "esc").read_text(encoding="utf-8")
    assert "<script>alert" not in text and "<b>index</b>" not in text
    assert "exp &lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in text
    page = Page(text)
    benchmarks = {row["attrs"]["data-model"]: row["cells"][-1]["text"] for row in page.tables["comparison-table"]}
    # Without a backtest a merged run has no benchmark.
    assert benchmarks == {"LGBModel": "<b>index</b>", "LinearModel": "—"}
    assert text.count("<script>") == 1  # the page's own


def test_merged_runs_without_a_backtest_give_a_page_that_says_so(store, tmp_path):
    home, exp = store
    copy = make_report_experiment(home, name="no backtest", backtest=False, windows_from=exp)
    out = tmp_path / "report"
    write_report(exp, out)  # a full report first: its portfolio figures must not linger
    page = Page(write_report(copy, out).read_text(encoding="utf-8"))
    assert len(page.images) == 4
    assert not any((out / f"{name}.png").exists() for name in PORTFOLIO_FIGURES)
    assert {p.stem for p in out.glob("*.png")} == set(FIGURE_NAMES) - PORTFOLIO_FIGURES
    assert page.notes == ["No portfolio backtest for LGBModel and LinearModel: the run config has backtest: null "
                          "(the merged runs hold no portfolio_analysis/); give it a backtest section and run "
                          "`qroll run` again to get one."]
    assert "no model has a portfolio backtest" in page.missing[0]
    for row in page.tables["comparison-table"]:
        texts = [c["text"].strip() for c in row["cells"]]
        assert texts[8:12] == ["—"] * 4 and texts[4] != "—"
    assert len(page.tables["window-table"]) == 6


def test_an_experiment_without_merged_runs_is_reported_from_its_windows(store, full, tmp_path):
    home, exp = store
    copy = make_report_experiment(home, name="old experiment", merged=False, windows_from=exp)
    page = Page(write_report(copy, tmp_path / "old").read_text(encoding="utf-8"))
    assert len(page.notes) == 1
    assert page.notes[0].startswith("No merged run for LGBModel and LinearModel: run `qroll run` again")
    assert len(page.images) == 4 and len(page.tables["window-table"]) == 6
    merged = merged_runs(exp)
    for row in page.tables["comparison-table"]:
        cells = row["cells"]
        assert cells[1]["text"].strip() == "from windows"
        # The same windows merged here give what the merged run's SigAnaRecord logged.
        metrics = merged[row["attrs"]["data-model"]].metrics
        for cell, key in zip(cells[4:8], ("IC", "ICIR", "Rank IC", "Rank ICIR"), strict=True):
            assert float(cell["attrs"]["data-value"]) == pytest.approx(metrics[key], rel=1e-9)


def test_an_experiment_without_finished_runs_is_an_error_that_says_what_to_do(store, tmp_path):
    home, _ = store
    empty = ExpManager(f"sqlite:///{home}/mlflow.db").get_exp("never trained")
    with pytest.raises(CollectError, match=r"'never trained' .* no finished run .*qroll run"):
        write_report(empty, tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()


def qlib_group_return(pred_label: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    """Qlib's ``_group_return`` (analysis_model_performance.py), line for line, without plotting."""
    pred_label = pred_label.sort_values("score", ascending=False, kind="mergesort")
    drop = pred_label.dropna(subset=["score"])
    t_df = pd.DataFrame({
        f"G{i + 1}": drop.groupby(level="datetime")["label"].apply(
            lambda x, i=i: x[len(x) // n * i: len(x) // n * (i + 1)].mean())
        for i in range(n)})
    t_df.index = pd.to_datetime(t_df.index)
    t_df["long-short"] = t_df["G1"] - t_df[f"G{n}"]
    t_df["long-average"] = t_df["G1"] - pred_label.groupby(level="datetime")["label"].mean()
    return t_df.dropna(how="all")


def test_quantile_groups_are_qlibs_group_return(store):
    _, exp = store
    rec = merged_runs(exp)["LGBModel"]
    pred, label = rec.load_object("pred.pkl"), rec.load_object("label.pkl")
    pl = pd.DataFrame({"score": pred["score"], "label": label.iloc[:, 0].reindex(pred.index)})
    pl.iloc[::7, 0] = math.nan  # rows without a score are dropped before the groups are cut
    ours, qlib = group_returns(pl), qlib_group_return(pl)
    pd.testing.assert_frame_equal(ours, qlib, check_names=False, check_freq=False, rtol=1e-12)
    assert (ours["long-short"].cumsum().iloc[-1]) > 0  # the fixture's signal does rank stocks


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("chromium is not installed (apt-get install chromium); the browser checks need it")
    return path


def test_every_figure_loads_in_headless_chromium(full):
    _, index, _, _ = full
    out = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
         "--dump-dom", index.as_uri()], capture_output=True, text=True, timeout=120, check=False)
    assert 'data-figures="8/8"' in out.stdout, out.stderr[-2000:]


def test_a_screenshot_of_the_page_is_not_blank(full, tmp_path):
    chromium()
    if not SCREENSHOT.exists():
        pytest.skip(f"the screenshot tool is not at {SCREENSHOT}")
    _, index, _, _ = full
    shot = tmp_path / "page.png"
    subprocess.run([str(SCREENSHOT), str(index), str(shot), "1400", "2400"], check=True, timeout=150,
                   capture_output=True)
    from PIL import Image

    with Image.open(shot) as im:
        colors = im.convert("RGB").getcolors(1 << 22) or []
    assert len(colors) > 200, "the screenshot is (nearly) blank"
    white = sum(count for count, rgb in colors if rgb == (255, 255, 255))
    assert white < 0.9 * sum(count for count, _ in colors)
