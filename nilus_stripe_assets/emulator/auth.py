"""API keys: which are accepted, which are restricted to some objects, and Stripe-style masking."""

from __future__ import annotations

import base64
import re
from typing import Iterable, Mapping, Optional

from .errors import invalid_key, missing_key, permission

DEFAULT_KEY = "sk_test_emulator"
KEY_PATTERN = re.compile(r"^(sk|rk)_(test|live)_[A-Za-z0-9]+$")
_PREFIX = re.compile(r"^(?:sk|rk|pk)_(?:test|live)_")


def mask(key: str) -> str:
    """Stripe's masking: keep the `sk_test_` prefix and the last 4 characters."""
    m = _PREFIX.match(key)
    prefix = m.group(0) if m else ""
    rest = key[len(prefix):]
    keep = rest[-4:] if len(rest) > 4 else ""
    return prefix + "*" * (len(rest) - len(keep)) + keep


def key_from_header(authorization: Optional[str]) -> Optional[str]:
    """The key from `Bearer <key>` (what stripe-python sends) or HTTP Basic `<key>:` (curl -u)."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value).decode().partition(":")[0] or None
        except Exception:
            return None
    return None


class Auth:
    def __init__(self, api_keys: Optional[Iterable[str]] = None, accept_any_key: bool = False,
                 restricted_keys: Optional[Mapping[str, Iterable[str]]] = None):
        self.keys: list[str] = list(api_keys) if api_keys else [DEFAULT_KEY]
        self.accept_any_key = accept_any_key
        self.restricted: dict[str, frozenset[str]] = {k: frozenset(v) for k, v in (restricted_keys or {}).items()}

    @property
    def api_key(self) -> str:
        return self.keys[0]

    def authenticate(self, authorization: Optional[str]) -> str:
        """The accepted key, else raise the 401 StripeError."""
        key = key_from_header(authorization)
        if key is None:
            raise missing_key()
        if key in self.restricted or key in self.keys or (self.accept_any_key and KEY_PATTERN.match(key)):
            return key
        raise invalid_key(mask(key))

    def authorize(self, key: str, name: str) -> None:
        """Raise the 403 StripeError when a restricted key may not read object `name`."""
        allowed = self.restricted.get(key)
        if allowed is not None and name not in allowed:
            raise permission(mask(key), name)
