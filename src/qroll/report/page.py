"""The report page: one self-contained HTML file (inline CSS, figures as base64 PNG, no URL).

Every string that comes from the tracking store (experiment, model and run names, tags, the
store's and the data's URIs) is HTML-escaped, and ``://`` is written as ``&#58;//`` so that the
page holds no address a browser, mail client or link checker would follow; it reads the same.
"""

from __future__ import annotations

import base64
import html
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from qroll.report.data import ModelSummary, ReportData, WindowSummary

__all__ = ["FigureImage", "png_size", "render_page"]


@dataclass(frozen=True, kw_only=True, slots=True)
class FigureImage:
    """One drawn figure.

    Attributes
    ----------
    name : str
        The file stem (``cumulative_return`` → ``cumulative_return.png``).
    title : str
        A short title.
    caption : str
        One line saying how to read it.
    png : bytes
        The image.
    """

    name: str
    title: str
    caption: str
    png: bytes


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height in pixels of a PNG, read from its header.

    >>> header = b"\\x89PNG\\r\\n\\x1a\\n\\x00\\x00\\x00\\rIHDR"
    >>> png_size(header + (640).to_bytes(4, "big") + (480).to_bytes(4, "big"))
    (640, 480)
    """
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    width, height = struct.unpack(">II", png[16:24])
    return int(width), int(height)


def _text(value: object) -> str:
    return html.escape(str(value), quote=True).replace("://", "&#58;//")


def _num(value: float, kind: str) -> str:
    """A table cell: the formatted number, with the exact value in ``data-value``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '<td class="num na" title="not recorded">—</td>'
    if kind == "pct":
        shown = f"{value:.2%}"
    elif kind == "ic":
        shown = f"{value:.4f}"
    elif kind == "ratio":
        shown = f"{value:.2f}"
    elif kind == "int":
        shown = f"{value:,.0f}"
    else:  # seconds: a ridge fit takes hundredths, a boosted one minutes
        shown = f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}"
    sign = " neg" if value < 0 and kind in ("pct", "ic", "ratio") else ""
    return f'<td class="num{sign}" data-value="{value!r}">{shown}</td>'


def _span(seg: tuple[str, str] | None) -> str:
    if seg is None:
        return '<td class="na">—</td>'
    return f'<td class="span">{_text(seg[0])} – {_text(seg[1] or "open")}</td>'


def _run(run_id: str, name: str = "") -> str:
    if not run_id:
        return '<td class="na" title="merged here from the window runs">from windows</td>'
    tip = f"{name} ({run_id})" if name else run_id
    return f'<td class="run"><code title="{_text(tip)}">{_text(run_id[:12])}</code></td>'


COMPARISON_HEAD = [
    ("Model", ""), ("Merged run", "the run holding the merged signal and its backtest"),
    ("Span", "first and last day of the merged signal"), ("Days", "trading days with a prediction"),
    ("IC", "mean daily Pearson correlation of score and label"), ("ICIR", "mean / std of the daily IC"),
    ("Rank IC", "mean daily Spearman correlation"), ("Rank ICIR", "mean / std of the daily Rank IC"),
    ("Excess return<br>without cost", "annualised (238 days, summed) excess return over the benchmark"),
    ("Excess return<br>with cost", "the same after trading costs"),
    ("Information ratio<br>with cost", "annualised mean / std of the daily excess return with cost"),
    ("Max drawdown<br>with cost", "deepest fall of the summed excess return with cost below its peak"),
    ("Benchmark", "what the excess return is measured against"),
]


NUMERIC_FROM = 3  # the comparison's columns from "Days" on hold numbers


def _th(name: str, tip: str, numeric: bool) -> str:
    cls = ' class="num"' if numeric else ""
    title = f' title="{html.escape(tip)}"' if tip else ""
    return f"<th{cls}{title}>{name}</th>"


def _bench(text: str) -> str:
    return f'<td class="bench">{_text(text)}</td>' if text else '<td class="na">—</td>'


def _comparison(models: Sequence[ModelSummary]) -> str:
    # One benchmark for every model (the usual case) is said once above the table, not per row.
    per_row = len({m.benchmark for m in models}) > 1
    columns = COMPARISON_HEAD if per_row else COMPARISON_HEAD[:-1]
    head = "".join(_th(name, tip, i >= NUMERIC_FROM and name != "Benchmark")
                   for i, (name, tip) in enumerate(columns))
    rows = []
    for m in models:
        rows.append(
            f'<tr data-model="{_text(m.model)}"><th scope="row">{_text(m.model)}</th>{_run(m.run_id)}'
            f'<td class="span">{_text(m.start)} – {_text(m.end)}</td>{_num(m.days, "int")}'
            f'{_num(m.ic, "ic")}{_num(m.icir, "ic")}{_num(m.rank_ic, "ic")}{_num(m.rank_icir, "ic")}'
            f'{_num(m.excess_without_cost, "pct")}{_num(m.excess_with_cost, "pct")}'
            f'{_num(m.information_ratio_with_cost, "ratio")}{_num(m.max_drawdown_with_cost, "pct")}'
            f'{_bench(m.benchmark) if per_row else ""}</tr>')
    shared = ""
    backtested = any(not math.isnan(m.excess_with_cost) for m in models)
    if not per_row and backtested and models[0].benchmark:
        shared = f'<p class="hint" id="benchmark">Benchmark: <b>{_text(models[0].benchmark)}</b></p>'
    return (f'{shared}<div class="scroll"><table id="comparison-table"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _windows(windows: Sequence[WindowSummary]) -> str:
    with_bt = any(not math.isnan(w.excess_with_cost) for w in windows)
    names = ["Model", "Test", "Train", "Valid", "IC", "Rank IC", "Best iteration", "Fit (s)"]
    names += ["Excess return<br>with cost"] if with_bt else []
    head = "".join(_th(n, "", i >= 4) for i, n in enumerate(names))
    head += _th("Run", "hover for the run's name", False)
    rows = []
    for w in windows:
        extra = _num(w.excess_with_cost, "pct") if with_bt else ""
        rows.append(
            f'<tr data-run-id="{_text(w.run_id)}"><th scope="row">{_text(w.model)}</th>{_span(w.test)}'
            f'{_span(w.train)}{_span(w.valid)}{_num(w.ic, "ic")}{_num(w.rank_ic, "ic")}'
            f'{_num(w.best_iteration, "int")}{_num(w.fit_seconds, "s")}{extra}'
            f"{_run(w.run_id, w.run_name)}</tr>")
    return f'<table id="window-table"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _figure(fig: FigureImage) -> str:
    width, height = png_size(fig.png)
    data = base64.b64encode(fig.png).decode("ascii")
    return (f'<figure id="fig-{_text(fig.name)}"><img src="data:image/png;base64,{data}" '
            f'alt="{_text(fig.title)}" width="{width}" height="{height}">'
            f'<figcaption><b>{_text(fig.title)}.</b> {_text(fig.caption)}</figcaption></figure>')


CSS = """
:root { --ink: #1d2330; --muted: #5b6475; --line: #dfe3ea; --band: #f6f8fb; --accent: #1f5fa8; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff;
  font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 24px; margin: 0 0 6px; }
h2 { font-size: 18px; margin: 34px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 8px 0 0;
  color: var(--muted); }
.meta dt { font-weight: 600; } .meta dd { margin: 0; overflow-wrap: anywhere; }
code { font: 12px/1.3 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.notes { background: #fff8e1; border: 1px solid #f1d48a; border-radius: 6px; padding: 8px 16px;
  margin-top: 18px; }
.notes h2 { border: 0; margin: 6px 0; font-size: 15px; } .notes ul { margin: 4px 0 8px; padding-left: 20px; }
.hint { color: var(--muted); margin: 0 0 10px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { padding: 5px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
thead th { background: var(--band); font-weight: 600; vertical-align: bottom; white-space: nowrap;
  border-bottom: 2px solid var(--line); }
thead th[title] { cursor: help; text-decoration: underline dotted #9aa3b2; }
tbody tr:nth-child(even) { background: #fbfcfd; }
tbody tr:hover { background: #eef4fb; }
th.num, td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.neg { color: #b3261e; } td.na { color: #9aa3b2; text-align: center; }
td.span { white-space: nowrap; font-variant-numeric: tabular-nums; }
td.run { font-size: 12px; color: var(--muted); } td.bench { min-width: 9em; }
nav.toc { margin: 6px 0 0; color: var(--muted); } nav.toc a { color: var(--accent); margin-right: 12px; }
figure { margin: 22px 0 30px; }
figure img { display: block; width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); margin-top: 6px; } figcaption b { color: var(--ink); }
.missing { color: var(--muted); font-style: italic; }
footer { color: var(--muted); font-size: 12px; margin-top: 36px; }
"""

# Once the page has loaded, record how many figures actually decoded, so a headless browser's
# DOM dump shows whether every embedded image is usable.
SCRIPT = """
window.addEventListener("load", function () {
  var images = document.images, loaded = 0;
  for (var i = 0; i < images.length; i++) {
    if (images[i].complete && images[i].naturalWidth > 0) { loaded++; }
  }
  document.body.dataset.figures = loaded + "/" + images.length;
});
"""


def render_page(data: ReportData, figures: Sequence[FigureImage], missing: Sequence[str] = (),
                version: str = "") -> str:
    """The report as one HTML document.

    Parameters
    ----------
    data : ReportData
        What the tables show.
    figures : sequence of FigureImage
        Embedded in this order.
    missing : sequence of str
        Figures that could not be drawn, each with why; shown where the figures are.
    version : str
        qroll's version, for the footer.

    Returns
    -------
    str
        The page; it references no file and no URL.
    """
    merged = sum(1 for m in data.models if m.run_id)
    meta = [
        ("Experiment", _text(data.experiment)),
        ("Tracking store", f"<code>{_text(data.tracking_uri)}</code>"),
        ("Data source", f"<code>{_text(data.data_source)}</code>" if data.data_source else "unknown"),
        ("Runs", f"{len(data.windows)} window runs, {merged} merged runs, {len(data.models)} models"),
        ("Generated", f"{data.generated_at:%Y-%m-%d %H:%M:%S} UTC"),
    ]
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>qroll report: {_text(data.experiment)}</title><style>{CSS}</style></head>",
        f"<body><main><header><h1>Rolling experiment report: {_text(data.experiment)}</h1>",
        '<dl class="meta">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in meta) + "</dl>",
    ]
    if figures:
        links = "".join(f'<a href="#fig-{_text(f.name)}">{_text(f.title)}</a>' for f in figures)
        parts.append(f'<nav class="toc">Figures: {links}<a href="#windows">Windows table</a></nav>')
    parts.append("</header>")
    if data.notes:
        items = "".join(f"<li>{_text(note)}</li>" for note in data.notes)
        parts.append(f'<section class="notes" id="notes"><h2>What is missing</h2><ul>{items}</ul></section>')
    parts += [
        '<section id="comparison"><h2>Model comparison</h2>',
        '<p class="hint">Each model\'s windows merged into one signal over the whole test period. '
        "Returns are annualised sums of daily excess returns over the benchmark (238 trading days a "
        "year, as Qlib); hover a column name for its definition.</p>",
        f"{_comparison(data.models)}</section>",
        '<section id="figures"><h2>Figures</h2>',
    ]
    parts += [f'<p class="missing">{_text(line)}</p>' for line in missing]
    parts += [_figure(f) for f in figures]
    parts += [
        "</section>",
        '<section id="windows"><h2>Windows</h2>',
        f'<p class="hint">One row per window run ({len(data.windows)}): its segments and test-period '
        "results; hover a run id for the full id.</p>",
        f'<div class="scroll">{_windows(data.windows)}</div></section>',
        f"<footer>Written by qroll {_text(version)}.</footer></main>",
        f"<script>{SCRIPT}</script></body></html>\n",
    ]
    return "\n".join(parts)
