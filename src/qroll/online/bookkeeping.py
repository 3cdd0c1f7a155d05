"""The bookkeeping of an online experiment, in its own MLflow tags: never in a file or a pickle.

- ``qroll.online_digest``: the digest of the templates and ``rolling:`` its online windows were
  rolled with (:func:`config_digest`); a config whose digest differs is refused, naming the keys
  that differ (:func:`check_template`), until a reset (:func:`reset_online`);
- ``qroll.online_config.0``, ``.1``, ... (``qroll.online_config.parts`` of them): the config as
  JSON (:func:`online_config`: templates, ``rolling:``, data, backtest), in chunks that fit any
  store's tag column; ``qroll signals --orders`` reads the data and the backtest from it;
- ``qroll.online_as_of``: the latest as-of day an update or a simulation reached
  (:func:`last_as_of`): data ending before it is an older copy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

from qroll.config import task_hash
from qroll.errors import ConfigValueError
from qroll.record import Experiment, ExpManager, Recorder
from qroll.record.tags import TAG_ONLINE

if TYPE_CHECKING:
    # Only the type: a run config is read, never built here (run_config.py sits above online/).
    from qroll.run_config import RunConfig

__all__ = [
    "TAG_AS_OF",
    "TAG_CONFIG",
    "TAG_CONFIG_PARTS",
    "TAG_DIGEST",
    "advance_as_of",
    "changed_keys",
    "check_template",
    "config_digest",
    "config_tags",
    "experiment_tags",
    "find_experiment",
    "last_as_of",
    "online_config",
    "reset_online",
    "set_experiment_tags",
    "stored_config",
    "stored_online_config",
]

TAG_DIGEST = "qroll.online_digest"
"""Experiment tag: the digest of the templates and ``rolling:`` the online windows roll."""
TAG_CONFIG = "qroll.online_config"
"""Experiment tags ``qroll.online_config.0``, ``.1``, ...: the config as JSON, in chunks."""
TAG_CONFIG_PARTS = "qroll.online_config.parts"
"""Experiment tag: how many chunks ``qroll.online_config.N`` hold."""
TAG_AS_OF = "qroll.online_as_of"
"""Experiment tag: the latest as-of day an update or a simulation reached."""
_CHUNK = 4000  # characters per tag: under every store's column size for experiment tags
_SHOWN_KEYS = 6


def online_config(config: RunConfig) -> dict[str, Any]:
    """What the experiment keeps of ``config``: templates, ``rolling:``, data and backtest (JSON types)."""
    raw = {"tasks": config.tasks, "rolling": config.rolling, "data": config.data, "backtest": config.backtest}
    loaded: dict[str, Any] = json.loads(json.dumps(raw, default=str, sort_keys=True))
    return loaded


def config_digest(config: RunConfig) -> str:
    """16 hex digits naming the templates and ``rolling:`` an experiment's online windows roll.

    >>> from qroll.run_config import RunConfig
    >>> cfg = RunConfig.from_dict({"tasks": [{"model": {"class": "LinearModel"}, "dataset": {}}],
    ...                            "backtest": None})
    >>> len(config_digest(cfg))
    16
    """
    kept = online_config(config)
    return task_hash({"tasks": kept["tasks"], "rolling": kept["rolling"]})[:16]


def find_experiment(store: ExpManager, name: str) -> Experiment | None:
    names = {e.name for e in store.list_experiments()}
    return store.get_exp(name) if name in names else None


def experiment_tags(exp: Experiment | None) -> dict[str, str]:
    if exp is None:
        return {}
    with exp.manager.store_call(f"reading the tags of experiment {exp.name!r}"):
        return dict(exp.manager.client.get_experiment(exp.id).tags)


def set_experiment_tags(exp: Experiment, tags: Mapping[str, str]) -> None:
    with exp.manager.store_call(f"tagging experiment {exp.name!r}"):
        for key, value in tags.items():
            exp.manager.client.set_experiment_tag(exp.id, key, value)


def config_tags(config: RunConfig) -> dict[str, str]:
    text = json.dumps(online_config(config), sort_keys=True, separators=(",", ":"))
    parts = [text[i:i + _CHUNK] for i in range(0, len(text), _CHUNK)] or [""]
    tags = {f"{TAG_CONFIG}.{i}": part for i, part in enumerate(parts)}
    return {TAG_DIGEST: config_digest(config), TAG_CONFIG_PARTS: str(len(parts)), **tags}


def stored_online_config(exp: Experiment) -> dict[str, Any] | None:
    """What :func:`update` kept of the run config of ``exp`` (:func:`online_config`), or None.

    ``qroll signals --orders`` reads the data and the backtest from it.
    """
    return stored_config(experiment_tags(exp))


def stored_config(tags: Mapping[str, str]) -> dict[str, Any] | None:
    """The config an experiment's online windows were rolled with (from its tags), or None."""
    try:
        parts = int(tags.get(TAG_CONFIG_PARTS, ""))
        loaded: dict[str, Any] = json.loads("".join(tags[f"{TAG_CONFIG}.{i}"] for i in range(parts)))
    except (ValueError, KeyError):
        return None
    return loaded


def _flat(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key in sorted(value):
            yield from _flat(value[key], f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _flat(item, f"{prefix}[{i}]")
        if not value:
            yield prefix, []
    else:
        yield prefix, value


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The keys (``tasks[0].model.kwargs.num_leaves``) whose values differ between two configs.

    >>> changed_keys({"tasks": [{"a": 1, "b": 2}]}, {"tasks": [{"a": 1, "b": 3, "c": 0}]})
    ['tasks[0].b', 'tasks[0].c']
    """
    a, b = dict(_flat(old)), dict(_flat(new))
    return sorted(k for k in a.keys() | b.keys() if a.get(k, _MISSING) != b.get(k, _MISSING))


_MISSING = object()


def check_template(exp: Experiment | None, tags: Mapping[str, str], config: RunConfig) -> None:
    stored = tags.get(TAG_DIGEST)
    if exp is None or stored is None or stored == config_digest(config):
        return
    old = stored_config(tags)
    new = online_config(config)
    parts = ("tasks", "rolling")
    keys = changed_keys({k: old.get(k) for k in parts}, {k: new[k] for k in parts}) if old is not None else []
    more = len(keys) - _SHOWN_KEYS
    shown = ", ".join(keys[:_SHOWN_KEYS]) + (f" and {more} more" if more > 0 else "")
    what = f"keys that differ: {shown}" if keys else f"digest {stored} != {config_digest(config)}"
    raise ConfigValueError(
        f"{config.origin}: the templates or rolling: of experiment {config.experiment!r} changed since its "
        f"online windows were trained ({what}); pass --reset to remove its online runs and start again, or "
        "use another experiment name"
    )


def _online_runs(exp: Experiment) -> list[Recorder]:
    return [rec for rec in exp.list_recorders() if TAG_ONLINE in rec.tags]


def reset_online(exp: Experiment) -> int:
    """Delete the runs the online rolling tagged; forget the last as-of day. Returns how many."""
    runs = _online_runs(exp)
    for rec in runs:
        exp.delete_recorder(rec.id)
    set_experiment_tags(exp, {TAG_AS_OF: ""})
    return len(runs)


def advance_as_of(exp: Experiment, day: pd.Timestamp) -> None:
    last = experiment_tags(exp).get(TAG_AS_OF)
    if not last or pd.Timestamp(last) < day:
        set_experiment_tags(exp, {TAG_AS_OF: f"{day:%Y-%m-%d}"})


def last_as_of(exp: Experiment) -> pd.Timestamp | None:
    """The last as-of day an update or a simulation of ``exp`` reached (None before any)."""
    text = experiment_tags(exp).get(TAG_AS_OF)
    return pd.Timestamp(text) if text else None
