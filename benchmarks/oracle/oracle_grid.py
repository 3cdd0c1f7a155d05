"""The input grid of the Qlib oracle: calendars, the base task, and every case's inputs.

Imported by ``qlib_rolling_cases.py`` (the runner), which records what Qlib returns for each case.
Nothing here imports qlib.
"""

from __future__ import annotations

import copy
import datetime as _dt
from pathlib import Path
from typing import Any

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "tests" / "fixtures" / "qlib_rolling_oracle.json"

CAL_START = "2005-01-04"
CAL_END = "2020-09-25"
FUTURE_CAL_END = "2021-12-31"
VARIANTS = ("future", "nofuture")

NORMAL_DAYS = pd.bdate_range(CAL_START, CAL_END)
FUTURE_DAYS = pd.bdate_range(CAL_START, FUTURE_CAL_END)
LEN_NORMAL = len(NORMAL_DAYS)
LEN_FUTURE = len(FUTURE_DAYS)

# Qlib's CSI300_GBDT_TASK shape (qlib/tests/config.py), with the model kwargs reduced to the loss.
# JSON lists in "segments" are passed to Qlib as tuples unless a case says otherwise.
BASE_TEMPLATE: dict[str, Any] = {
    "model": {
        "class": "LGBModel",
        "module_path": "qlib.contrib.model.gbdt",
        "kwargs": {"loss": "mse"},
    },
    "dataset": {
        "class": "DatasetH",
        "module_path": "qlib.data.dataset",
        "kwargs": {
            "handler": {
                "class": "Alpha158",
                "module_path": "qlib.contrib.data.handler",
                "kwargs": {
                    "start_time": "2008-01-01",
                    "end_time": "2020-08-01",
                    "fit_start_time": "2008-01-01",
                    "fit_end_time": "2014-12-31",
                    "instruments": "csi300",
                },
            },
            "segments": {
                "train": ["2008-01-01", "2014-12-31"],
                "valid": ["2015-01-01", "2016-12-31"],
                "test": ["2017-01-01", "2020-08-01"],
            },
        },
    },
}

HORIZON_LABEL_FORMAT = "Ref($close, -{hr_plus_1}) / Ref($close, -1) - 1"

SCHEMA = r"""
Top level object:
  schema_version: int (1)
  generator: path of this script, relative to the repository root
  generated_at: UTC timestamp "YYYY-MM-DDTHH:MM:SSZ"
  qlib_version, pandas_version, numpy_version, python_version: str
  calendars: {variant: {...}} for variant in "future" and "nofuture":
      day_txt: {start, end, count}  (calendars/day.txt, Mon-Fri pandas bdate_range)
      day_future_txt: {start, end, count} or null (calendars/day_future.txt, absent for nofuture)
      loaded: what Qlib actually loaded in that worker:
          {"D.calendar(future=False)": {start,end,count},
           "D.calendar(future=True)": {start,end,count}}
          TimeAdjuster() and RollingGen use future=True, which falls back to day.txt when
          day_future.txt is missing. transform_end_date always uses future=False.
  base_template: the CSI300_GBDT_TASK-shaped template (segments as JSON lists)
  horizon_label_format: label string set by the MultiHorizonGenBase subclass, with
      {hr_plus_1} replaced by hr + 1
  self_checks: list of {check, expected, actual, ok, [known_mismatch]}: comparisons with the
      [verified] statements of qlib_rolling.md. known_mismatch explains a failed comparison
      where Qlib 0.9.7 differs from the notes; the fixture always records what Qlib did.
  counts: {kind: number of cases}
  schema: this text
  cases: list of case objects (below), ids unique and stable across regenerations

Value encoding everywhere: pd.Timestamp -> "YYYY-MM-DD" (full ISO string if it had a time
component, which never happens in the outputs), None -> null, tuple or list -> JSON list,
numpy int -> int. "*_type" fields hold Python type names ("str", "Timestamp", "NoneType", "int",
"tuple(...)", "dict{...}").

Every case:
  id: str, unique. Its prefix is "<kind>/<calendar>/".
  kind: "rolling_gen" | "multi_horizon" | "time_adjuster" | "transform_end_date"
  calendar: "future" | "nofuture"  (whether calendars/day_future.txt existed)
  note: str, present on hand-picked corner cases
  inputs: kind specific (below)
  outcome: "ok" | "error"
  error: {"type": exception class name, "message": str(exception)}  (only when outcome == "error")

kind == "rolling_gen":
  inputs.gen_kwargs: {step: int, rtype: str, trunc_days: int|null, test_key: str,
      train_key: str, ds_extra_mod_func: "handler_mod" | null}
      Call: RollingGen(step=..., rtype=..., trunc_days=..., test_key=..., train_key=...,
      ds_extra_mod_func=handler_mod or None)  (task_copy_func is the default, copy.deepcopy)
  inputs.segments: {key: [start, end]}, in order (dates as given: strings or null)
  inputs.handler: present only when the handler differs from base_template's (e.g. the
      string "file://h.pkl", or handler kwargs with another or no end_time)
      The template passed to generate() is a deepcopy of base_template with
      dataset.kwargs.segments = inputs.segments and, if present,
      dataset.kwargs.handler = inputs.handler. Every segment value is a JSON list that was
      passed to Qlib as a tuple, unless inputs.segments_container == "list".
  inputs.segments_container: "tuple" | "list"
  inputs.handler_end_time_as_timestamp: bool. If true, the handler's end_time string was
      passed as pd.Timestamp(end_time).
  tasks (outcome ok): list, in Qlib's order, of task summaries:
      {segments: {key: [start, end]} in the task's key order, each date "YYYY-MM-DD" or null,
       handler_end_time: "YYYY-MM-DD" | the original string | null,
       handler_end_time_type: "str" | "Timestamp" | "NoneType"
           | "absent"  (the handler kwargs have no end_time key)
           | "handler_not_dict"  (the handler is e.g. the string "file://h.pkl")}
      For a str value, handler_end_time is the string exactly as stored (unchanged input).
  tasks_before_error (outcome error): the task summaries that Qlib had finished
      (_update_task_segs had run) before the exception. generate() returns nothing in that
      case; these show how far it got.
  template_unmodified: bool. The template equals a deepcopy taken before generate().
  segments_are_tuples_of_timestamp_or_none: bool, over all produced tasks
  only_segments_and_handler_end_changed: bool. Each produced task equals the template apart
      from dataset.kwargs.segments and handler.kwargs.end_time.

kind == "multi_horizon":
  inputs: {horizon: [int], label_leak_n: int, segments, [handler]}: template built as for
      rolling_gen, segments passed as tuples
      The subclass's set_horizon(task, hr) sets
      task["dataset"]["kwargs"]["handler"]["kwargs"]["label"] = [horizon_label_format(hr)].
  tasks (ok) / tasks_before_error (error): {horizon, segments, label, handler_end_time,
      handler_end_time_type}
  template_unmodified, segments_are_tuples_of_timestamp_or_none: as above

kind == "time_adjuster":
  inputs: {ta_kwargs: {future: bool, end_time: str|null}, method: str, args: [...],
      kwargs: {...}, tuple_args: [int], args_repr: str}
      ta = TimeAdjuster(**ta_kwargs); result = getattr(ta, method)(*args, **kwargs).
      Positions listed in tuple_args are JSON lists that were passed as tuples, and so are the
      tuple values inside a dict argument (align_seg). args_repr is the Python repr of the
      exact positional arguments. Pseudo-methods: "len_cals" -> len(ta.cals).
  result (ok): the encoded return value. A tuple becomes a list, a dict an object.
  result_type (ok): type descriptor, e.g. "int", "NoneType", "Timestamp",
      "tuple(Timestamp, NoneType)", "dict{train: tuple(Timestamp, Timestamp), ...}"

kind == "transform_end_date":
  inputs: {end_date: str|int|null}. Call: qlib.utils.transform_end_date(end_date).
  result, result_type: as for time_adjuster.
"""


# --------------------------------------------------------------------------------------------
# Encoding helpers (no qlib needed)


def enc(v: Any) -> Any:
    """Encode a Python value as JSON: dates as YYYY-MM-DD, tuples as lists."""
    if v is None or isinstance(v, (bool, str, float)):
        return v
    if isinstance(v, pd.Timestamp):
        if v == v.normalize() and v.tz is None:
            return v.strftime("%Y-%m-%d")
        return v.isoformat()
    if isinstance(v, (_dt.datetime, _dt.date)):
        return v.isoformat()
    if isinstance(v, int):
        return v
    if hasattr(v, "item") and not hasattr(v, "__len__"):  # numpy scalar
        return enc(v.item())
    if isinstance(v, (tuple, list)):
        return [enc(x) for x in v]
    if isinstance(v, dict):
        return {str(k): enc(x) for k, x in v.items()}
    if hasattr(v, "tolist"):
        return enc(v.tolist())
    return repr(v)


def tdesc(v: Any) -> str:
    """Describe the Python type of a value, recursively for tuples, lists and dicts."""
    if isinstance(v, tuple):
        return "tuple(" + ", ".join(tdesc(x) for x in v) + ")"
    if isinstance(v, list):
        return "list[" + ", ".join(tdesc(x) for x in v) + "]"
    if isinstance(v, dict):
        return "dict{" + ", ".join(f"{k}: {tdesc(x)}" for k, x in v.items()) + "}"
    return type(v).__name__


def day(i: int, future: bool = False) -> str:
    """Date string of calendar index i (of day.txt, or of day_future.txt)."""
    days = FUTURE_DAYS if future else NORMAL_DAYS
    return days[i].strftime("%Y-%m-%d")


def template_with(
    test: list | None = None,
    segments: dict | None = None,
    handler_end: Any = "keep",
    handler: Any = None,
    drop_handler_end: bool = False,
) -> dict:
    t = copy.deepcopy(BASE_TEMPLATE)
    kw = t["dataset"]["kwargs"]
    if segments is not None:
        kw["segments"] = copy.deepcopy(segments)
    if test is not None:
        kw["segments"]["test"] = list(test)
    if handler_end != "keep":
        kw["handler"]["kwargs"]["end_time"] = handler_end
    if drop_handler_end:
        del kw["handler"]["kwargs"]["end_time"]
    if handler is not None:
        kw["handler"] = handler
    return t


def template_inputs(template: dict) -> dict:
    """Compact form of a template: its segments, plus its handler if not the base one."""
    kw = template["dataset"]["kwargs"]
    out: dict[str, Any] = {"segments": copy.deepcopy(kw["segments"])}
    if kw["handler"] != BASE_TEMPLATE["dataset"]["kwargs"]["handler"]:
        out["handler"] = copy.deepcopy(kw["handler"])
    assert build_template(out) == template
    return out


def build_template(inputs: dict) -> dict:
    """Inverse of template_inputs (JSON form: segments still lists)."""
    t = copy.deepcopy(BASE_TEMPLATE)
    t["dataset"]["kwargs"]["segments"] = copy.deepcopy(inputs["segments"])
    if "handler" in inputs:
        t["dataset"]["kwargs"]["handler"] = copy.deepcopy(inputs["handler"])
    return t


# --------------------------------------------------------------------------------------------
# Case definitions (no qlib needed). Each spec: {"id", "kind", "inputs", ["note"]}.

NAMED_TESTS: dict[str, list] = {
    "default": ["2017-01-01", "2020-08-01"],
    "jan2020": ["2020-01-01", "2020-01-31"],
    "open2020": ["2020-01-01", None],
    "to_last_day": ["2019-06-03", CAL_END],
    "last_day_only": [CAL_END, CAL_END],
    "weekend": ["2017-01-07", "2017-01-08"],
}
STEPS = [1, 5, 10, 20, 40, 63, 250, 550, 935, 1000]
RTYPES = ["expanding", "sliding"]
TRUNCS: list[int | None] = [None, 1, 2, 3, 21]
SHORT_TESTS = ["jan2020", "last_day_only", "weekend", "exact_multiple"]


def exact_multiple_test(step: int) -> list:
    """A test segment of k*step trading days (of day.txt) that ends on the last calendar day."""
    k = 2 if step <= 250 else 1
    return [day(LEN_NORMAL - k * step), CAL_END]


def rolling_spec(
    case_id: str,
    template: dict,
    step: int = 40,
    rtype: str = "expanding",
    trunc_days: int | None = None,
    test_key: str = "test",
    train_key: str = "train",
    ds_extra_mod_func: str | None = "handler_mod",
    segments_container: str = "tuple",
    handler_end_time_as_timestamp: bool = False,
    note: str | None = None,
) -> dict:
    spec: dict[str, Any] = {
        "id": case_id,
        "kind": "rolling_gen",
        "inputs": {
            "gen_kwargs": {
                "step": step,
                "rtype": rtype,
                "trunc_days": trunc_days,
                "test_key": test_key,
                "train_key": train_key,
                "ds_extra_mod_func": ds_extra_mod_func,
            },
            **template_inputs(template),
            "segments_container": segments_container,
            "handler_end_time_as_timestamp": handler_end_time_as_timestamp,
        },
    }
    if note:
        spec["note"] = note
    return spec


def rolling_specs() -> list[dict]:
    specs: list[dict] = []

    def grid_id(test_name: str, step: int, rtype: str, trunc: int | None) -> str:
        return f"grid/test={test_name}/step={step}/{rtype}/trunc={trunc}"

    # Grid: every step x rtype x trunc_days x named test. The long tests (many windows) use a
    # reduced trunc set, and step 1 skips the longest ones to keep the file small.
    for step in STEPS:
        tests = dict(NAMED_TESTS)
        tests["exact_multiple"] = exact_multiple_test(step)
        for test_name, test in tests.items():
            if step == 1 and test_name in ("default", "to_last_day"):
                continue
            truncs = TRUNCS if test_name in SHORT_TESTS else [None, 21]
            if step in (5, 10) and test_name in ("default", "to_last_day"):
                truncs = [None]
            rtypes = RTYPES
            if step == 1 and test_name == "open2020":
                truncs, rtypes = [None], ["expanding"]
            if step == 1 and test_name == "jan2020":
                truncs = [None, 3, 21]
            if step == 5 and test_name in ("default", "to_last_day"):
                rtypes = ["expanding"]
            for rtype in rtypes:
                for trunc in truncs:
                    specs.append(
                        rolling_spec(
                            grid_id(test_name, step, rtype, trunc),
                            template_with(test=test),
                            step=step,
                            rtype=rtype,
                            trunc_days=trunc,
                        )
                    )
    # trunc_days 1, 2, 3 on longer tests for a few steps.
    for step in (63, 250):
        for test_name in ("default", "open2020", "to_last_day"):
            if step == 63 and test_name == "default":
                continue
            for rtype in RTYPES:
                for trunc in (1, 2, 3):
                    specs.append(
                        rolling_spec(
                            grid_id(test_name, step, rtype, trunc),
                            template_with(test=NAMED_TESTS[test_name]),
                            step=step,
                            rtype=rtype,
                            trunc_days=trunc,
                        )
                    )
    # ---- corner cases ----------------------------------------------------------------------
    c = "corner/"
    specs.append(
        rolling_spec(
            c + "open2020/step=100",
            template_with(test=["2020-01-01", None]),
            step=100,
            note="qlib_rolling.md 4.2 #7",
        )
    )
    specs.append(
        rolling_spec(
            c + "ref_table/step=550/sliding",
            template_with(),
            step=550,
            rtype="sliding",
            note="qlib_rolling.md 1.5 table (550, ROLL_SD); the table used the CSI100 task, "
            "which has the same segments and handler dates",
        )
    )
    # Train starting on the first calendar day, with truncation (assert tp_idx > 0).
    for train_start in ("2005-01-01", "2005-01-04", "2005-01-05"):
        segs = copy.deepcopy(BASE_TEMPLATE["dataset"]["kwargs"]["segments"])
        segs["train"] = [train_start, "2014-12-31"]
        for trunc in (None, 1, 3, 21):
            for rtype in RTYPES:
                specs.append(
                    rolling_spec(
                        f"{c}train_start={train_start}/step=250/{rtype}/trunc={trunc}",
                        template_with(segments=segs),
                        step=250,
                        rtype=rtype,
                        trunc_days=trunc,
                        note="train starts on / before / after the first calendar day",
                    )
                )
    # Handler end_time variants.
    for h_end in (None, "2016-06-30", "2018-12-31", "2030-01-01", "2020-07-31"):
        for step in (40, 250):
            for test_name in ("default", "open2020"):
                specs.append(
                    rolling_spec(
                        f"{c}handler_end={h_end}/test={test_name}/step={step}",
                        template_with(test=NAMED_TESTS[test_name], handler_end=h_end),
                        step=step,
                        note="handler end_time None / earlier than the test end / later",
                    )
                )
    for step in (52, 936):
        specs.append(
            rolling_spec(
                f"{c}handler_end_weekend/step={step}",
                template_with(),
                step=step,
                note="a window ends on Mon 2020-08-03 while the handler end is Sat 2020-08-01: "
                "cal_interval aligns both with 'start', so the interval is 0 and the end is kept",
            )
        )
    specs.append(
        rolling_spec(
            c + "handler_end_as_timestamp/step=250",
            template_with(),
            step=250,
            handler_end_time_as_timestamp=True,
        )
    )
    specs.append(
        rolling_spec(
            c + "handler_end_absent/step=250",
            template_with(drop_handler_end=True),
            step=250,
            note="handler kwargs without an end_time key",
        )
    )
    for test_name in ("default", "open2020"):
        for step in (40, 250):
            specs.append(
                rolling_spec(
                    f"{c}handler_str/test={test_name}/step={step}",
                    template_with(test=NAMED_TESTS[test_name], handler="file://h.pkl"),
                    step=step,
                    note="handler given as a string",
                )
            )
    specs.append(
        rolling_spec(
            c + "no_ds_extra_mod_func/step=250",
            template_with(),
            step=250,
            ds_extra_mod_func=None,
        )
    )
    # Extra segment keys.
    extra_last = copy.deepcopy(BASE_TEMPLATE["dataset"]["kwargs"]["segments"])
    extra_last["extra"] = ["2016-01-01", "2016-06-30"]
    extra_first = {"extra": ["2016-01-01", "2016-06-30"]}
    extra_first.update(copy.deepcopy(BASE_TEMPLATE["dataset"]["kwargs"]["segments"]))
    extra_open = copy.deepcopy(BASE_TEMPLATE["dataset"]["kwargs"]["segments"])
    extra_open["extra"] = ["2016-01-01", None]
    for name, segs in (("extra_last", extra_last), ("extra_first", extra_first)):
        for step in (40, 250):
            for rtype in RTYPES:
                for trunc in (None, 21) if step == 250 else (None,):
                    specs.append(
                        rolling_spec(
                            f"{c}{name}/step={step}/{rtype}/trunc={trunc}",
                            template_with(segments=segs),
                            step=step,
                            rtype=rtype,
                            trunc_days=trunc,
                            note="template with an extra segment key",
                        )
                    )
    for trunc in (None, 3):
        specs.append(
            rolling_spec(
                f"{c}extra_open_end/step=250/trunc={trunc}",
                template_with(segments=extra_open),
                step=250,
                trunc_days=trunc,
                note="extra segment with an open end",
            )
        )
    valid_open = copy.deepcopy(BASE_TEMPLATE["dataset"]["kwargs"]["segments"])
    valid_open["valid"] = ["2015-01-01", None]
    for trunc in (None, 3):
        specs.append(
            rolling_spec(
                f"{c}valid_open_end/step=250/trunc={trunc}",
                template_with(segments=valid_open),
                step=250,
                trunc_days=trunc,
            )
        )
    no_valid = {"train": ["2008-01-01", "2014-12-31"], "test": ["2017-01-01", "2020-08-01"]}
    for rtype in RTYPES:
        specs.append(
            rolling_spec(
                f"{c}no_valid/step=250/{rtype}",
                template_with(segments=no_valid),
                step=250,
                rtype=rtype,
            )
        )
    specs.append(
        rolling_spec(
            c + "rtype=foo/step=250",
            template_with(),
            step=250,
            rtype="foo",
            note="an unknown rtype behaves like sliding",
        )
    )
    fit_keys = {
        "fit": ["2008-01-01", "2014-12-31"],
        "valid": ["2015-01-01", "2016-12-31"],
        "test": ["2017-01-01", "2020-08-01"],
    }
    specs.append(
        rolling_spec(
            c + "train_key=fit/step=250/expanding",
            template_with(segments=fit_keys),
            step=250,
            train_key="fit",
        )
    )
    specs.append(
        rolling_spec(
            c + "train_key_missing/step=250/expanding",
            template_with(segments=fit_keys),
            step=250,
            note="the template has no 'train' key, so nothing expands",
        )
    )
    oos_keys = {
        "train": ["2008-01-01", "2014-12-31"],
        "valid": ["2015-01-01", "2016-12-31"],
        "oos": ["2017-01-01", "2020-08-01"],
    }
    specs.append(
        rolling_spec(
            c + "test_key=oos/step=250/trunc=3",
            template_with(segments=oos_keys),
            step=250,
            trunc_days=3,
            test_key="oos",
        )
    )
    specs.append(
        rolling_spec(
            c + "segments_as_lists/step=250",
            template_with(),
            step=250,
            segments_container="list",
            note="segments passed as lists instead of tuples",
        )
    )
    odd_tests = {
        "open_start": [None, "2020-01-31"],
        "beyond_day_txt": ["2021-06-01", "2021-06-30"],
        "after_last_day": ["2020-09-26", "2020-10-30"],
        "end_before_start": ["2018-01-01", "2017-01-01"],
        "single_holiday": ["2017-01-01", "2017-01-01"],
        "start_last_day_open": [CAL_END, None],
        "before_first_day": ["1990-01-01", "1990-12-31"],
    }
    for name, test in odd_tests.items():
        for step in (40, 250) if name == "before_first_day" else (1, 40):
            specs.append(
                rolling_spec(
                    f"{c}test={name}/step={step}",
                    template_with(test=test),
                    step=step,
                )
            )
    # Open-ended test where the day.txt span is an exact multiple of step.
    for step in (5, 40, 63):
        k = 3
        test = [day(LEN_NORMAL - k * step), None]
        specs.append(
            rolling_spec(
                f"{c}exact_multiple_open/step={step}",
                template_with(test=test),
                step=step,
                note="open-ended test, day.txt span is k*step",
            )
        )
    # Exact multiple of step counted on day_future.txt: open-ended and closed.
    for step in (40, 250):
        k = (LEN_FUTURE - LEN_NORMAL) // step + 1
        start = day(LEN_FUTURE - k * step, future=True)
        for end in (None, FUTURE_CAL_END):
            specs.append(
                rolling_spec(
                    f"{c}exact_multiple_future_cal/step={step}/end={end}",
                    template_with(test=[start, end]),
                    step=step,
                    note="span from test start to the end of day_future.txt is k*step",
                )
            )
    return specs


def multi_horizon_specs() -> list[dict]:
    specs: list[dict] = []

    def mh(case_id: str, horizon: list[int], lln: int, template: dict, note: str | None = None):
        spec: dict[str, Any] = {
            "id": case_id,
            "kind": "multi_horizon",
            "inputs": {"horizon": horizon, "label_leak_n": lln, **template_inputs(template)},
        }
        if note:
            spec["note"] = note
        specs.append(spec)

    for horizon in ([1, 5], [2, 10, 20], [5]):
        h = ",".join(map(str, horizon))
        for lln in (2, 0):
            mh(f"h=[{h}]/lln={lln}/default", horizon, lln, template_with())
        mh(f"h=[{h}]/lln=2/open2020", horizon, 2, template_with(test=["2020-01-01", None]))
        mh(f"h=[{h}]/lln=2/weekend", horizon, 2, template_with(test=NAMED_TESTS["weekend"]))
    extra = copy.deepcopy(BASE_TEMPLATE["dataset"]["kwargs"]["segments"])
    extra["extra"] = ["2016-01-01", "2016-06-30"]
    mh("h=[1,5]/lln=2/extra_key", [1, 5], 2, template_with(segments=extra))
    for train_start in ("2005-01-04", "2005-01-05"):
        segs = copy.deepcopy(BASE_TEMPLATE["dataset"]["kwargs"]["segments"])
        segs["train"] = [train_start, "2014-12-31"]
        mh(
            f"h=[1,5]/lln=2/train_start={train_start}",
            [1, 5],
            2,
            template_with(segments=segs),
            note="train starts on / after the first calendar day",
        )
    mh(
        "h=[1,5]/lln=2/test_open_start",
        [1, 5],
        2,
        template_with(test=[None, "2020-01-31"]),
    )
    return specs


def to_py_arg(a: Any, as_tuple: bool) -> Any:
    """JSON argument -> Python argument: a list becomes a tuple where asked, and the list
    values inside a dict argument become tuples (recursively)."""
    if as_tuple:
        return tuple(a)
    if isinstance(a, dict):
        return {k: to_py_arg(v, isinstance(v, list)) for k, v in a.items()}
    return a


TA_POINTS: list[str | None] = [
    None,
    "1990-01-01",
    "2005-01-03",
    "2005-01-04",
    "2005-01-05",
    "2016-12-31",
    "2017-01-01",
    "2017-01-02",
    "2017-01-02 15:00:00",
    "2017-01-07",
    "2017-01-08",
    "2020-08-01",
    "2020-09-25",
    "2020-09-26",
    "2020-09-28",
    "2021-12-31",
    "2022-01-01",
    "2030-01-01",
]


def time_adjuster_specs() -> list[dict]:
    specs: list[dict] = []

    def ta(
        method: str,
        args: list,
        kwargs: dict | None = None,
        tuple_args: tuple[int, ...] = (),
        future: bool = True,
        end_time: str | None = None,
        label: str | None = None,
        note: str | None = None,
    ) -> None:
        py_args = [to_py_arg(a, i in tuple_args) for i, a in enumerate(args)]
        ta_label = f"future={future}" + (f",end_time={end_time}" if end_time else "")
        arg_label = label if label is not None else ",".join(map(str, args))
        kw_label = "".join(f",{k}={v}" for k, v in (kwargs or {}).items())
        spec: dict[str, Any] = {
            "id": f"{ta_label}/{method}({arg_label}{kw_label})",
            "kind": "time_adjuster",
            "inputs": {
                "ta_kwargs": {"future": future, "end_time": end_time},
                "method": method,
                "args": args,
                "kwargs": kwargs or {},
                "tuple_args": list(tuple_args),
                "args_repr": repr(tuple(py_args)),
            },
        }
        if note:
            spec["note"] = note
        specs.append(spec)

    for fut in (True, False):
        ta("len_cals", [], future=fut)
        ta("max", [], future=fut)
    ta("len_cals", [], end_time="2018-12-31")
    ta("max", [], end_time="2018-12-31")
    ta("len_cals", [], future=False, end_time="2018-12-31")
    ta("max", [], future=False, end_time="2018-12-31")
    for i in [None, 0, 1, 100, -1, -2, LEN_NORMAL - 1, LEN_NORMAL, LEN_NORMAL + 5]:
        ta("get", [i])
    for i in [LEN_FUTURE - 1, LEN_FUTURE, LEN_FUTURE + 5]:
        ta("get", [i])
    for p in TA_POINTS:
        for tp in ("start", "end"):
            ta("align_idx", [p, tp])
            ta("align_time", [p, tp])
    for p in ("2017-01-07", "2020-09-26", "1990-01-01"):
        ta("align_idx", [p])
        ta("align_time", [p], future=False)
        ta("align_idx", [p, "end"], future=False)
    ta("align_idx", ["2017-01-02", "middle"])
    ta("align_time", ["2017-01-02", "middle"])
    ta("align_idx", ["2017-01-02"], {"tp_type": "end"})
    for a, b in [
        ("2017-01-09", "2017-01-02"),
        ("2017-01-02", "2017-01-09"),
        ("2017-01-08", "2017-01-06"),
        ("2017-01-07", "2017-01-09"),
        ("2020-08-01", "2020-08-03"),
        ("2020-09-04", "2020-07-31"),
        (None, "2017-01-02"),
        ("2017-01-02", None),
        ("2030-01-01", "2020-09-25"),
        ("2020-09-26", "2020-09-25"),
        ("1990-01-01", "2005-01-04"),
        ("2021-12-31", "2020-09-25"),
    ]:
        ta("cal_interval", [a, b])
    default_segs = BASE_TEMPLATE["dataset"]["kwargs"]["segments"]
    ta("align_seg", [default_segs], label="default_segments", note="qlib_rolling.md 4.2 #1")
    ta("align_seg", [default_segs], label="default_segments", future=False)
    for seg in (
        ["2017-01-07", "2017-01-08"],
        [None, "2020-08-01"],
        ["2017-01-01", None],
        [None, None],
        ["2020-09-26", "2020-09-30"],
        ["2021-06-01", "2021-06-30"],
        ["1990-01-01", "1990-12-31"],
        ["2017-01-02", "2017-01-03", "2017-01-04"],
    ):
        ta("align_seg", [seg], tuple_args=(0,), label="tuple:" + ",".join(map(str, seg)))
    ta("align_seg", [["2017-01-07", "2017-01-08"]], label="list:2017-01-07,2017-01-08")
    ta(
        "align_seg",
        [{"a": {"b": ["2017-01-07", "2017-01-08"]}, "c": ["2017-01-01", None]}],
        label="nested_dict",
    )
    ta("align_seg", ["2017-01-01"], label="str:2017-01-01")
    shift_cases: list[tuple[list, int, str | None]] = [
        (["2017-01-02", "2017-01-06"], 5, None),
        (["2017-01-02", "2017-01-06"], 5, "sliding"),
        (["2017-01-02", "2017-01-06"], 5, "expanding"),
        (["2017-01-02", "2017-01-06"], 5, "foo"),
        (["2017-01-02", "2017-01-06"], 0, "sliding"),
        (["2017-01-02", "2017-01-06"], -5, "sliding"),
        (["2017-01-02", "2017-01-06"], -5, "expanding"),
        ([None, "2017-01-06"], 5, "sliding"),
        (["2017-01-02", None], 5, "sliding"),
        ([None, None], 5, "sliding"),
        (["2017-01-07", "2017-01-08"], 1, "sliding"),
        (["2017-01-07", "2017-01-08"], 1, "expanding"),
        (["2005-01-04", "2005-01-10"], -1, "sliding"),
        (["2005-01-04", "2005-01-10"], -5, "sliding"),
    ]
    for n in (3, 4, 5, 6, 10):
        shift_cases.append((["2020-09-21", CAL_END], n, "sliding"))
        shift_cases.append((["2021-12-27", FUTURE_CAL_END], n, "sliding"))
    for n in (5, 6):
        shift_cases.append((["2020-09-21", CAL_END], n, "expanding"))
        shift_cases.append((["2021-12-27", FUTURE_CAL_END], n, "expanding"))
    for seg, n, rt in shift_cases:
        kwargs = {} if rt is None else {"rtype": rt}
        ta("shift", [seg, n], kwargs, tuple_args=(0,), label=f"{seg[0]},{seg[1]},{n}")
    ta("shift", [["2017-01-02", "2017-01-06"], 5], label="list:2017-01-02,2017-01-06,5")
    ta(
        "shift",
        [["2020-09-21", CAL_END], 5],
        {"rtype": "sliding"},
        tuple_args=(0,),
        future=False,
        label=f"2020-09-21,{CAL_END},5",
    )
    trunc_cases: list[tuple[list, Any, int]] = [
        (["2015-01-05", "2016-12-30"], "2017-01-02", 3),
        (["2015-01-05", "2016-12-30"], "2017-01-02", 0),
        (["2015-01-05", "2016-12-30"], "2017-01-02", 1),
        (["2015-01-05", "2016-12-30"], "2017-01-02", 21),
        (["2015-01-01", "2016-12-31"], "2017-01-01", 3),
        (["2015-01-05", "2016-12-30"], "2017-01-07", 3),
        (["2015-01-05", "2018-01-01"], "2017-01-02", 3),
        (["2005-01-04", "2010-01-01"], "2017-01-02", 3),
        (["2005-01-05", "2010-01-01"], "2017-01-02", 3),
        (["2005-01-04", "2010-01-01"], "2005-01-07", 3),
        (["2005-01-04", "2010-01-01"], "2005-01-07", 2),
        ([None, "2016-12-30"], "2017-01-02", 3),
        (["2015-01-05", None], "2017-01-02", 3),
        (["2015-01-05", "2016-12-30"], None, 3),
        (["2015-01-05", "2016-12-30"], "2030-01-01", 3),
        (["2015-01-05", "2016-12-30"], "2017-01-02", -3),
    ]
    for seg, ts, n in trunc_cases:
        ta("truncate", [seg, ts, n], tuple_args=(0,), label=f"{seg[0]},{seg[1]},{ts},{n}")
    ta(
        "truncate",
        [["2015-01-05", "2016-12-30"], "2017-01-02", 3],
        label="list:2015-01-05,2016-12-30,2017-01-02,3",
    )
    return specs


def transform_end_date_specs() -> list[dict]:
    specs = []
    for v in [None, -1, "-1", "1990-01-01", "2020-07-31", CAL_END, "2020-09-26", "2021-03-19"]:
        specs.append(
            {
                "id": f"transform_end_date({v!r})",
                "kind": "transform_end_date",
                "inputs": {"end_date": v},
            }
        )
    return specs


def all_specs() -> list[dict]:
    return rolling_specs() + multi_horizon_specs() + time_adjuster_specs() + transform_end_date_specs()
