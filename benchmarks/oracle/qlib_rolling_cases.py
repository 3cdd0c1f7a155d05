"""Generate the Qlib oracle fixture for qroll's rolling task generation.

This script records what Qlib 0.9.7 itself returns (or raises) for ``RollingGen``,
``MultiHorizonGenBase``, ``TimeAdjuster`` and ``qlib.utils.transform_end_date`` over a grid of
inputs. The result is written to ``tests/fixtures/qlib_rolling_oracle.json``. qroll's tests compare
against that file, so they never need Qlib. qroll never imports qlib; only this script does, and
only inside the Qlib virtual environment.

How to run it (from the repository root, with the Qlib venv rather than qroll's)::

    .venv-qlib/bin/python benchmarks/oracle/qlib_rolling_cases.py
    .venv-qlib/bin/python benchmarks/oracle/qlib_rolling_cases.py --out /tmp/oracle.json
    .venv-qlib/bin/python benchmarks/oracle/qlib_rolling_cases.py --check-only  # no write

What it does:

1. It builds two throw-away Qlib provider directories in a temporary directory. Both hold
   ``calendars/day.txt``, the Mon-Fri business days 2005-01-04..2020-09-25 from
   ``pandas.bdate_range``. The ``future`` one also holds ``calendars/day_future.txt``, the
   business days 2005-01-04..2021-12-31. ``qlib.init`` and ``D.calendar`` need nothing else (no
   instruments or features), which was checked.
2. For each variant it starts a worker subprocess that runs ``qlib.init(provider_uri=<dir>,
   region="cn")`` and then all cases. Qlib caches calendars per process, so separate processes
   make sure that each variant really loads its own calendar. Each worker checks that the loaded
   calendars have the expected lengths.
3. It merges the cases, runs self-checks against the [verified] tables of the reference notes
   (``qlib_rolling.md`` §1.1, §1.5, §1.6, §4.2), and writes the JSON file: one top-level key per
   line and one case per line, so diffs stay readable. Self-check results are printed and
   recorded in the header. A mismatch makes the exit status 1 unless it is a known, explained
   one (``known_mismatch``); the fixture always records what Qlib actually did.

The JSON schema is documented in the header's ``schema`` field (the ``SCHEMA`` constant below).
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

import pandas as pd

# The case grid lives beside this script (the script's folder is on sys.path when it runs).
from oracle_grid import (  # noqa: E402
    BASE_TEMPLATE,
    DEFAULT_OUT,
    FUTURE_DAYS,
    HORIZON_LABEL_FORMAT,
    LEN_FUTURE,
    LEN_NORMAL,
    NORMAL_DAYS,
    REPO_ROOT,
    SCHEMA,
    VARIANTS,
    all_specs,
    build_template,
    enc,
    tdesc,
    to_py_arg,
)

# --------------------------------------------------------------------------------------------
# Worker (imports qlib)


def _error(e: BaseException) -> dict:
    return {"type": type(e).__name__, "message": str(e)}


def _segments_ok(segs: Any) -> bool:
    if not isinstance(segs, dict):
        return False
    for v in segs.values():
        if not (isinstance(v, tuple) and len(v) == 2):
            return False
        if not all(x is None or isinstance(x, pd.Timestamp) for x in v):
            return False
    return True


def _handler_end(task: dict) -> tuple[Any, str]:
    handler = task["dataset"]["kwargs"]["handler"]
    if not isinstance(handler, dict):
        return None, "handler_not_dict"
    kw = handler.get("kwargs", {})
    if "end_time" not in kw:
        return None, "absent"
    v = kw["end_time"]
    return enc(v), type(v).__name__


def _strip_varying(task: dict) -> dict:
    t = copy.deepcopy(task)
    t["dataset"]["kwargs"].pop("segments", None)
    handler = t["dataset"]["kwargs"].get("handler")
    if isinstance(handler, dict):
        handler.get("kwargs", {}).pop("end_time", None)
    return t


def _py_template(tmpl: dict, container: str = "tuple", end_as_ts: bool = False) -> dict:
    t = copy.deepcopy(tmpl)
    segs = t["dataset"]["kwargs"]["segments"]
    conv = tuple if container == "tuple" else list
    for k in list(segs):
        segs[k] = conv(segs[k])
    if end_as_ts:
        t["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"] = pd.Timestamp(
            t["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"]
        )
    return t


def run_worker(variant: str, provider: str, out_path: str) -> None:
    import numpy as np
    import qlib

    qlib.init(provider_uri=provider, region="cn", logging_level=logging.ERROR)
    from qlib.data import D
    from qlib.utils import transform_end_date
    from qlib.workflow.task.gen import MultiHorizonGenBase, RollingGen, handler_mod
    from qlib.workflow.task.utils import TimeAdjuster

    def cal_info(cals: Any) -> dict:
        return {"start": enc(cals[0]), "end": enc(cals[-1]), "count": len(cals)}

    loaded = {
        "D.calendar(future=False)": cal_info(D.calendar(future=False)),
        "D.calendar(future=True)": cal_info(D.calendar(future=True)),
    }
    expect_future_len = LEN_FUTURE if variant == "future" else LEN_NORMAL
    assert loaded["D.calendar(future=False)"]["count"] == LEN_NORMAL, loaded
    assert loaded["D.calendar(future=True)"]["count"] == expect_future_len, loaded
    assert len(TimeAdjuster().cals) == expect_future_len

    class RecordingRollingGen(RollingGen):
        """RollingGen that also records each finished task (to see how far a failing call got)."""

        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.finished: list[dict] = []

        def _update_task_segs(self, task: dict, segs: dict) -> None:
            super()._update_task_segs(task, segs)
            self.finished.append(copy.deepcopy(task))

    class LabelHorizonGen(MultiHorizonGenBase):
        def set_horizon(self, task: dict, hr: int) -> None:
            task["dataset"]["kwargs"]["handler"]["kwargs"]["label"] = [
                HORIZON_LABEL_FORMAT.format(hr_plus_1=hr + 1)
            ]

    def rolling_summary(task: dict) -> dict:
        end, end_type = _handler_end(task)
        return {
            "segments": {k: [enc(v[0]), enc(v[1])] for k, v in task["dataset"]["kwargs"]["segments"].items()},
            "handler_end_time": end,
            "handler_end_time_type": end_type,
        }

    def run_rolling(inputs: dict) -> dict:
        gk = inputs["gen_kwargs"]
        template = _py_template(
            build_template(inputs),
            inputs["segments_container"],
            inputs["handler_end_time_as_timestamp"],
        )
        snapshot = copy.deepcopy(template)
        gen = RecordingRollingGen(
            step=gk["step"],
            rtype=gk["rtype"],
            trunc_days=gk["trunc_days"],
            test_key=gk["test_key"],
            train_key=gk["train_key"],
            ds_extra_mod_func=handler_mod if gk["ds_extra_mod_func"] == "handler_mod" else None,
        )
        out: dict[str, Any] = {}
        try:
            tasks = gen.generate(template)
        except Exception as e:  # noqa: BLE001 - record any Qlib exception
            out["outcome"] = "error"
            out["error"] = _error(e)
            tasks = gen.finished
            out["tasks_before_error"] = [rolling_summary(t) for t in tasks]
        else:
            out["outcome"] = "ok"
            out["tasks"] = [rolling_summary(t) for t in tasks]
            assert out["tasks"] == [rolling_summary(t) for t in gen.finished]
        out["template_unmodified"] = template == snapshot
        out["segments_are_tuples_of_timestamp_or_none"] = all(
            _segments_ok(t["dataset"]["kwargs"]["segments"]) for t in tasks
        )
        out["only_segments_and_handler_end_changed"] = all(
            _strip_varying(t) == _strip_varying(snapshot) for t in tasks
        )
        return out

    def run_multi_horizon(inputs: dict) -> dict:
        template = _py_template(build_template(inputs))
        snapshot = copy.deepcopy(template)
        gen = LabelHorizonGen(horizon=inputs["horizon"], label_leak_n=inputs["label_leak_n"])
        out: dict[str, Any] = {}
        tasks: list[dict] = []
        try:
            tasks = gen.generate(template)
        except Exception as e:  # noqa: BLE001
            out["outcome"] = "error"
            out["error"] = _error(e)
            out["tasks_before_error"] = []
        else:
            out["outcome"] = "ok"
            out["tasks"] = []
            for hr, t in zip(inputs["horizon"], tasks, strict=True):
                s = rolling_summary(t)
                out["tasks"].append(
                    {
                        "horizon": hr,
                        "segments": s["segments"],
                        "label": t["dataset"]["kwargs"]["handler"]["kwargs"].get("label"),
                        "handler_end_time": s["handler_end_time"],
                        "handler_end_time_type": s["handler_end_time_type"],
                    }
                )
        out["template_unmodified"] = template == snapshot
        out["segments_are_tuples_of_timestamp_or_none"] = all(
            _segments_ok(t["dataset"]["kwargs"]["segments"]) for t in tasks
        )
        return out

    def run_ta(inputs: dict) -> dict:
        out: dict[str, Any] = {}
        try:
            ta = TimeAdjuster(**inputs["ta_kwargs"])
            args = [to_py_arg(a, i in inputs["tuple_args"]) for i, a in enumerate(inputs["args"])]
            assert repr(tuple(args)) == inputs["args_repr"]
            if inputs["method"] == "len_cals":
                res: Any = len(ta.cals)
            else:
                res = getattr(ta, inputs["method"])(*args, **inputs["kwargs"])
        except Exception as e:  # noqa: BLE001
            out["outcome"] = "error"
            out["error"] = _error(e)
        else:
            if isinstance(res, np.integer):
                res = int(res)
            out["outcome"] = "ok"
            out["result"] = enc(res)
            out["result_type"] = tdesc(res)
        return out

    def run_ted(inputs: dict) -> dict:
        out: dict[str, Any] = {}
        try:
            res = transform_end_date(inputs["end_date"])
        except Exception as e:  # noqa: BLE001
            out["outcome"] = "error"
            out["error"] = _error(e)
        else:
            out["outcome"] = "ok"
            out["result"] = enc(res)
            out["result_type"] = tdesc(res)
        return out

    runners = {
        "rolling_gen": run_rolling,
        "multi_horizon": run_multi_horizon,
        "time_adjuster": run_ta,
        "transform_end_date": run_ted,
    }
    cases = []
    for spec in all_specs():
        case: dict[str, Any] = {
            "id": f"{spec['kind']}/{variant}/{spec['id']}",
            "kind": spec["kind"],
            "calendar": variant,
        }
        if "note" in spec:
            case["note"] = spec["note"]
        case["inputs"] = spec["inputs"]
        case.update(runners[spec["kind"]](spec["inputs"]))
        cases.append(case)
    with open(out_path, "w") as f:
        json.dump({"loaded": loaded, "cases": cases}, f)


# --------------------------------------------------------------------------------------------
# Parent: build providers, run workers, self-check, write


def write_provider(root: Path, with_future: bool) -> None:
    (root / "calendars").mkdir(parents=True)
    (root / "calendars" / "day.txt").write_text("".join(d.strftime("%Y-%m-%d") + "\n" for d in NORMAL_DAYS))
    if with_future:
        (root / "calendars" / "day_future.txt").write_text(
            "".join(d.strftime("%Y-%m-%d") + "\n" for d in FUTURE_DAYS)
        )


def self_checks(by_id: dict[str, dict]) -> list[dict]:
    """Compare with the [verified] tables of qlib_rolling.md. Returns check records."""
    checks: list[dict] = []

    def check(name: str, expected: Any, getter: Any, known: str | None = None) -> None:
        """Record one comparison. `known` explains a mismatch already understood, which then
        does not make the script fail (it is still recorded with ok=False)."""
        try:
            actual = getter()
        except Exception as e:  # noqa: BLE001
            actual = f"<{type(e).__name__}: {e}>"
        rec = {"check": name, "expected": expected, "actual": actual, "ok": expected == actual}
        if known and not rec["ok"]:
            rec["known_mismatch"] = known
        checks.append(rec)

    def rg(cal: str, cid: str) -> dict:
        return by_id[f"rolling_gen/{cal}/{cid}"]

    def win(cal: str, cid: str, i: int) -> dict:
        return rg(cal, cid)["tasks"][i]["segments"]

    d40 = "grid/test=default/step=40/expanding/trunc=None"
    s40 = "grid/test=default/step=40/sliding/trunc=None"
    t20 = "grid/test=default/step=20/expanding/trunc=21"
    first = {
        "train": ["2008-01-01", "2014-12-31"],
        "valid": ["2015-01-01", "2016-12-30"],
        "test": ["2017-01-02", "2017-02-24"],
    }
    for cal in VARIANTS:
        check(f"1.5 RollingGen() #tasks [{cal}]", 24, lambda cal=cal: len(rg(cal, d40)["tasks"]))
        check(f"1.5 RollingGen() first [{cal}]", first, lambda cal=cal: win(cal, d40, 0))
        check(
            f"1.5 RollingGen() second [{cal}]",
            {
                "train": ["2008-01-01", "2015-02-25"],
                "valid": ["2015-02-26", "2017-02-24"],
                "test": ["2017-02-27", "2017-04-21"],
            },
            lambda cal=cal: win(cal, d40, 1),
        )
        check(f"1.5 RollingGen(40, SD) #tasks [{cal}]", 24, lambda cal=cal: len(rg(cal, s40)["tasks"]))
        check(f"1.5 RollingGen(40, SD) first [{cal}]", first, lambda cal=cal: win(cal, s40, 0))
        check(
            f"1.5 RollingGen(40, SD) 2nd train [{cal}]",
            ["2008-02-26", "2015-02-25"],
            lambda cal=cal: win(cal, s40, 1)["train"],
        )
        check(
            f"1.5 RollingGen(40, SD) last train [{cal}]",
            ["2011-07-12", "2018-07-11"],
            lambda cal=cal: win(cal, s40, -1)["train"],
        )
        check(f"1.5 RollingGen(20, trunc 21) #tasks [{cal}]", 47, lambda cal=cal: len(rg(cal, t20)["tasks"]))
        check(
            f"1.5 RollingGen(20, trunc 21) first valid/test [{cal}]",
            [["2015-01-01", "2016-12-02"], ["2017-01-02", "2017-01-27"]],
            lambda cal=cal: [win(cal, t20, 0)["valid"], win(cal, t20, 0)["test"]],
        )
        check(
            f"1.5 RollingGen(20, trunc 21) second valid/test [{cal}]",
            [["2015-01-29", "2016-12-30"], ["2017-01-30", "2017-02-24"]],
            lambda cal=cal: [win(cal, t20, 1)["valid"], win(cal, t20, 1)["test"]],
        )
        check(
            f"1.5 RollingGen(20, trunc 21) last valid end/test [{cal}]",
            ["2020-06-12", ["2020-07-13", "2020-08-07"]],
            lambda cal=cal: [win(cal, t20, -1)["valid"][1], win(cal, t20, -1)["test"]],
        )
        check(
            f"4.2 #10 jan2020 step 10 [{cal}]",
            [["2020-01-01", "2020-01-14"], ["2020-01-15", "2020-01-28"], ["2020-01-29", "2020-02-11"]],
            lambda cal=cal: [
                t["segments"]["test"]
                for t in rg(cal, "grid/test=jan2020/step=10/expanding/trunc=None")["tasks"]
            ],
        )
        for cid in (d40, s40, t20):
            check(
                f"template unmodified {cid} [{cal}]",
                True,
                lambda cal=cal, cid=cid: rg(cal, cid)["template_unmodified"],
            )
        mh = by_id[f"multi_horizon/{cal}/h=[1,5]/lln=2/default"]
        check(
            f"1.6 MultiHorizon [1,5] valid ends [{cal}]",
            ["2016-12-28", "2016-12-22"],
            lambda mh=mh: [t["segments"]["valid"][1] for t in mh["tasks"]],
        )
    check(
        "1.5 RollingGen() last window [future]",
        {
            "segments": {
                "train": ["2008-01-01", "2018-07-11"],
                "valid": ["2018-07-12", "2020-07-10"],
                "test": ["2020-07-13", "2020-09-04"],
            },
            "handler_end_time": "2020-09-04",
        },
        lambda: {k: rg("future", d40)["tasks"][-1][k] for k in ("segments", "handler_end_time")},
    )
    check(
        "1.5 RollingGen() handler ends: only the last window extended [future]",
        ["str"] * 23 + ["Timestamp"],
        lambda: [t["handler_end_time_type"] for t in rg("future", d40)["tasks"]],
    )
    r550 = "corner/ref_table/step=550/sliding"
    check(
        "1.5 RollingGen(550, SD) [future]",
        [
            ["2017-01-02", "2019-02-08"],
            {
                "train": ["2010-02-09", "2017-02-08"],
                "valid": ["2017-02-09", "2019-02-08"],
                "test": ["2019-02-11", "2021-03-19"],
            },
            "2021-03-19",
        ],
        lambda: [
            win("future", r550, 0)["test"],
            win("future", r550, 1),
            rg("future", r550)["tasks"][1]["handler_end_time"],
        ],
    )
    open_end_note = (
        "qlib_rolling.md 1.3 says handler_mod sets the handler end to None when the test end is "
        "None. Qlib 0.9.7's handler_mod has no such branch: cal_interval(h_end, None) raises "
        "TypeError, which is swallowed, so the handler end is left unchanged."
    )
    check(
        "1.5 RollingGen(550, SD) [nofuture]",
        [2, ["2017-01-02", "2019-02-08"], ["2019-02-11", None], None],
        lambda: [
            len(rg("nofuture", r550)["tasks"]),
            win("nofuture", r550, 0)["test"],
            win("nofuture", r550, 1)["test"],
            rg("nofuture", r550)["tasks"][1]["handler_end_time"],
        ],
        known=open_end_note,
    )
    check(
        "4.2 #7 open2020 step 100 [nofuture]",
        [[["2020-01-01", "2020-05-19"], "2020-08-01"], [["2020-05-20", None], None]],
        lambda: [
            [t["segments"]["test"], t["handler_end_time"]]
            for t in rg("nofuture", "corner/open2020/step=100")["tasks"]
        ],
        known=open_end_note,
    )
    check(
        "4.2 #9 exact multiple ending on the last day raises TypeError [nofuture]",
        "TypeError",
        lambda: rg("nofuture", "grid/test=exact_multiple/step=40/expanding/trunc=None")["error"]["type"],
    )
    check(
        "4.2 #8 handler end None never changed",
        [None],
        lambda: sorted(
            {
                t["handler_end_time"]
                for cal in VARIANTS
                for cid in (
                    "corner/handler_end=None/test=default/step=40",
                    "corner/handler_end=None/test=open2020/step=40",
                )
                for t in rg(cal, cid)["tasks"]
            },
            key=str,
        ),
    )

    def ta(cal: str, cid: str) -> Any:
        c = by_id[f"time_adjuster/{cal}/future=True/{cid}"]
        return c["result"] if c["outcome"] == "ok" else c["error"]["type"]

    check(
        "4.2 #1 align_seg default",
        {
            "train": ["2008-01-01", "2014-12-31"],
            "valid": ["2015-01-01", "2016-12-30"],
            "test": ["2017-01-02", "2020-07-31"],
        },
        lambda: ta("future", "align_seg(default_segments)"),
    )
    check(
        "1.1 shift 5 sliding",
        ["2017-01-09", "2017-01-13"],
        lambda: ta("future", "shift(2017-01-02,2017-01-06,5)"),
    )
    check(
        "1.1 shift 5 expanding",
        ["2017-01-02", "2017-01-13"],
        lambda: ta("future", "shift(2017-01-02,2017-01-06,5,rtype=expanding)"),
    )
    check(
        "1.1 shift past end of future cal by 3",
        ["2021-12-30", None],
        lambda: ta("future", "shift(2021-12-27,2021-12-31,3,rtype=sliding)"),
    )
    check(
        "1.1 shift past end of future cal by 10",
        "KeyError",
        lambda: ta("future", "shift(2021-12-27,2021-12-31,10,rtype=sliding)"),
    )
    check(
        "1.1 truncate example",
        ["2015-01-05", "2016-12-28"],
        lambda: ta("future", "truncate(2015-01-05,2016-12-30,2017-01-02,3)"),
    )
    check("4.2 #4 cal_interval", 5, lambda: ta("future", "cal_interval(2017-01-09,2017-01-02)"))
    check(
        "1.1 align_time before first day, end -> last day (bug)",
        "2021-12-31",
        lambda: ta("future", "align_time(1990-01-01,end)"),
    )
    check(
        "1.1 align_time after last day, start -> IndexError",
        "IndexError",
        lambda: ta("nofuture", "align_time(2020-09-26,start)"),
    )
    return checks


def dump_fixture(doc: dict) -> str:
    """JSON with one top-level key per line; list values (schema, self_checks, cases) get one
    element per line, so that diffs of the fixture stay readable."""

    def compact(v: Any) -> str:
        return json.dumps(v, separators=(",", ":"), ensure_ascii=False)

    parts = []
    for k, v in doc.items():
        if isinstance(v, list) and v:
            body = ",\n".join("  " + compact(x) for x in v)
            parts.append(f" {compact(k)}: [\n{body}\n ]")
        else:
            parts.append(f" {compact(k)}: {compact(v)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check-only", action="store_true", help="run and self-check, do not write")
    ap.add_argument("--worker", nargs=3, metavar=("VARIANT", "PROVIDER", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        try:
            run_worker(*args.worker)
        except Exception:
            traceback.print_exc()
            return 2
        return 0

    import numpy as np
    import qlib

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="qroll_oracle_") as tmp:
        for variant in VARIANTS:
            provider = Path(tmp) / variant
            write_provider(provider, with_future=(variant == "future"))
            out = Path(tmp) / f"{variant}.json"
            env = dict(os.environ, PYTHONHASHSEED="0")
            subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--worker", variant, str(provider), str(out)],
                check=True,
                env=env,
                cwd=tmp,
            )
            results[variant] = json.loads(out.read_text())

    cases = [c for v in VARIANTS for c in results[v]["cases"]]
    by_id = {c["id"]: c for c in cases}
    assert len(by_id) == len(cases), "duplicate case ids"
    checks = self_checks(by_id)
    counts: dict[str, int] = {}
    for c in cases:
        counts[c["kind"]] = counts.get(c["kind"], 0) + 1

    def cal_def(days: pd.DatetimeIndex) -> dict:
        return {"start": enc(days[0]), "end": enc(days[-1]), "count": len(days)}

    header: dict[str, Any] = {
        "schema_version": 1,
        "generator": str(Path(__file__).resolve().relative_to(REPO_ROOT)),
        "generated_at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "qlib_version": qlib.__version__,
        "pandas_version": pd.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "calendars": {
            v: {
                "day_txt": cal_def(NORMAL_DAYS),
                "day_future_txt": cal_def(FUTURE_DAYS) if v == "future" else None,
                "loaded": results[v]["loaded"],
            }
            for v in VARIANTS
        },
        "base_template": BASE_TEMPLATE,
        "horizon_label_format": HORIZON_LABEL_FORMAT,
        "self_checks": checks,
        "counts": counts,
        "schema": SCHEMA.strip().split("\n"),
    }
    bad = [c for c in checks if not c["ok"] and "known_mismatch" not in c]
    for c in checks:
        status = "OK   " if c["ok"] else ("KNOWN" if "known_mismatch" in c else "FAIL ")
        print(f"{status} {c['check']}")
        if not c["ok"]:
            print(f"      expected {c['expected']!r}\n      actual   {c['actual']!r}")
            if "known_mismatch" in c:
                print(f"      {c['known_mismatch']}")
    n_ok = sum(c["ok"] for c in checks)
    n_known = len(checks) - n_ok - len(bad)
    print(f"{len(cases)} cases: {counts}")
    print(f"self-checks: {n_ok} ok, {n_known} known mismatches, {len(bad)} unexplained failures")

    if not args.check_only:
        header["cases"] = cases
        text = dump_fixture(header)
        assert json.loads(text) == header  # well-formed and complete
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out} ({len(text) / 1e6:.2f} MB)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
