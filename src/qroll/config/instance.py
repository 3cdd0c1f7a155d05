"""Build objects from ``{"class", "module_path", "kwargs"}`` configs, as Qlib does.

A Qlib task config names Qlib classes (``qlib.contrib.model.gbdt.LGBModel``); those that qroll
re-implements are mapped to qroll's own through :data:`QLIB_EQUIVALENTS`, so the config runs
unchanged. Short names with no ``module_path`` are looked up in :data:`QROLL_CLASSES`. Both tables
hold import strings and are imported only on use, so listing a class costs nothing at start-up and
a module being written or broken does not break the others.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import os
import reprlib
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from qroll.errors import ClassNotFoundError, ConfigError

__all__ = ["QLIB_EQUIVALENTS", "QROLL_CLASSES", "accepts_keyword", "init_instance_by_config", "resolve_class"]

QLIB_EQUIVALENTS: dict[str, str] = {
    # Qlib's full class name -> qroll's "module:Class". One line per class qroll re-implements.
    "qlib.workflow.task.gen.RollingGen": "qroll.tasks.gen:RollingGen",
    "qlib.workflow.task.gen.MultiHorizonGenBase": "qroll.tasks.gen:MultiHorizonGenBase",
    "qlib.contrib.model.gbdt.LGBModel": "qroll.models.gbdt:LGBModel",
    "qlib.contrib.model.linear.LinearModel": "qroll.models.linear:LinearModel",
    "qlib.workflow.record_temp.SignalRecord": "qroll.record.records:SignalRecord",
    "qlib.workflow.record_temp.SigAnaRecord": "qroll.record.records:SigAnaRecord",
    "qlib.workflow.record_temp.PortAnaRecord": "qroll.record.portfolio:PortAnaRecord",
    "qlib.contrib.data.handler.Alpha158": "qroll.data.handler:Alpha158",
    "qlib.contrib.data.handler.Alpha360": "qroll.data.handler:Alpha360",
    "qlib.data.dataset.handler.DataHandlerLP": "qroll.data.handler:DataHandlerLP",
    "qlib.data.dataset.DatasetH": "qroll.data.dataset:DatasetH",
    "qlib.data.dataset.processor.CSRankNorm": "qroll.data.processors:CSRankNorm",
    "qlib.data.dataset.processor.CSZScoreNorm": "qroll.data.processors:CSZScoreNorm",
    "qlib.data.dataset.processor.DropnaLabel": "qroll.data.processors:DropnaLabel",
    "qlib.data.dataset.processor.Fillna": "qroll.data.processors:Fillna",
    "qlib.data.dataset.processor.FilterCol": "qroll.data.processors:FilterCol",
    "qlib.data.dataset.processor.MinMaxNorm": "qroll.data.processors:MinMaxNorm",
    "qlib.data.dataset.processor.ProcessInf": "qroll.data.processors:ProcessInf",
    "qlib.data.dataset.processor.RobustZScoreNorm": "qroll.data.processors:RobustZScoreNorm",
    "qlib.data.dataset.processor.ZScoreNorm": "qroll.data.processors:ZScoreNorm",
    "qlib.data.dataset.processor.CSZFillna": "qroll.data.processors:CSZFillna",
    "qlib.data.dataset.processor.TanhProcess": "qroll.data.processors:TanhProcess",
    "qlib.data.dataset.processor.DropCol": "qroll.data.processors:DropCol",
    "qlib.data.dataset.processor.DropnaProcessor": "qroll.data.processors:DropnaProcessor",
    "qlib.contrib.strategy.TopkDropoutStrategy": "qroll.backtest.strategy:TopkDropoutStrategy",
    "qlib.contrib.strategy.signal_strategy.TopkDropoutStrategy":
        "qroll.backtest.strategy:TopkDropoutStrategy",
    "qlib.workflow.online.manager.OnlineManager": "qroll.online.manager:OnlineManager",
    "qlib.workflow.online.strategy.RollingStrategy": "qroll.online.strategy:RollingStrategy",
    "qlib.workflow.online.utils.OnlineToolR": "qroll.online.tool:OnlineToolR",
    "qlib.workflow.online.update.PredUpdater": "qroll.online.update:PredUpdater",
    "qlib.workflow.online.update.LabelUpdater": "qroll.online.update:LabelUpdater",
}
"""Qlib classes that qroll re-implements: full Qlib name to qroll ``"module:Class"``."""

QROLL_CLASSES: dict[str, str] = {
    # Short name -> "module:Class", for configs that give no module_path.
    "RollingGen": "qroll.tasks.gen:RollingGen",
    "MultiHorizonGenBase": "qroll.tasks.gen:MultiHorizonGenBase",
    "TradingCalendar": "qroll.calendar:TradingCalendar",
    "TimeAdjuster": "qroll.calendar:TimeAdjuster",
    "LGBModel": "qroll.models.gbdt:LGBModel",
    "LinearModel": "qroll.models.linear:LinearModel",
    "SignalRecord": "qroll.record.records:SignalRecord",
    "SigAnaRecord": "qroll.record.records:SigAnaRecord",
    "PortAnaRecord": "qroll.record.portfolio:PortAnaRecord",
    "Alpha158": "qroll.data.handler:Alpha158",
    "Alpha360": "qroll.data.handler:Alpha360",
    "DataHandlerLP": "qroll.data.handler:DataHandlerLP",
    "DatasetH": "qroll.data.dataset:DatasetH",
    "QlibBinSource": "qroll.data.qlib_bin:QlibBinSource",
    "TableSource": "qroll.data.table:TableSource",
    "SyntheticMarket": "qroll.data.synthetic:SyntheticMarket",
    "CSRankNorm": "qroll.data.processors:CSRankNorm",
    "CSZFillna": "qroll.data.processors:CSZFillna",
    "CSZScoreNorm": "qroll.data.processors:CSZScoreNorm",
    "DropCol": "qroll.data.processors:DropCol",
    "DropnaFeature": "qroll.data.processors:DropnaFeature",
    "DropnaLabel": "qroll.data.processors:DropnaLabel",
    "DropnaProcessor": "qroll.data.processors:DropnaProcessor",
    "Fillna": "qroll.data.processors:Fillna",
    "FilterCol": "qroll.data.processors:FilterCol",
    "MinMaxNorm": "qroll.data.processors:MinMaxNorm",
    "ProcessInf": "qroll.data.processors:ProcessInf",
    "RobustZScoreNorm": "qroll.data.processors:RobustZScoreNorm",
    "TanhProcess": "qroll.data.processors:TanhProcess",
    "ZScoreNorm": "qroll.data.processors:ZScoreNorm",
    "TopkDropoutStrategy": "qroll.backtest.strategy:TopkDropoutStrategy",
    "OnlineManager": "qroll.online.manager:OnlineManager",
    "RollingStrategy": "qroll.online.strategy:RollingStrategy",
    "OnlineToolR": "qroll.online.tool:OnlineToolR",
    "PredUpdater": "qroll.online.update:PredUpdater",
    "LabelUpdater": "qroll.online.update:LabelUpdater",
}
"""qroll's own classes by short name, for configs without ``module_path``."""

_CONFIG_KEYS = ("class", "module_path", "kwargs")
_short = reprlib.Repr()
_short.maxstring = _short.maxother = 80
_short.maxdict = _short.maxlist = _short.maxtuple = 8
_short.maxlevel = 4


def _import_module(module_path: str) -> ModuleType:
    if module_path.endswith(".py"):
        return _import_file(module_path)
    try:
        return importlib.import_module(module_path)
    except ImportError as exc:
        raise ClassNotFoundError(
            f"cannot import module {module_path!r}: {exc}; check module_path, or install what "
            "it needs"
        ) from exc


def _import_file(module_path: str) -> ModuleType:
    path = Path(module_path).expanduser().resolve()
    if not path.is_file():
        raise ClassNotFoundError(
            f"module file {module_path!r} does not exist (looked for {str(path)!r}); give the path "
            "of a .py file, absolute or relative to the current directory"
        )
    # One module per file, named after its full path: loading the file twice gives the same
    # classes (isinstance and pickling keep working), and two files called model.py do not clash.
    name = "qroll_user_" + hashlib.sha256(str(path).encode()).hexdigest()[:16]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ClassNotFoundError(f"cannot load module file {module_path!r}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        del sys.modules[name]
        raise ClassNotFoundError(
            f"cannot import module file {module_path!r}: {exc}; install what it needs"
        ) from exc
    except BaseException:
        # A file that failed half-way must not be found "loaded" by the next attempt.
        del sys.modules[name]
        raise
    return module


def _import_string(target: str, name: str) -> Any:
    module_name, _, qualname = target.partition(":")
    obj: Any = _import_module(module_name)
    for attr in qualname.split("."):
        if not hasattr(obj, attr):
            raise ClassNotFoundError(
                f"{name!r} maps to {target!r}, but {module_name!r} has no {qualname!r}: "
                "this is a bug in qroll's class tables, please report it"
            )
        obj = getattr(obj, attr)
    return obj


def _did_you_mean(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def _from_module(cls_name: str, module_path: str | ModuleType) -> Any:
    if isinstance(module_path, ModuleType):
        module, shown = module_path, module_path.__name__
    else:
        if module_path == "qlib" or module_path.startswith("qlib."):
            full = f"{module_path}.{cls_name}"
            if full not in QLIB_EQUIVALENTS:
                raise ClassNotFoundError(
                    f"{cls_name!r} from {module_path!r} is a Qlib class with no qroll equivalent "
                    "yet; use a qroll class, or give a module_path of your own"
                )
            return _import_string(QLIB_EQUIVALENTS[full], full)
        module, shown = _import_module(module_path), module_path
    if not hasattr(module, cls_name):
        classes = [n for n, v in vars(module).items() if isinstance(v, type) and n[:1] != "_"]
        hint = _did_you_mean(cls_name, classes)
        raise ClassNotFoundError(
            f"module {shown!r} has no class {cls_name!r}{hint}; check the class name and "
            "module_path"
        )
    return getattr(module, cls_name)


def _resolve(cls_name: str, module_path: Any, default_module: Any) -> Any:
    if "." in cls_name:
        # Qlib's "pkg.module.ClassName" form: the name carries its own module.
        module_path, _, cls_name = cls_name.rpartition(".")
    if isinstance(module_path, os.PathLike):
        module_path = os.fspath(module_path)
    if module_path is not None:
        if not isinstance(module_path, (str, ModuleType)):
            raise ConfigError(
                f"module_path {module_path!r} is neither a module name, a .py file nor a "
                "module; write it as 'pkg.module' or 'path/to/file.py'"
            )
        return _from_module(cls_name, module_path)
    if cls_name in QROLL_CLASSES:
        return _import_string(QROLL_CLASSES[cls_name], cls_name)
    if default_module is not None:
        return _resolve(cls_name, default_module, None)
    hint = _did_you_mean(cls_name, list(QROLL_CLASSES))
    raise ClassNotFoundError(
        f"{cls_name!r} is not one of qroll's classes{hint}; give a module_path, or a full "
        "name such as 'pkg.module.ClassName'"
    )


def _callable_and_kwargs(
    config: Any, default_module: Any
) -> tuple[Callable[..., Any], dict[str, Any]]:
    if isinstance(config, type):
        return config, {}
    if isinstance(config, str):
        return _checked(_resolve(config, None, default_module), config), {}
    if not isinstance(config, Mapping) or "class" not in config:
        raise ConfigError(
            f"cannot build an object from {_short.repr(config)}: give a dict "
            "{'class': ..., 'module_path': ..., 'kwargs': {...}}, a class name or a class"
        )
    unknown = [k for k in config if k not in _CONFIG_KEYS]
    if unknown:
        # Qlib ignores them, so a misspelt 'kwargs' silently builds with default arguments.
        raise ConfigError(
            f"config {_short.repr(config)} has unknown keys {unknown}; the keys are "
            f"{', '.join(_CONFIG_KEYS)} (put constructor arguments under 'kwargs')"
        )
    kwargs = config.get("kwargs")
    if kwargs is None:  # `kwargs:` left empty in YAML
        kwargs = {}
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise ConfigError(
            f"'kwargs' of {config['class']!r} must be a dict of argument names to values, "
            f"not {_short.repr(kwargs)}"
        )
    klass = config["class"]
    if isinstance(klass, str):
        klass = _checked(_resolve(klass, config.get("module_path"), default_module), klass)
    elif not isinstance(klass, type):
        raise ConfigError(
            f"'class' must be a class name or a class, not {_short.repr(klass)}; "
            "write e.g. {'class': 'RollingGen'}"
        )
    return klass, dict(kwargs)


def accepts_keyword(func: Any, name: str, default: bool = False) -> bool:
    """Whether ``func`` (a function or a class) can be called with keyword ``name``: a parameter
    of that name, or ``**kwargs``.

    ``default`` answers for a callable without a signature (builtins, some C callables).

    >>> accepts_keyword(lambda a, b=None: None, "b"), accepts_keyword(lambda **kw: None, "b")
    (True, True)
    >>> accepts_keyword(lambda a: None, "b")
    False
    """
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return default
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def resolve_class(config: Any, default_module: str | ModuleType | None = None) -> Callable[..., Any]:
    """The class (or factory) a config names, without building anything.

    Lets a run check every class of every task before it starts a single run.

    Raises
    ------
    ConfigError, ClassNotFoundError
        As :func:`init_instance_by_config` would.

    Examples
    --------
    >>> resolve_class({"class": "RollingGen"}).__name__
    'RollingGen'
    """
    return _callable_and_kwargs(config, default_module)[0]


def _checked(found: Any, name: str) -> Callable[..., Any]:
    # Qlib also builds from functions (factories), so any callable is accepted, not only classes.
    if not callable(found):
        raise ConfigError(
            f"{name!r} names {_short.repr(found)}, which cannot be called; name a class"
        )
    return found


def _binds(klass: Callable[..., Any], kwargs: dict[str, Any]) -> str | None:
    """Return why ``klass(**kwargs)`` cannot be called, or None if it can (or cannot be told)."""
    try:
        signature = inspect.signature(klass)
    except (TypeError, ValueError):  # some builtins have no signature
        return None
    try:
        signature.bind(**kwargs)
    except TypeError as exc:
        return f"{exc} (its signature is {signature})"
    return None


def _build(klass: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    problem = _binds(klass, kwargs)
    if problem is not None:
        name = getattr(klass, "__qualname__", repr(klass))
        raise ConfigError(
            f"cannot build {name} with kwargs {_short.repr(kwargs)}: {problem}; fix the names "
            "in 'kwargs'"
        )
    return klass(**kwargs)


def init_instance_by_config(
    config: Any,
    default_module: str | ModuleType | None = None,
    accept_types: type | tuple[type, ...] = (),
    try_kwargs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    """Build an object from a config, with Qlib's rules.

    Parameters
    ----------
    config : dict, str, class or object
        One of:

        - ``{"class": "Name", "module_path": "pkg.module", "kwargs": {...}}``. ``class`` may also
          be a class object or a full name ``"pkg.module.Name"``; ``module_path`` may be a module
          object or a ``.py`` file; both ``module_path`` and ``kwargs`` are optional.
        - ``"Name"`` or ``"pkg.module.Name"``, built without arguments (but ``**kwargs``).
        - a class, built with ``**kwargs``.
        - an instance of ``accept_types``, returned as it is.

        A Qlib ``module_path`` (``qlib.…``) maps to qroll's equivalent class; a name with no
        ``module_path`` is first looked up among qroll's own classes, then in ``default_module``.
    default_module : str or module, optional
        Where to look for a bare class name that is not one of qroll's.
    accept_types : type or tuple of types, optional
        Objects of these types are returned unchanged, and the built object must be one of them.
    try_kwargs : mapping, optional
        Arguments offered to the constructor: passed when it accepts them, dropped otherwise
        (Qlib retries without them on any ``TypeError``; so does this function).
    **kwargs
        Arguments that override the config's ``kwargs``.

    Returns
    -------
    object
        The built object.

    Raises
    ------
    ConfigError
        If ``config`` has none of the forms above, its ``kwargs`` do not fit the constructor's
        signature, or the object is not an instance of ``accept_types``.
    ClassNotFoundError
        If the module cannot be imported, the class is not in it, or a Qlib class has no qroll
        equivalent yet.

    Examples
    --------
    >>> init_instance_by_config(
    ...     {"class": "Fraction", "module_path": "fractions", "kwargs": {"numerator": 2}},
    ...     denominator=6,
    ... )
    Fraction(1, 3)
    >>> init_instance_by_config("fractions.Fraction", try_kwargs={"model": None}, numerator=3)
    Fraction(3, 1)
    >>> init_instance_by_config({"class": "Fraction", "module_path": "fractions"}, accept_types=int)
    Traceback (most recent call last):
    ...
    qroll.errors.ConfigError: {'class': 'Fraction', 'module_path': 'fractions'} built a Fraction,
    but an instance of int is expected here; name a class of that type
    """
    if isinstance(config, accept_types):
        return config
    klass, config_kwargs = _callable_and_kwargs(config, default_module)
    call_kwargs = {**config_kwargs, **kwargs}
    if try_kwargs and _binds(klass, {**call_kwargs, **try_kwargs}) is None:
        try:
            obj = klass(**call_kwargs, **try_kwargs)
        except TypeError:
            # Qlib's rule: any TypeError means "retry without them" (a constructor that takes
            # **kwargs may still refuse them further down, or a name may be given twice).
            obj = _build(klass, call_kwargs)
    else:
        # Checking the signature first spares a constructor with side effects a failed first run.
        obj = _build(klass, call_kwargs)
    if accept_types and not isinstance(obj, accept_types):
        expected = accept_types if isinstance(accept_types, tuple) else (accept_types,)
        wanted = " or ".join(t.__qualname__ for t in expected)
        raise ConfigError(
            f"{_short.repr(config)} built a {type(obj).__qualname__}, but an instance of {wanted} "
            "is expected here; name a class of that type"
        )
    return obj
