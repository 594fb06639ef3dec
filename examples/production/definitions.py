"""A code location for a deployment on several machines: one step per Stripe object, each in its own
process, container or pod, all pacing on one request budget in PostgreSQL.

    NILUS_BUDGET_URL=postgresql://…  NILUS_WAREHOUSE_URL=postgresql://…  STRIPE_API_KEY=sk_…  DAGSTER_HOME=…
    dagster asset materialize -f examples/production/definitions.py --select 'stripe/charge,stripe/customer'

`NILUS_STEP_EXECUTOR` picks where steps run: `multiprocess` (default: one process per step on this machine),
`docker` (dagster-docker's `docker_executor`: one container per step) or `k8s` (dagster-k8s's
`k8s_job_executor`: one Kubernetes job per step). The step environments receive the variables in
`STEP_ENV`, so every step finds the key, the budget database and the warehouse. `pip install -e '.[production]'`
installs both container executors (pinned to this Dagster release); loading the location needs neither a
cluster nor a Docker daemon.
"""

import os

import dagster as dg

from nilus_stripe_assets.dagster_adapter.defaults import default_resources
from nilus_stripe_assets.dagster_adapter.factory import build_stripe_assets
from nilus_stripe_assets.dagster_adapter.resources import StripeResource

STEP_ENV = ["STRIPE_API_KEY", "NILUS_BUDGET_URL", "NILUS_WAREHOUSE_URL", "NILUS_DUCKDB_PATH",
            "DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_DB", "DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD"]


def step_executor() -> dg.ExecutorDefinition:
    kind = os.environ.get("NILUS_STEP_EXECUTOR", "multiprocess")
    if kind == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor.configured({"env_vars": STEP_ENV}, name="stripe_k8s")
    if kind == "docker":
        from dagster_docker import docker_executor

        return docker_executor.configured({"env_vars": STEP_ENV}, name="stripe_docker")
    if kind != "multiprocess":
        raise ValueError(f"NILUS_STEP_EXECUTOR={kind!r}: use multiprocess, docker or k8s")
    return dg.multiprocess_executor.configured(_forked_from_a_loaded_server, name="stripe_multiprocess")


def _forked_from_a_loaded_server(config: dict) -> dict:
    """The multiprocess executor's run config (any it takes, e.g. `max_concurrent`), with step processes
    forked from a server that has Dagster and this package loaded: a step starts without importing them again,
    and Dagster's notice that the instance's logging handler (dagster.yaml's `python_logs`) is beta, which a
    freshly started step prints before it loads any code, stays quiet (the package's defaults filter it)."""
    preload = {"forkserver": {"preload_modules": ["dagster", "nilus_stripe_assets.dagster_adapter.defaults"]}}
    return {"start_method": preload, **(config or {})}


defs = dg.Definitions(
    # One step (and so one process, container or pod) per object, all in the `stripe_api` pool.
    assets=build_stripe_assets(one_step=False),
    resources={
        **default_resources(),
        # Required here: steps on several machines with file budgets would each send the account's whole rate.
        "stripe": StripeResource(api_key=dg.EnvVar("STRIPE_API_KEY"), budget_url=dg.EnvVar("NILUS_BUDGET_URL")),
    },
    executor=step_executor(),
)
