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
