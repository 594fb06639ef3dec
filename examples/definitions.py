"""The example code location, loading every component under `nilus_pipelines/` (here the two Stripe
pipelines of `nilus_pipelines/defs.yaml`) with Dagster's own component loader:

    export DAGSTER_HOME=$PWD/examples    # its own instance (examples/dagster.yaml)
    STRIPE_API_KEY=sk_test_… .venv/bin/dagster dev -f examples/definitions.py
    STRIPE_API_KEY=sk_test_… .venv/bin/dg launch --assets finance/stripe_customers -f examples/definitions.py

(`dg.toml` makes this folder a dg project too, so `dg.load_from_defs_folder(path_within_project=…)` and the
`dg` CLI find the same definitions.)
"""

import importlib
import sys
import warnings
from pathlib import Path

import dagster as dg

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # `nilus_pipelines` is imported by name, like a project's defs module
    sys.path.insert(0, str(HERE))

from nilus_stripe_assets.dagster_adapter.console import quiet_known_warnings

with warnings.catch_warnings():  # the loader's code references are a beta feature; nothing to act on
    warnings.simplefilter("ignore", dg.BetaWarning)
    defs = dg.ComponentTree.from_module(
        defs_module=importlib.import_module("nilus_pipelines"), project_root=HERE
    ).build_defs()
quiet_known_warnings()  # catch_warnings() restored the filters the package set while loading
