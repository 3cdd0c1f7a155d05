"""The curated public API: every name in __all__ imports, and nothing private leaks."""

from __future__ import annotations

import qroll
from qroll import errors


def test_every_public_name_imports_and_is_documented():
    for name in qroll.__all__:
        obj = getattr(qroll, name)
        assert name == "__version__" or obj.__doc__, f"{name} has no docstring"


def test_nothing_private_leaks():
    public = {n for n in dir(qroll) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(qroll, n)).__name__ == "module"}
    assert public - modules == set(qroll.__all__) - {"__version__"}


def test_every_error_descends_from_qroll_error_and_is_drawn_in_the_tree():
    for name in errors.__all__:
        cls = getattr(errors, name)
        if not issubclass(cls, Warning):
            assert issubclass(cls, errors.QrollError)
        assert name in errors.__doc__, f"{name} missing from the tree in errors.py"


def test_error_default_message_is_its_docstring():
    assert str(errors.TaskGenError()) == "The task template cannot be rolled."


def test_the_class_tables_the_sub_packages_and_the_public_api_agree():
    """A built-in class a config can name is exported by its sub-package and by qroll itself, and
    every Qlib class qroll re-implements maps to one of them (one place to add a class: its
    module, its sub-package's __all__, QROLL_CLASSES; this test names whatever is missing)."""
    import importlib

    from qroll.config.instance import QLIB_EQUIVALENTS, QROLL_CLASSES

    missing = []
    for name, target in QROLL_CLASSES.items():
        module, _, cls = target.partition(":")
        assert cls == name, f"QROLL_CLASSES[{name!r}] points at {cls!r}"
        package = importlib.import_module(".".join(module.split(".")[:2]))
        if package.__name__ != "qroll" and cls not in getattr(package, "__all__", ()):
            missing.append(f"{cls} not in {package.__name__}.__all__")
        if cls not in qroll.__all__:
            missing.append(f"{cls} not in qroll.__all__")
    assert not missing, missing
    strays = sorted(set(QLIB_EQUIVALENTS.values()) - set(QROLL_CLASSES.values()))
    assert not strays, f"Qlib classes mapped to qroll classes QROLL_CLASSES does not name: {strays}"


EXTENSION_POINTS = ("Source", "register_source", "PoolBackend", "register_backend", "RecordTemp", "Processor",
                    "Model", "RunConfig", "RollingExperiment")
POOL_ERRORS = ("PoolError", "PoolConfigError", "PoolConnectionError", "PoolQueryError", "PoolSchemaError",
               "PoolTimeoutError", "LeaseLostError", "TaskDeferredError", "NotSerializableError")


def test_the_extension_points_are_public_and_documented_where_a_newcomer_looks():
    """Each extension point is in qroll.__all__, says how to extend it (a Notes or Examples
    section) and is named in ARCHITECTURE.md; every pool error is public and in the tree."""
    from pathlib import Path

    architecture = (Path(__file__).parents[2] / "ARCHITECTURE.md").read_text(encoding="utf-8")
    for name in EXTENSION_POINTS:
        assert name in qroll.__all__, name
        doc = getattr(qroll, name).__doc__ or ""
        assert "Notes\n" in doc or "Examples\n" in doc, f"{name}'s docstring does not say how to extend it"
        assert f"`{name}`" in architecture, f"ARCHITECTURE.md does not name {name}"
    for name in POOL_ERRORS:
        assert name in qroll.__all__ and issubclass(getattr(qroll, name), errors.QrollError), name
