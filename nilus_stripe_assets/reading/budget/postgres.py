"""The request budget's rate state in PostgreSQL, so processes on several machines draw from one budget.

Same semantics as the file backend (`files.FileRates`): one GCRA limiter for the account and one per
endpoint; a request reserves a slot on both and sleeps for the later one; a 429 pushes one limiter back.
Each limiter is a row of one table. A reservation is ONE statement, so one round trip: an upsert that
moves both rows' theoretical arrival time forward with the arithmetic in SQL, under the rows' locks, and
returns how long to wait. Times come from the server's clock (`clock_timestamp()`), so machines whose
clocks disagree still share one pace. The table is UNLOGGED and commits are asynchronous: the state is
a few seconds of pacing, worth nothing after a server crash, so it skips the WAL and the fsync wait.
"""

from __future__ import annotations

import threading
from typing import Optional

import psycopg
from psycopg.conninfo import conninfo_to_dict

from .base import BudgetSettings
from ...source.config import ConfigError, describe_url

TABLE = "nilus_request_budget"
GLOBAL_SCOPE = ""  # the account-wide limiter's row; endpoint rows are keyed by the endpoint path

CREATE = f"""
CREATE UNLOGGED TABLE IF NOT EXISTS {TABLE} (
    account text NOT NULL,   -- account fingerprint (never the key)
    scope text NOT NULL,     -- '' for the account, else the endpoint path
    tat double precision NOT NULL,   -- GCRA theoretical arrival time, epoch seconds on the server's clock
    step double precision NOT NULL,  -- seconds between requests (1 / rate) last used on this row
    PRIMARY KEY (account, scope)
)"""

# Rows are locked in VALUES order (the account's row first, then the endpoint's), the same order for every
# caller, so concurrent reservations queue on the account row and cannot deadlock. A row's new `tat` is
# max(old tat, now) + step; the slot starts at new tat - step and may be used `tolerance` early (burst).
RESERVE = f"""
WITH now AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS t),
slots AS (
    INSERT INTO {TABLE} AS b (account, scope, tat, step)
    SELECT %(account)s, s.scope, now.t + s.step, s.step
    FROM now, (VALUES (%(global_scope)s, %(global_step)s::float8), (%(endpoint)s, %(endpoint_step)s::float8))
         AS s(scope, step)
    ON CONFLICT (account, scope) DO UPDATE
        SET tat = greatest(b.tat, EXCLUDED.tat - EXCLUDED.step) + EXCLUDED.step, step = EXCLUDED.step
    RETURNING b.tat - b.step AS start, b.step
)
SELECT max(greatest(0, start - %(burst_slots)s * step - now.t)) FROM slots, now
"""

PENALIZE = f"""
INSERT INTO {TABLE} AS b (account, scope, tat, step)
VALUES (%(account)s, %(scope)s, extract(epoch FROM clock_timestamp()) + %(seconds)s, %(step)s)
ON CONFLICT (account, scope) DO UPDATE
    SET tat = greatest(b.tat, extract(epoch FROM clock_timestamp())) + %(seconds)s
"""




def check_budget_url(url: str) -> str:
    """`url` if it is a postgresql:// address, else a ConfigError naming the expected form."""
    if not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            f"The request budget address {url.split('://', 1)[0][:20] + '://…' if '://' in url else 'given'} is not a "
            "PostgreSQL URL; set StripeResource.budget_url / NILUS_BUDGET_URL to postgresql://user@host:5432/db, "
            "or unset it to keep the budget in files on this machine."
        )
    try:
        conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise ConfigError(
            # libpq quotes the address, password included: it is cut out (and ConfigError masks any URL's password).
            f"The request budget address {describe_url(url)} cannot be parsed ({str(exc).splitlines()[0].replace(url, '…')}); "
            "write it as postgresql://user@host:5432/db."
        ) from None
    return url


class PostgresRates:
    """One account's limiters as rows of one PostgreSQL table; one connection per process, shared by threads."""

    def __init__(self, url: str, account: str, settings: BudgetSettings):
        self.url = check_budget_url(url)
        self.params = {
            "account": account,
            "global_scope": GLOBAL_SCOPE,
            "global_step": 1.0 / settings.global_rate,
            "endpoint_step": 1.0 / settings.endpoint_rate,
            # A request may go this many slots ahead of the steady pace (the file backend's `burst`).
            "burst_slots": max(0, settings.burst - 1),
        }
        self._lock = threading.Lock()  # one statement at a time on the shared connection, and reconnects
        self._con = self._connect()

    def _connect(self) -> psycopg.Connection:
        try:
            con = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
            # The row is pacing state, not data: don't wait for the commit to reach disk.
            con.execute("SET synchronous_commit = off")
            if con.execute(f"SELECT to_regclass('{TABLE}')").fetchone()[0] is None:
                # Every step of a deployment's first run gets here at once, and `IF NOT EXISTS` does not stop
                # two sessions from both creating the table (the later fails on the catalog's unique index,
                # `pg_type_typname_nsp_index`): the creators take turns, and the later finds it there.
                with con.transaction():
                    con.execute(f"SELECT pg_advisory_xact_lock(hashtextextended('nilus ddl {TABLE}', 0))")
                    con.execute(CREATE)
            return con
        except psycopg.Error as exc:
            raise self._unavailable(exc) from None

    def _unavailable(self, exc: BaseException) -> ConfigError:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        return ConfigError(
            f"The request budget database {describe_url(self.url)} is not usable ({reason}); start it, grant "
            "this user CREATE on its schema, or fix StripeResource.budget_url / NILUS_BUDGET_URL."
        )

    def _execute(self, sql: str, params: dict, fetch: bool = False) -> Optional[tuple]:
        with self._lock:
            for attempt in (1, 2):  # one reconnect: a server restart or a dropped idle connection
                try:
                    cursor = self._con.execute(sql, params)
                    return cursor.fetchone() if fetch else None
                except psycopg.OperationalError as exc:
                    if attempt == 2:
                        raise self._unavailable(exc) from None
                    self._con.close()
                    self._con = self._connect()

    def reserve(self, endpoint: str) -> float:
        row = self._execute(RESERVE, {**self.params, "endpoint": endpoint}, fetch=True)
        return float(row[0]) if row and row[0] is not None else 0.0

    def penalize(self, endpoint: Optional[str], seconds: float) -> None:
        step = self.params["endpoint_step"] if endpoint else self.params["global_step"]
        self._execute(PENALIZE, {"account": self.params["account"], "scope": endpoint or GLOBAL_SCOPE,
                                 "seconds": float(seconds), "step": step})

    def close(self) -> None:
        with self._lock:
            self._con.close()
