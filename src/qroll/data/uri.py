"""Data source URIs: ``qlib:///path``, ``table:///prices.parquet``, ``synthetic://?seed=0``.

A URI names where a market's data lives; its query string carries options
(``synthetic://?instruments=300&start=2008-01-01&end=2020-12-31&seed=0``,
``table:///prices.csv?date=Date&instrument=Ticker``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from qroll.errors import ConfigError

__all__ = ["DEFAULT_SOURCE", "SCHEMES", "SourceURI", "parse_source_uri"]

DEFAULT_SOURCE = "synthetic://?instruments=300&start=2008-01-01&end=2020-12-31&seed=0"
SCHEMES = ("qlib", "table", "synthetic")
# The synthetic market trades Monday to Friday over these dates unless the URI says otherwise.
SYNTHETIC_START, SYNTHETIC_END = "2008-01-01", "2020-12-31"


@dataclass(frozen=True, kw_only=True, slots=True)
class SourceURI:
    """A parsed source URI: its scheme, the path it points at, and its query options."""

    uri: str
    scheme: str
    path: str
    params: dict[str, str] = field(default_factory=dict)


def parse_source_uri(uri: str) -> SourceURI:
    """Split a source URI into scheme, path and options.

    Raises
    ------
    ConfigError
        For an unknown scheme (the message lists the supported ones) or a file-based scheme
        with no path.

    Examples
    --------
    >>> parse_source_uri("qlib:///data/cn_csi300").path
    '/data/cn_csi300'
    >>> parse_source_uri("synthetic://?seed=3").params
    {'seed': '3'}
    """
    parts = urlsplit(uri)
    if parts.scheme not in SCHEMES:
        raise ConfigError(
            f"data source {uri!r} has an unknown scheme {parts.scheme!r}: use one of "
            + ", ".join(f"{s}://" for s in SCHEMES)
        )
    path = os.path.expanduser(unquote(parts.netloc + parts.path))
    if parts.scheme != "synthetic" and not path:
        raise ConfigError(f"data source {uri!r} names no path: write e.g. {parts.scheme}:///abs/path")
    return SourceURI(uri=uri, scheme=parts.scheme, path=path, params=dict(parse_qsl(parts.query)))
