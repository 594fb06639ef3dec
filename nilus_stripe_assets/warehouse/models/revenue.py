"""Models of recurring revenue and customers: MRR with its movements, the customer overview, invoice lines.

MRR is computed from the subscriptions' current state (subscription items × their prices), month by month:

- An item's monthly amount is its price's `unit_amount` × `quantity` normalised to one month from
  `recurring.interval` × `interval_count`: month ×1, year ÷12, week ×52/12, day ×365/12, then ÷ interval_count;
  exact in integers, rounded half up to a whole minor unit per item (so every sum stays an exact BIGINT).
  Metered prices (`usage_type` metered), one-time and tiered prices without `unit_amount` have no MRR.
- An item counts in a month when it is live at the month's end (for the current month: now): from the latest of
  the subscription's start, the item's creation and the trial's end (a trial has no MRR), until the
  subscription ended (`ended_at`; a canceled subscription without it ends at `canceled_at`). Incomplete
  subscriptions never count; a paused one stops counting now.
- Movements per customer and currency, month over month: `new` (first MRR ever), `reactivation` (MRR again
  after a month at zero), `expansion` / `contraction` (more / less than last month), `churn` (down to zero).
  Each month carries into the next: last month's MRR + the month's movements = this month's MRR (checked).

Because it reads the current state, a change made in place (a quantity or price changed on the same item) is
seen from the item's creation on; items added or removed and subscriptions started, trialing or canceled are
dated as Stripe dates them.
"""

from __future__ import annotations

from .dialect import Dialect
from .ledger import CHARGES, DISPUTES, MOVED, REFUNDS, category, in_
from .model import Model

LIVE_STATUSES = ("active", "trialing", "past_due", "unpaid")
NEVER_COUNTED = ("incomplete", "incomplete_expired")
# (numerator, denominator) of months per billing interval, inverted: an amount billed every `interval` is
# amount × num / den per month.
PER_MONTH = {"month": (1, 1), "year": (1, 12), "week": (52, 12), "day": (365, 12)}


def _monthly_amount(d: Dialect, price: str, quantity: str) -> str:
    interval = d.json(price, "recurring", "interval")
    count = f"coalesce(CAST({d.json(price, 'recurring', 'interval_count')} AS BIGINT), 1)"
    num = "CASE " + " ".join(f"WHEN {interval} = '{k}' THEN {n}" for k, (n, _) in PER_MONTH.items()) + " END"
    den = "CASE " + " ".join(f"WHEN {interval} = '{k}' THEN {m}" for k, (_, m) in PER_MONTH.items()) + " END"
    n = f"(CAST({d.json(price, 'unit_amount')} AS BIGINT) * coalesce({quantity}, 1) * {num})"
    m = f"({count} * {den})"
    return d.idiv(f"2 * {n} + {m}", f"2 * {m}")  # round half up, in integers


def _mrr_by_customer(d: Dialect, fin: str) -> str:
    now = d.utc("CURRENT_TIMESTAMP")
    price = "si.price"
    start = "coalesce(s.start_date, s.created)"
    return f"""WITH items AS (
  SELECT {d.a('s')}s.customer, coalesce(lower({d.json(price, 'currency')}), s.currency) AS currency,
    s.id AS subscription, si.id AS item, {_monthly_amount(d, price, 'si.quantity')} AS mrr,
    {d.utc(f"greatest({start}, coalesce(si.created, {start}), coalesce(s.trial_end, {start}))")} AS mrr_from,
    {d.utc("coalesce(s.ended_at, CASE WHEN s.status = 'canceled' THEN s.canceled_at "
           "WHEN s.status = 'paused' THEN CURRENT_TIMESTAMP END)")} AS mrr_until
  FROM src_subscription_item si JOIN src_subscription s ON s.id = si.subscription{d.on('s', 'si')}
  WHERE {d.json(price, 'recurring', 'interval')} IN ('day', 'week', 'month', 'year')
    AND coalesce({d.json(price, 'recurring', 'usage_type')}, 'licensed') = 'licensed'
    AND {d.json(price, 'unit_amount')} IS NOT NULL AND NOT {in_('s.status', NEVER_COUNTED)} AND s.customer IS NOT NULL),
firsts AS (
  SELECT {d.a('i')}i.customer, i.currency, min(date_trunc('month', i.mrr_from)) AS first_month FROM items i
  WHERE i.mrr_from < {now} AND (i.mrr_until IS NULL OR i.mrr_until > i.mrr_from)
  GROUP BY {d.a('i')}i.customer, i.currency),
months AS (
  SELECT m.month FROM generate_series(
    (SELECT coalesce(min(first_month), date_trunc('month', {now})) FROM firsts), date_trunc('month', {now}),
    INTERVAL '1 month') AS m(month)),
grid AS (
  SELECT {d.a('f')}f.customer, f.currency, m.month, least(m.month + INTERVAL '1 month', {now}) AS snapshot
  FROM firsts f JOIN months m ON m.month >= f.first_month),
monthly AS (
  SELECT {d.a('g')}g.customer, g.currency, g.month, coalesce(sum(i.mrr), 0) AS mrr,
    count(DISTINCT i.subscription) AS subscriptions, count(i.item) AS items
  FROM grid g LEFT JOIN items i ON i.customer = g.customer AND i.currency = g.currency{d.on('i', 'g')}
    AND i.mrr_from < g.snapshot AND (i.mrr_until IS NULL OR i.mrr_until >= g.snapshot)
  GROUP BY {d.a('g')}g.customer, g.currency, g.month),
moved AS (
  SELECT m.*, coalesce(lag(m.mrr) OVER (PARTITION BY {d.a('m')}m.customer, m.currency ORDER BY m.month), 0) AS previous_mrr,
    coalesce(max(m.mrr) OVER (PARTITION BY {d.a('m')}m.customer, m.currency ORDER BY m.month
                              ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS best_before
  FROM monthly m)
SELECT {d.a('v')}CAST(v.month AS DATE) AS month, v.customer AS customer_id, v.currency, v.mrr, v.previous_mrr,
  v.mrr - v.previous_mrr AS mrr_change,
  CASE WHEN v.previous_mrr = 0 AND v.mrr > 0 THEN CASE WHEN v.best_before > 0 THEN 'reactivation' ELSE 'new' END
       WHEN v.previous_mrr > 0 AND v.mrr = 0 THEN 'churn'
       WHEN v.mrr > v.previous_mrr THEN 'expansion' WHEN v.mrr < v.previous_mrr THEN 'contraction' END AS movement,
  v.subscriptions, v.items
FROM moved v WHERE v.mrr > 0 OR v.previous_mrr > 0"""


MRR_BY_CUSTOMER = Model(
    name="mrr_by_customer",
    answers=(
        "Each customer's MRR per month and currency, with the month's movement (new, expansion, contraction, churn, "
        "reactivation) and its size. One row per customer and month from their first MRR, while they have MRR or "
        "had it last month (the churn month)."
    ),
    columns={
        "month": "First day of the month (UTC); the MRR is the one live at the month's end (now, this month).",
        "customer_id": "The customer.",
        "currency": "Currency of the MRR.",
        "mrr": "Monthly recurring revenue at the month's end, minor units.",
        "previous_mrr": "The same customer's MRR the month before, minor units.",
        "mrr_change": "mrr - previous_mrr, minor units: the movement's size.",
        "movement": "new, expansion, contraction, churn or reactivation (null: unchanged).",
        "subscriptions": "Subscriptions contributing MRR.",
        "items": "Subscription items contributing MRR.",
    },
    sql=_mrr_by_customer,
    money=("mrr", "previous_mrr", "mrr_change"),
    reads=("subscription", "subscription_item"),
)


def _mrr_by_month(d: Dialect, fin: str) -> str:
    def moved(kind: str) -> str:
        return f"coalesce(sum(c.mrr_change) FILTER (WHERE c.movement = '{kind}'), 0)"

    return f"""SELECT {d.a('c')}c.month, c.currency, sum(c.mrr) AS mrr, count(*) FILTER (WHERE c.mrr > 0) AS customers,
  {moved('new')} AS new_mrr, {moved('expansion')} AS expansion_mrr, {moved('contraction')} AS contraction_mrr,
  {moved('churn')} AS churned_mrr, {moved('reactivation')} AS reactivation_mrr,
  sum(c.mrr_change) AS net_new_mrr,
  count(*) FILTER (WHERE c.movement = 'new') AS new_customers, count(*) FILTER (WHERE c.movement = 'churn') AS churned_customers,
  count(*) FILTER (WHERE c.movement = 'reactivation') AS reactivated_customers
FROM {fin}.mrr_by_customer c GROUP BY {d.a('c')}c.month, c.currency"""


MRR_BY_MONTH = Model(
    name="mrr_by_month",
    answers=(
        "The MRR report: per month and currency, MRR and customers, and the movements that made it: new, expansion, "
        "contraction, churned and reactivation MRR. Reconciles: last month's mrr + new + expansion + contraction + "
        "churned + reactivation = this month's mrr (checked)."
    ),
    columns={
        "month": "First day of the month (UTC).",
        "currency": "Currency of the MRR.",
        "mrr": "MRR at the month's end, minor units.",
        "customers": "Customers with MRR at the month's end.",
        "new_mrr": "MRR of customers who had none before, minor units.",
        "expansion_mrr": "MRR added by customers who already had some, minor units.",
        "contraction_mrr": "MRR lost by customers who keep some (negative), minor units.",
        "churned_mrr": "MRR of customers who dropped to none (negative), minor units.",
        "reactivation_mrr": "MRR of customers who come back after a month at zero, minor units.",
        "net_new_mrr": "Sum of the movements: mrr - last month's mrr, minor units.",
        "new_customers": "Customers with their first MRR this month.",
        "churned_customers": "Customers who churned this month.",
        "reactivated_customers": "Customers who came back this month.",
    },
    sql=_mrr_by_month,
    money=("mrr", "new_mrr", "expansion_mrr", "contraction_mrr", "churned_mrr", "reactivation_mrr", "net_new_mrr"),
    after=("mrr_by_customer",),
)


def _customer_overview(d: Dialect, fin: str) -> str:
    c = category("b")
    return f"""WITH paid AS (
  SELECT {d.a('b')}b.customer_id, b.currency,
    min(b.created_at) FILTER (WHERE {in_(c, CHARGES)}) AS first_payment_at,
    max(b.created_at) FILTER (WHERE {in_(c, CHARGES)}) AS last_payment_at,
    count(*) FILTER (WHERE {in_(c, CHARGES)}) AS payments,
    coalesce(sum(b.amount) FILTER (WHERE {in_(c, CHARGES)}), 0) AS gross,
    coalesce(sum(b.amount) FILTER (WHERE {in_(c, REFUNDS)}), 0) AS refunds,
    coalesce(sum(b.amount) FILTER (WHERE {in_(c, DISPUTES)}), 0) AS disputes,
    coalesce(sum(b.fee) FILTER (WHERE NOT {in_(c, MOVED)}), 0) AS fees,
    coalesce(sum(b.net) FILTER (WHERE NOT {in_(c, MOVED)}), 0) AS net
  FROM {fin}.balance_transactions b WHERE b.customer_id IS NOT NULL GROUP BY {d.a('b')}b.customer_id, b.currency),
subs AS (
  SELECT {d.a('s')}s.customer, count(*) AS subscriptions,
    count(*) FILTER (WHERE {in_('s.status', LIVE_STATUSES)}) AS active_subscriptions
  FROM src_subscription s GROUP BY {d.a('s')}s.customer),
current_mrr AS (
  SELECT {d.a('m')}m.customer_id, m.currency, m.mrr FROM {fin}.mrr_by_customer m
  WHERE m.month = CAST(date_trunc('month', {d.utc('CURRENT_TIMESTAMP')}) AS DATE))
SELECT {d.a('c')}c.id AS customer_id, c.email, c.name, c.created AS customer_created_at,
  coalesce(p.currency, c.currency) AS currency, p.first_payment_at, p.last_payment_at, coalesce(p.payments, 0) AS payments,
  coalesce(p.gross, 0) AS gross, coalesce(p.refunds, 0) AS refunds, coalesce(p.disputes, 0) AS disputes,
  coalesce(p.fees, 0) AS fees, coalesce(p.net, 0) AS net, coalesce(s.subscriptions, 0) AS subscriptions,
  coalesce(s.active_subscriptions, 0) AS active_subscriptions, coalesce(cm.mrr, 0) AS mrr
FROM src_customer c
LEFT JOIN paid p ON p.customer_id = c.id{d.on('p', 'c')}
LEFT JOIN subs s ON s.customer = c.id{d.on('s', 'c')}
LEFT JOIN current_mrr cm ON cm.customer_id = c.id AND cm.currency = coalesce(p.currency, c.currency){d.on('cm', 'c')}"""


CUSTOMER_OVERVIEW = Model(
    name="customer_overview",
    answers=(
        "Per customer and currency they paid in: first and last payment, payments, gross, refunds, disputes, fees and "
        "net (from their balance transactions), subscriptions, active ones and this month's MRR. A customer who never "
        "paid has one row in their own currency, with zeros."
    ),
    columns={
        "customer_id": "The customer (cus_…).",
        "email": "Their email.",
        "name": "Their name.",
        "customer_created_at": "When the customer was created.",
        "currency": "Currency of the amounts (the customer's own when they never paid).",
        "first_payment_at": "Their first charge.",
        "last_payment_at": "Their latest charge.",
        "payments": "Charges.",
        "gross": "Gross of their charges, minor units.",
        "refunds": "Refunded (negative), minor units.",
        "disputes": "Disputed (negative) and won back, minor units.",
        "fees": "Stripe fees on their transactions, minor units.",
        "net": "Net of their transactions, minor units.",
        "subscriptions": "Subscriptions they have or had.",
        "active_subscriptions": "Of which active, trialing, past due or unpaid.",
        "mrr": "Their MRR this month, minor units (from mrr_by_customer).",
    },
    sql=_customer_overview,
    money=("gross", "refunds", "disputes", "fees", "net", "mrr"),
    reads=("customer", "subscription"),
    after=("balance_transactions", "mrr_by_customer"),
)


def _invoice_line_details(d: Dialect, fin: str) -> str:
    price_id = d.json("li.pricing", "price_details", "price")
    return f"""WITH lines AS (
  SELECT li.*, coalesce(li.subscription, {d.json('li.parent', 'subscription_item_details', 'subscription')},
                        {d.json('li.parent', 'invoice_item_details', 'subscription')}) AS line_subscription,
    {price_id} AS price_id
  FROM src_invoice_line_item li)
SELECT {d.a('li')}li.id AS line_item_id, li.invoice AS invoice_id, inv.number AS invoice_number,
  inv.status AS invoice_status, inv.created AS invoice_created_at, inv.customer AS customer_id, li.currency,
  li.amount, li.quantity, li.description,
  to_timestamp(CAST({d.json('li.period', 'start')} AS BIGINT)) AS period_start,
  to_timestamp(CAST({d.json('li.period', 'end')} AS BIGINT)) AS period_end,
  coalesce(li.line_subscription, {d.json('inv.parent', 'subscription_details', 'subscription')}) AS subscription_id,
  {d.json('li.parent', 'subscription_item_details', 'subscription_item')} AS subscription_item_id,
  s.status AS subscription_status, li.price_id, p.product AS product_id, p.nickname AS price_nickname,
  p.unit_amount AS price_unit_amount, {d.json('p.recurring', 'interval')} AS price_interval,
  CAST({d.json('p.recurring', 'interval_count')} AS BIGINT) AS price_interval_count
FROM lines li
LEFT JOIN src_invoice inv ON inv.id = li.invoice{d.on('inv', 'li')}
LEFT JOIN src_subscription s
  ON s.id = coalesce(li.line_subscription, {d.json('inv.parent', 'subscription_details', 'subscription')}){d.on('s', 'li')}
LEFT JOIN src_price p ON p.id = li.price_id{d.on('p', 'li')}"""


INVOICE_LINE_DETAILS = Model(
    name="invoice_line_details",
    answers=(
        "Every invoice line with its invoice (number, status, customer), its subscription (the line's, else the "
        "invoice's) and its price (product, nickname, unit amount, interval). One row per invoice line; a line's "
        "amounts sum to its invoice's subtotal."
    ),
    columns={
        "line_item_id": "The invoice line (il_…).",
        "invoice_id": "Its invoice.",
        "invoice_number": "The invoice's number.",
        "invoice_status": "draft, open, paid, uncollectible or void.",
        "invoice_created_at": "When the invoice was created.",
        "customer_id": "The invoice's customer.",
        "currency": "Currency of the line.",
        "amount": "The line's amount, minor units.",
        "quantity": "Its quantity.",
        "description": "Its description.",
        "period_start": "Start of the period the line covers.",
        "period_end": "End of the period the line covers.",
        "subscription_id": "The line's subscription, else the invoice's.",
        "subscription_item_id": "The subscription item billed, for subscription lines.",
        "subscription_status": "That subscription's status now.",
        "price_id": "The price billed.",
        "product_id": "Its product.",
        "price_nickname": "Its nickname.",
        "price_unit_amount": "Its unit amount, minor units.",
        "price_interval": "Its billing interval (day, week, month, year) for recurring prices.",
        "price_interval_count": "Intervals between billings.",
    },
    sql=_invoice_line_details,
    money=("amount", "price_unit_amount"),
    reads=("invoice_line_item", "invoice", "subscription", "price"),
)
