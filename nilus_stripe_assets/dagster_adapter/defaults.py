"""Default resources (the key from STRIPE_API_KEY, the warehouse file from NILUS_DUCKDB_PATH) and executor."""


import functools
import os
from pathlib import Path

import dagster as dg
from .duckdb_resource import DUCKDB_PATH_ENV, WarehouseResource

from .console import config_errors_in_one_line, quiet_known_warnings
from .io_manager import StripeDuckDBIOManager
from .resources import StripeResource

# Every code location (and the component) imports this module before its definitions load and runs start.
quiet_known_warnings()
config_errors_in_one_line()

# Not `stripe.duckdb`: a file named like the `stripe` schema makes DuckDB references ambiguous.
DEFAULT_DUCKDB_PATH = "data/warehouse.duckdb"


def duckdb_path() -> str:
    # Not created here: loading definitions has no side effects, and a path that cannot hold the file (under a
    # regular file, a folder, a read-only disk) fails the run with one line when it starts (WarehouseResource).
    return str(Path(os.environ.get(DUCKDB_PATH_ENV, DEFAULT_DUCKDB_PATH)).expanduser().resolve())


@functools.cache
def default_executor() -> dg.ExecutorDefinition:
    """Dagster's default executor, but in-process unless run config says `multiprocess`.

    The Stripe objects load in one step (threads share one budget) and each finance model is one SQL
    statement run by the warehouse, so a process per step would only add Dagster's start-up cost (~2.5 s each
    on 2 cores).
    """
    return dg.multi_or_in_process_executor.configured(
        lambda config: config,
        name="in_process_or_multiprocess",
        config_schema=dg.Field(
            dg.Selector({"in_process": dg.Permissive(), "multiprocess": dg.Permissive()}),
            default_value={"in_process": {}},
        ),
    )


def default_resources() -> dict:
    warehouse = WarehouseResource(database=duckdb_path())
    return {
        # No EnvVar: Dagster resolves an EnvVar before any step runs and fails an unset variable with a
        # config traceback. The resource reads STRIPE_API_KEY itself when a run starts, and a missing key
        # fails the step with one line (and the key still never appears in run config).
        "stripe": StripeResource(),
        "duckdb": warehouse,
        "stripe_io_manager": StripeDuckDBIOManager(duckdb=warehouse),
        "io_manager": StripeDuckDBIOManager(duckdb=warehouse),
    }
