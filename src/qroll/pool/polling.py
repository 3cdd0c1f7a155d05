"""One poll loop: look, and if nothing is done yet, pause and look again, up to a time limit.

The waits of the pool and its users share it: :meth:`TaskManager.wait
<qroll.pool.manager.TaskManager.wait>` (until no task is waiting or running), a pool trainer
waiting for its tasks, a worker's idle loop, and a pool entry point waiting for a tracking store
that went away (with growing pauses). Each call site keeps its own look, its own action at the
time limit and its own pauses; only the loop is here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar, overload

from qroll.errors import ConfigValueError

__all__ = ["Poll", "check_seconds"]

T = TypeVar("T")


@overload
def check_seconds(name: str, value: float, *, optional: Literal[False] = ...) -> float: ...
@overload
def check_seconds(name: str, value: float | None, *, optional: Literal[True]) -> float | None: ...


def check_seconds(name: str, value: float | None, *, optional: bool = False) -> float | None:
    """``value`` as seconds >= 0 (``None`` passes when ``optional``).

    >>> check_seconds("poll", 0.5)
    0.5

    Raises
    ------
    ConfigValueError
        ``value`` is negative, NaN, infinite or not a number; the message names ``name``.
    """
    if value is None and optional:
        return None
    try:
        seconds = float(value)  # type: ignore[arg-type]  # anything else is reported below
    except (TypeError, ValueError):
        seconds = math.nan
    if not (seconds >= 0 and math.isfinite(seconds)):
        allowed = "None or " if optional else ""
        raise ConfigValueError(f"{name}={value!r} must be {allowed}a number of seconds >= 0, e.g. 1.0")
    return seconds


@dataclass(frozen=True, kw_only=True, slots=True)
class Poll:
    """How a loop waits between looks: pauses, their growth, and a time limit.

    Parameters
    ----------
    pause : float
        Seconds between the first two looks.
    timeout : float, optional
        Seconds (wall clock, from the first look) after which :meth:`until` stops looking;
        ``None``: no limit.
    backoff : float, default 1.0
        Each pause is the last one times this (1: constant pauses).
    max_pause : float, optional
        The longest pause, in seconds, once ``backoff`` has grown them; ``None``: no bound.
    clip : bool, default False
        Shorten the last pause so that it ends at the time limit rather than past it.
    sleep, clock : callable
        ``time.sleep`` and ``time.monotonic`` unless a test gives others.

    Raises
    ------
    ConfigValueError
        A negative, NaN or infinite ``pause``, ``timeout`` or ``max_pause``, or ``backoff < 1``.

    Examples
    --------
    Look until a value is found, 0.01 s between looks:

    >>> answers = iter([None, None, "ready"])
    >>> Poll(pause=0.01).until(lambda: next(answers))
    'ready'
    """

    pause: float
    timeout: float | None = None
    backoff: float = 1.0
    max_pause: float | None = None
    clip: bool = False
    sleep: Callable[[float], object] = field(default=time.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    def __post_init__(self) -> None:
        check_seconds("pause", self.pause)
        check_seconds("timeout", self.timeout, optional=True)
        check_seconds("max_pause", self.max_pause, optional=True)
        if not self.backoff >= 1:
            raise ConfigValueError(f"backoff={self.backoff!r} must be 1 (constant pauses) or more")

    def until(self, look: Callable[[], T | None], *, between: Callable[[], object] | None = None) -> T | None:
        """Call ``look`` until it returns something other than ``None``; return that.

        Each round: ``look()``; if it found nothing and the time limit has passed, ``None`` is
        returned (the caller says what ran out); otherwise ``between()``, then the pause.
        ``look`` may do work of its own for as long as there is work (a worker runs tasks until
        none is left): a pause follows only a look that found nothing.

        Parameters
        ----------
        look : callable
            Returns ``None`` to look again, anything else to stop.
        between : callable, optional
            Called before each pause, once the time limit was checked.

        Returns
        -------
        object or None
            What ``look`` returned, or ``None`` when the time limit passed first.
        """
        start = self.clock()
        pause = self.pause
        while True:
            found = look()
            if found is not None:
                return found
            elapsed = self.clock() - start
            if self.timeout is not None and elapsed >= self.timeout:
                return None
            if between is not None:
                between()
            if self.clip and self.timeout is not None:
                self.sleep(max(0.0, min(pause, self.timeout - (self.clock() - start))))
            else:
                self.sleep(pause)
            pause *= self.backoff
            if self.max_pause is not None:
                pause = min(pause, self.max_pause)
