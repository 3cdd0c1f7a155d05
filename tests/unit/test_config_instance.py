"""init_instance_by_config: the config forms, class resolution, try_kwargs and every error."""

from __future__ import annotations

import collections
import fractions
import sys
from typing import Any

import pytest

from qroll.calendar import TimeAdjuster, TradingCalendar
from qroll.config import init_instance_by_config
from qroll.config import instance as instance_mod
from qroll.errors import ClassNotFoundError, ConfigError


class Recorded:
    """Counts constructions, so tests can tell a retry from a single call."""

    calls: list[dict[str, Any]] = []

    def __init__(self, size: int = 1, model: Any = None) -> None:
        Recorded.calls.append({"size": size, "model": model})
        self.size, self.model = size, model


class NoModel:
    calls = 0

    def __init__(self, size: int = 1) -> None:
        NoModel.calls += 1
        self.size = size


class RefusesDownstream:
    """Takes **kwargs but its base class refuses them: only a real call can tell."""

    calls = 0

    def __init__(self, **kwargs: Any) -> None:
        RefusesDownstream.calls += 1
        if kwargs:
            raise TypeError(f"unexpected {sorted(kwargs)}")


@pytest.fixture(autouse=True)
def _reset_counters() -> None:
    Recorded.calls = []
    NoModel.calls = 0
    RefusesDownstream.calls = 0


# -- config forms --------------------------------------------------------------------------------


def test_qlib_style_dict_with_stdlib_module_path() -> None:
    obj = init_instance_by_config(
        {"class": "OrderedDict", "module_path": "collections", "kwargs": {"a": 1, "b": 2}}
    )
    assert type(obj) is collections.OrderedDict
    assert list(obj.items()) == [("a", 1), ("b", 2)]


def test_call_kwargs_override_config_kwargs() -> None:
    config = {"class": "Fraction", "module_path": "fractions", "kwargs": {"numerator": 1}}
    assert init_instance_by_config(config, numerator=3, denominator=4) == fractions.Fraction(3, 4)
    assert config["kwargs"] == {"numerator": 1}  # the caller's config is not touched


@pytest.mark.parametrize(
    "config",
    [
        "fractions.Fraction",
        {"class": "fractions.Fraction"},
        {"class": "Fraction", "module_path": fractions},
        {"class": fractions.Fraction, "kwargs": None},
        fractions.Fraction,
    ],
    ids=["dotted-string", "dotted-class", "module-object", "class-in-dict", "class"],
)
def test_every_config_form_builds_the_same_class(config: Any) -> None:
    obj = init_instance_by_config(config, numerator=5)
    assert obj == fractions.Fraction(5)


def test_object_of_accepted_type_is_returned_as_is() -> None:
    existing = fractions.Fraction(1, 3)
    assert init_instance_by_config(existing, accept_types=fractions.Fraction) is existing


def test_short_name_uses_qroll_registry() -> None:
    calendar = init_instance_by_config(
        {"class": "TradingCalendar", "kwargs": {"days": ["2020-01-02", "2020-01-03"]}}
    )
    assert isinstance(calendar, TradingCalendar)
    assert len(calendar) == 2
    adjuster = init_instance_by_config("TimeAdjuster", calendar=calendar)
    assert isinstance(adjuster, TimeAdjuster)


def test_registry_wins_over_default_module() -> None:
    obj = init_instance_by_config(
        "TradingCalendar", default_module="fractions", days=["2020-01-02"]
    )
    assert isinstance(obj, TradingCalendar)


def test_default_module_used_for_names_outside_registry() -> None:
    obj = init_instance_by_config("Fraction", default_module="fractions", numerator=2)
    assert type(obj) is fractions.Fraction and obj == 2


def test_registry_entries_all_resolve_to_their_named_class() -> None:
    tables = {**instance_mod.QROLL_CLASSES, **instance_mod.QLIB_EQUIVALENTS}
    for name, target in tables.items():
        klass = instance_mod._import_string(target, name)
        assert isinstance(klass, type), name
        assert klass.__name__ == name.rsplit(".", 1)[-1]
        assert klass.__module__ == target.split(":")[0]


def test_registry_is_imported_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(instance_mod.QROLL_CLASSES, "Ghost", "qroll_no_such_module:Ghost")
    # A broken entry does not stop the others from resolving...
    assert isinstance(
        init_instance_by_config("TradingCalendar", days=["2020-01-02"]), TradingCalendar
    )
    # ...and fails, naming its module, only when asked for.
    with pytest.raises(ClassNotFoundError, match="qroll_no_such_module.*No module named"):
        init_instance_by_config("Ghost")


# -- Qlib module paths -------------------------------------------------------------------------


def test_qlib_module_path_maps_to_qroll_class() -> None:
    from qroll.tasks.gen import RollingGen

    gen = init_instance_by_config(
        {"class": "RollingGen", "module_path": "qlib.workflow.task.gen", "kwargs": {"step": 20}}
    )
    assert type(gen) is RollingGen
    assert gen.step == 20
    assert type(init_instance_by_config("qlib.workflow.task.gen.RollingGen")) is RollingGen


def test_adding_a_qlib_equivalent_is_one_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        instance_mod.QLIB_EQUIVALENTS, "qlib.contrib.model.gbdt.LGBModel", "fractions:Fraction"
    )
    config = {
        "class": "LGBModel",
        "module_path": "qlib.contrib.model.gbdt",
        "kwargs": {"numerator": 7},
    }
    assert init_instance_by_config(config) == fractions.Fraction(7)


@pytest.mark.parametrize(
    ("config", "default_module"),
    [
        ({"class": "XGBModel", "module_path": "qlib.contrib.model.xgboost"}, None),
        ("qlib.contrib.model.xgboost.XGBModel", None),
        ("XGBModel", "qlib.contrib.model.xgboost"),
    ],
)
def test_qlib_class_without_equivalent(config: Any, default_module: str | None) -> None:
    with pytest.raises(
        ClassNotFoundError,
        match=r"'XGBModel' from 'qlib\.contrib\.model\.xgboost' is a Qlib class with no qroll "
        r"equivalent yet; use a qroll class, or give a module_path of your own",
    ):
        init_instance_by_config(config, default_module=default_module)


# -- module_path as a .py file -----------------------------------------------------------------


WIDGET_SOURCE = """
class Widget:
    def __init__(self, size, colour="red"):
        self.size, self.colour = size, colour
"""


def test_py_file_module_path(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "widgets.py"
    path.write_text(WIDGET_SOURCE)
    config = {"class": "Widget", "module_path": str(path), "kwargs": {"size": 3}}
    widget = init_instance_by_config(config)
    assert (widget.size, widget.colour) == (3, "red")
    # Relative to the current directory, and loaded once: the same class both times.
    monkeypatch.chdir(tmp_path)
    again = init_instance_by_config({"class": "Widget", "module_path": "widgets.py"}, size=4)
    assert type(again) is type(widget)
    assert sys.modules[type(widget).__module__].__file__ == str(path)


def test_py_file_that_fails_is_not_cached(tmp_path: Any) -> None:
    path = tmp_path / "broken.py"
    path.write_text("class Widget(:\n")
    with pytest.raises(SyntaxError):
        init_instance_by_config({"class": "Widget", "module_path": str(path)}, size=1)
    path.write_text(WIDGET_SOURCE)
    assert init_instance_by_config({"class": "Widget", "module_path": str(path)}, size=1).size == 1


def test_py_file_with_missing_dependency(tmp_path: Any) -> None:
    path = tmp_path / "needs.py"
    path.write_text("import qroll_missing_dependency\n")
    with pytest.raises(ClassNotFoundError, match=r"needs\.py.*qroll_missing_dependency"):
        init_instance_by_config({"class": "Widget", "module_path": str(path)})


def test_missing_py_file(tmp_path: Any) -> None:
    with pytest.raises(ClassNotFoundError, match=r"module file '.*nowhere\.py' does not exist"):
        init_instance_by_config({"class": "Widget", "module_path": str(tmp_path / "nowhere.py")})


# -- try_kwargs ----------------------------------------------------------------------------------


def test_try_kwargs_passed_when_accepted() -> None:
    model = object()
    obj = init_instance_by_config(Recorded, try_kwargs={"model": model}, size=2)
    assert obj.model is model and obj.size == 2
    assert len(Recorded.calls) == 1


def test_try_kwargs_dropped_when_not_accepted_without_a_failed_call() -> None:
    obj = init_instance_by_config(
        {"class": NoModel, "kwargs": {"size": 5}}, try_kwargs={"model": object()}
    )
    assert obj.size == 5
    assert NoModel.calls == 1


def test_try_kwargs_retried_without_on_type_error_like_qlib() -> None:
    obj = init_instance_by_config(RefusesDownstream, try_kwargs={"model": 1, "dataset": 2})
    assert isinstance(obj, RefusesDownstream)
    assert RefusesDownstream.calls == 2


def test_config_kwargs_win_over_try_kwargs_with_the_same_name() -> None:
    obj = init_instance_by_config(Recorded, try_kwargs={"size": 9, "model": "m"}, size=2)
    # Qlib's rule: a name given twice is a TypeError, so the retry drops all try_kwargs.
    assert (obj.size, obj.model) == (2, None)


def test_constructor_errors_propagate_unchanged() -> None:
    with pytest.raises(ZeroDivisionError):
        init_instance_by_config("fractions.Fraction", numerator=1, denominator=0)


# -- errors ---------------------------------------------------------------------------------------

FRACTION = {"class": "Fraction", "module_path": "fractions"}

ERRORS = [
    (
        {"class": "OrderedDict", "module_path": "collectionz"},
        ClassNotFoundError,
        r"^cannot import module 'collectionz': No module named 'collectionz'; check module_path",
    ),
    (
        {"class": "OrderedDik", "module_path": "collections"},
        ClassNotFoundError,
        r"^module 'collections' has no class 'OrderedDik' \(did you mean 'OrderedDict'\?\)",
    ),
    (
        "RolingGen",
        ClassNotFoundError,
        r"^'RolingGen' is not one of qroll's classes \(did you mean 'RollingGen'\?\); give a "
        r"module_path, or a full name such as 'pkg\.module\.ClassName'",
    ),
    ({"class": "Zzz"}, ClassNotFoundError, r"^'Zzz' is not one of qroll's classes; give"),
    ([1, 2], ConfigError, r"^cannot build an object from \[1, 2\]: give a dict \{'class'"),
    (42, ConfigError, r"^cannot build an object from 42: give a dict"),
    (None, ConfigError, r"^cannot build an object from None: give a dict"),
    ({"kwargs": {"a": 1}}, ConfigError, r"^cannot build an object from \{'kwargs': \{'a': 1\}\}"),
    (
        {**FRACTION, "kwarg": {}},
        ConfigError,
        r"has unknown keys \['kwarg'\]; the keys are class, module_path, kwargs \(put",
    ),
    ({**FRACTION, "kwargs": [1, 2]}, ConfigError, r"^'kwargs' of 'Fraction' must be a dict"),
    ({**FRACTION, "kwargs": {1: 2}}, ConfigError, r"must be a dict .*, not \{1: 2\}"),
    ({"class": 3}, ConfigError, r"^'class' must be a class name or a class, not 3; write e\.g\."),
    ({**FRACTION, "module_path": 3}, ConfigError, r"^module_path 3 is neither a module name"),
    (
        {"class": "pi", "module_path": "math"},
        ConfigError,
        r"^'pi' names 3\.14\d*, which cannot be called; name a class",
    ),
    (
        {"class": "TradingCalendar", "kwargs": {"dayz": []}},
        ConfigError,
        r"^cannot build TradingCalendar with kwargs \{'dayz': \[\]\}: missing a required "
        r"argument: 'days' \(its signature is \(days.*fix the names in 'kwargs'",
    ),
]


@pytest.mark.parametrize(("config", "error", "message"), ERRORS)
def test_errors_repeat_the_value_and_say_what_to_do(
    config: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        init_instance_by_config(config)


def test_built_object_of_wrong_type() -> None:
    with pytest.raises(
        ConfigError,
        match=r"^'fractions\.Fraction' built a Fraction, but an instance of int or float is "
        r"expected here; name a class of that type",
    ):
        init_instance_by_config("fractions.Fraction", accept_types=(int, float))
