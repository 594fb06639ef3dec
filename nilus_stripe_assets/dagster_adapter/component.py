"""`StripePipelineComponent`: the spec's pipeline YAML (`docs/stripe-source.md`, "Sample Nilus
config") as a Dagster component. One component instance is one pipeline, i.e. one Stripe object loaded
into one DuckDB table, i.e. one asset; put several `---`-separated documents in a `defs.yaml` (or several
folders) for several pipelines. Example: `examples/nilus_pipelines/defs.yaml`.

    type: nilus_stripe_assets.dagster_adapter.component.StripePipelineComponent
    attributes:
      name: stripe-charge-sync-incremental-batch
      source:
        address: stripe://?api_key={STRIPE_API_KEY}
        options:
          source_table: charge:sync:incremental
      sink:
        address: data/warehouse.duckdb        # optional; default $NILUS_DUCKDB_PATH or data/warehouse.duckdb
        options:
          dest_table: finance.stripe_charges
          incremental_strategy: merge         # optional; default: the object's strategy from the spec

* Asset key: the destination table, `finance.stripe_charges` -> `finance/stripe_charges` (a table without a
  schema goes to schema `stripe`), unless `asset_key: a/b` is given. One table per pipeline (as the spec
  asks) therefore gives distinct keys; two pipelines writing the same table are rejected by Dagster as a
  duplicate asset key.
* The key stays out of Dagster: `{STRIPE_API_KEY}` and Dagster's `{{ env.STRIPE_API_KEY }}` are both kept
  as the placeholder `{STRIPE_API_KEY}` in the resource config (what the UI shows) and read from the
  environment of the process that runs the step. A literal key in the address is refused.
* Everything that can be checked without the network (source_table, strategy, address grammar, the key's
  format when the variable is set, sink address, dest_table) is checked when definitions load; each
  problem is one line naming the pipeline and the attribute.
* Pipelines with the same `source.address` and sink share the resources `stripe`, `duckdb` and
  `stripe_io_manager`. Pipelines of one code location must use the same source address and sink (the
  asset factory names these resource keys); put pipelines for another account in another code location.
"""


import os
import re
import threading
from pathlib import Path
from typing import Annotated, Optional
from urllib.parse import parse_qsl, urlsplit

import dagster as dg
from .duckdb_resource import WarehouseResource
from pydantic import Field

from ..source.catalog import StripeObject
from ..source.config import ConfigError, mask_key, parse_source_table, parse_stripe_uri, resolve_strategy
from ..warehouse.strategies import TableRef
from .defaults import DEFAULT_DUCKDB_PATH, DUCKDB_PATH_ENV, default_executor, duckdb_path
from .factory import IO_MANAGER_KEY, StripePipeline, StripeTranslator, build_stripe_asset
from .io_manager import StripeDuckDBIOManager
from .resources import StripeResource

__all__ = ["StripePipelineComponent", "StripeSource", "StripeSourceOptions", "DuckDBSink", "DuckDBSinkOptions"]

DEFAULT_ADDRESS = "stripe://?api_key={STRIPE_API_KEY}"

# Dagster's env templating inside the address becomes our run-time placeholder: `{{ env.X }}` and
# `{{ env('X') }}` -> `{X}`, so the key is never rendered into the component or the resource config.
_ENV_TEMPLATE_RE = re.compile(
    r"\{\{\s*env(?:\.([A-Za-z_][A-Za-z0-9_]*)|\(\s*['\"]([A-Za-z_][A-Za-z0-9_]*)['\"]\s*\))\s*\}\}"
)
_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_DEST_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$")
# Values used only to check the address grammar at load time for variables not set in this process.
_STAND_INS = {"api_key": "sk_test_" + "0" * 24, "stripe_account": "acct_0", "api_base": "http://127.0.0.1"}


def _keep_env_placeholders(context: dg.ResolutionContext, raw: Optional[str]) -> Optional[str]:
    if raw is None:
        return None
    text = _ENV_TEMPLATE_RE.sub(lambda m: "{" + (m.group(1) or m.group(2)) + "}", str(raw))
    return context.resolve_value(text, as_type=str)


Address = Annotated[
    str,
    dg.Resolver(
        _keep_env_placeholders,
        model_field_type=str,
        inject_before_resolve=False,
        description="stripe://?api_key={STRIPE_API_KEY}[&stripe_account=acct_…][&api_base=http://host:port]; "
        "{NAME} or {{ env.NAME }} is read from the environment when the asset runs.",
    ),
]


class StripeSourceOptions(dg.Resolvable, dg.Model):
    source_table: str = Field(description="<object>, <object>:sync or <object>:sync:incremental, e.g. charge:sync:incremental.")
    incremental_key: Optional[str] = Field(
        default=None, description="Not used (as in the spec): the loader keeps its own cursor per table."
    )


class StripeSource(dg.Resolvable, dg.Model):
    address: Address = DEFAULT_ADDRESS
    options: StripeSourceOptions


class DuckDBSinkOptions(dg.Resolvable, dg.Model):
    dest_table: str = Field(description="Destination table, 'schema.table' or 'table' (schema stripe).")
    incremental_strategy: Optional[str] = Field(
        default=None, description="merge, replace or append; default: the object's strategy from the spec."
    )


class DuckDBSink(dg.Resolvable, dg.Model):
    address: Optional[str] = Field(
        default=None,
        description=f"DuckDB file (path or duckdb:///path, relative to the working directory); default "
        f"${DUCKDB_PATH_ENV} or {DEFAULT_DUCKDB_PATH}.",
    )
    options: DuckDBSinkOptions


class _PipelineTranslator(StripeTranslator):
    def __init__(self, name: str, group_name: Optional[str]):
        self.name = name
        self.group_name = group_name

    def get_group_name(self, obj: StripeObject) -> str:
        return self.group_name or super().get_group_name(obj)

    def get_description(self, obj: StripeObject) -> str:
        return f"Nilus pipeline `{self.name}`. {super().get_description(obj)}"

    def get_tags(self, obj: StripeObject):
        return {**super().get_tags(obj), "nilus/pipeline": self.name}


# Identical addresses share identical resource objects: Dagster merges Definitions only when a resource
# key maps to the same object.
_RESOURCES: dict[tuple[str, str], dict] = {}
_RESOURCES_LOCK = threading.Lock()


def shared_resources(address: str, database: str) -> dict:
    with _RESOURCES_LOCK:
        key = (address, database)
        if key not in _RESOURCES:
            warehouse = WarehouseResource(database=database)
            _RESOURCES[key] = {
                "stripe": StripeResource(uri=address),
                "duckdb": warehouse,
                IO_MANAGER_KEY: StripeDuckDBIOManager(duckdb=warehouse),
            }
        return dict(_RESOURCES[key])


def check_address(address: str) -> None:
    """The address's grammar and, when its variables are set here, the key's format; the key itself is
    read again where the asset runs. Raises ConfigError."""
    if "{{" in address or "}}" in address:
        raise ConfigError(
            "the address has a template other than {{ env.NAME }}; write api_key={STRIPE_API_KEY} "
            "(read from the environment when the asset runs)."
        )
    try:
        query = urlsplit(address).query if "?" in address else ""
    except ValueError:  # e.g. an unclosed '[': the same message parse_stripe_uri gives
        parse_stripe_uri(address)
        raise
    params = [(k.strip().lower(), v) for k, v in parse_qsl(query, keep_blank_values=True)]
    env = dict(os.environ)
    for name, value in params:
        for var in _PLACEHOLDER_RE.findall(value):
            if not env.get(var, "").strip():
                env[var] = _STAND_INS.get(name, "x")
    parse_stripe_uri(address, env)  # grammar errors, unknown parameters, bad key/account/api_base
    api_key = next((v for k, v in params if k == "api_key"), None)
    if api_key is None:
        raise ConfigError(
            "the address has no api_key; write stripe://?api_key={STRIPE_API_KEY} and set STRIPE_API_KEY."
        )
    if not _PLACEHOLDER_RE.search(api_key):
        raise ConfigError(
            f"the address contains the API key {mask_key(api_key)} itself, which Dagster would store and "
            f"show; write api_key={{STRIPE_API_KEY}} (or {{{{ env.STRIPE_API_KEY }}}}) and set STRIPE_API_KEY "
            f"through your secrets."
        )


def sink_path(address: Optional[str]) -> str:
    """The DuckDB file for `sink.address`: a path or duckdb:///path; {NAME} is read from the environment."""
    if address is None or not str(address).strip():
        return duckdb_path()
    text = str(address).strip()

    def lookup(m: re.Match) -> str:
        value = os.environ.get(m.group(1), "").strip()
        if not value:
            raise ConfigError(f"environment variable {m.group(1)} is not set; export it or drop sink.address.")
        return value

    text = _PLACEHOLDER_RE.sub(lookup, text)
    if text.lower().startswith("duckdb://"):
        text = text[len("duckdb://"):]
    elif _SCHEME_RE.match(text):
        scheme = text.split("://", 1)[0]
        raise ConfigError(
            f"'{scheme}://…' is not a DuckDB file: this package writes to DuckDB; give a file path "
            f"such as {DEFAULT_DUCKDB_PATH} (or duckdb:///abs/path.duckdb), or omit sink.address to use "
            f"${DUCKDB_PATH_ENV} (default {DEFAULT_DUCKDB_PATH})."
        )
    if not text or text.startswith(":memory:"):
        raise ConfigError(
            "an in-memory DuckDB database would start empty in every step; give a "
            f"file path such as {DEFAULT_DUCKDB_PATH}."
        )
    # Not created here: WarehouseResource checks the path (and creates its folder) when a run starts.
    return str(Path(text).expanduser().resolve())


class StripePipelineComponent(dg.Component, dg.Resolvable, dg.Model):
    """One Nilus Stripe pipeline (spec "Sample Nilus config"): a Stripe object -> a DuckDB table, as one asset."""

    name: str = Field(description="Pipeline name, e.g. stripe-charge-sync-incremental-batch (tag nilus/pipeline).")
    source: StripeSource
    sink: DuckDBSink
    asset_key: Optional[str] = Field(
        default=None, description="Asset key as 'a/b'; default: the destination table, finance.stripe_charges -> finance/stripe_charges."
    )
    group_name: Optional[str] = Field(default=None, description="Asset group; default stripe.")

    def _fail(self, where: str, exc: Exception) -> ConfigError:
        return ConfigError(f"Stripe pipeline '{self.name}', {where}: {exc}")

    def pipeline(self) -> StripePipeline:
        """Validate every attribute (one clear line per problem) and return the pipeline."""
        if not _NAME_RE.match(self.name or ""):
            raise ConfigError(
                f"Stripe pipeline name '{self.name}' must be 1 to 63 letters, digits, '-', '_' or '.', "
                f"e.g. stripe-charge-sync-incremental-batch."
            )
        try:
            parsed = parse_source_table(self.source.options.source_table)
        except ConfigError as exc:
            raise self._fail("source.options.source_table", exc) from None
        try:
            strategy = resolve_strategy(parsed.object, parsed.mode, self.sink.options.incremental_strategy)
        except ConfigError as exc:
            raise self._fail("sink.options.incremental_strategy", exc) from None
        dest = self.sink.options.dest_table.strip()
        if not _DEST_RE.match(dest):
            raise self._fail(
                "sink.options.dest_table",
                ConfigError(
                    f"'{dest}' must be 'table' or 'schema.table' of letters, digits and underscores, "
                    f"e.g. finance.stripe_{parsed.object.name}s."
                ),
            )
        table = TableRef.parse(dest)
        if self.asset_key is not None and self.asset_key.strip():
            key = dg.AssetKey.from_user_string(self.asset_key.strip())
        else:
            key = dg.AssetKey([table.schema, table.name])
        return StripePipeline(object=parsed.object, mode=parsed.mode, strategy=strategy, dest_table=str(table), key=key)

    def resources(self) -> dict:
        try:
            check_address(self.source.address)
        except ConfigError as exc:
            raise self._fail("source.address", exc) from None
        try:
            database = sink_path(self.sink.address)
        except ConfigError as exc:
            raise self._fail("sink.address", exc) from None
        return shared_resources(self.source.address.strip(), database)

    def build_asset(self) -> dg.AssetsDefinition:
        try:
            return build_stripe_asset(self.pipeline(), translator=_PipelineTranslator(self.name, self.group_name))
        except ConfigError as exc:
            if str(exc).startswith("Stripe pipeline "):
                raise
            raise self._fail("config", exc) from None

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        asset = self.build_asset()
        # The same executor object in every pipeline, so that Definitions.merge accepts them all.
        return dg.Definitions(assets=[asset], resources=self.resources(), executor=default_executor())
