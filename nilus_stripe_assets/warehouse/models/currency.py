"""Stripe amounts in major units: each currency's exponent, from Stripe's documented lists.

Stripe's API amounts are integers in the currency's minor unit (docs.stripe.com/currencies, "Minor units in
API amounts"): cents for USD (1000 = $10.00); zero-decimal currencies are counted in whole units (JPY 1000 =
¥1,000); three-decimal currencies in thousandths (KWD 1000 = 1.000 KWD). Stripe lists ISK, HUF, TWD and UGX
as special cases whose API amounts still carry two decimals (UGX is in the zero-decimal list and stays there).

The models keep every amount as BIGINT minor units, and add `<column>_major` as DECIMAL(38, 3): the minor
amount times 1, 0.01 or 0.001, which is exact (no division, no floating point).
"""

from __future__ import annotations

ZERO_DECIMAL = ("bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf",
                "xof", "xpf")
THREE_DECIMAL = ("bhd", "jod", "kwd", "omr", "tnd")
MAJOR_TYPE = "DECIMAL(38, 3)"


def exponent(currency: str) -> int:
    c = (currency or "").lower()
    return 0 if c in ZERO_DECIMAL else 3 if c in THREE_DECIMAL else 2


def _in(values) -> str:
    return ", ".join(f"'{v}'" for v in values)


def exponent_sql(currency: str) -> str:
    """The exponent (INTEGER) of the currency in SQL expression `currency`."""
    c = f"lower({currency})"
    return f"(CASE WHEN {c} IN ({_in(ZERO_DECIMAL)}) THEN 0 WHEN {c} IN ({_in(THREE_DECIMAL)}) THEN 3 ELSE 2 END)"


def major_sql(amount: str, currency: str) -> str:
    """BIGINT minor units `amount` as exact DECIMAL major units of `currency`."""
    c = f"lower({currency})"
    unit = (f"(CASE WHEN {c} IN ({_in(ZERO_DECIMAL)}) THEN CAST(1 AS DECIMAL(4, 3)) "
            f"WHEN {c} IN ({_in(THREE_DECIMAL)}) THEN CAST(0.001 AS DECIMAL(4, 3)) ELSE CAST(0.01 AS DECIMAL(4, 3)) END)")
    return f"CAST(CAST({amount} AS DECIMAL(19, 0)) * {unit} AS {MAJOR_TYPE})"
