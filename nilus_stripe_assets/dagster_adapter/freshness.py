"""How fresh each Stripe table should be, as Dagster's own `FreshnessPolicy` on the asset.

Dagster 1.13 evaluates a `FreshnessPolicy.time_window` itself (the freshness daemon, part of
`dagster dev` and `dagster-daemon run`): an asset not materialized within `warn_window` shows
*Warning*, not within `fail_window` *Failing*, on its page and in the asset catalog's health. The policy
judges when the table was last loaded, not how old Stripe's newest object is: a quiet account creates no
coupons for months, yet its coupon table is fresh if it was just reloaded.

Defaults follow the bundled automation: the incremental job runs hourly, so two missed runs warn and a
day without a load fails. Change them per object by overriding `StripeTranslator.get_freshness_policy`
(return `None` for no policy).
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from ..source.catalog import StripeObject

WARN_AFTER = timedelta(hours=2)
FAIL_AFTER = timedelta(days=1)


def default_freshness_policy(obj: StripeObject) -> dg.FreshnessPolicy:
    return dg.FreshnessPolicy.time_window(fail_window=FAIL_AFTER, warn_window=WARN_AFTER)
