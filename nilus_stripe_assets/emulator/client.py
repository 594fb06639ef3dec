"""`EmulatorClient`: drive an emulator in another process through its `/_emulator/` control routes."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Optional
from urllib.parse import quote


class EmulatorError(RuntimeError):
    def __init__(self, status: int, payload: Any):
        super().__init__(f"emulator control route failed ({status}): {payload}")
        self.status, self.payload = status, payload


class EmulatorClient:
    def __init__(self, url: str, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Optional[dict] = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + "/_emulator" + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            raise EmulatorError(e.code, json.loads(e.read() or b"null")) from None

    def create(self, object: str, stripe_account: Optional[str] = None, **fields) -> dict:
        return self._call("POST", f"/objects/{object}{_in(stripe_account)}", fields)

    def update(self, object: str, id: str, stripe_account: Optional[str] = None, **fields) -> dict:
        return self._call("POST", f"/objects/{object}/{quote(id, safe='')}{_in(stripe_account)}", fields)

    def delete(self, object: str, id: str, stripe_account: Optional[str] = None) -> dict:
        return self._call("DELETE", f"/objects/{object}/{quote(id, safe='')}{_in(stripe_account)}")

    def accounts(self) -> dict:
        """{"platform": id, "connected": [ids], "revoked": [ids]}."""
        return self._call("GET", "/accounts")

    def revoke(self, account: str, revoked: bool = True) -> None:
        self._call("POST", f"/accounts/{quote(account, safe='')}/{'revoke' if revoked else 'restore'}", {})

    def emit_event(self, type: str, object: dict, api_version: Optional[str] = None,
                   previous_attributes: Optional[dict] = None, stripe_account: Optional[str] = None) -> dict:
        return self._call("POST", f"/events{_in(stripe_account)}", {
            "type": type, "object": object, "api_version": api_version, "previous_attributes": previous_attributes,
        })

    def set_api_version(self, version: Optional[str] = None, stripe_account: Optional[str] = None) -> str:
        """See `StripeEmulator.set_api_version`."""
        return self._call("POST", f"/api_version{_in(stripe_account)}", {"version": version})["api_version"]

    def freeze_clock(self, at: Optional[int] = None) -> None:
        """See `StripeEmulator.freeze_clock`."""
        self._call("POST", "/clock", {"frozen_at": at})

    def stats(self) -> dict:
        return self._call("GET", "/stats")

    def reset_stats(self) -> None:
        self._call("POST", "/stats/reset", {})

    def configure(self, **switches) -> dict:
        return self._call("POST", "/config", switches)

    def counts(self, stripe_account: Optional[str] = None) -> dict[str, int]:
        return self._call("GET", f"/counts{_in(stripe_account)}")


def _in(stripe_account: Optional[str]) -> str:
    """Control routes act on the platform's data unless `?account=` names a connected account."""
    return f"?account={quote(stripe_account, safe='')}" if stripe_account else ""
