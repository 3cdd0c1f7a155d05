"""Placeholders in task configs: ``"<MODEL>"`` and ``"<dataset.kwargs.segments.train.0>"``.

Qlib fills them in the caller's dict, which leaves built models in task templates (and in any
template that shares a list with them). Here filling always returns a new structure.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Mapping
from typing import Any

from qroll.errors import ConfigError

__all__ = ["fill_placeholder", "get_item_from_obj"]

logger = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"<([^<>]+)>")


def _is_index(part: str) -> bool:
    # str.isdigit alone accepts "²", which int() refuses.
    return part.isascii() and part.isdigit()


def get_item_from_obj(obj: Any, path: str) -> Any:
    """Follow a dotted path through nested dicts, lists and tuples.

    Parameters
    ----------
    obj : dict, list or tuple
        The structure to read, usually a task config.
    path : str
        Dot-separated keys, e.g. ``"dataset.kwargs.segments.train.0"``. A part indexes a dict by
        key (a numeric part also matches an integer key) and a list or tuple by position.

    Returns
    -------
    object
        The value found at ``path``, not copied.

    Raises
    ------
    ConfigError
        If a part names no key, an index is out of range or not a number, or the path goes
        through a value that is neither a dict nor a list nor a tuple. The message names the part
        that failed and what was there.

    Examples
    --------
    >>> task = {"dataset": {"kwargs": {"segments": {"train": ("2008-01-01", "2014-12-31")}}}}
    >>> get_item_from_obj(task, "dataset.kwargs.segments.train.1")
    '2014-12-31'
    >>> get_item_from_obj(task, "dataset.kwargs.segment")
    Traceback (most recent call last):
    ...
    qroll.errors.ConfigError: cannot resolve 'dataset.kwargs.segment': dataset.kwargs has no key
    'segment' (it has 'segments'); fix the path
    """
    current = obj
    walked: list[str] = []
    for part in path.split("."):
        where = ".".join(walked) or "the top level"
        if isinstance(current, Mapping):
            if part in current:
                current = current[part]
            elif _is_index(part) and int(part) in current:
                # YAML reads `0:` as an integer key.
                current = current[int(part)]
            else:
                keys = ", ".join(repr(k) for k in current)
                raise ConfigError(
                    f"cannot resolve {path!r}: {where} has no key {part!r} "
                    f"(it has {keys or 'no keys'}); fix the path"
                )
        elif isinstance(current, (list, tuple)):
            if not _is_index(part):
                raise ConfigError(
                    f"cannot resolve {path!r}: {where} is a {type(current).__name__}, so "
                    f"{part!r} must be a position 0..{len(current) - 1}"
                )
            if int(part) >= len(current):
                raise ConfigError(
                    f"cannot resolve {path!r}: {where} has {len(current)} items, so there is no "
                    f"item {part}; use 0..{len(current) - 1}"
                )
            current = current[int(part)]
        else:
            raise ConfigError(
                f"cannot resolve {path!r}: {where} is {current!r}, not a dict, list or tuple; "
                f"shorten the path"
            )
        walked.append(part)
    return current


def fill_placeholder(config: Any, config_extend: Mapping[str, Any]) -> Any:
    """Return a copy of ``config`` with its placeholders filled; ``config`` is left untouched.

    Every string value (not key) found in dicts, lists and tuples, at any depth, is checked:

    - a string equal to a key of ``config_extend`` is replaced by the mapped value itself (the
      same object, not a copy: ``"<MODEL>"`` becomes the very model);
    - any other string of the form ``<a.b.c>`` is replaced by
      ``get_item_from_obj(config, "a.b.c")``, read from the original ``config``;
    - a ``<a.b.c>`` that names nothing is left as it is, and logged at DEBUG level.

    Parameters
    ----------
    config : dict, list or tuple
        A task or any config structure. Dicts, lists and tuples are copied (keeping their types);
        every other value is shared with the result, never deep-copied.
    config_extend : mapping of str to object
        Placeholder values, e.g. ``{"<MODEL>": model, "<DATASET>": dataset}``. Every key must be
        of the form ``<NAME>``.

    Returns
    -------
    object
        A new structure of the same shape as ``config``.

    Raises
    ------
    ConfigError
        If a key of ``config_extend`` is not of the form ``<NAME>``.

    Examples
    --------
    >>> task = {
    ...     "model": "<MODEL>",
    ...     "handler": {"fit_start_time": "<dataset.segments.train.0>"},
    ...     "dataset": {"segments": {"train": ("2008-01-01", "2014-12-31")}},
    ... }
    >>> model = object()
    >>> filled = fill_placeholder(task, {"<MODEL>": model})
    >>> filled["model"] is model, filled["handler"]["fit_start_time"]
    (True, '2008-01-01')
    >>> task["model"], task["handler"]["fit_start_time"]
    ('<MODEL>', '<dataset.segments.train.0>')
    """
    if not isinstance(config_extend, Mapping):
        raise ConfigError(
            f"config_extend must be a dict of placeholders such as {{'<MODEL>': model}}, "
            f"not {config_extend!r}"
        )
    for key in config_extend:
        if not isinstance(key, str) or _PLACEHOLDER.fullmatch(key) is None:
            raise ConfigError(
                f"placeholder {key!r} is not of the form '<NAME>': write it as '<{key}>' "
                "and use the same spelling in the config"
            )
    return _fill(config, config, config_extend, "config", resolve_paths=True)


def _fill(node: Any, root: Any, extend: Mapping[str, Any], path: str, resolve_paths: bool) -> Any:
    if isinstance(node, str):
        return _fill_string(node, root, extend, path, resolve_paths)
    if isinstance(node, dict):
        # copy.copy keeps a dict subclass's type and state (an OrderedDict, a defaultdict's
        # factory); the values are then replaced one by one in the copy.
        new_dict = dict(node) if type(node) is dict else copy.copy(node)
        for key, value in node.items():
            new_dict[key] = _fill(value, root, extend, f"{path}.{key}", resolve_paths)
        return new_dict
    if isinstance(node, list):
        new_list = list(node) if type(node) is list else copy.copy(node)
        for i, value in enumerate(node):
            new_list[i] = _fill(value, root, extend, f"{path}.{i}", resolve_paths)
        return new_list
    if isinstance(node, tuple):
        items = [_fill(v, root, extend, f"{path}.{i}", resolve_paths) for i, v in enumerate(node)]
        if type(node) is tuple:
            return tuple(items)
        if hasattr(node, "_fields"):  # a namedtuple takes its fields positionally
            return type(node)(*items)
        return type(node)(items)
    return node


def _fill_string(
    node: str, root: Any, extend: Mapping[str, Any], path: str, resolve_paths: bool
) -> Any:
    if node in extend:
        return extend[node]
    match = _PLACEHOLDER.fullmatch(node)
    if match is None or not resolve_paths:
        return node
    try:
        value = get_item_from_obj(root, match.group(1))
    except ConfigError as exc:
        # Qlib keeps such strings too: a value that merely looks like <...> is not an error.
        logger.debug("placeholder %r at %s left as it is: %s", node, path, exc)
        return node
    # The value comes from the caller's config: copy its containers so that the result shares
    # none with it, and fill "<MODEL>"-style keys inside it, but do not follow further paths,
    # which could point back at themselves.
    return _fill(value, root, extend, path, resolve_paths=False)
