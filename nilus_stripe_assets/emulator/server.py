"""The HTTP server (stdlib ThreadingHTTPServer, HTTP/1.1 keep-alive) and `StripeEmulator`, which wires the
store, auth, fault switches and stats together.

Request pipeline for `/v1/...`: stall (no answer at all) -> concurrency cap and rate limits (429) -> latency -> auth (401) -> route
(404) -> restricted key (403) -> random failure (500) -> Stripe API (200/400/404). Control routes under
`/_emulator/` skip all of it and are not counted.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterable, Mapping, Optional, Union
from urllib.parse import unquote

import orjson

from . import api
from .accounts import ACCOUNT_PATHS, Accounts, parse_ids
from .auth import Auth, mask
from .data import default_now, generate
from .errors import StripeError, api_error, not_set_up, rate_limited, unrecognized
from .limits import Faults, Limiter, Stats
from .model import ACCOUNT, ACCOUNT_ID, API_VERSION, NAMES, PRODUCT, PRODUCTS
from .store import Store

HOST = "127.0.0.1"
_REASONS = {s.value: s.phrase for s in HTTPStatus}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "nilus-stripe-emulator"

    def setup(self):
        super().setup()
        self.server.connections.add(self.connection)

    def finish(self):
        self.server.connections.discard(self.connection)
        super().finish()

    def do_GET(self):
        self.server.emulator._dispatch(self, "GET")

    def do_POST(self):
        self.server.emulator._dispatch(self, "POST")

    def do_DELETE(self):
        self.server.emulator._dispatch(self, "DELETE")

    def log_message(self, format, *args):  # no per-request logging
        pass

    def respond(self, status: int, body: bytes, request_id: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, '')}", "Content-Type: application/json",
                 f"Content-Length: {len(body)}", f"Request-Id: {request_id}", f"Stripe-Version: {API_VERSION}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def read_body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256

    def __init__(self, emulator: "StripeEmulator", port: int):
        self.emulator = emulator
        self.connections: set[socket.socket] = set()
        super().__init__((HOST, port), _Handler)


class StripeEmulator:
    """A local Stripe API (list + retrieve for the catalog objects) over deterministic seed data."""

    def __init__(self, counts: Optional[Mapping[str, int]] = None, scale: float = 1.0, seed: int = 42,
                 now: Optional[int] = None, port: int = 0, api_keys: Optional[Iterable[str]] = None,
                 accept_any_key: bool = False, restricted_keys: Optional[Mapping[str, Iterable[str]]] = None,
                 latency_ms: float = 0, global_rate: Optional[float] = None, endpoint_rate: Optional[float] = None,
                 max_concurrency: Optional[int] = None, error_rate: float = 0.0,
                 rate_limit_should_retry: Optional[bool] = None,
                 accounts: Union[None, int, Iterable[str]] = None,
                 account_counts: Optional[Mapping[str, int]] = None, account_scale: Optional[float] = None,
                 lazy: Union[None, bool, Iterable[str]] = None, not_set_up: Iterable[str] = (),
                 repeat_line_ids: bool = False):
        """`accounts`: connected accounts (a count, or `acct_…` ids), each with its own data: `account_counts`
        and `account_scale` (default: `counts` and `scale`), seeded from the account id. Request limits
        (`global_rate`, ...) stay one budget for the platform and its accounts together.
        `lazy`: objects generated from their index when read instead of held in memory (see `lazy.py`):
        None = those above `data.LAZY_ABOVE` objects, True = every object that can be, or a list of names.
        `not_set_up`: products (the catalog's `product`, e.g. "Issuing") the account has not set up: requests for
        their objects get Stripe's 400 (see `configure`).
        `repeat_line_ids`: line items get the same ids under every parent (the first line of each invoice is
        `il_fixture00000`, ...), as Stripe's own fixtures (what stripe-mock serves) and older API versions have
        them: a line is only unique within its parent."""
        lazy = lazy if lazy is None or isinstance(lazy, bool) else frozenset(lazy)
        self._frozen_at: Optional[int] = None  # see `freeze_clock`
        connected = parse_ids(accounts, seed)
        self.store = Store(generate(counts, scale, seed, now, lazy, connected, repeat_line_ids), seed, clock=self._clock)
        a_counts = counts if account_counts is None else account_counts
        a_scale = scale if account_scale is None else account_scale

        def make_store(account: str) -> Store:
            return Store(generate(a_counts, a_scale, f"{seed}:{account}", now, lazy, repeat_line_ids=repeat_line_ids),
                         f"{seed}:{account}",
                         clock=self._clock)

        self.accounts = Accounts(self.store, make_store, connected, now=default_now() if now is None else int(now))
        self.auth = Auth(api_keys, accept_any_key, restricted_keys)
        self.limiter = Limiter(Faults(latency_ms, global_rate, endpoint_rate, max_concurrency, error_rate,
                                      rate_limit_should_retry), seed)
        self._stats = Stats()
        if not_set_up:
            self.configure(not_set_up=not_set_up)
        self.port = port
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self._request_ids = itertools.count(1)
        self._stopping = threading.Event()  # releases stalled requests

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "StripeEmulator":
        if self._server is None:
            self._stopping.clear()
            self._server = _Server(self, self.port)
            self.port = self._server.server_address[1]
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                            name="stripe-emulator", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        for conn in list(server.connections):  # end keep-alive connections still parked in handler threads
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "StripeEmulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def api_key(self) -> str:
        return self.auth.api_key

    # ---- Python control API (same as the HTTP control routes) --------------------------------
    def create(self, object: str, stripe_account: Optional[str] = None, **fields) -> dict:
        return self.accounts.store(stripe_account).create(_check_name(object), fields)

    def update(self, object: str, id: str, stripe_account: Optional[str] = None, **fields) -> dict:
        return self.accounts.store(stripe_account).update(_check_name(object), id, fields)

    def delete(self, object: str, id: str, stripe_account: Optional[str] = None) -> dict:
        return self.accounts.store(stripe_account).delete(_check_name(object), id)

    @property
    def account_ids(self) -> list[str]:
        """The connected accounts (not the platform, `ACCOUNT_ID`)."""
        return self.accounts.ids

    def revoke(self, account: str, revoked: bool = True) -> None:
        """Revoke (or restore) the platform's access to a connected account: its requests then get a 403."""
        self.accounts.revoke(account, revoked)

    def emit_event(self, type: str, object: dict, api_version: Optional[str] = None,
                   previous_attributes: Optional[dict] = None, stripe_account: Optional[str] = None) -> dict:
        """Append an event of any `type` carrying `object` as `data.object` (see `Store.emit`)."""
        return self.accounts.store(stripe_account).emit(type, object, api_version, previous_attributes)

    def set_api_version(self, version: Optional[str] = None, stripe_account: Optional[str] = None) -> str:
        """Set the account's default API version (None: the pinned `API_VERSION`). Its events from now on are
        rendered in it, with the fields older versions had elsewhere (`versions.py`), as Stripe renders events
        in the version the account had when they happened; lists and retrieves stay in the pinned version."""
        store = self.accounts.store(stripe_account)
        store.api_version = version or API_VERSION
        return store.api_version

    def freeze_clock(self, at: Optional[int] = None) -> None:
        """Stamp every change and event from now on with second `at` (None: the real clock again), so that a
        test can make several events of one object share a second, as they do on Stripe."""
        self._frozen_at = None if at is None else int(at)

    def _clock(self) -> float:
        frozen = self._frozen_at
        return time.time() if frozen is None else frozen

    def stats(self) -> dict:
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        self._stats.reset()

    def configure(self, **switches) -> dict:
        """Set fault switches (see `limits.Faults`). `not_set_up`: products the account has not set up, as
        names (any case) or one comma-separated string; `[]` sets every product up again."""
        if "not_set_up" in switches:
            switches["not_set_up"] = products(switches["not_set_up"])
        return self.limiter.configure(**switches)

    def counts(self, stripe_account: Optional[str] = None) -> dict[str, int]:
        return self.accounts.store(stripe_account).counts()

    # ---- HTTP --------------------------------------------------------------------------------
    def _request_id(self) -> str:
        return f"req_{next(self._request_ids):014d}"

    def _dispatch(self, h: _Handler, method: str) -> None:
        path, _, qs = h.path.partition("?")
        if path.startswith("/_emulator/"):
            body = h.read_body()
            account = api.parse_query(qs).get("account") if qs else None
            status, payload = self._control(method, path, body, account)
            h.respond(status, orjson.dumps(payload), self._request_id())
        else:
            if method != "GET":
                h.read_body()
            self._api(h, method, path, qs)

    def _api(self, h: _Handler, method: str, path: str, qs: str) -> None:
        if self.limiter.faults.stall:
            # A stalled upstream: the connection is open and the request read, but no answer ever comes.
            while self.limiter.faults.stall and not self._stopping.wait(0.1):
                pass
            h.close_connection = True
            return
        request_id = self._request_id()
        route = api.resolve(method, path)
        endpoint = route.endpoint if route else f"{method} {path}"
        limiter = self.limiter
        objects, headers = 0, ()
        reason = limiter.enter(endpoint)
        try:
            if reason:
                raise rate_limited(reason, limiter.faults.rate_limit_should_retry)
            latency = limiter.faults.latency_ms
            if latency:
                time.sleep(latency / 1000.0)
            key = self.auth.authenticate(h.headers.get("Authorization"))
            account = h.headers.get("Stripe-Account")
            store = self.accounts.store_for(account, mask(key)) if account else self.store
            if route is None:
                if method != "GET" or path not in ACCOUNT_PATHS:
                    raise unrecognized(method, path)
                if path == "/v1/accounts" and ACCOUNT:
                    self._check_set_up(ACCOUNT, path)
                body, objects = self.accounts.handle(path, account, api.parse_query(qs))
            else:
                self.auth.authorize(key, route.name)
                self._check_set_up(route.name, path)
                if limiter.random_failure():
                    raise api_error()
                body, objects = api.handle(store, route, qs, path, oldest_first=limiter.faults.oldest_first,
                                           ignore_created=limiter.faults.ignore_created_filter,
                                           reject_created=limiter.faults.reject_created_filter)
                if route.endpoint in limiter.faults.malformed:
                    body = body[: len(body) // 2]
            status = 200
        except StripeError as e:
            status, body, headers = e.status, e.body, e.headers
        finally:
            limiter.leave()
        self._stats.record(endpoint, status, objects, h.headers.get("Stripe-Account"), h.headers.get("Stripe-Version"))
        h.respond(status, body, request_id, headers)

    def _check_set_up(self, name: str, path: str) -> None:
        """Stripe's 400 for an object of a product the account has not set up (the not-set-up switch)."""
        product = PRODUCT.get(name)
        if product and product.lower() in self.limiter.faults.not_set_up:
            raise not_set_up(product, path)

    def _control(self, method: str, path: str, body: bytes, account: Optional[str] = None) -> tuple[int, object]:
        parts = [unquote(p) for p in path.strip("/").split("/")[1:]]  # after "_emulator"
        try:
            fields = orjson.loads(body) if body.strip() else {}
            if method == "GET" and parts == ["stats"]:
                return 200, self.stats()
            if method == "GET" and parts == ["counts"]:
                return 200, self.counts(account)
            if method == "GET" and parts == ["accounts"]:
                return 200, {"platform": ACCOUNT_ID, "connected": self.account_ids,
                             "revoked": sorted(self.accounts.revoked)}
            if method == "POST" and len(parts) == 3 and parts[0] == "accounts" and parts[2] in ("revoke", "restore"):
                self.revoke(parts[1], parts[2] == "revoke")
                return 200, {"ok": True}
            if method == "GET" and parts == ["config"]:
                return 200, self.limiter.config()
            if method == "POST" and parts == ["stats", "reset"]:
                self.reset_stats()
                return 200, {"ok": True}
            if method == "POST" and parts == ["config"]:
                return 200, self.configure(**fields)
            if method == "POST" and parts == ["api_version"]:
                return 200, {"api_version": self.set_api_version(fields.get("version"), stripe_account=account)}
            if method == "POST" and parts == ["clock"]:
                self.freeze_clock(fields.get("frozen_at"))
                return 200, {"frozen_at": self._frozen_at}
            if method == "POST" and parts == ["events"]:
                return 200, self.emit_event(stripe_account=account, **fields)
            if parts[:1] == ["objects"] and len(parts) in (2, 3):
                if method == "POST" and len(parts) == 2:
                    return 200, self.create(parts[1], stripe_account=account, **fields)
                if method == "POST":
                    return 200, self.update(parts[1], parts[2], stripe_account=account, **fields)
                if method == "DELETE" and len(parts) == 3:
                    return 200, self.delete(parts[1], parts[2], stripe_account=account)
            return 404, {"error": {"message": f"Unknown control route {method} {path}", "type": "emulator_error"}}
        except KeyError as e:
            return 404, {"error": {"message": f"Not found: {e.args[0]}", "type": "emulator_error"}}
        except (ValueError, TypeError) as e:
            return 400, {"error": {"message": str(e), "type": "emulator_error"}}


def products(names: Union[str, Iterable[str], None]) -> tuple[str, ...]:
    """Product names for the not-set-up switch, lower case; a ValueError naming the known ones otherwise."""
    if names is None:
        return ()
    given = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n and n.strip()]
    known = {p.lower(): p for p in PRODUCTS}
    unknown = [n for n in given if n.lower() not in known]
    if unknown:
        raise ValueError(f"unknown products {unknown}: the catalog's products are {', '.join(PRODUCTS) or 'none'}")
    return tuple(dict.fromkeys(n.lower() for n in given))


def _check_name(name: str) -> str:
    if name not in NAMES:
        raise KeyError(name)
    return name
