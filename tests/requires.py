"""What some tests need from outside: skipped with the reason locally, a failure under ``CI=true``.

One rule for every such need: the test PostgreSQL server (``pool_fixtures.pg_admin``,
``mlflow_server.fresh_database``), Ray, psycopg and psutil (``qroll[dev]``, which CI installs).
Where CI lacks one, the tests that need it would otherwise pass silently by not running.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the test saying why, or fail it when ``CI=true`` (CI must run every test)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: CI must run this test)")
    pytest.skip(reason, allow_module_level=True)


def require_module(name: str, reason: str) -> ModuleType:
    """Import ``name`` or :func:`skip_or_fail` with ``reason``; usable at module level too."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        skip_or_fail(f"{reason} ({exc})")


def require_ray() -> ModuleType:
    """Ray, or skip (fail under ``CI=true``) saying how to install it."""
    return require_module("ray", "Ray is not installed: pip install 'qroll[ray]' (CI installs it)")
