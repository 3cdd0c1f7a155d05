"""`qroll --help`, `--version` and `qroll tasks`, run as a user would: in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import qroll

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "src" / "qroll" / "examples" / "synthetic_rolling.yaml"

CONFIG = """\
experiment: cli_test
data: synthetic://?start=2015-01-01&end={data_end}
rolling: {{step: {step}, rtype: {rtype}, trunc_days: auto}}
tasks:
  - model: {{class: LGBModel}}
    dataset:
      class: DatasetH
      kwargs:
        handler: {{class: Alpha158, kwargs: {{start_time: 2015-01-01, end_time: 2020-06-30}}}}
        segments: {{train: [{train_start}, 2018-12-31], valid: [2019-01-01, 2019-06-30], test: [{test_start}, 2020-06-30]}}
"""


def qroll_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qroll", *args], capture_output=True, text=True, timeout=120)


def write_config(tmp_path: Path, step="20", rtype="expanding", train_start="2015-01-01",
                 test_start="2019-07-01", data_end="2020-12-31") -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(CONFIG.format(step=step, rtype=rtype, train_start=train_start, test_start=test_start,
                                  data_end=data_end))
    return path


def test_version_and_help():
    assert qroll_cli("--version").stdout.strip() == f"qroll {qroll.__version__}"
    help_text = qroll_cli("--help").stdout
    assert "tasks" in help_text and "usage: qroll" in help_text


def test_tasks_on_the_bundled_example_prints_table_and_timeline():
    res = qroll_cli("tasks", str(EXAMPLE))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "16 tasks from 2 template(s)" in out and "gap 3" in out
    # Quarterly windows: the first and last test windows of 2019-2020.
    assert "2019-01-01..2019-03-29" in out and "2020-10-01..2020-12-31" in out
    assert out.count("LGBModel") == 8 and out.count("LinearModel") == 8
    rows = out[out.index("timeline"):].splitlines()[2:]
    assert len(rows) == 16 and all(row.rstrip().endswith("x") for row in rows)


def test_tasks_with_a_trading_day_step(tmp_path):
    res = qroll_cli("tasks", str(write_config(tmp_path)), "--no-timeline")
    assert res.returncode == 0, res.stderr
    # 2019-07-01..2020-06-30 is 262 business days => ceil(262 / 20) = 14 windows.
    assert "14 tasks from 1 template(s); step 20 trading days, expanding" in res.stdout
    assert "timeline" not in res.stdout


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"step": "0"}, "step=0 must be a positive number of trading days"),
        ({"rtype": "rolling"}, "rtype='rolling' is unknown"),
        ({"train_start": "2019-01-01"}, "segment 'train' starts after it ends"),
        ({"data_end": "2019-06-28"}, "start 2019-07-01 is after the last trading day 2019-06-28"),
    ],
)
def test_bad_config_values_exit_2_with_one_line(tmp_path, kwargs, message):
    res = qroll_cli("tasks", str(write_config(tmp_path, **kwargs)))
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("qroll: error: ")
    assert message in res.stderr
    assert "Traceback" not in res.stderr


def test_missing_test_key_and_malformed_yaml(tmp_path):
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace("test: [", "oos: ["))
    res = qroll_cli("tasks", str(path))
    assert res.returncode == 2 and "test_key 'test' is not a segment" in res.stderr
    path.write_text("tasks: [unclosed\n")
    res = qroll_cli("tasks", str(path))
    assert res.returncode == 2 and str(path) in res.stderr and res.stderr.count("\n") == 1
    res = qroll_cli("tasks", str(tmp_path / "nope.yaml"))
    assert res.returncode == 2 and "nope.yaml" in res.stderr


def test_no_command_prints_help_and_exits_2():
    res = qroll_cli()
    assert res.returncode == 2 and "usage: qroll" in res.stdout
