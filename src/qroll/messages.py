"""How qroll words what it shows: credentials masked, an error on one line.

Every layer that prints or stores text taken from a URI or an exception (the pool's backends, the
MLflow boundary, the Ray launcher, the report) goes through these functions, so no password
reaches a log, a run tag or a terminal. They import nothing of qroll: any package may use them.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

__all__ = ["mask_credentials", "one_line", "scrub"]

_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):[^@\s/]*@")
_SECRET_QUERY = re.compile(
    r"(?i)\b(password|passwd|pwd|token|secret|api_key|apikey|access_key|secret_key)=[^&\s'\"]*"
)


def mask_credentials(text: str) -> str:
    """Hide passwords and tokens in URIs within ``text``.

    Examples
    --------
    >>> mask_credentials("postgresql://bob:s3cret@db:5432/runs?sslmode=require&password=x")
    'postgresql://bob:***@db:5432/runs?sslmode=require&password=***'
    """
    text = _USERINFO.sub(r"\g<head>:***@", text)
    return _SECRET_QUERY.sub(lambda m: f"{m.group(1)}=***", text)


def scrub(text: str, uri: str) -> str:
    """``text`` with the URI's password removed, even where a driver repeats it bare.

    Examples
    --------
    >>> scrub("auth failed for s3cret", "postgresql://bob:s3cret@db/runs")
    'auth failed for ***'
    """
    text = mask_credentials(text)
    try:
        password = urlsplit(uri).password
    except ValueError:
        password = None
    for secret in {password, unquote(password or "")} - {None, ""}:
        text = text.replace(str(secret), "***")
    return text


def one_line(exc: BaseException) -> str:
    """The first non-blank line of an exception's message (its class name when it has none).

    Examples
    --------
    >>> one_line(OSError("connection refused\\n  is the server running?"))
    'connection refused'
    >>> one_line(TimeoutError())
    'TimeoutError'
    """
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__
