"""`StripeResource`: the key, the API base, the Connect account and the request budget, as Dagster config."""


import os
from typing import TYPE_CHECKING, Optional

import dagster as dg
from pydantic import Field, PrivateAttr, field_validator

from ..source.config import (
    DEFAULT_API_BASE, ConfigError, StripeURI, check_api_base, check_account, default_global_rate, literal_api_key,
    mask_key, parse_stripe_uri, validate_api_key,
)
from ..reading.budget import BudgetSettings, RequestBudget, account_fingerprint
from .validation import refused_in_one_line, secret_written_in_run_config

if TYPE_CHECKING:
    from ..source.client import StripeApi

API_BASE_ENV = "STRIPE_API_BASE"
CONNECT_BUDGETS = ("platform", "account")
_CONFIGURED = object()  # get_api(): use the configured stripe_account
API_KEY_ENV = "STRIPE_API_KEY"
BUDGET_URL_ENV = "NILUS_BUDGET_URL"


class StripeResource(dg.ConfigurableResource):
    """A Stripe account to read from.

    Leave `api_key` unset to read `STRIPE_API_KEY` when a run starts (a missing key then fails the step with
    one line), or give `EnvVar("STRIPE_API_KEY")`; either way the key never appears in run config, logs or the UI.
    """

    api_key: Optional[str] = Field(
        default=None,
        description="Secret (sk_) or restricted (rk_) key; default: $STRIPE_API_KEY when a run starts. The value is never logged.",
    )
    uri: Optional[str] = Field(
        default=None,
        description="The spec's source address, e.g. stripe://?api_key={STRIPE_API_KEY}&stripe_account=acct_…; "
        "{NAME} placeholders are read from the environment. Fills api_key, stripe_account and api_base.",
    )
    api_base: Optional[str] = Field(
        default=None,
        description=f"API base URL; default https://api.stripe.com, or ${API_BASE_ENV} (e.g. the bundled emulator).",
    )
    stripe_account: Optional[str] = Field(default=None, description="Connect account id (acct_…), sent as Stripe-Account.")
    max_requests_per_second: Optional[float] = Field(
        default=None,
        gt=0,
        description="Account-wide request budget shared by all assets and processes; default from the key: 25/s test, 100/s live.",
    )
    max_requests_per_second_per_endpoint: float = Field(default=25.0, gt=0, description="Stripe's default per-endpoint limit.")
    # One step loads many objects at once: 100 req/s at ~200-300 ms per list page needs 20-30 in flight.
    max_in_flight: int = Field(default=32, ge=1, description="Concurrent requests per process, all objects together.")
    workers_per_object: int = Field(
        default=8,
        ge=1,
        description="Concurrent requests one object's async load or fan-out may make (Stripe allows 25/s per endpoint).",
    )
    max_network_retries: int = Field(default=6, ge=0, description="SDK retries for 5xx, 409 and connection errors.")
    max_rate_limit_retries: int = Field(default=12, ge=0, description="Retries after a 429 before the run fails.")
    request_timeout_seconds: float = Field(
        default=20.0,
        gt=0,
        description="One HTTP attempt: seconds to connect, and to wait for the server's answer (stripe-python's default is 80).",
    )
    max_retry_seconds: float = Field(
        default=60.0,
        ge=0,
        description="No retry of a page (after a timeout, connection error, 5xx or 429) starts later than this after its "
        "first attempt: a stalled upstream fails in about max_retry_seconds + request_timeout_seconds.",
    )
    budget_dir: Optional[str] = Field(default=None, description="Folder for the cross-process budget state (default: temp dir).")
    budget_url: Optional[str] = Field(
        default=None,
        description=f"postgresql://user@host:5432/db: keep the budget state in PostgreSQL, shared by every machine "
        f"(default: ${BUDGET_URL_ENV}, else files in budget_dir). Use EnvVar('{BUDGET_URL_ENV}') if it holds a password.",
    )

    connected_accounts: Optional[list[str]] = Field(
        default=None,
        description="Connect: the accounts (acct_…) the accounts sensor adds as partitions; default: every account "
        "GET /v1/accounts lists, plus the platform itself.",
    )
    connect_budget: str = Field(
        default="platform",
        description="Connect: 'platform' (requests sent with Stripe-Account draw on the platform's budget, the safe "
        "reading of Stripe's docs) or 'account' (each connected account has its own budget).",
    )

    _refused_in_one_line = refused_in_one_line("StripeResource.")

    @field_validator("api_base")
    @classmethod
    def _http_url(cls, value: Optional[str]) -> Optional[str]:
        # Empty (e.g. an unset variable templated in) means "not set", as it always did.
        return check_api_base(value, "api_base", "fix it or leave it out") if value and value.strip() else None

    @field_validator("uri")
    @classmethod
    def _no_literal_key(cls, value: Optional[str]) -> Optional[str]:
        key = literal_api_key(value) if value else None
        if key:
            # Dagster keeps a resource's config (and run config) and shows it in the UI: only a placeholder may be there.
            raise ConfigError(
                f"the address contains the API key {mask_key(key)} itself, which Dagster would store and show; "
                "write api_key={STRIPE_API_KEY} and set STRIPE_API_KEY through your secrets."
            )
        return value

    @field_validator("stripe_account")
    @classmethod
    def _account_id(cls, value: Optional[str]) -> Optional[str]:
        return check_account(value, "fix it or leave it out") if value and value.strip() else None

    @field_validator("connected_accounts")
    @classmethod
    def _account_ids(cls, value: Optional[list[str]]) -> Optional[list[str]]:
        return None if value is None else [check_account(a, "list acct_… ids only") for a in value]

    @field_validator("connect_budget")
    @classmethod
    def _known_budget_rule(cls, value: str) -> str:
        if value not in CONNECT_BUDGETS:
            raise ConfigError(f"'{value[:20]}' is not one of {', '.join(CONNECT_BUDGETS)}; use one of them.")
        return value

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Settings read from the environment when a run starts, checked before any request (one line each)."""
        written = secret_written_in_run_config(context, ("api_key", "budget_url"))
        if written:
            variable = API_KEY_ENV if written == "api_key" else BUDGET_URL_ENV
            what = "the API key" if written == "api_key" else "an address with a password"
            raise dg.Failure(
                description=f"StripeResource.{written}: the run config holds {what} itself, which Dagster stores with "
                f"the run and shows; give it as {{env: {variable}}} (or leave it out: {variable} is read when the run "
                f"starts), and delete this run or rotate the secret.",
                allow_retries=False,
            )
        try:
            self.check_environment()
        except ConfigError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None

    def check_environment(self) -> None:
        """STRIPE_API_BASE and NILUS_BUDGET_URL (or the fields that override them). Raises ConfigError."""
        try:
            uri_base = self._from_uri().api_base
        except ConfigError:  # the address's own problems (a key variable not set) are the step's to report
            uri_base = None
        if not (self.api_base or uri_base) and os.environ.get(API_BASE_ENV, "").strip():
            check_api_base(os.environ[API_BASE_ENV], API_BASE_ENV, f"fix it or unset it to read {DEFAULT_API_BASE}")
        url = self.budget_url or os.environ.get(BUDGET_URL_ENV)
        if url:
            from ..reading.budget.postgres import check_budget_url  # psycopg: only for those who use it

            check_budget_url(url.strip())

    _budgets: dict = PrivateAttr(default_factory=dict)
    _platform_id: Optional[str] = PrivateAttr(default=None)

    def _from_uri(self) -> StripeURI:
        return parse_stripe_uri(self.uri) if self.uri else StripeURI(api_key=None, stripe_account=None, api_base=None)

    @property
    def resolved_api_key(self) -> str:
        """The key to use, validated (publishable, malformed or missing keys fail before any request)."""
        # Run config that sets any field replaces the resource's whole config, EnvVar included:
        # fall back to the documented variable so raising the budget does not lose the key.
        key = self.api_key or self._from_uri().api_key or os.environ.get(API_KEY_ENV)
        if not key:
            raise ConfigError(
                "No Stripe API key configured: set STRIPE_API_KEY to a secret (sk_) or restricted (rk_) key from "
                "Stripe Dashboard → Developers → API keys, or give StripeResource(api_key=...) or "
                "uri='stripe://?api_key={STRIPE_API_KEY}'."
            )
        validate_api_key(key, self.resolved_api_base)
        return key

    @property
    def resolved_api_base(self) -> str:
        return (self.api_base or self._from_uri().api_base or os.environ.get(API_BASE_ENV, "").strip() or DEFAULT_API_BASE).rstrip("/")

    @property
    def resolved_stripe_account(self) -> Optional[str]:
        return self.stripe_account or self._from_uri().stripe_account

    def budget_settings(self) -> BudgetSettings:
        return BudgetSettings(
            global_rate=self.max_requests_per_second or default_global_rate(self.resolved_api_key),
            endpoint_rate=self.max_requests_per_second_per_endpoint,
            max_in_flight=self.max_in_flight,
            state_dir=self.budget_dir,
            # Read at run time, like the key: run config that replaces this resource's config keeps the env.
            state_url=self.budget_url or os.environ.get(BUDGET_URL_ENV) or None,
        )

    def get_api(self, stripe_account: Optional[str] = _CONFIGURED) -> "StripeApi":
        """A new API handle (fresh request counters) drawing on the account's shared budget.

        `stripe_account`: the Connect account to act for (None: the key's own account); default: the
        configured `stripe_account`.
        """
        # Imported here: stripe-python (with requests) is not needed to load definitions, only to read.
        from ..source.client import RetryPolicy, StripeApi

        key = self.resolved_api_key
        account = self.resolved_stripe_account if stripe_account is _CONFIGURED else stripe_account
        # Stripe's docs count limits "per Stripe account" without saying whose budget a request sent with
        # Stripe-Account draws on; by default assume the platform's (shared), see README "Connect platforms".
        budget_account = account if self.connect_budget == "account" else self.resolved_stripe_account
        fingerprint = account_fingerprint(key, self.resolved_api_base, budget_account)
        budget = self._budgets.get(fingerprint)
        if budget is None:
            budget = self._budgets[fingerprint] = RequestBudget(fingerprint, self.budget_settings())
        return StripeApi(
            key,
            budget,
            api_base=self.resolved_api_base,
            stripe_account=account,
            retry=RetryPolicy(
                max_network_retries=self.max_network_retries,
                max_rate_limit_retries=self.max_rate_limit_retries,
                timeout_seconds=self.request_timeout_seconds,
                max_retry_seconds=self.max_retry_seconds,
            ),
        )

    @property
    def key_for_masking(self) -> Optional[str]:
        """The key, to scrub it from error text (None if it is not configured: nothing to scrub)."""
        try:
            return self.resolved_api_key
        except ConfigError:
            return None

    def platform_account_id(self) -> str:
        """The key's own account id (`GET /v1/account`, once per resource instance)."""
        if self._platform_id is None:
            from ..reading.accounts import own_account_id

            self._platform_id = own_account_id(self.get_api(stripe_account=None))
        return self._platform_id
