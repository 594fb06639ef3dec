"""Dagster alone, for `run.py fixed-cost --floor`: a code location of one asset whose body makes one request.

The same command, instance and emulator as the package's runs, without the package: the time from the
command's start to this request is what Dagster itself costs before any asset code can reach Stripe
(importing Dagster, the SQLite instance, creating and starting the run).
"""

import os
import urllib.request

import dagster as dg


@dg.asset(key=["stripe", "charge"])
def charge() -> None:
    request = urllib.request.Request(
        os.environ["STRIPE_API_BASE"].rstrip("/") + "/v1/charges?limit=100",
        headers={"Authorization": f"Bearer {os.environ['STRIPE_API_KEY']}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


defs = dg.Definitions(assets=[charge], executor=dg.in_process_executor)
