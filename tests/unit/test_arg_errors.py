"""Every bad argument raises a ConfigError (issue 11), still catchable as the class it was before;
and the error tree drawn in qroll.errors is the real one."""

from __future__ import annotations

import inspect
import re

import pandas as pd
import pytest

from qroll import errors
from qroll.errors import (
    ConfigError,
    ConfigTypeError,
    ConfigValueError,
    PoolConfigError,
    PoolError,
    QrollError,
    RecordError,
    TaskConfigError,
)
from qroll.pool import TaskManager
from qroll.train.pool_trainer import DelayTrainerRM, TrainerRM

# -- the tree in errors.py --------------------------------------------------------------------

CONNECTOR = re.compile(r"^(?P<indent>[ │]*)[├└]── (?P<name>\w+)(?P<rest>.*)$")


def drawn_edges() -> set[tuple[str, str]]:
    """(parent, child) for every line of the drawing, parents found by indentation."""
    doc = errors.__doc__ or ""
    edges: set[tuple[str, str]] = set()
    stack: list[tuple[int, str]] = [(-1, "QrollError")]
    for line in doc.splitlines():
        match = CONNECTOR.match(line.strip("\n")[4:] if line.startswith("    ") else line)
        if match is None:
            continue
        depth = len(match["indent"])
        while stack[-1][0] >= depth:
            stack.pop()
        edges.add((stack[-1][1], match["name"]))
        stack.append((depth, match["name"]))
    return edges


def test_the_drawing_is_parsed():
    edges = drawn_edges()
    assert ("QrollError", "ConfigError") in edges and ("PoolError", "LeaseLostError") in edges
    assert ("TrackingError", "StoreSchemaError") in edges
    assert len(edges) >= 35


def test_every_drawn_edge_is_a_real_subclass():
    for parent, child in drawn_edges():
        assert issubclass(getattr(errors, child), getattr(errors, parent)), f"{child} is no {parent}"


def test_every_error_is_drawn_under_each_of_its_qroll_parents():
    edges = drawn_edges()
    for name in errors.__all__:
        cls = getattr(errors, name)
        if issubclass(cls, Warning) or cls is QrollError:
            continue
        parents = {base.__name__ for base in cls.__bases__ if issubclass(base, QrollError)}
        drawn = {parent for parent, child in edges if child == name}
        assert parents == drawn, f"{name}: bases {sorted(parents)}, drawn under {sorted(drawn)}"


@pytest.mark.parametrize("cls, old", [
    (ConfigValueError, ValueError),
    (ConfigTypeError, TypeError),
    (TaskConfigError, RecordError),
    (PoolConfigError, PoolError),
])
def test_argument_errors_are_config_errors_and_their_old_class(cls, old):
    assert issubclass(cls, ConfigError) and issubclass(cls, old)
    assert str(cls()) == (cls.__doc__ or "").strip().splitlines()[0]


# -- where they are raised ------------------------------------------------------------------------


@pytest.fixture
def pool_url(tmp_path):
    return f"sqlite:///{tmp_path}/pool.db"


@pytest.mark.parametrize("kwargs, match", [
    ({"lease_seconds": 0}, r"lease_seconds=0 and max_attempts=3: both must be positive"),
    ({"lease_seconds": float("nan")}, r"lease_seconds=nan"),
    ({"max_attempts": 0}, r"max_attempts=0"),
    ({"clock_tolerance": -1}, r"clock_tolerance=-1 must be zero or more seconds"),
])
def test_task_manager_settings(pool_url, kwargs, match):
    with pytest.raises(PoolConfigError, match=match):
        TaskManager("p", pool_url, **kwargs)


def test_task_manager_calls(pool_url):
    with TaskManager("p", pool_url) as tm:
        tm.create_task([{"n": 1}])
        with pytest.raises(PoolConfigError, match="would delete every task of pool 'p'.*all=True"):
            tm.remove()
        with pytest.raises(PoolConfigError, match="is not a task fetched from the pool"):
            tm.commit_task_res({"def": {"n": 1}}, {"ok": True})
        assert tm.task_stat() == {"waiting": 1}  # nothing was removed or committed


@pytest.mark.parametrize("kwargs, match", [
    ({"n_workers": -1}, r"n_workers=-1 must be a whole number >= 0"),
    ({"n_workers": 1.5}, r"n_workers=1.5 must be a whole number"),
    ({"poll": -0.5}, r"poll=-0.5 must be a number of seconds >= 0"),
    ({"timeout": -3}, r"timeout=-3 must be None or a number of seconds >= 0"),
])
def test_pool_trainer_settings(pool_url, kwargs, match):
    with pytest.raises(ConfigValueError, match=match) as info:
        TrainerRM("e", pool_url=pool_url, **kwargs)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("cls", [TrainerRM, DelayTrainerRM])
def test_pool_trainer_unknown_keywords(pool_url, cls):
    trainer = cls("e", pool_url=pool_url, n_workers=0)
    with pytest.raises(ConfigTypeError, match=rf"{cls.__name__}.train got unexpected arguments \['bogus'\]"):
        trainer.train([{"model": {}, "dataset": {}}], bogus=1)
    with TaskManager("e", pool_url) as tm:
        assert tm.task_stat() == {}  # refused before anything reached the pool


def test_feature_cache_refuses_a_frame_without_its_index(tmp_path):
    from qroll.data import cache_files

    frame = pd.DataFrame({("feature", "A"): [1.0, 2.0]})
    with pytest.raises(ConfigTypeError, match=r"indexed by \(datetime, instrument\), not by RangeIndex"):
        cache_files.write_entry(tmp_path, "k", frame, {})
    assert list(tmp_path.iterdir()) == []


# -- the tracking store's public boundary --------------------------------------------------------


def test_experiment_and_recorder_use_the_managers_public_boundary():
    from qroll.record import experiment, manager, recorder

    for module in (experiment, recorder):
        private = re.findall(r"manager\._\w+", inspect.getsource(module))
        assert private == [], f"{module.__name__} uses the manager's private {private}"
    assert not hasattr(manager.ExpManager, "_store")
    assert callable(manager.ExpManager.store_call) and manager.ExpManager.store_call.__doc__
