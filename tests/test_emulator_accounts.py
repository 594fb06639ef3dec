"""The emulator as a Connect platform: data per Stripe-Account, /v1/accounts, /v1/account, revoked access
(real HTTP, the real stripe SDK)."""

from __future__ import annotations

import pytest
import stripe

from nilus_stripe_assets.emulator import EmulatorClient, StripeEmulator
from nilus_stripe_assets.emulator.model import ACCOUNT_ID

NOW = 1_767_225_600


@pytest.fixture(scope="module")
def platform():
    with StripeEmulator(scale=0.2, seed=5, now=NOW, accounts=3, account_counts={"charge": 150}, account_scale=0.1) as e:
        yield e


def client(emu, account=None) -> stripe.StripeClient:
    return stripe.StripeClient(emu.api_key, base_addresses={"api": emu.url}, max_network_retries=0,
                               stripe_account=account)


def charge_ids(emu, account=None) -> list[str]:
    return [c.id for c in client(emu, account).v1.charges.list({"limit": 100}).auto_paging_iter()]


def test_accounts_are_listed_newest_first_and_paged(platform):
    ids = platform.account_ids
    assert len(ids) == 3 and all(a.startswith("acct_1") and len(a) == 21 for a in ids)
    listed = [a.id for a in client(platform).v1.accounts.list({"limit": 2}).auto_paging_iter()]
    assert listed == list(reversed(ids))
    first = client(platform).v1.accounts.list({"limit": 2})
    assert first.has_more and len(first.data) == 2 and first.data[0].object == "account"


def test_account_endpoint_returns_the_requesting_account(platform):
    assert client(platform).v1.accounts.retrieve_current().id == ACCOUNT_ID
    other = platform.account_ids[1]
    assert client(platform, other).v1.accounts.retrieve_current().id == other


def test_each_account_has_its_own_data(platform):
    a, b = platform.account_ids[:2]
    own, in_a, in_b = charge_ids(platform), charge_ids(platform, a), charge_ids(platform, b)
    assert len(in_a) == len(in_b) == 150 and len(own) == platform.counts()["charge"]
    assert not set(in_a) & set(in_b) and not set(in_a) & set(own)
    assert charge_ids(platform, a) == in_a  # deterministic per account
    assert charge_ids(platform, ACCOUNT_ID) == own  # the platform's own id reads its own data
    stats = platform.stats()["accounts"]
    assert stats[a] >= 2 and stats[b] >= 1


def test_same_user_chosen_id_in_two_accounts(platform):
    a, b = platform.account_ids[:2]
    platform.create("coupon", stripe_account=a, id="SUMMER25", percent_off=25)
    EmulatorClient(platform.url).create("coupon", stripe_account=b, id="SUMMER25", percent_off=10)
    assert client(platform, a).v1.coupons.retrieve("SUMMER25").percent_off == 25
    assert client(platform, b).v1.coupons.retrieve("SUMMER25").percent_off == 10
    with pytest.raises(stripe.InvalidRequestError):
        client(platform).v1.coupons.retrieve("SUMMER25")


def test_unknown_and_revoked_accounts_get_403():
    with StripeEmulator(scale=0.05, seed=1, accounts=2) as emu:
        a, b = emu.account_ids
        with pytest.raises(stripe.PermissionError, match="does not have access to account 'acct_1Unknown'"):
            client(emu, "acct_1Unknown").v1.charges.list()
        EmulatorClient(emu.url).revoke(b)
        with pytest.raises(stripe.PermissionError, match=f"access to account '{b}'.*revoked") as info:
            client(emu, b).v1.charges.list()
        assert info.value.http_status == 403 and emu.api_key not in str(info.value)
        assert [x.id for x in client(emu).v1.accounts.list().data] == [a]  # no longer connected
        assert client(emu, a).v1.charges.list().data
        emu.revoke(b, revoked=False)
        assert client(emu, b).v1.charges.list().data


def test_without_accounts_the_header_is_only_counted(shared_emulator):
    """The default emulator serves its one dataset whatever Stripe-Account says, as it always did."""
    assert charge_ids(shared_emulator, "acct_123")[:5] == charge_ids(shared_emulator)[:5]
    assert client(shared_emulator).v1.accounts.list().data == []
    assert client(shared_emulator).v1.accounts.retrieve_current().id == ACCOUNT_ID


def test_cli_flags(tmp_path):
    from nilus_stripe_assets.emulator.__main__ import parse_args

    args = parse_args(["--accounts", "50", "--account-count", "charge=2000", "--account-scale", "0.01"])
    assert args.accounts == 50 and dict(args.account_count) == {"charge": 2000} and args.account_scale == 0.01


def _declared(cls) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        names |= {k for k in vars(klass).get("__annotations__", {}) if not k.startswith("_")}
    return names - {"OBJECT_NAME"}


def test_accounts_have_exactly_the_sdks_declared_fields(platform):
    """stripe.Account's field set, as every emulated object: `deleted` only on a deleted account's stub, and
    nested objects with no field their SDK class does not declare."""
    declared = _declared(stripe.Account) - {"deleted"}
    current = client(platform).v1.accounts.retrieve_current().to_dict()
    connected = client(platform, platform.account_ids[0]).v1.accounts.retrieve_current().to_dict()
    listed = [a.to_dict() for a in client(platform).v1.accounts.list({"limit": 100}).data]
    for account in [current, connected, *listed]:
        assert set(account) == declared, set(account) ^ declared
        assert set(account["business_profile"]) <= _declared(stripe.Account.BusinessProfile)
        assert set(account["capabilities"]) <= _declared(stripe.Account.Capabilities)
        assert account["controller"] is None or set(account["controller"]) <= _declared(stripe.Account.Controller)
    assert current["id"] == ACCOUNT_ID and connected["id"] == platform.account_ids[0]
    assert len(listed) == 3 and all(a["object"] == "account" and a["created"] < NOW for a in listed)
