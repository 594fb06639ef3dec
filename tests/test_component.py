"""StripePipelineComponent: the spec's pipeline YAML as Dagster definitions, against the emulator over HTTP
and a real DuckDB file; bad YAML fails at definition-load time with one clear line."""

from __future__ import annotations

import runpy
import shutil
import textwrap
from pathlib import Path

import dagster as dg
import pytest

from nilus_stripe_assets.emulator import StripeEmulator
from nilus_stripe_assets.dagster_adapter.component import StripePipelineComponent

from .conftest import SMALL, count, query

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
KEY = "sk_test_ComponentKey0123wxyz"


@pytest.fixture
def emu():
    with StripeEmulator(scale=SMALL, seed=5, api_keys=[KEY]) as emulator:
        yield emulator


@pytest.fixture
def env(monkeypatch, tmp_path, emu):
    """What a deployment sets: the key, the emulator as API base, the warehouse file."""
    database = tmp_path / "warehouse.duckdb"
    monkeypatch.setenv("STRIPE_API_KEY", KEY)
    monkeypatch.setenv("STRIPE_API_BASE", emu.url)
    monkeypatch.setenv("NILUS_DUCKDB_PATH", str(database))
    (tmp_path / "spool").mkdir()
    monkeypatch.setenv("NILUS_SPOOL_DIR", str(tmp_path / "spool"))
    return str(database)


def _load_examples(monkeypatch) -> dg.Definitions:
    """The shipped example project, loaded the dg way (dg.toml -> defs module `nilus_pipelines`)."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return dg.load_from_defs_folder(path_within_project=EXAMPLES)


def _run(defs: dg.Definitions, *keys: str, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    job = defs.resolve_implicit_global_asset_job_def()
    selection = [dg.AssetKey.from_user_string(k) for k in keys]
    return job.get_subset(asset_selection=set(selection)).execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=raise_on_error
    )


def _resolve(text: str) -> StripePipelineComponent:
    return StripePipelineComponent.resolve_from_yaml(textwrap.dedent(text))


def _build(text: str) -> dg.Definitions:
    return dg.build_defs_for_component(_resolve(text))


def _pipeline_yaml(source_table="customer", dest_table="finance.stripe_customers", strategy="merge",
                   address="stripe://?api_key={STRIPE_API_KEY}", sink_address=None, name="stripe-test") -> str:
    sink = f"\n  address: {sink_address}" if sink_address else ""
    return (
        f"name: {name}\nsource:\n  address: {address}\n  options:\n    source_table: {source_table}\n"
        f"sink:{sink}\n  options:\n    dest_table: {dest_table}\n"
        + (f"    incremental_strategy: {strategy}\n" if strategy else "")
    )


# --------------------------------------------------------------------------------------------------
# The shipped example
# --------------------------------------------------------------------------------------------------


def test_example_defs_yaml_loads_two_pipelines_with_distinct_keys(env, monkeypatch):
    defs = _load_examples(monkeypatch)
    specs = {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs()}
    assert set(specs) == {"finance/stripe_charges", "finance/stripe_customers"}
    charges, customers = specs["finance/stripe_charges"], specs["finance/stripe_customers"]
    assert charges.metadata["dagster/table_name"] == "finance.stripe_charges"
    assert charges.metadata["default_mode"] == "sync:incremental"
    assert charges.metadata["strategy"] == "merge"
    assert charges.tags["nilus/pipeline"] == "stripe-charge-sync-incremental-batch"
    assert customers.metadata["default_mode"] == "async" and customers.metadata["strategy"] == "merge"
    # Both pipelines share one set of resources, built from the address, not from a key.
    resources = defs.resources
    assert resources["stripe"].uri == "stripe://?api_key={STRIPE_API_KEY}"
    assert resources["stripe"].api_key is None
    assert resources["duckdb"].database == env
    # examples/definitions.py (`dagster dev -f examples/definitions.py`) gives the same assets.
    by_file = runpy.run_path(str(EXAMPLES / "definitions.py"))["defs"]
    assert {s.key.to_user_string() for s in by_file.resolve_all_asset_specs()} == set(specs)


def test_example_pipelines_materialize_into_duckdb(env, monkeypatch, emu):
    defs = _load_examples(monkeypatch)
    result = _run(defs, "finance/stripe_charges", "finance/stripe_customers")
    assert result.success
    expected = emu.counts()
    for table, name in (("finance.stripe_charges", "charge"), ("finance.stripe_customers", "customer")):
        rows, distinct = query(env, f"SELECT count(*), count(DISTINCT id) FROM {table}")[0]
        assert rows == distinct == expected[name], table

    # charge:sync:incremental + merge: a re-run picks up a change in place and a new charge.
    target = query(env, "SELECT id FROM finance.stripe_charges ORDER BY created DESC LIMIT 1")[0][0]
    emu.update("charge", target, description="changed after the first load")
    new = emu.create("charge", amount=4242)
    emu.reset_stats()
    assert _run(defs, "finance/stripe_charges").success
    assert count(env, "finance.stripe_charges") == expected["charge"] + 1
    assert query(env, "SELECT description FROM finance.stripe_charges WHERE id = ?", [target]) == [
        ("changed after the first load",)
    ]
    assert query(env, "SELECT amount FROM finance.stripe_charges WHERE id = ?", [new["id"]]) == [(4242,)]
    charge_pages = emu.stats()["endpoints"].get("/v1/charges", {}).get("requests", 0)
    assert charge_pages < expected["charge"] // 100, "the incremental re-run must not page through every charge"


# --------------------------------------------------------------------------------------------------
# The key stays out of Dagster's config
# --------------------------------------------------------------------------------------------------


def test_env_templating_keeps_a_placeholder_not_the_key(env):
    component = _resolve(_pipeline_yaml(address="stripe://?api_key={{ env.STRIPE_API_KEY }}"))
    assert component.source.address == "stripe://?api_key={STRIPE_API_KEY}"
    defs = dg.build_defs_for_component(component)
    assert defs.resources["stripe"].uri == "stripe://?api_key={STRIPE_API_KEY}"
    assert KEY not in repr(component) and KEY not in repr(defs.resources)


def test_a_key_missing_at_load_time_fails_the_run_with_one_line(env, monkeypatch, tmp_path):
    monkeypatch.delenv("STRIPE_API_KEY")
    defs = _build(_pipeline_yaml(sink_address=str(tmp_path / "other.duckdb")))  # loads: read at run time
    result = _run(defs, "finance/stripe_customers", raise_on_error=False)
    assert not result.success
    message = result.get_step_failure_events()[0].step_failure_data.error.message.strip()
    assert "\n" not in message
    assert message.endswith(
        "Environment variable STRIPE_API_KEY is not set (the stripe:// address reads api_key from "
        "{STRIPE_API_KEY}); export STRIPE_API_KEY or provide it through your secrets."
    )


# --------------------------------------------------------------------------------------------------
# Bad YAML: one clear line at definition-load time
# --------------------------------------------------------------------------------------------------

BAD = [
    (
        dict(source_table="charges"),
        "Stripe pipeline 'stripe-test', source.options.source_table: No such resource 'charges'. Did you mean 'charge'?",
    ),
    (
        dict(source_table="invoiceitems"),
        "source.options.source_table: No such resource 'invoiceitems'. Did you mean 'invoice_item'?",
    ),
    (
        dict(source_table="charge:incremental"),
        "Loading mode 'incremental' must be combined with 'sync': use 'charge:sync:incremental'",
    ),
    (
        dict(source_table="charge:sync:incremental", strategy="replace"),
        "sink.options.incremental_strategy: replace with 'charge:sync:incremental' would swap the table for only "
        "the new rows; set incremental_strategy: merge",
    ),
    (
        dict(source_table="customer:sync:incremental", strategy="append"),
        "append for 'customer' in sync:incremental mode would duplicate rows",
    ),
    (dict(strategy="upsert"), "Unknown incremental_strategy 'upsert'; use one of: merge, replace, append."),
    (dict(address="stripe://?apikey={STRIPE_API_KEY}"), "source.address: Unknown parameter 'apikey'"),
    (dict(address="https://api.stripe.com"), "source.address: The Stripe source address must start with 'stripe://'"),
    (dict(address="stripe://?api_key={STRIPE_KEY"), "unsupported placeholder"),
    (dict(address="stripe://?stripe_account=acct_1"), "source.address: the address has no api_key; write stripe://?api_key={STRIPE_API_KEY}"),
    (
        dict(address="stripe://?api_key=sk_test_LiteralKeyInYaml9876"),
        "source.address: the address contains the API key sk_test_…9876 itself",
    ),
    (dict(address="stripe://sk_test_LiteralKeyInYaml9876"), "must have no host or path"),
    (dict(sink_address="dataos://warehouse?purpose=rw"), "sink.address: 'dataos://…' is not a DuckDB file"),
    (dict(sink_address="':memory:'"), "sink.address: an in-memory DuckDB database would start empty in every step"),
    (dict(dest_table="finance.stripe.charges"), "sink.options.dest_table: 'finance.stripe.charges' must be"),
    (dict(name="stripe charges"), "Stripe pipeline name 'stripe charges' must be 1 to 63 letters"),
]


@pytest.mark.parametrize("fields, expected", BAD, ids=[str(next(iter(f.values()))) for f, _ in BAD])
def test_bad_pipeline_yaml_fails_at_load_time_with_one_line(env, fields, expected):
    with pytest.raises(ValueError) as raised:
        _build(_pipeline_yaml(**fields))
    message = str(raised.value)
    assert expected in message
    assert "\n" not in message
    assert "LiteralKeyInYaml" not in message


def test_a_publishable_key_in_the_environment_fails_at_load_time(env, monkeypatch):
    monkeypatch.setenv("STRIPE_API_KEY", "pk_test_PublishableKey4321")
    with pytest.raises(ValueError, match=r"source.address: pk_test_…4321 is a publishable key") as raised:
        _build(_pipeline_yaml())
    assert "PublishableKey" not in str(raised.value)


def test_a_bad_pipeline_in_a_defs_folder_names_the_component_and_the_cause(env, monkeypatch, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(EXAMPLES, project, ignore=shutil.ignore_patterns("__pycache__"))
    defs_yaml = project / "nilus_pipelines" / "defs.yaml"
    defs_yaml.write_text(defs_yaml.read_text().replace("source_table: customer", "source_table: charges"))
    monkeypatch.syspath_prepend(str(project))
    for name in [m for m in list(__import__("sys").modules) if m == "nilus_pipelines" or m.startswith("nilus_pipelines.")]:
        monkeypatch.delitem(__import__("sys").modules, name)
    with pytest.raises(Exception) as raised:
        dg.load_from_defs_folder(path_within_project=project)
    assert "defs.yaml[1] (StripePipelineComponent) (error)" in str(raised.value)
    cause = raised.value.__cause__
    assert str(cause).startswith(
        "Stripe pipeline 'stripe-customer-batch', source.options.source_table: No such resource 'charges'. "
        "Did you mean 'charge'?"
    )


def test_asset_key_and_group_can_be_set(env):
    defs = _build(_pipeline_yaml() + "asset_key: raw/stripe/customers\ngroup_name: finance_raw\n")
    spec = next(iter(defs.resolve_all_asset_specs()))
    assert spec.key == dg.AssetKey(["raw", "stripe", "customers"])
    assert spec.group_name == "finance_raw"
    assert spec.metadata["dagster/table_name"] == "finance.stripe_customers"


def test_sink_address_forms(env, tmp_path, monkeypatch):
    default = _build(_pipeline_yaml())
    assert default.resources["duckdb"].database == env  # $NILUS_DUCKDB_PATH
    explicit = _build(_pipeline_yaml(sink_address=f"duckdb://{tmp_path}/a/b.duckdb"))
    assert explicit.resources["duckdb"].database == str(tmp_path / "a" / "b.duckdb")
    assert not (tmp_path / "a").exists()  # created when a run starts (WarehouseResource), not at load
    monkeypatch.setenv("WAREHOUSE_FILE", str(tmp_path / "c.duckdb"))
    for address in ("'{WAREHOUSE_FILE}'", "'{{ env.WAREHOUSE_FILE }}'"):
        assert _build(_pipeline_yaml(sink_address=address)).resources["duckdb"].database == str(tmp_path / "c.duckdb")
