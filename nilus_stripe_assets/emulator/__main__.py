"""CLI: `python -m nilus_stripe_assets.emulator` / `nilus-stripe-emulator`; serves until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from typing import Optional, Sequence

from .server import StripeEmulator


def _count(text: str) -> tuple[str, int]:
    name, sep, n = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected OBJECT=N, got {text!r}")
    return name.strip(), int(n)


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="nilus-stripe-emulator", description="Local Stripe API emulator (127.0.0.1).")
    p.add_argument("--port", type=int, default=12111, help="port to listen on (0 = pick a free one)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--now", type=int, default=None, help="data reference time, epoch s (default: today 00:00 UTC)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply the default object counts")
    p.add_argument("--count", type=_count, action="append", default=[], metavar="OBJECT=N",
                   help="object count, e.g. charge=20000 (repeatable)")
    p.add_argument("--api-key", action="append", default=None, help="accepted key (repeatable)")
    p.add_argument("--accept-any-key", action="store_true", help="accept any (sk|rk)_(test|live)_... key")
    p.add_argument("--latency-ms", type=float, default=0)
    p.add_argument("--global-rate", type=float, default=None, help="requests/s for the account")
    p.add_argument("--endpoint-rate", type=float, default=None, help="requests/s per endpoint")
    p.add_argument("--max-concurrency", type=int, default=None)
    p.add_argument("--error-rate", type=float, default=0.0, help="share of random 500s")
    p.add_argument("--rate-limit-should-retry", type=_bool, default=None, help="send Stripe-Should-Retry on 429s")
    p.add_argument("--accounts", type=int, default=None, metavar="N",
                   help="serve N Connect accounts (Stripe-Account), each with its own data; GET /v1/accounts lists them")
    p.add_argument("--account-count", type=_count, action="append", default=[], metavar="OBJECT=N",
                   help="object count in each connected account (default: as --count)")
    p.add_argument("--account-scale", type=float, default=None, help="scale of each connected account (default: --scale)")
    p.add_argument("--lazy", nargs="?", const="all", default=None, metavar="OBJECT[,OBJECT]",
                   help="generate these objects (default: every one that can be) from their index when read, "
                        "instead of holding them in memory; objects above 2,000,000 are lazy anyway")
    p.add_argument("--stall", action="store_true", help="accept requests but never answer them")
    p.add_argument("--oldest-first", action="store_true", help="list oldest first (unlike Stripe)")
    p.add_argument("--ignore-created-filter", action="store_true", help="ignore created[...] filters (unlike Stripe)")
    p.add_argument("--reject-created-filter", type=int, choices=[400, 500], default=None, metavar="STATUS",
                   help="answer created[...] filters with a 400 or a 500 (unlike Stripe, like localstripe)")
    p.add_argument("--not-set-up", default="", metavar="PRODUCT[,PRODUCT]",
                   help="products the account has not set up (e.g. issuing,treasury): their lists answer Stripe's 400")
    p.add_argument("--repeat-line-ids", action="store_true",
                   help="serve the same line item ids under every invoice and credit note, as Stripe's fixtures do")
    p.add_argument("--ready-file", default=None, help="write the URL here once listening")
    return p.parse_args(argv)


def make(a: argparse.Namespace) -> StripeEmulator:
    """The emulator the arguments describe (ValueError on bad input)."""
    emu = StripeEmulator(counts=dict(a.count) or None, scale=a.scale, seed=a.seed, now=a.now, port=a.port,
                         api_keys=a.api_key, accept_any_key=a.accept_any_key, latency_ms=a.latency_ms,
                         global_rate=a.global_rate, endpoint_rate=a.endpoint_rate, max_concurrency=a.max_concurrency,
                         error_rate=a.error_rate, rate_limit_should_retry=a.rate_limit_should_retry,
                         accounts=a.accounts, account_counts=dict(a.account_count) or None, account_scale=a.account_scale,
                         lazy=None if a.lazy is None else True if a.lazy == "all" else a.lazy.split(","),
                         not_set_up=a.not_set_up, repeat_line_ids=a.repeat_line_ids)
    emu.configure(stall=a.stall, oldest_first=a.oldest_first, ignore_created_filter=a.ignore_created_filter,
                  reject_created_filter=a.reject_created_filter)
    return emu


def main(argv: Optional[Sequence[str]] = None) -> None:
    a = parse_args(argv)
    try:
        emu = make(a)
    except ValueError as e:  # unknown objects, products, account ids: one line, no traceback
        raise SystemExit(f"nilus-stripe-emulator: {e}") from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    emu.start()
    if a.ready_file:  # written (atomically) before the banner, so either signal means "ready"
        tmp = f"{a.ready_file}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(emu.url + "\n")
        os.replace(tmp, a.ready_file)
    connected = f", {len(emu.account_ids)} connected accounts" if emu.account_ids else ""
    print(f"Stripe emulator listening on {emu.url} (key {emu.api_key}{connected})", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        emu.stop()


if __name__ == "__main__":
    main()
