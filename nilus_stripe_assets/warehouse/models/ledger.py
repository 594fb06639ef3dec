"""Models of money moving through the Stripe balance: enriched balance transactions, the daily overview, payouts.

Categories follow Stripe's Balance and Payout reconciliation reports (`reporting_category`, falling back to
`type` where a transaction has none): money earned or lost (`activity`: charges, refunds, disputes, fees,
application fees, adjustments...) against money moved (payouts to the bank, transfers to connected
accounts, top-ups). `net` = `amount` - `fee` on every transaction, so the day's `balance_change` is
`net_volume` + `payouts` + `transfers` + `topups` exactly.
"""

from __future__ import annotations

from .dialect import Dialect
from .model import Model

CHARGES = ("charge", "payment")
REFUNDS = ("refund", "refund_failure", "partial_capture_reversal", "payment_refund", "payment_failure_refund")
DISPUTES = ("dispute", "dispute_reversal", "adjustment_dispute")
APPLICATION_FEES = ("platform_earning", "platform_earning_refund", "application_fee", "application_fee_refund")
PAYOUTS = ("payout", "payout_reversal", "payout_cancel", "payout_failure")
TRANSFERS = ("transfer", "transfer_reversal", "transfer_cancel", "transfer_failure", "connect_collection_transfer")
TOPUPS = ("topup", "topup_reversal")
MOVED = PAYOUTS + TRANSFERS + TOPUPS

# Source ids by prefix, for transactions whose source table is not loaded.
SOURCE_PREFIXES = (("ch_", "charge"), ("py_", "charge"), ("re_", "refund"), ("pyr_", "refund"), ("dp_", "dispute"),
                   ("du_", "dispute"), ("po_", "payout"), ("tr_", "transfer"), ("trr_", "transfer_reversal"),
                   ("fee_", "application_fee"), ("fr_", "application_fee_refund"), ("tu_", "topup"),
                   ("ia_", "issuing_authorization"), ("ipi_", "issuing_transaction"))


def in_(column: str, values) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def category(bt: str) -> str:
    return f"coalesce({bt}.reporting_category, {bt}.type)"


def _balance_transactions(d: Dialect, fin: str) -> str:
    pay = d.json("ip.payment", "payment_intent")
    chg = d.json("ip.payment", "charge")
    prefix = " ".join(f"WHEN starts_with(bt.source, '{p}') THEN '{kind}'" for p, kind in SOURCE_PREFIXES)
    return f"""WITH paid_charge AS (
  SELECT {d.a('ip')}{chg} AS charge, min(ip.invoice) AS invoice FROM src_invoice_payment ip
  WHERE {chg} IS NOT NULL GROUP BY {d.a('ip')}{chg}),
paid_intent AS (
  SELECT {d.a('ip')}{pay} AS payment_intent, min(ip.invoice) AS invoice FROM src_invoice_payment ip
  WHERE {pay} IS NOT NULL GROUP BY {d.a('ip')}{pay}),
linked AS (
  SELECT bt.*,
    CASE WHEN ch.id IS NOT NULL THEN 'charge' WHEN re.id IS NOT NULL THEN 'refund' WHEN dp.id IS NOT NULL THEN 'dispute'
         WHEN po.id IS NOT NULL THEN 'payout' WHEN tr.id IS NOT NULL THEN 'transfer'
         WHEN af.id IS NOT NULL THEN 'application_fee' {prefix} WHEN bt.source IS NOT NULL THEN bt.type END AS source_type,
    coalesce(ch.id, re.charge, dp.charge, af.charge, tr.source_transaction) AS charge_id,
    re.id AS refund_id, dp.id AS dispute_id, po.id AS payout_id, tr.id AS transfer_id, af.id AS application_fee_id,
    coalesce(ch.customer, re.customer, rch.customer, dch.customer) AS customer_id,
    coalesce(ch.payment_intent, re.payment_intent, rch.payment_intent, dp.payment_intent, dch.payment_intent) AS payment_intent_id
  FROM src_balance_transaction bt
  LEFT JOIN src_charge ch ON ch.id = bt.source{d.on('ch', 'bt')}
  LEFT JOIN src_refund re ON re.id = bt.source{d.on('re', 'bt')}
  LEFT JOIN src_charge rch ON rch.id = re.charge{d.on('rch', 'bt')}
  LEFT JOIN src_dispute dp ON dp.id = bt.source{d.on('dp', 'bt')}
  LEFT JOIN src_charge dch ON dch.id = dp.charge{d.on('dch', 'bt')}
  LEFT JOIN src_payout po ON po.id = bt.source{d.on('po', 'bt')}
  LEFT JOIN src_transfer tr ON tr.id = bt.source{d.on('tr', 'bt')}
  LEFT JOIN src_application_fee af ON af.id = bt.source{d.on('af', 'bt')})
SELECT {d.a('l')}l.id AS balance_transaction_id, l.created AS created_at, CAST({d.utc('l.created')} AS DATE) AS created_day,
  l.available_on, l.type, l.reporting_category, l.status, l.currency, l.amount, l.fee, l.net,
  l.source AS source_id, l.source_type, l.charge_id, l.refund_id, l.dispute_id, l.payout_id, l.transfer_id,
  l.application_fee_id, l.customer_id, l.payment_intent_id,
  coalesce(pc.invoice, pi.invoice) AS invoice_id,
  {d.json('inv.parent', 'subscription_details', 'subscription')} AS subscription_id
FROM linked l
LEFT JOIN paid_charge pc ON pc.charge = l.charge_id{d.on('pc', 'l')}
LEFT JOIN paid_intent pi ON pi.payment_intent = l.payment_intent_id{d.on('pi', 'l')}
LEFT JOIN src_invoice inv ON inv.id = coalesce(pc.invoice, pi.invoice){d.on('inv', 'l')}"""


BALANCE_TRANSACTIONS = Model(
    name="balance_transactions",
    answers=(
        "Every balance transaction with what caused it: the source object's type and id (charge, refund, dispute, "
        "payout, transfer, application fee, ...), and where they apply the charge, customer, payment intent, invoice "
        "(through invoice payments) and subscription (the invoice's). One row per balance transaction; its sums are "
        "the balance's."
    ),
    columns={
        "balance_transaction_id": "The balance transaction (txn_…).",
        "created_at": "When the transaction was created.",
        "created_day": "The UTC day of `created_at`.",
        "available_on": "When the money becomes available in the balance.",
        "type": "Stripe's transaction type (charge, refund, payout, ...).",
        "reporting_category": "Stripe's reporting category, as in its Balance report.",
        "status": "available or pending.",
        "currency": "Currency of amount, fee and net (lowercase ISO code).",
        "amount": "Gross amount in minor units (negative when money leaves the balance).",
        "fee": "Fees paid for the transaction, minor units.",
        "net": "amount - fee, minor units: what the balance moved by.",
        "source_id": "The id of the object that caused the transaction.",
        "source_type": "The source's type: charge, refund, dispute, payout, transfer, application_fee, ... (from the "
                       "loaded source table, else the id prefix, else the transaction type).",
        "charge_id": "The charge involved: the source, or the refunded / disputed / fee-paying charge.",
        "refund_id": "The refund, when the source is one.",
        "dispute_id": "The dispute, when the source is one (needs the dispute table).",
        "payout_id": "The payout, when the source is one.",
        "transfer_id": "The transfer, when the source is one (needs the transfer table).",
        "application_fee_id": "The application fee, when the source is one (needs the application_fee table).",
        "customer_id": "The customer of the charge, refund or disputed charge.",
        "payment_intent_id": "The payment intent of the charge, refund or dispute.",
        "invoice_id": "The invoice the charge or payment intent paid (needs the invoice_payment table).",
        "subscription_id": "The subscription that invoice belongs to.",
    },
    sql=_balance_transactions,
    money=("amount", "fee", "net"),
    reads=("balance_transaction", "charge", "refund", "dispute", "payout", "transfer", "application_fee",
           "invoice_payment", "invoice"),
)


def _daily_overview(d: Dialect, fin: str) -> str:
    c = "cat"
    activity = f"NOT {in_(c, MOVED)}"
    known = CHARGES + REFUNDS + DISPUTES + APPLICATION_FEES + MOVED

    def total(expr: str, where: str) -> str:
        return f"coalesce(sum({expr}) FILTER (WHERE {where}), 0)"

    return f"""SELECT {d.a('bt')}bt.day, bt.currency, count(*) AS transactions,
  count(*) FILTER (WHERE {in_(c, CHARGES)}) AS charges,
  {total('amount', in_(c, CHARGES))} AS sales,
  {total('amount', in_(c, REFUNDS))} AS refunds,
  {total('amount', in_(c, DISPUTES))} AS disputes,
  {total('amount', in_(c, APPLICATION_FEES))} AS application_fees,
  {total('amount', f'NOT {in_(c, known)}')} AS other_activity,
  {total('fee', activity)} AS fees,
  {total('net', activity)} AS net_volume,
  {total('net', in_(c, PAYOUTS))} AS payouts,
  {total('net', in_(c, TRANSFERS))} AS transfers,
  {total('net', in_(c, TOPUPS))} AS topups,
  coalesce(sum(net), 0) AS balance_change
FROM (SELECT t.*, CAST({d.utc('t.created')} AS DATE) AS day, {category('t')} AS cat FROM src_balance_transaction t) bt
GROUP BY {d.a('bt')}bt.day, bt.currency"""


DAILY_OVERVIEW = Model(
    name="daily_overview",
    answers=(
        "Per UTC day and currency, what the balance earned and where money went: sales, refunds, disputes, "
        "application fees, other activity and Stripe fees, their net volume, then payouts, transfers and top-ups. "
        "Reconciles: net_volume = sales + refunds + disputes + application_fees + other_activity - fees, and "
        "balance_change = net_volume + payouts + transfers + topups = the sum of the day's balance transactions' net "
        "(checked)."
    ),
    columns={
        "day": "UTC day of the transactions' `created`.",
        "currency": "Currency (lowercase ISO code).",
        "transactions": "Balance transactions that day.",
        "charges": "Of which charges (and Connect payments).",
        "sales": "Gross amount of charges, minor units.",
        "refunds": "Refunds (negative) and failed refunds, minor units.",
        "disputes": "Disputes (negative) and won-back disputes, minor units.",
        "application_fees": "Application fees earned by the platform, less their refunds, minor units.",
        "other_activity": "Every other activity (adjustments, Stripe fee transactions, tax, ...), minor units.",
        "fees": "Stripe fees on that activity (positive: a cost), minor units.",
        "net_volume": "Net of the activity: what the business earned that day, minor units.",
        "payouts": "Payouts to the bank and their reversals (net, negative when paid out), minor units.",
        "transfers": "Transfers to connected accounts and their reversals (net), minor units.",
        "topups": "Top-ups and their reversals (net), minor units.",
        "balance_change": "Sum of every transaction's net that day, minor units.",
    },
    sql=_daily_overview,
    money=("sales", "refunds", "disputes", "application_fees", "other_activity", "fees", "net_volume", "payouts",
           "transfers", "topups", "balance_change"),
    reads=("balance_transaction",),
)


def _payout_reconciliation(d: Dialect, fin: str) -> str:
    return f"""SELECT {d.a('pbt')}pbt.payout AS payout_id, po.created AS payout_created_at, po.arrival_date AS payout_arrival_date,
  po.status AS payout_status, po.amount AS payout_amount, pbt.id AS balance_transaction_id, pbt.created AS created_at,
  pbt.type, pbt.reporting_category, pbt.currency, pbt.amount, pbt.fee, pbt.net, pbt.source AS source_id,
  e.source_type, e.charge_id, e.customer_id, e.invoice_id
FROM src_payout_balance_transaction pbt
LEFT JOIN src_payout po ON po.id = pbt.payout{d.on('po', 'pbt')}
LEFT JOIN {fin}.balance_transactions e ON e.balance_transaction_id = pbt.id{d.on('e', 'pbt')}
WHERE NOT (pbt.type = 'payout' AND pbt.source = pbt.payout)"""


PAYOUT_RECONCILIATION = Model(
    name="payout_reconciliation",
    answers=(
        "Which balance transactions each automatic payout paid out (Stripe's `GET /v1/balance_transactions?payout=`), "
        "with their source, charge, customer and invoice: one row per transaction of a payout, the payout's own "
        "transaction left out. Reconciles: a payout's rows' net sums to its amount (checked)."
    ),
    columns={
        "payout_id": "The automatic payout (po_…).",
        "payout_created_at": "When the payout was created.",
        "payout_arrival_date": "When the payout is expected to arrive in the bank.",
        "payout_status": "paid, pending, in_transit, canceled or failed.",
        "payout_amount": "The payout's amount, minor units.",
        "balance_transaction_id": "A transaction the payout paid out.",
        "created_at": "When that transaction was created.",
        "type": "Its Stripe type.",
        "reporting_category": "Its reporting category.",
        "currency": "Its currency.",
        "amount": "Its gross amount, minor units.",
        "fee": "Its fees, minor units.",
        "net": "Its net, minor units: the payout's share from it.",
        "source_id": "Its source object.",
        "source_type": "The source's type (from balance_transactions).",
        "charge_id": "The charge involved (from balance_transactions).",
        "customer_id": "The customer (from balance_transactions).",
        "invoice_id": "The invoice paid (from balance_transactions).",
    },
    sql=_payout_reconciliation,
    money=("payout_amount", "amount", "fee", "net"),
    reads=("payout_balance_transaction", "payout"),
    after=("balance_transactions",),
)


def _payouts(d: Dialect, fin: str) -> str:
    return f"""WITH items AS (
  SELECT {d.a('r')}r.payout_id, count(*) AS transactions, sum(r.net) AS itemized_net,
    coalesce(sum(r.amount) FILTER (WHERE {in_(category('r'), CHARGES)}), 0) AS charges_gross,
    coalesce(sum(r.amount) FILTER (WHERE {in_(category('r'), REFUNDS)}), 0) AS refunds,
    coalesce(sum(r.amount) FILTER (WHERE {in_(category('r'), DISPUTES)}), 0) AS disputes,
    coalesce(sum(r.fee), 0) AS fees
  FROM {fin}.payout_reconciliation r GROUP BY {d.a('r')}r.payout_id)
SELECT {d.a('po')}po.id AS payout_id, po.created AS created_at, po.arrival_date, po.status, po.automatic, po.method,
  po.currency, po.amount, coalesce(i.transactions, 0) AS transactions, coalesce(i.charges_gross, 0) AS charges_gross,
  coalesce(i.refunds, 0) AS refunds, coalesce(i.disputes, 0) AS disputes, coalesce(i.fees, 0) AS fees,
  coalesce(i.itemized_net, 0) AS itemized_net, po.amount - coalesce(i.itemized_net, 0) AS unexplained,
  CASE WHEN i.payout_id IS NULL THEN CASE WHEN po.automatic THEN 'not_itemized' ELSE 'manual' END
       WHEN i.itemized_net = po.amount THEN 'reconciled' ELSE 'unreconciled' END AS reconciliation
FROM src_payout po
LEFT JOIN items i ON i.payout_id = po.id{d.on('i', 'po')}"""


PAYOUT_SUMMARY = Model(
    name="payouts",
    answers=(
        "Each payout with what made it up: its itemized transactions' count, gross charges, refunds, disputes, fees "
        "and net, and whether they add up to the amount (`reconciliation`: reconciled, unreconciled, not_itemized "
        "for an automatic payout whose transactions are not loaded, manual for payouts Stripe cannot itemize)."
    ),
    columns={
        "payout_id": "The payout (po_…).",
        "created_at": "When it was created.",
        "arrival_date": "When it is expected in the bank.",
        "status": "paid, pending, in_transit, canceled or failed.",
        "automatic": "Whether Stripe's payout schedule created it (only those are itemized by Stripe).",
        "method": "standard or instant.",
        "currency": "Its currency.",
        "amount": "Its amount, minor units.",
        "transactions": "Balance transactions it paid out.",
        "charges_gross": "Gross of the charges among them, minor units.",
        "refunds": "Refunds among them, minor units.",
        "disputes": "Disputes among them, minor units.",
        "fees": "Fees among them, minor units.",
        "itemized_net": "Net of the transactions it paid out, minor units.",
        "unexplained": "amount - itemized_net, minor units (0 when reconciled).",
        "reconciliation": "reconciled, unreconciled, not_itemized or manual.",
    },
    sql=_payouts,
    money=("amount", "charges_gross", "refunds", "disputes", "fees", "itemized_net", "unexplained"),
    reads=("payout",),
    after=("payout_reconciliation",),
)
