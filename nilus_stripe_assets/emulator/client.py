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

    def create(self, object: str, **fields) -> dict:
        return self._call("POST", f"/objects/{object}", fields)

    def update(self, object: str, id: str, **fields) -> dict:
        return self._call("POST", f"/objects/{object}/{quote(id, safe='')}", fields)

    def delete(self, object: str, id: str) -> dict:
        return self._call("DELETE", f"/objects/{object}/{quote(id, safe='')}")

    def stats(self) -> dict:
        return self._call("GET", "/stats")

    def reset_stats(self) -> None:
        self._call("POST", "/stats/reset", {})

    def configure(self, **switches) -> dict:
        return self._call("POST", "/config", switches)

    def counts(self) -> dict[str, int]:
        return self._call("GET", "/counts")
