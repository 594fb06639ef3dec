"""Asset checks on every Stripe table, built from the assets' catalog metadata by one function.

`build_stripe_checks(assets)` returns one `@multi_asset_check` per Stripe asset (op `<asset>_checks`, e.g.
`stripe__charge_checks`). Each targets its asset, so Dagster runs it in the same run right after the asset
materializes (`--select '*'` includes them) and shows the results on the asset's Checks tab. None blocks
downstream assets (`blocking=False`): a failed check flags the table, it does not stop the run.

Checks per table (named after `id`, the last column of every catalog object's merge key):
- `id_unique` (ERROR): no two rows share the merge key: `id`, `(invoice, id)` and `(credit_note, id)` for
  the line items, whose ids Stripe repeats across parents, and with `stripe_account` first in Connect.
- `id_not_null` (ERROR): no row lacks a column of its merge key.
- `no_stale_rows` (WARN, merge tables only): no row's state (`_state_at`, when the row's state was read)
  is older than the newest change Stripe recorded for that object in the events table: a `<prefix>.*`
  event other than `.created` whose `data.object.id` is the row's id (for subscription items, the ids in
  `data.object.items.data`; for line items, those in `data.object.lines.data` of the row's own parent).
  Such a row missed an update; a `sync:incremental` run with change capture, or a
  full reload, fixes it.

A check that cannot judge yields no result. Dagster then shows it as *Skipped* (its status for a check
that was planned in a run that succeeded but did not execute), never as passed, and the run's log says
why (e.g. `no_stale_rows` while the events table is not loaded). Freshness is not a check here: each
asset carries a Dagster `FreshnessPolicy` (see `freshness.py`), which Dagster itself evaluates.

Every result carries metadata: the table, rows checked, counts of offending rows and a few example ids.

Each multi-asset check is its own step, i.e. its own process under the multiprocess executor. An asset can
instead evaluate its checks in its own step through `StripeTableChecks` (see there).
"""


from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

import dagster as dg
from dagster_duckdb import DuckDBResource

from ..source.catalog import CATALOG, StripeObject
from ..reading.events import carried_type
from ..warehouse.sinks import Sink, as_sink, literal
from ..warehouse.sinks.duckdb import DuckDBSink
from ..staging.parquet import limit_resources
from ..warehouse.strategies import TableRef, quote, table_columns
from .duckdb_resource import open_sink

EXAMPLES = 5  # example ids per failing check

ERROR, WARN = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN


def _spec_facts(spec: dg.AssetSpec) -> Optional[tuple[StripeObject, TableRef, str, tuple[str, ...], Optional[str]]]:
    """(object, table, strategy, merge key columns, Connect account column) of a Stripe asset spec, None for others."""
    name = spec.metadata.get("stripe/object")
    if name not in CATALOG:
        return None
    obj = CATALOG[name]
    table = TableRef.parse(str(spec.metadata.get("dagster/table_name") or f"stripe.{obj.table}"))
    account_column = spec.metadata.get("stripe/account_column")
    # "stripe_account, invoice, id" on Connect assets: the checks group by the account column themselves.
    listed = [c.strip() for c in str(spec.metadata.get("merge_key", ", ".join(obj.key_columns))).split(",")]
    key = tuple(c for c in listed if c and c != account_column)
    return obj, table, str(spec.metadata.get("strategy", obj.strategy)), key, str(account_column) if account_column else None


def _ids(rows) -> str:
    return ", ".join(str(r[0]) for r in rows) if rows else ""


def _missing(table: TableRef, check: str, severity) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=check,
        passed=False,
        severity=severity,
        description=f"Table {table} does not exist: materialize the asset first.",
        metadata={"table": str(table)},
    )


def _key_text(columns: Sequence[str]) -> str:
    return columns[0] if len(columns) == 1 else f"({', '.join(columns)})"


def _unique(con, table: TableRef, keys: Sequence[str], account: Optional[str] = None,
            rows_sql: Optional[str] = None) -> dg.AssetCheckResult:
    """No two rows share the merge key: `id`, or (parent id, id) for line items, whose ids repeat across parents."""
    source = rows_sql or table.sql
    k = quote(keys[-1])
    # Per Connect account when rows carry one: the same id may exist in two accounts (coupon SUMMER25).
    columns = ([account] if account else []) + list(keys)
    group = ", ".join(quote(c) for c in columns)
    shown = " || '/' || ".join(quote(c) for c in columns)
    rows, duplicated_keys, extra_rows = con.execute(
        f"SELECT (SELECT count(*) FROM {source} AS s), count(*), coalesce(sum(n - 1), 0) FROM "
        f"(SELECT count(*) AS n FROM {source} AS s WHERE {k} IS NOT NULL GROUP BY {group} HAVING count(*) > 1) AS d"
    ).fetchone()
    examples = con.execute(  # a second pass over the table only when there is something to show
        f"SELECT {shown} FROM {source} AS s WHERE {k} IS NOT NULL GROUP BY {group} HAVING count(*) > 1 "
        f"ORDER BY count(*) DESC, 1 LIMIT {EXAMPLES}"
    ).fetchall() if duplicated_keys else []
    name = f"{keys[-1]}_unique"
    key = _key_text(columns)
    return dg.AssetCheckResult(
        check_name=name,
        passed=duplicated_keys == 0,
        severity=ERROR,
        description=(
            f"{duplicated_keys} {key} value(s) appear more than once ({extra_rows} extra rows)."
            if duplicated_keys else f"All {rows} rows have a distinct {key}."
        ),
        metadata={
            "table": str(table),
            "rows": int(rows),
            "duplicated_keys": int(duplicated_keys),
            "extra_rows": int(extra_rows),
            "example_ids": _ids(examples),
        },
    )


def _not_null(con, table: TableRef, keys: Sequence[str], columns: Mapping[str, str], account: Optional[str] = None,
              rows_sql: Optional[str] = None) -> dg.AssetCheckResult:
    """No row lacks a column of its merge key (a row without one cannot be merged onto)."""
    source = rows_sql or table.sql
    k = " OR ".join(f"{quote(c)} IS NULL" for c in [*keys, *([account] if account else [])])
    rows, nulls = con.execute(f"SELECT count(*), count(*) FILTER (WHERE {k}) FROM {source} AS s").fetchone()
    loaded = []
    if nulls and "_loaded_at" in columns:
        loaded = con.execute(
            f"SELECT DISTINCT CAST(_loaded_at AS VARCHAR) FROM {source} AS s WHERE {k} LIMIT {EXAMPLES}"
        ).fetchall()
    name = f"{keys[-1]}_not_null"
    key = " or ".join([*keys, *([account] if account else [])])
    return dg.AssetCheckResult(
        check_name=name,
        passed=nulls == 0,
        severity=ERROR,
        description=f"{nulls} of {rows} rows have a null {key}." if nulls else f"All {rows} rows have a non-null {key}.",
        metadata={
            "table": str(table),
            "rows": int(rows),
            "null_rows": int(nulls),
            "null_rows_loaded_at": _ids(loaded),
        },
    )


def _seconds(con: Sink, expr: str, sql_type: str) -> str:
    """`expr` as epoch seconds: epoch fields are TIMESTAMPTZ (columns.py), or seconds in tables of older versions."""
    return con.epoch(expr) if sql_type.startswith("TIMESTAMP") else expr


@dataclass(frozen=True)
class NotJudged:
    """A check that could not judge the table (no result is yielded for it), and why."""

    check_name: str
    reason: str


def _stale(con: Sink, obj: StripeObject, table: TableRef, keys: Sequence[str], columns, events: TableRef,
           account: Optional[str] = None, rows_sql: Optional[str] = None) -> Union[dg.AssetCheckResult, NotJudged]:
    source_rows = rows_sql or table.sql
    # Events are matched by the object they carry, not by their type's prefix (`customer.*` events also
    # carry subscriptions, cards, discounts and tax ids).
    carried = carried_type(obj)
    base = {"table": str(table), "events_table": str(events), "event_types": f"events carrying a {carried}, except *.created"}
    if "_state_at" not in columns:
        return NotJudged("no_stale_rows", f"{table} has no _state_at column")
    event_columns = table_columns(con, events)
    if not {"data", "type", "created"} <= set(event_columns):
        return NotJudged(
            "no_stale_rows", f"the events table {events} is not loaded (materialize stripe/event to judge it)"
        )
    embedded = obj.parent.embedded_field if obj.parent else None
    parent_id, same_parent = "NULL", ""
    if embedded:  # e.g. subscription items: their states travel inside their subscription's events
        source = f"{events.sql} e, {con.json_elements('e.data', ['object', embedded, 'data'], 'u')}"
        object_id = con.json_text("u.item", ["id"])
        if obj.parent.id_column in keys:  # line ids repeat across parents: a line is matched within its parent
            parent_id = con.json_text("e.data", ["object", "id"])
            same_parent = f" AND l.pid = t.{quote(obj.parent.id_column)}"
    else:
        source = f"{events.sql} e"
        object_id = con.json_text("e.data", ["object", "id"])
    k = quote(keys[-1])
    # Connect: an event speaks for the account it was read from, so rows and events are matched per account.
    acct, same_acct = ("e." + quote(account), f" AND l.acct = t.{quote(account)}") if account else ("NULL", "")
    if account and account not in event_columns:
        return NotJudged("no_stale_rows", f"the events table {events} has no {account} column (reload stripe/event)")
    con.temp_table(
        "_stale",
        f"WITH latest AS (SELECT {acct} AS acct, {parent_id} AS pid, {object_id} AS oid, max({_seconds(con, 'e.created', event_columns['created'])}) AS event_created FROM {source} "
        f"WHERE {con.json_text('e.data', ['object', 'object'])} = {literal(carried)} AND e.type NOT LIKE '%.created' GROUP BY 1, 2, 3) "
        f"SELECT t.{k} AS oid, t._state_at, l.event_created FROM {source_rows} t "
        f"JOIN latest l ON l.oid = t.{k}{same_acct}{same_parent} "
        f"WHERE t._state_at < l.event_created",
    )
    rows = con.execute(f"SELECT count(*) FROM {source_rows} AS s").fetchone()[0]
    stale, worst = con.execute("SELECT count(*), max(event_created - _state_at) FROM _stale").fetchone()
    examples = con.execute(f"SELECT oid FROM _stale ORDER BY event_created - _state_at DESC, oid LIMIT {EXAMPLES}").fetchall()
    con.execute("DROP TABLE _stale")
    return dg.AssetCheckResult(
        check_name="no_stale_rows",
        passed=stale == 0,
        severity=WARN,
        description=(
            f"{stale} row(s) hold a state older than their latest change in {events}; run sync:incremental "
            f"(change capture) or a full reload." if stale else f"No row is older than its latest change in {events}."
        ),
        metadata={
            **base,
            "rows": int(rows),
            "stale_rows": int(stale),
            "max_lag_seconds": int(worst or 0),
            "example_ids": _ids(examples),
        },
    )


@dataclass(frozen=True)
class StripeTableChecks:
    """The checks of one Stripe table: their specs, and their evaluation on the warehouse (DuckDB or PostgreSQL).

    `build_stripe_checks` wraps each in a `@multi_asset_check`. The same object also lets an asset check its
    own table in its own step (declare `specs()` as the asset's `check_specs`, `yield Output(...)` so the IO
    manager writes first, then `yield from evaluate(con)`), which saves a step process per table.
    """

    key: dg.AssetKey
    object: StripeObject
    table: TableRef
    strategy: str
    merge_key: Union[str, Sequence[str]]  # the object's key columns (without the Connect account column)
    events: TableRef
    account_column: Optional[str] = None  # Connect: rows are unique per (account, key), events matched per account

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.merge_key,) if isinstance(self.merge_key, str) else tuple(self.merge_key)

    def specs(self) -> list[dg.AssetCheckSpec]:
        # Named after the id (`id_unique`) whatever the key: a line item's key is (parent id, id).
        table, key, obj = self.table, self.keys[-1], self.object
        shown = _key_text(self.keys)
        specs = [
            dg.AssetCheckSpec(
                f"{key}_unique", asset=self.key, blocking=False,
                description=f"Every row of {table} has a distinct `{shown}` (severity ERROR).",
            ),
            dg.AssetCheckSpec(
                f"{key}_not_null", asset=self.key, blocking=False,
                description=f"No row of {table} has a null `{' or '.join(self.keys)}` (severity ERROR).",
            ),
        ]
        if self.strategy == "merge" and obj.name != "event":
            specs.append(
                dg.AssetCheckSpec(
                    "no_stale_rows", asset=self.key, blocking=False,
                    description=(
                        f"No row of {table} has a `_state_at` older than its latest change (an event carrying a "
                        f"`{carried_type(obj)}`, other than `.created`) in {self.events} (severity WARN; skipped "
                        f"while that table is not loaded)."
                    ),
                )
            )
        return specs

    def evaluate(
        self, con, selected: Optional[Iterable[str]] = None, log: Optional[Callable[[str], None]] = None,
        accounts: Optional[Sequence[str]] = None,
    ) -> Iterator[dg.AssetCheckResult]:
        """Results of the checks named in `selected` (all by default), in spec order. A check that cannot
        judge yields nothing (Dagster shows it as skipped); `log` receives why. `con`: a DuckDB or psycopg
        connection, or a `Sink`.

        Connect (`account_column` set): with `accounts` (the accounts a run loaded), every check judges
        those accounts' rows only, plus rows with no account at all (never anyone's to ignore); without,
        the whole table. Keys are unique per (account, key) either way."""
        con = as_sink(con)
        if isinstance(con, DuckDBSink):
            # The checks scan whole tables: uncapped, DuckDB's GROUP BY over 10M ids took ~1.2 GB (the peak of
            # a 10M load); under the write's cap it spills instead (223 MB, and no slower).
            limit_resources(con.con)
        with con.transaction():  # one snapshot for all checks (and PostgreSQL's temp tables live until its end)
            results = list(self._evaluate(con, selected, log, accounts))
        yield from results

    def _evaluate(self, con: Sink, selected, log, accounts) -> Iterator[dg.AssetCheckResult]:
        names = [s.name for s in self.specs()]
        chosen = set(names if selected is None else selected)
        keys, key, table = self.keys, self.keys[-1], self.table
        columns = table_columns(con, table)
        rows_sql, scope = self._scope(columns, accounts)
        for name in names:
            if name not in chosen:
                continue
            if not columns:
                result = _missing(table, name, ERROR if name.startswith(key + "_") else WARN)
            elif name == f"{key}_unique":
                result = _unique(con, table, keys, self.account_column, rows_sql)
            elif name == f"{key}_not_null":
                result = _not_null(con, table, keys, columns, self.account_column, rows_sql)
            else:
                result = _stale(con, self.object, table, keys, columns, self.events, self.account_column, rows_sql)
            if isinstance(result, NotJudged):
                if log is not None:
                    log(f"Check {result.check_name} on {self.key.to_user_string()} not judged: {result.reason}.")
                continue
            if scope:
                result = result._replace(
                    description=f"{result.description} (Connect accounts: {scope})",
                    metadata={**result.metadata, "stripe_accounts": dg.MetadataValue.text(scope)},
                )
            # Named explicitly: a step that holds several assets cannot infer which one a result is about.
            yield result._replace(asset_key=self.key)

    def _scope(self, columns: Mapping[str, str], accounts: Optional[Sequence[str]]) -> tuple[Optional[str], str]:
        """The rows the checks judge (SQL; None: the whole table) and the accounts they belong to."""
        column = self.account_column
        if not column or not accounts or column not in columns:
            return None, ""
        listed = ", ".join(literal(a) for a in accounts)
        return f"(SELECT * FROM {self.table.sql} WHERE {quote(column)} IN ({listed}) OR {quote(column)} IS NULL)", ", ".join(accounts)


def _as_check(target: StripeTableChecks) -> dg.AssetChecksDefinition:
    specs = target.specs()

    @dg.multi_asset_check(
        specs=specs,
        name=f"{target.key.to_python_identifier()}_checks",
        description=f"Data quality of {target.table}: {', '.join(s.name for s in specs)}.",
        can_subset=True,
    )
    def _checks(context: dg.AssetCheckExecutionContext, duckdb: DuckDBResource):
        selected = [k.name for k in context.selected_asset_check_keys]
        with open_sink(duckdb) as sink:
            yield from target.evaluate(sink, selected, context.log.info)

    return _checks


def stripe_table_checks(
    assets: Iterable[dg.AssetsDefinition], *, events_table: Optional[str] = None
) -> list[StripeTableChecks]:
    """The checks of every Stripe asset in `assets` (others are ignored); see `build_stripe_checks`."""
    targets = []
    for asset in assets:
        for spec in asset.specs:
            facts = _spec_facts(spec)
            if facts:
                targets.append((spec.key, *facts))
    events = TableRef.parse(events_table) if events_table else None
    if events is None:
        events = next((table for _, obj, table, _, _, _ in targets if obj.name == "event"), None)
    if events is None:
        events = TableRef("stripe", "event")  # where the stripe/event asset writes by default
    return [
        StripeTableChecks(key, obj, table, strategy, merge_key, events, account_column=account_column)
        for key, obj, table, strategy, merge_key, account_column in targets
    ]


def build_stripe_checks(
    assets: Iterable[dg.AssetsDefinition], *, events_table: Optional[str] = None
) -> list[dg.AssetChecksDefinition]:
    """One multi-asset check (op `<asset>_checks`) per Stripe asset in `assets`; other assets are ignored.

    The events table is `events_table` when given, else the `stripe/event` asset's table when it is among
    `assets`, else `stripe.event`.
    """
    return [_as_check(t) for t in stripe_table_checks(assets, events_table=events_table)]


__all__ = ["NotJudged", "StripeTableChecks", "build_stripe_checks", "stripe_table_checks"]
