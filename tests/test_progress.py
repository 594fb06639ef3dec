"""The progress line counts the object's own rows: a fan-out's parents (customers read to reach their payment
methods) are requests, not objects of the load."""

from __future__ import annotations

from nilus_stripe_assets.dagster_adapter.resources import StripeResource
from nilus_stripe_assets.emulator import StripeEmulator
from nilus_stripe_assets.engine.load import extract
from nilus_stripe_assets.engine.plan import ObjectPlan
from nilus_stripe_assets.engine.run import log_progress
from nilus_stripe_assets.source.catalog import CATALOG
from nilus_stripe_assets.warehouse.strategies import TableRef


class _Lines:
    def __init__(self):
        self.lines: list[str] = []

    def info(self, text: str) -> None:
        self.lines.append(text)


def test_progress_of_payment_methods_counts_payment_methods_not_customers(tmp_path):
    with StripeEmulator(counts={"customer": 450, "payment_method": 250}, seed=9) as emu:
        api = StripeResource(api_key=emu.api_key, api_base=emu.url, budget_dir=str(tmp_path)).get_api()
        obj, table = CATALOG["payment_method"], TableRef.parse("stripe.payment_method")
        batch = extract(api, obj, "async", "merge", table, spool_root=str(tmp_path))
        served = emu.stats()["total"]["objects"]
    assert batch.spool.objects == 250 and served > 250  # the customers' pages were read too
    log = _Lines()
    log_progress(log, [ObjectPlan("pm", obj, table, "async", "merge")], {"pm": api}, elapsed=10.0)
    assert log.lines == [f"payment_method: 250 objects so far, {api.stats.requests:,} requests, 25 objects/s"]
