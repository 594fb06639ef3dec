"""The browser test's code location: the package's assets, with a one-minute freshness policy on coupons.

Dagster's shortest freshness window is one minute, so the test can watch `stripe/coupon` go stale while
the other tables keep the package's default policy. Loaded by file (`-f`, `workspace` python_file), like a
user's own location built from `build_stripe_assets` and a translator.
"""

from datetime import timedelta

import dagster as dg

from nilus_stripe_assets.dagster_adapter.defaults import default_executor, default_resources
from nilus_stripe_assets.dagster_adapter.factory import StripeTranslator, build_stripe_assets
from nilus_stripe_assets.dagster_adapter.finance import build_finance_assets

STALE_AFTER = timedelta(minutes=1)
SHORT_POLICY_OBJECT = "coupon"


class OneMinuteCoupons(StripeTranslator):
    def get_freshness_policy(self, obj):
        if obj.name == SHORT_POLICY_OBJECT:
            return dg.FreshnessPolicy.time_window(fail_window=STALE_AFTER)
        return super().get_freshness_policy(obj)


defs = dg.Definitions(
    assets=[*build_stripe_assets(one_step=True, translator=OneMinuteCoupons()), *build_finance_assets()],
    resources=default_resources(),
    executor=default_executor(),
)
