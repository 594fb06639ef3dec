"""Loading a code location imports what building its definitions needs, not what a run needs.

Every process that loads the location pays for its imports: `dagster asset materialize` before it can
create the run, `dagster dev` on every reload, each step process of the multiprocess executor, every
sensor tick. stripe-python (with requests and urllib3), pyarrow, pandas and psycopg are imported where a
run, a finance model or a PostgreSQL budget first uses them. duckdb is the exception: the warehouse
resource is dagster-duckdb's `DuckDBResource`, whose module imports it.

Checked in a fresh interpreter (sys.modules of this one already holds everything the suite imported).
"""

import json
import subprocess
import sys

import pytest

LOADED_ONLY_WHEN_USED = [
    "stripe",
    "requests",
    "urllib3",
    "pyarrow",
    "pandas",
    "psycopg",
    "nilus_stripe_assets.source.client",
    "nilus_stripe_assets.source.errors",
    "nilus_stripe_assets.engine.run",
    "nilus_stripe_assets.emulator",
    "nilus_stripe_assets.dagster_adapter.component",
    "nilus_stripe_assets.source.sdk_shapes",
]

PROBE = """
import json, sys
import dagster  # Dagster's own imports are not the location's
before = set(sys.modules)
import {module} as location
location.defs.get_repository_def()  # build every asset, job, schedule and sensor
print(json.dumps(sorted(set(sys.modules) - before)))
"""


@pytest.mark.parametrize("module", ["nilus_stripe_assets.definitions", "nilus_stripe_assets.daily",
                                    "nilus_stripe_assets.connect", "nilus_stripe_assets.connect_daily"])
def test_loading_the_location_does_not_import_what_only_runs_use(module):
    result = subprocess.run([sys.executable, "-c", PROBE.format(module=module)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    imported = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert module in imported  # the probe measured the location's own imports
    unwanted = sorted(
        name for name in imported for heavy in LOADED_ONLY_WHEN_USED if name == heavy or name.startswith(heavy + ".")
    )
    assert not unwanted, f"loading {module} imports {unwanted}"
