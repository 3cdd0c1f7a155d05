"""Market data: sources opened by URI."""

from qroll.data.uri import SourceURI, parse_source_uri, source_calendar

__all__ = ["SourceURI", "parse_source_uri", "source_calendar"]
