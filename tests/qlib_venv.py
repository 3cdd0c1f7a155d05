"""Where the oracle tests find Qlib 0.9.7's interpreter, or why they skip.

Qlib runs in its own virtual environment, never in qroll's: ``make test`` builds it
(``make qlib-venv``) and, where the install fails, writes the reason to ``unavailable.txt`` inside
it, which the skip message quotes. ``QROLL_QLIB_VENV`` names that venv (``make test`` passes its
``QLIB_VENV``; default ``.venv-qlib`` in the repository); ``QROLL_QLIB_PYTHON`` names an
interpreter with Qlib installed directly and wins over both.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def qlib_venv() -> Path:
    """The venv ``make test`` builds for Qlib (``QROLL_QLIB_VENV``, relative to the repository)."""
    return ROOT / os.environ.get("QROLL_QLIB_VENV", ".venv-qlib")


def qlib_python() -> Path:
    """The interpreter the oracle tests run Qlib with (it may not exist; see :func:`need_qlib`)."""
    explicit = os.environ.get("QROLL_QLIB_PYTHON")
    return Path(explicit) if explicit else qlib_venv() / "bin" / "python"


def unavailable_reason() -> str | None:
    """Why Qlib's interpreter cannot be used, or None when it can."""
    explicit = os.environ.get("QROLL_QLIB_PYTHON")
    if explicit:
        return None if Path(explicit).exists() else f"QROLL_QLIB_PYTHON={explicit} does not exist"
    venv = qlib_venv()
    if (venv / ".installed").exists() and (venv / "bin" / "python").exists():
        return None
    failed = venv / "unavailable.txt"
    if failed.exists():
        return f"Qlib 0.9.7 could not be installed by `make test`: {failed.read_text().strip()}"
    return (f"Qlib's venv not built: expected {venv}/.installed (run `make qlib-venv` or `make test`, "
            "or set QROLL_QLIB_PYTHON)")


def need_qlib() -> Path:
    """Qlib's interpreter, or skip the test saying why it is not there.

    Under ``CI=true`` a venv that ``make test`` neither built nor recorded a failure for means the
    oracle tests were never given their chance: that fails instead of skipping.
    """
    reason = unavailable_reason()
    if reason is None:
        return qlib_python()
    if os.environ.get("CI") == "true" and not (qlib_venv() / "unavailable.txt").exists():
        pytest.fail(f"{reason} (CI=true: run the suite through `make test`)")
    pytest.skip(reason)
