"""Events that carry an object under another type's name still reach it, whatever else the run loads.

Stripe sends a refund's changes as `refund.updated` and also as `charge.refund.updated` (both carry a
`refund`), and an application fee refund's changes inside its fee (`application_fee.refunded`) and on their
own (`application_fee.refund.updated` carries a `fee_refund`). A run that captures one such object alone
must neither filter the events list down to one prefix nor route only by the parent's type. Both warehouses.
"""

from __future__ import annotations

import orjson

from nilus_stripe_assets.dagster_adapter.factory import build_stripe_assets
from nilus_stripe_assets.emulator import StripeEmulator

from .conftest import materialize, mode_config


def _changed(emu: StripeEmulator, name: str, oid: str, **fields) -> dict:
    """The object's new state, stored as the list will serve it (no event: the test emits its own)."""
    table = emu.store.tables[name]
    state = {**orjson.loads(table.data[oid]), **fields}
    table.data[oid] = orjson.dumps(state)
    return state


def _loaded(emu: StripeEmulator, warehouse, name: str, count: int):
    """A full load of `name` alone; its assets, resources and the first `count` ids it wrote."""
    assets = build_stripe_assets([name])
    resources = warehouse.resources(emu)
    assert materialize(assets, resources).success
    ids = [r[0] for r in warehouse.query(f"SELECT id FROM stripe.{name} ORDER BY id")][:count]
    assert len(ids) == count
    return assets, resources, ids


def test_refund_changes_sent_as_charge_refund_events_are_applied_when_refunds_load_alone(warehouse):
    with StripeEmulator(scale=0.2, seed=11) as emu:
        assets, resources, ids = _loaded(emu, warehouse, "refund", 4)
        for oid in ids[:2]:
            emu.emit_event("charge.refund.updated", _changed(emu, "refund", oid, metadata={"via": "charge.refund"}))
        for oid in ids[2:]:
            emu.emit_event("refund.updated", _changed(emu, "refund", oid, metadata={"via": "refund"}))

        assert materialize(assets, resources, mode_config(assets, "sync:incremental")).success
        rows = dict(warehouse.query(f"SELECT id, metadata FROM stripe.refund WHERE id IN ({', '.join('?' * 4)})", ids))
        via = {oid: orjson.loads(rows[oid])["via"] if isinstance(rows[oid], (str, bytes)) else rows[oid]["via"]
               for oid in ids}
        assert via == {ids[0]: "charge.refund", ids[1]: "charge.refund", ids[2]: "refund", ids[3]: "refund"}


def test_application_fee_refund_events_of_their_own_are_applied(warehouse):
    with StripeEmulator(scale=0.2, seed=12) as emu:
        assets, resources, ids = _loaded(emu, warehouse, "application_fee_refund", 3)
        for oid in ids:
            emu.emit_event("application_fee.refund.updated",
                           _changed(emu, "application_fee_refund", oid, metadata={"reason": "own event"}))

        assert materialize(assets, resources, mode_config(assets, "sync:incremental")).success
        rows = warehouse.query(
            f"SELECT id, metadata FROM stripe.application_fee_refund WHERE id IN ({', '.join('?' * 3)})", ids)
        reasons = {oid: orjson.loads(m)["reason"] if isinstance(m, (str, bytes)) else m["reason"] for oid, m in rows}
        assert reasons == dict.fromkeys(ids, "own event")
        assert warehouse.query("SELECT count(*) FROM stripe.application_fee_refund WHERE application_fee IS NULL") \
            == [(0,)]
