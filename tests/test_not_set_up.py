"""Products an account has not set up never fail a run (issue 19, item 3): the table is written empty with
Stripe's message in its metadata and one warning line; the other objects load; a later run fills it; any
other 400 still fails its object. Against the emulator's not-set-up switch (Stripe's own wordings)."""

import logging

import dagster as dg
import stripe

from nilus_stripe_assets.dagster_adapter.factory import build_stripe_assets
from nilus_stripe_assets.emulator import StripeEmulator
from nilus_stripe_assets.source.catalog import CATALOG
from nilus_stripe_assets.source.errors import not_set_up

from .conftest import SMALL, count, make_resources, materialize, query

# Issuing (a top-level list and a fan-out over cards), Treasury (Stripe answers "Unrecognized request URL …
# Have you onboarded to Treasury?"), and core objects beside them.
OBJECTS = ["issuing_card", "issuing_token", "treasury_financial_account", "treasury_transaction", "dispute",
           "charge", "quote_line_item"]


def _materializations(result) -> dict[str, dict]:
    return {m.materialization.asset_key.path[-1]: m.materialization.metadata
            for m in result.get_asset_materialization_events()}


def test_a_product_not_set_up_is_an_empty_table_and_a_later_run_fills_it(tmp_path):
    database = str(tmp_path / "warehouse.duckdb")
    with StripeEmulator(scale=SMALL, seed=19, not_set_up=["Issuing", "Treasury"]) as emu:
        assets = build_stripe_assets(OBJECTS, one_step=True)
        instance = dg.DagsterInstance.ephemeral()
        result = materialize(assets, make_resources(emu, database), instance=instance)
        assert result.success  # a plain account's "everything" is green
        written = _materializations(result)
        assert set(written) == set(OBJECTS)
        for name in ("issuing_card", "issuing_token", "treasury_financial_account", "treasury_transaction"):
            assert count(database, f"stripe.{name}") == 0, name  # materialized, empty: the table exists
            message = written[name]["stripe/not_set_up"].value
            assert ("not set up to use Issuing" in message) if name.startswith("issuing") else (
                "Have you onboarded to Treasury?" in message), message
        warnings = [e.user_message for e in instance.all_logs(result.run_id)
                    if e.level == logging.WARNING and "the account does not use" in e.user_message]
        assert len([w for w in warnings if w.startswith("issuing_card:")]) == 1, warnings  # one line each
        assert len(warnings) == 4, warnings
        for name in ("dispute", "charge", "quote_line_item"):  # the other objects load as usual
            assert count(database, f"stripe.{name}") == emu.counts()[name] > 0, name
            assert "stripe/not_set_up" not in written[name]
        # Issuing's not-set-up answer costs one request per object, not a retry or an unfiltered re-read.
        assert written["issuing_card"]["requests"].value == 1

        # The product is turned on: the next run fills the tables.
        emu.configure(not_set_up=[])
        again = materialize(assets, make_resources(emu, database))
        assert again.success
        for name in ("issuing_card", "issuing_token", "treasury_financial_account", "treasury_transaction"):
            assert count(database, f"stripe.{name}") == emu.counts()[name] > 0, name
            assert "stripe/not_set_up" not in _materializations(again)[name]
        ids = query(database, "SELECT count(*) - count(DISTINCT id) FROM stripe.issuing_token")
        assert ids == [(0,)]


def _invalid(message: str, status: int = 400) -> stripe.InvalidRequestError:
    """The exception stripe-python raises for a 400 invalid_request_error with this message."""
    return stripe.InvalidRequestError(message, param=None, http_status=status,
                                      json_body={"error": {"type": "invalid_request_error", "message": message}})


def test_only_stripes_not_set_up_answer_for_a_product_is_skipped():
    issuing = CATALOG["issuing_card"]
    answer = ("Your account is not set up to use Issuing. Please visit https://dashboard.stripe.com/issuing/overview "
              "to get started.")
    assert not_set_up(_invalid(answer), issuing) == answer
    treasury = ("Unrecognized request URL (GET: /v1/treasury/financial_accounts). Please see https://stripe.com/docs "
                "or we can help at https://support.stripe.com/. (Hint: Have you onboarded to Treasury? You can learn "
                "more about the steps needed at https://stripe.com/docs/treasury/access)")
    assert not_set_up(_invalid(treasury), CATALOG["treasury_financial_account"]) == treasury
    # Any other 400 still fails its object, and a core object is never "not set up".
    assert not_set_up(_invalid("Received unknown parameter: foo"), issuing) is None
    assert not_set_up(_invalid(answer), CATALOG["charge"]) is None
    assert not_set_up(stripe.PermissionError(answer, http_status=403), issuing) is None

