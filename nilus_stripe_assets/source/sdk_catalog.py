"""Write the catalog's data (`stripe_lists.json`) from stripe-python itself: every v1 list the SDK offers.

    .venv/bin/python -m nilus_stripe_assets.source.sdk_catalog     # after upgrading stripe; then review the diff

What the SDK says, read here rather than typed by hand:
- the lists: every `list` / `list_<children>` class method of every class in `stripe._object_classes`
  (the SDK's map of Stripe `object` values to classes), with its path (`class_url()` or the method's URL
  template) and the class it returns (`-> ListObject["LineItem"]`);
- its `*ListParams` TypedDict: whether it takes `created[...]`, and which parameters it requires (a
  required parent id makes the list a fan-out over that parent);
- the class: its `OBJECT_NAME` (Stripe's `object` value), its creation field (`created`, else `date`),
  whether Stripe deletes it (`DeletableAPIResource`, or the parent's `delete_<child>` method);
- the events that carry it: `stripe.Event.type`'s values, joined to classes through the v1 event
  notification classes in `stripe.events` (`fetch_related_object() -> "Dispute"` for `charge.dispute.created`);
  event types without such a class (treasury.*, reporting.*, three_d_secure.*, apps.install.*) are joined by
  their prefix when it is a class's `OBJECT_NAME`.

What the SDK does not say is decided below, in one table (`DECISIONS`, one entry per list method): the
table name, the product area (Dagster group), the product whose "not set up" answer can come back, the
write strategy, whether it is the platform's (Connect), and which parent embeds the first page. Every
list the SDK offers must be either decided or `LEFT_OUT` with a reason: a new SDK with a new list fails
the generator (and the test that runs it) until someone decides.

Id prefixes are not in the SDK (its docstrings name one, `climsku_`). They come from the example objects of
Stripe's API reference (docs.stripe.com/api/<resource>/object); `ID_PREFIXES` says which were checked
there and which are unverified (used by the emulator only; the engine never reads a prefix).
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import json
import re
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

DATA = Path(__file__).with_name("stripe_lists.json")


@dataclass(frozen=True)
class Decision:
    """What the SDK does not say about one list."""

    name: str  # table and asset name: stripe/<name>
    group: str  # product area (Dagster group for objects outside the default load)
    description: str
    strategy: str = "merge"
    product: Optional[str] = None  # "Your account is not set up to use <product>" may answer the list
    parent: Optional[str] = None  # catalog name of the parent a child list is read through
    embedded_field: Optional[str] = None  # parent field embedding the first page of children
    list_params: dict = field(default_factory=dict)  # always sent
    event_prefix: Optional[str] = None  # for `GET /v1/events?type=<prefix>.*` when only this object is read
    platform_level: bool = False  # Connect: the platform's list, read once without Stripe-Account
    connect_only: bool = False  # only in the Connect locations
    default_load: bool = False  # one of the 23 tables of the default full load
    spec: bool = False  # one of the spec's 21 objects
    parent_param: Optional[str] = None  # the parent's id parameter when the SDK marks none required
    only_if: tuple = ()  # parent field values that have the child list (Parent.only_if)
    relist_days: Optional[int] = None  # Parent.relist_days: children no event carries, re-listed in increments
    relist_on: tuple = ()  # Parent.relist_on: events naming the parents whose children changed
    merge_key: object = "id"  # a column, or (parent id, id) where Stripe repeats ids across parents
    path: Optional[str] = None  # catalog `path` when it is not the SDK method's (payment_method)
    sdk_class: Optional[str] = None  # when the method returns a union (external accounts)
    created_field: Optional[str] = "auto"  # "auto": `created` if the class declares it, else `date`, else None


D = Decision
_CONNECT = "Connect"
# Key: "<OBJECT_NAME of the class holding the method>.<method>". Order: the spec's 21 in the spec's order, the
# two line tables, then by product area.
DECISIONS: dict[str, Decision] = {
    "charge.list": D("charge", "payments", "Payment charges.", default_load=True, spec=True),
    "payment_intent.list": D("payment_intent", "payments", "Payment intents.", default_load=True, spec=True),
    "customer.list_payment_methods": D(
        "payment_method", "payments", "Saved payment methods.", parent="customer", default_load=True, spec=True,
        path="/v1/payment_methods"),
    "refund.list": D("refund", "payments", "Refunds.", default_load=True, spec=True),
    "payout.list": D("payout", "core", "Payouts to bank accounts.", default_load=True, spec=True),
    "customer.list": D("customer", "core", "Customer records.", default_load=True, spec=True),
    "subscription.list": D("subscription", "billing", "Customer subscriptions.", default_load=True, spec=True,
                           list_params={"status": "all"}, event_prefix="customer.subscription"),
    "subscription_item.list": D(
        "subscription_item", "billing", "Individual subscription items.", parent="subscription",
        embedded_field="items", event_prefix="customer.subscription", default_load=True, spec=True),
    "subscription_schedule.list": D("subscription_schedule", "billing", "Scheduled subscription updates.",
                                    default_load=True, spec=True),
    "product.list": D("product", "products", "Product catalog.", default_load=True, spec=True),
    "price.list": D("price", "products", "Product prices.", default_load=True, spec=True),
    "coupon.list": D("coupon", "billing", "Coupons.", strategy="replace", default_load=True, spec=True),
    "promotion_code.list": D("promotion_code", "billing", "Promotion codes.", default_load=True, spec=True),
    "invoice.list": D("invoice", "billing", "Customer invoices.", default_load=True, spec=True),
    "invoiceitem.list": D("invoice_item", "billing", "Invoice line items.", event_prefix="invoiceitem",
                          default_load=True, spec=True),
    "credit_note.list": D("credit_note", "billing", "Credit notes.", default_load=True, spec=True),
    "tax_rate.list": D("tax_rate", "tax", "Tax rates.", strategy="replace", default_load=True, spec=True),
    "balance_transaction.list": D("balance_transaction", "core", "Balance transaction history.",
                                  default_load=True, spec=True),
    "event.list": D("event", "core", "Event stream (account-level events).", strategy="append",
                    default_load=True, spec=True),
    "setup_intent.list": D("setup_intent", "payments", "Setup intents for future payments.",
                           default_load=True, spec=True),
    "webhook_endpoint.list": D("webhook_endpoint", "core", "Configured webhook endpoints.", strategy="replace",
                               default_load=True, spec=True),
    "invoice.list_lines": D(
        "invoice_line_item", "billing",
        "Every line of every invoice (an invoice embeds only its first 10), with the invoice id.",
        parent="invoice", embedded_field="lines", event_prefix="invoice", merge_key=("invoice", "id"),
        default_load=True),
    "credit_note.list_lines": D(
        "credit_note_line_item", "billing",
        "Every line of every credit note (a credit note embeds only its first 10), with the credit note id.",
        parent="credit_note", embedded_field="lines", event_prefix="credit_note", merge_key=("credit_note", "id"),
        default_load=True),
    "balance_transaction.list#payout": D(
        "payout_balance_transaction", "core",
        "The balance transactions each automatic payout paid out, with the payout id (payout reconciliation).",
        # Stripe itemizes automatic payouts only, and answers a 400 for a manual one. No events carry them: an
        # incremental run re-lists the payouts of the last 30 days (Stripe itemizes a payout once it is paid).
        parent="payout", parent_param="payout", only_if=(("automatic", True),), relist_days=30,
        default_load=True),
    # -- payments
    "dispute.list": D("dispute", "payments", "Disputes of charges (chargebacks and inquiries).",
                      event_prefix="charge.dispute"),
    "setup_attempt.list": D("setup_attempt", "payments", "Every attempt of every setup intent, with its id.",
                            parent="setup_intent", strategy="replace"),
    "payment_method_configuration.list": D(
        "payment_method_configuration", "payments", "Payment method configurations.", strategy="replace"),
    "payment_method_domain.list": D("payment_method_domain", "payments", "Domains registered for wallets.",
                                    strategy="replace"),
    "apple_pay_domain.list": D("apple_pay_domain", "payments", "Apple Pay domains (legacy registration).",
                               strategy="replace"),
    "payment_record.list": D("payment_record", "payments", "Payments recorded from outside Stripe.",
                                         strategy="replace"),
    "payment_attempt_record.list": D("payment_attempt_record", "payments",
                                     "Every attempt of every payment record, with its id.", parent="payment_record",
                                     strategy="replace"),
    "three_d_secure.authentication.list": D("three_d_secure_authentication", "payments",
                                            "3D Secure authentications."),
    "forwarding.request.list": D("forwarding_request", "payments", "Vault and Forward requests.",
                                 product="Vault and Forward"),
    # -- billing
    "quote.list": D("quote", "billing", "Quotes."),
    "quote.list_line_items": D("quote_line_item", "billing", "Every line item of every quote, with its id.",
                               parent="quote", strategy="replace"),
    "plan.list": D("plan", "billing", "Plans (the legacy form of recurring prices)."),
    "invoice_payment.list": D("invoice_payment", "billing", "Payments applied to invoices."),
    "invoice_rendering_template.list": D("invoice_rendering_template", "billing", "Invoice rendering templates.",
                                         strategy="replace"),
    "customer.list_balance_transactions": D(
        "customer_balance_transaction", "billing", "Every customer's balance transactions, with the customer id.",
        # No event carries them, but each one moves its customer's `balance` (a `customer.updated`): an
        # incremental run re-lists the customers that changed, not every customer.
        parent="customer", strategy="replace", relist_on=(("customer", "id"),)),
    "customer.list_cash_balance_transactions": D(
        "customer_cash_balance_transaction", "billing",
        "Every customer's cash balance transactions, with the customer id.", parent="customer"),
    "customer.list_tax_ids": D("tax_id", "billing", "Every customer's tax ids, with the customer id.",
                               parent="customer", event_prefix="customer.tax_id"),
    "billing.credit_grant.list": D("billing_credit_grant", "billing", "Billing credit grants.",
                                   product="Billing credits"),
    "billing.credit_balance_transaction.list": D(
        "billing_credit_balance_transaction", "billing", "Every credit grant's balance transactions, with its id.",
        # The SDK requires none of credit_grant / customer / customer_account (Stripe wants one): by grant.
        parent="billing_credit_grant", parent_param="credit_grant", product="Billing credits"),
    "billing.meter.list": D("billing_meter", "billing", "Usage meters.", product="Billing meters"),
    "billing.alert.list": D("billing_alert", "billing", "Usage alerts.", product="Billing meters"),
    "billing.feedback_option.list": D("billing_feedback_option", "billing", "Cancellation feedback options.",
                                      strategy="replace"),
    "billing_portal.configuration.list": D("billing_portal_configuration", "billing",
                                           "Customer portal configurations."),
    "entitlements.feature.list": D("entitlements_feature", "billing", "Entitlement features.",
                                   strategy="replace", product="Entitlements"),
    "entitlements.active_entitlement.list": D(
        "entitlements_active_entitlement", "billing", "Every customer's active entitlements, with the customer id.",
        # A customer's entitlements change with an `entitlements.active_entitlement_summary.updated` event
        # naming the customer: an incremental run re-lists those customers only.
        parent="customer", strategy="replace", product="Entitlements",
        relist_on=(("entitlements.active_entitlement_summary", "customer"),)),
    # -- products
    "product.list_features": D("product_feature", "products", "Every product's features, with the product id.",
                               parent="product", strategy="replace"),
    "shipping_rate.list": D("shipping_rate", "products", "Shipping rates."),
    "product_catalog.trial_offer.list": D("product_catalog_trial_offer", "products", "Trial offers.", strategy="replace"),
    # -- checkout
    "checkout.session.list": D("checkout_session", "checkout", "Checkout sessions."),
    "checkout.session.list_line_items": D(
        "checkout_session_line_item", "checkout", "Every line item of every checkout session, with its id.",
        parent="checkout_session", strategy="replace"),
    "payment_link.list": D("payment_link", "checkout", "Payment links."),
    "payment_link.list_line_items": D(
        "payment_link_line_item", "checkout", "Every line item of every payment link, with its id.",
        parent="payment_link", strategy="replace"),
    # -- connect (platform-level: read once by the platform, without Stripe-Account)
    "account.list": D("account", "connect", "Connected accounts.", strategy="replace", product=_CONNECT,
                      platform_level=True),
    "account.list_persons": D("person", "connect", "Every connected account's persons, with the account id.",
                              parent="account", strategy="replace", product=_CONNECT, platform_level=True, connect_only=True),
    "account.list_capabilities": D(
        "capability", "connect", "Every connected account's capabilities, with the account id.",
        parent="account", strategy="replace", product=_CONNECT, platform_level=True, connect_only=True),
    "account.list_external_accounts#bank_account": D(
        "external_bank_account", "connect", "Every connected account's external bank accounts, with the account id.",
        parent="account", list_params={"object": "bank_account"}, sdk_class="BankAccount",
        event_prefix="account.external_account", strategy="replace", product=_CONNECT, platform_level=True,
        connect_only=True),
    "account.list_external_accounts#card": D(
        "external_card", "connect", "Every connected account's external debit cards, with the account id.",
        parent="account", list_params={"object": "card"}, sdk_class="Card",
        event_prefix="account.external_account", strategy="replace", product=_CONNECT, platform_level=True,
        connect_only=True),
    "application_fee.list": D("application_fee", "connect", "Application fees collected by the platform.",
                              platform_level=True),
    "application_fee.list_refunds": D(
        "application_fee_refund", "connect", "Every application fee's refunds, with the fee id.",
        parent="application_fee", embedded_field="refunds", event_prefix="application_fee", platform_level=True),
    "transfer.list": D("transfer", "connect", "Transfers to connected accounts.", platform_level=True),
    "transfer.list_reversals": D(
        "transfer_reversal", "connect", "Every transfer's reversals, with the transfer id.",
        parent="transfer", embedded_field="reversals", event_prefix="transfer", platform_level=True),
    "country_spec.list": D("country_spec", "connect", "What Stripe supports per country.", strategy="replace",
                           platform_level=True),
    "apps.install.list": D("apps_install", "core", "Stripe Apps installed on the account."),
    # -- core
    "topup.list": D("topup", "core", "Top-ups of the Stripe balance."),
    "file.list": D("file", "core", "Files uploaded to Stripe (dispute evidence, identity documents, reports)."),
    "file_link.list": D("file_link", "core", "Links to files."),
    # -- radar
    "radar.early_fraud_warning.list": D("radar_early_fraud_warning", "radar", "Early fraud warnings."),
    "review.list": D("review", "radar", "Radar reviews of payments."),
    "radar.value_list.list": D("radar_value_list", "radar", "Radar value lists.", strategy="replace",
                                   product="Radar for Fraud Teams"),
    "radar.value_list_item.list": D("radar_value_list_item", "radar", "Every value list's items, with its id.",
                                    parent="radar_value_list", strategy="replace",
                                    product="Radar for Fraud Teams"),
    # -- reporting
    "reporting.report_run.list": D("reporting_report_run", "reporting", "Report runs."),
    "reporting.report_type.list": D("reporting_report_type", "reporting", "Report types available.",
                                    strategy="replace"),
    "scheduled_query_run.list": D("scheduled_query_run", "reporting", "Sigma scheduled query runs.",
                                  product="Sigma"),
    # -- tax
    "tax_code.list": D("tax_code", "tax", "Product tax codes.", strategy="replace"),
    "tax.registration.list": D("tax_registration", "tax", "Tax registrations.", strategy="replace", product="Tax"),
    # -- identity
    "identity.verification_session.list": D("identity_verification_session", "identity",
                                            "Identity verification sessions.", product="Identity"),
    "identity.verification_report.list": D("identity_verification_report", "identity",
                                           "Identity verification reports.", product="Identity"),
    # -- issuing
    "issuing.authorization.list": D("issuing_authorization", "issuing", "Issuing authorizations.",
                                    product="Issuing"),
    "issuing.card.list": D("issuing_card", "issuing", "Issued cards.", product="Issuing"),
    "issuing.cardholder.list": D("issuing_cardholder", "issuing", "Cardholders.", product="Issuing"),
    "issuing.dispute.list": D("issuing_dispute", "issuing", "Issuing disputes.", product="Issuing"),
    "issuing.personalization_design.list": D("issuing_personalization_design", "issuing",
                                             "Card personalization designs.", product="Issuing"),
    "issuing.physical_bundle.list": D("issuing_physical_bundle", "issuing", "Physical card bundles.",
                                      strategy="replace", product="Issuing"),
    "issuing.token.list": D("issuing_token", "issuing", "Every issued card's wallet tokens, with the card id.",
                            parent="issuing_card", product="Issuing"),
    "issuing.transaction.list": D("issuing_transaction", "issuing", "Issuing transactions.", product="Issuing"),
    # -- terminal
    "terminal.configuration.list": D("terminal_configuration", "terminal", "Terminal reader configurations.",
                                     strategy="replace", product="Terminal"),
    "terminal.location.list": D("terminal_location", "terminal", "Terminal locations.", strategy="replace",
                                product="Terminal"),
    "terminal.reader.list": D("terminal_reader", "terminal", "Terminal readers.", strategy="replace",
                              product="Terminal"),
    # -- treasury (every list but financial accounts needs one: a fan-out over them)
    "treasury.financial_account.list": D("treasury_financial_account", "treasury", "Treasury financial accounts.",
                                         product="Treasury"),
    **{
        f"treasury.{kind}.list": D(f"treasury_{kind}", "treasury", f"{what}, with the financial account id.",
                                   parent="treasury_financial_account", strategy=strategy, product="Treasury")
        for kind, what, strategy in (
            ("credit_reversal", "Every financial account's credit reversals", "merge"),
            ("debit_reversal", "Every financial account's debit reversals", "merge"),
            ("inbound_transfer", "Every financial account's inbound transfers", "merge"),
            ("outbound_payment", "Every financial account's outbound payments", "merge"),
            ("outbound_transfer", "Every financial account's outbound transfers", "merge"),
            ("received_credit", "Every financial account's received credits", "merge"),
            ("received_debit", "Every financial account's received debits", "merge"),
            ("transaction", "Every financial account's transactions", "replace"),  # no events
            ("transaction_entry", "Every financial account's transaction entries", "replace"),  # no events
        )
    },
    # -- financial connections
    "financial_connections.account.list": D("financial_connections_account", "financial_connections",
                                            "Financial Connections accounts.", product="Financial Connections"),
    "financial_connections.transaction.list": D(
        "financial_connections_transaction", "financial_connections",
        "Every Financial Connections account's transactions, with the account id.",
        parent="financial_connections_account", strategy="replace", product="Financial Connections"),
    # -- climate
    "climate.order.list": D("climate_order", "climate", "Climate orders.", product="Climate"),
    "climate.product.list": D("climate_product", "climate", "Climate products.", strategy="replace",
                              product="Climate"),
    "climate.supplier.list": D("climate_supplier", "climate", "Climate suppliers.", strategy="replace",
                               product="Climate"),
}

# Lists the SDK offers that the catalog does not load, with the reason.
LEFT_OUT: dict[str, str] = {
    "exchange_rate.list": "deprecated by Stripe (exchange rates are no longer served by the API).",
    "apps.secret.list": "requires a `scope` (the secrets of one user or the account for one Stripe App); "
                        "a loader has no scope to ask for.",
    "test_helpers.test_clock.list": "test mode only: a live key is refused; test clocks are simulation state, "
                                    "not data.",
    "payment_method.list": "without `customer` it lists only Treasury payment methods; the `payment_method` table "
                           "reads every customer's (`/v1/customers/{id}/payment_methods`).",
    "charge.list_refunds": "the same objects as `/v1/refunds` (the `refund` table).",
    "customer.list_sources": "legacy Sources/Cards API: a customer's cards and bank accounts are payment methods "
                             "(the `payment_method` table).",
    "source.list_source_transactions": "Sources are deprecated and not listable (no parent list).",
    "tax.calculation.list_line_items": "tax calculations are not listable (no parent list), and expire.",
    "tax.transaction.list_line_items": "tax transactions are not listable (no parent list).",
    "billing.meter.list_event_summaries": "requires a customer and a time range: aggregates of usage, not objects.",
    "financial_connections.account.list_owners": "requires an `ownership` id that only an ownership refresh "
                                                 "returns.",
    "quote.list_computed_upfront_line_items": "a preview computed from the quote's line items (the "
                                              "`quote_line_item` table), not stored objects.",
    "payment_intent.list_amount_details_line_items": "one request per payment intent (the largest list) for "
                                                     "line-item detail most accounts never send; read it from "
                                                     "`payment_intent.amount_details` instead.",
    "tax_id.list": "without `owner` it lists the account's own tax ids (owner self), which share Stripe's `tax_id` "
                   "type with the customers' (the `tax_id` table) but have no events to tell them apart.",
    "tax.location.list": "requires a location `type` and lists Stripe Tax performance locations only.",
}

# Id prefixes, by Stripe type: (prefix, source). "api-ref": the example object of Stripe's API reference;
# "sdk": stripe-python's docstring; "catalog": the package's catalog before issue 19 (the spec's objects);
# "natural": the id is a natural key (a country, a capability name, a report type), no prefix;
# "unverified": no Stripe source found, a plausible prefix for the emulator only.
ID_PREFIXES: dict[str, tuple[str, str]] = {
    "charge": ("ch_", "catalog"), "payment_intent": ("pi_", "catalog"), "payment_method": ("pm_", "catalog"),
    "refund": ("re_", "catalog"), "payout": ("po_", "catalog"), "customer": ("cus_", "catalog"),
    "subscription": ("sub_", "catalog"), "subscription_item": ("si_", "catalog"),
    "subscription_schedule": ("sub_sched_", "catalog"), "product": ("prod_", "catalog"),
    "price": ("price_", "catalog"), "coupon": ("", "catalog"), "promotion_code": ("promo_", "catalog"),
    "invoice": ("in_", "catalog"), "invoiceitem": ("ii_", "catalog"), "credit_note": ("cn_", "catalog"),
    "tax_rate": ("txr_", "catalog"), "balance_transaction": ("txn_", "catalog"), "event": ("evt_", "catalog"),
    "setup_intent": ("seti_", "catalog"), "webhook_endpoint": ("we_", "catalog"), "line_item": ("il_", "catalog"),
    "credit_note_line_item": ("cnli_", "catalog"),
    "dispute": ("dp_", "api-ref"), "setup_attempt": ("setatt_", "api-ref"),
    "payment_method_configuration": ("pmc_", "api-ref"), "payment_method_domain": ("pmd_", "api-ref"),
    "apple_pay_domain": ("apwc_", "api-ref"), "payment_record": ("pr_", "api-ref"),
    "payment_attempt_record": ("par_", "api-ref"), "three_d_secure.authentication": ("3dsauth_", "unverified"),
    "forwarding.request": ("fwdreq_", "api-ref"), "quote": ("qt_", "api-ref"), "item": ("li_", "api-ref"),
    "plan": ("plan_", "api-ref"), "invoice_payment": ("inpay_", "api-ref"),
    "invoice_rendering_template": ("inrtem_", "api-ref"), "customer_balance_transaction": ("cbtxn_", "api-ref"),
    "customer_cash_balance_transaction": ("ccsbtxn_", "api-ref"), "tax_id": ("txi_", "api-ref"),
    "billing.credit_grant": ("credgr_", "api-ref"), "billing.credit_balance_transaction": ("cbtxn_", "api-ref"),
    "billing.meter": ("mtr_", "api-ref"), "billing.alert": ("alrt_", "api-ref"),
    "billing.feedback_option": ("bfo_", "unverified"), "billing_portal.configuration": ("bpc_", "api-ref"),
    "entitlements.feature": ("feat_", "api-ref"), "entitlements.active_entitlement": ("ent_", "api-ref"),
    "product_feature": ("prodft_", "api-ref"), "shipping_rate": ("shr_", "api-ref"),
    "product_catalog.trial_offer": ("trial_offer_", "unverified"), "checkout.session": ("cs_", "api-ref"),
    "payment_link": ("plink_", "api-ref"), "account": ("acct_", "api-ref"), "person": ("person_", "api-ref"),
    "capability": ("", "natural"), "bank_account": ("ba_", "api-ref"), "card": ("card_", "api-ref"),
    "application_fee": ("fee_", "api-ref"), "fee_refund": ("fr_", "api-ref"), "transfer": ("tr_", "api-ref"),
    "transfer_reversal": ("trr_", "api-ref"), "country_spec": ("", "natural"),
    "apps.install": ("appinst_", "unverified"), "topup": ("tu_", "api-ref"), "file": ("file_", "api-ref"),
    "file_link": ("link_", "api-ref"), "radar.early_fraud_warning": ("issfr_", "api-ref"),
    "review": ("prv_", "api-ref"), "radar.value_list": ("rsl_", "api-ref"), "radar.value_list_item": ("rsli_", "api-ref"),
    "reporting.report_run": ("frr_", "api-ref"), "reporting.report_type": ("", "natural"),
    "scheduled_query_run": ("sqr_", "api-ref"), "tax_code": ("txcd_", "api-ref"),
    "tax.registration": ("taxreg_", "api-ref"), "identity.verification_session": ("vs_", "api-ref"),
    "identity.verification_report": ("vr_", "api-ref"), "issuing.authorization": ("iauth_", "api-ref"),
    "issuing.card": ("ic_", "api-ref"), "issuing.cardholder": ("ich_", "api-ref"),
    "issuing.dispute": ("idp_", "api-ref"), "issuing.personalization_design": ("ipcd_", "api-ref"),
    "issuing.physical_bundle": ("ics_", "api-ref"), "issuing.token": ("intok_", "api-ref"),
    "issuing.transaction": ("ipi_", "api-ref"), "terminal.configuration": ("tmc_", "api-ref"),
    "terminal.location": ("tml_", "api-ref"), "terminal.reader": ("tmr_", "api-ref"),
    "treasury.financial_account": ("fa_", "api-ref"), "treasury.credit_reversal": ("credrev_", "api-ref"),
    "treasury.debit_reversal": ("debrev_", "api-ref"), "treasury.inbound_transfer": ("ibt_", "api-ref"),
    "treasury.outbound_payment": ("obp_", "api-ref"), "treasury.outbound_transfer": ("obt_", "api-ref"),
    "treasury.received_credit": ("rc_", "api-ref"), "treasury.received_debit": ("rd_", "api-ref"),
    "treasury.transaction": ("trxn_", "api-ref"), "treasury.transaction_entry": ("trxne_", "api-ref"),
    "financial_connections.account": ("fca_", "api-ref"), "financial_connections.transaction": ("fctxn_", "api-ref"),
    "climate.order": ("climorder_", "api-ref"), "climate.product": ("climsku_", "sdk"),
    "climate.supplier": ("climsup_", "api-ref"),
}

# Event types whose notification class in `stripe.events` names no related object, but whose payload is a
# catalog object: external account events carry the account's bank account or card.
_EVENTS_WITHOUT_RELATED_CLASS: dict[str, tuple[str, ...]] = {
    "account.external_account": ("bank_account", "card"),
}


def _sdk():
    import stripe  # only the generator and its test load the SDK's classes

    return stripe


@functools.cache
def _module_tree(module_name: str) -> tuple[str, ast.Module]:
    source = inspect.getsource(sys.modules[module_name])
    return source, ast.parse(source)


def _imported(module_name: str, name: str):
    """The object `name` that module `module_name` imports (the SDK imports its types under TYPE_CHECKING)."""
    _, tree = _module_tree(module_name)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and any(a.name == name for a in node.names):
            return getattr(importlib.import_module(node.module), name)
    raise LookupError(f"{module_name} imports no {name}")


def class_path(cls: type) -> str:
    """`checkout.Session` for stripe.checkout._session.Session, `Charge` for stripe._charge.Charge."""
    parts = cls.__module__.split(".")
    namespace = [p for p in parts[1:] if not p.startswith("_")]
    return ".".join([*namespace, cls.__name__])


def resolve_class(path: str) -> type:
    """The SDK class named by `class_path` (a getattr chain on the stripe module)."""
    target = _sdk()
    for part in path.split("."):
        target = getattr(target, part)
    return target


@dataclass(frozen=True)
class SdkList:
    """One list method as the SDK declares it."""

    key: str  # "<OBJECT_NAME>.<method>"
    owner: type  # the class holding the method
    method: str
    path: str  # "/v1/transfers/{id}/reversals" (the parent id placeholder normalized to {id})
    returns: Optional[type]  # the listed class; None for a union (external accounts, sources)
    params: dict  # the *ListParams annotations, minus request options and paging
    required: tuple[str, ...]


_PAGING = {"ending_before", "starting_after", "limit", "expand"}


def _list_methods(cls: type) -> list[SdkList]:
    stripe = _sdk()
    from stripe._request_options import RequestOptions

    skip = set(RequestOptions.__annotations__) | _PAGING
    source, tree = _module_tree(cls.__module__)
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
    found = []
    for fn in node.body:
        if not isinstance(fn, ast.FunctionDef) or not (fn.name == "list" or fn.name.startswith("list_")):
            continue
        text = ast.get_source_segment(source, fn) or ""
        params_name = re.search(r'Unpack\[\s*"(\w+)"\s*\]', text)
        if params_name is None:
            continue  # ListObject.list and the like: not an API list
        params_cls = _imported(cls.__module__, params_name.group(1))
        literal = re.search(r'"(/v1/[^"]+)"', text)
        path = literal.group(1) if literal else cls.class_url()
        path = re.sub(r"\{\w+\}", "{id}", path)
        returned = re.search(r'-> ListObject\["(\w+)"\]', text)
        if returned is None:
            returns = None
        elif returned.group(1) == cls.__name__:
            returns = cls
        else:
            returns = _imported(cls.__module__, returned.group(1))
        annotations = {k: v for k, v in params_cls.__annotations__.items() if k not in skip}
        required = tuple(sorted(params_cls.__required_keys__ - skip))
        assert isinstance(stripe.VERSION, str)
        found.append(SdkList(f"{cls.OBJECT_NAME}.{fn.name}", cls, fn.name, path, returns, annotations, required))
    return found


def sdk_lists() -> dict[str, SdkList]:
    """Every list method of every class in the SDK's object map, by key."""
    from stripe._object_classes import OBJECT_CLASSES

    seen: set[type] = set()
    lists: dict[str, SdkList] = {}
    for module_name, class_name in OBJECT_CLASSES.values():
        cls = getattr(importlib.import_module(module_name), class_name)
        if cls in seen or not hasattr(cls, "OBJECT_NAME"):
            continue
        seen.add(cls)
        for item in _list_methods(cls):
            lists[item.key] = item
    return lists


def event_types_by_object() -> dict[str, list[str]]:
    """Stripe type (`data.object.object`) -> the event types carrying it, from stripe.Event and stripe.events."""
    stripe = _sdk()
    import stripe.events as events_package
    from stripe._object_classes import OBJECT_CLASSES

    declared = set(typing.get_args(stripe.Event.__annotations__["type"]))
    related: dict[str, Optional[str]] = {}
    for path in sorted(Path(events_package.__file__).parent.glob("_v1_*.py")):
        text = path.read_text(encoding="utf-8")
        lookup = re.search(r'LOOKUP_TYPE = "v1\.([^"]+)"', text)
        if lookup is None:
            continue
        returned = re.search(r'def fetch_related_object\(self\) -> "(\w+)"', text)
        if returned is None:
            related[lookup.group(1)] = None
            continue
        module = f"stripe.events.{path.stem}"
        importlib.import_module(module)
        related[lookup.group(1)] = _imported(module, returned.group(1)).OBJECT_NAME
    carried: dict[str, set[str]] = {}
    for event_type in declared | set(related):
        if event_type in related:
            objects: tuple[str, ...] = (related[event_type],) if related[event_type] else ()
        else:  # no notification class: the prefix names the object (treasury.received_credit.created)
            prefix = event_type.rsplit(".", 1)[0]
            objects = (prefix,) if prefix in OBJECT_CLASSES else ()
        prefix = event_type.rsplit(".", 1)[0]
        objects = objects or _EVENTS_WITHOUT_RELATED_CLASS.get(prefix, ())
        for obj in objects:
            carried.setdefault(obj, set()).add(event_type)
    return {obj: sorted(types) for obj, types in sorted(carried.items())}


def _created_field(cls: type) -> Optional[str]:
    annotations = {}
    for klass in reversed(cls.__mro__):
        annotations.update(vars(klass).get("__annotations__", {}))
    for name in ("created", "date"):
        if name in annotations:
            return name
    return None


def _deletable(sdk: SdkList, listed: type, event_types: list[str]) -> bool:
    stripe = _sdk()
    if issubclass(listed, stripe.DeletableAPIResource):
        return True
    if sdk.method != "list":  # a child Stripe deletes through its parent: Customer.delete_tax_id
        singular = re.sub(r"(e?s)$", "", sdk.method[len("list_"):])
        if any(hasattr(sdk.owner, f"delete_{name}") for name in (singular, sdk.method[len("list_"):-1])):
            return True
    return any(t.endswith(".deleted") for t in event_types)


def build_rows() -> dict:
    """The catalog data: one row per decided list, in `DECISIONS` order, and the lists left out."""
    stripe = _sdk()
    lists = sdk_lists()
    undecided = sorted(set(lists) - {k.split("#")[0] for k in DECISIONS} - set(LEFT_OUT))
    if undecided:
        raise ValueError(f"stripe {stripe.VERSION} has lists the catalog neither loads nor leaves out: {undecided}; "
                         "add each to DECISIONS or LEFT_OUT in source/sdk_catalog.py")
    gone = sorted(k for k in {k.split("#")[0] for k in DECISIONS} | set(LEFT_OUT) if k not in lists)
    if gone:
        raise ValueError(f"stripe {stripe.VERSION} no longer has these lists: {gone}")
    events = event_types_by_object()
    names = {d.name for d in DECISIONS.values()}
    rows = []
    for key, d in DECISIONS.items():
        sdk = lists[key.split("#")[0]]
        listed = resolve_class(d.sdk_class) if d.sdk_class else sdk.returns
        if listed is None:
            raise ValueError(f"{key}: the SDK lists a union; name the class in the decision")
        stripe_type = listed.OBJECT_NAME
        if d.parent is not None and d.parent not in names:
            raise ValueError(f"{key}: parent {d.parent!r} is not a catalog object")
        # A required parameter must be the parent's id or a parameter the catalog always sends.
        param = d.parent_param
        if param is not None and param not in sdk.params:
            raise ValueError(f"{key}: the list takes no {param!r}")
        for required in sdk.required:
            if d.parent is not None and sdk.method == "list" and param is None:
                param = required
            elif required not in d.list_params:
                raise ValueError(f"{key}: requires {required!r}, which the decision does not provide")
        if d.parent is not None and sdk.method == "list" and param is None:
            raise ValueError(f"{key}: a parent needs a required id parameter or a nested path")
        if d.parent is not None and sdk.method != "list" and "{id}" not in sdk.path:
            raise ValueError(f"{key}: a nested list without an id in its path")
        if d.embedded_field is not None:
            parent_cls = lists[next(k for k, p in DECISIONS.items() if p.name == d.parent)].returns
            annotation = str(parent_cls.__annotations__.get(d.embedded_field))
            if listed.__name__ not in annotation or "ListObject" not in annotation:
                raise ValueError(f"{key}: {parent_cls.__name__}.{d.embedded_field} does not embed {listed.__name__}")
        prefix, prefix_source = ID_PREFIXES[stripe_type]
        created_field = _created_field(listed) if d.created_field == "auto" else d.created_field
        event_types = events.get(stripe_type, [])
        if d.list_params.get("object"):  # external accounts: one type per table
            event_types = [t for t in event_types if t.startswith(d.event_prefix or "")]
        rows.append({
            "name": d.name,
            "stripe_type": stripe_type,
            "sdk_class": class_path(listed),
            "sdk_method": f"{class_path(sdk.owner)}.{sdk.method}",
            "path": d.path or sdk.path,
            "id_prefix": prefix,
            "id_prefix_source": prefix_source,
            "created_field": created_field,
            # The split and the cursors filter on the class's own creation field: a list whose class declares
            # none (product_catalog.TrialOffer) is read whole even though its params take `created`.
            # A child list is read whole under each parent, so the engine never filters it by `created`.
            "supports_created": "created" in sdk.params and created_field is not None and d.parent is None,
            "required_params": list(sdk.required),
            "parent": None if d.parent is None else {
                "object": d.parent,
                "path_template": sdk.path,
                "param": param,
                "embedded_field": d.embedded_field,
                "only_if": [list(pair) for pair in d.only_if],
                "relist_days": d.relist_days,
                "relist_on": [list(pair) for pair in d.relist_on],
            },
            "merge_key": d.merge_key if isinstance(d.merge_key, str) else list(d.merge_key),
            "list_params": dict(d.list_params),
            # The list takes `ids`, so objects to read again come 100 per request instead of one each.
            "list_by_ids": "ids" in sdk.params and d.parent is None,
            "deletable": _deletable(sdk, listed, event_types),
            "event_types": event_types,
            "event_prefix": d.event_prefix,
            "group": d.group,
            "product": d.product,
            "platform_level": d.platform_level,
            "connect_only": d.connect_only,
            "default_load": d.default_load,
            "spec": d.spec,
            "strategy": d.strategy,
            "description": d.description,
        })
    _check_refresh(rows)
    left_out = [{"sdk_method": f"{class_path(lists[k].owner)}.{lists[k].method}", "path": lists[k].path,
                 "reason": reason} for k, reason in LEFT_OUT.items()]
    return {"stripe_version": stripe.VERSION, "api_version": stripe.api_version, "lists": rows, "left_out": left_out}


def _check_refresh(rows: list[dict]) -> None:
    """Every merged table must see its changes: through its own events, its parent's (embedded children),
    or at least new objects through a `created` cursor. A table none of these reach is re-read whole
    (`replace`), which also drops what Stripe deleted."""
    by_name = {row["name"]: row for row in rows}
    for row in rows:
        if row["strategy"] != "merge" or row["event_types"]:
            continue
        parent = row["parent"]
        if parent and parent["embedded_field"] and by_name[parent["object"]]["event_types"]:
            continue  # its states travel in the parent's events (an invoice's lines)
        if parent is None and row["supports_created"]:
            continue  # new objects by the created cursor; Stripe sends no events for its changes
        if parent and parent["relist_days"]:
            continue  # the children of recent parents are listed again (a payout's balance transactions)
        raise ValueError(f"{row['name']}: no events and no created cursor reach it; decide strategy='replace'")


def render(data: dict) -> str:
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def main() -> None:
    DATA.write_text(render(build_rows()), encoding="utf-8")
    print(f"wrote {DATA}")
    from . import sdk_shapes  # the shapes of every class the new data names

    sdk_shapes.main()


if __name__ == "__main__":
    main()
