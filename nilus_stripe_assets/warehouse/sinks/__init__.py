"""The warehouses the strategies write into: one module per engine over the interface in `base.py`.

`as_sink` picks the engine from an open connection, importing an implementation only when a connection of
its kind shows up (DuckDB-only users never import psycopg). The implementations import `base`, never this
module, so choosing a sink cannot form an import cycle.
"""

from __future__ import annotations

from typing import Any, Optional

from .base import Sink, literal

__all__ = ["Sink", "as_sink", "is_postgres_url", "literal", "POSTGRES_SCHEMES"]


def as_sink(con: Any) -> Sink:
    """The sink for an open connection: a `Sink` as is, a DuckDB or psycopg connection wrapped."""
    if isinstance(con, Sink):
        return con
    if type(con).__module__.startswith("psycopg"):  # no import of psycopg for DuckDB-only users
        from .postgres import PostgresSink

        return PostgresSink(con)
    from .duckdb import DuckDBSink

    return DuckDBSink(con)


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(url: Optional[str]) -> bool:
    return bool(url) and url.strip().lower().startswith(POSTGRES_SCHEMES)
