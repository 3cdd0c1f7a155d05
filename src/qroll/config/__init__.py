"""Task configs: build objects from them, fill their placeholders, hash them, load them from YAML.

A task is a plain dict in Qlib's shape,
``{"model": CFG, "dataset": CFG, "record": [CFG | "ClassName", ...]}`` with
``CFG = {"class", "module_path"?, "kwargs"?}``:

- :func:`init_instance_by_config` builds the object a ``CFG`` describes;
- :func:`fill_placeholder` returns a copy with ``"<MODEL>"`` and ``"<a.b.c>"`` filled in;
- :func:`task_hash` gives the task's identity, stable across processes and machines;
- :func:`load_config` reads a run config from a YAML file.
"""

from __future__ import annotations

from qroll.config.hashing import canonical_json, task_hash, to_jsonable
from qroll.config.instance import accepts_keyword, init_instance_by_config, resolve_class
from qroll.config.loading import load_config
from qroll.config.placeholder import fill_placeholder, get_item_from_obj

__all__ = [
    "canonical_json",
    "fill_placeholder",
    "get_item_from_obj",
    "accepts_keyword",
    "init_instance_by_config",
    "load_config",
    "resolve_class",
    "task_hash",
    "to_jsonable",
]
