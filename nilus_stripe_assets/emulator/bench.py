"""Quick throughput check: `python -m nilus_stripe_assets.emulator.bench [--charges N] [--seconds S] [--url U] [--sdk]`.

Walks `GET /v1/charges?limit=100` pages over keep-alive connections with 1 and 8 client threads, against an
in-process emulator (default) or a running one (`--url`, e.g. the CLI in another process). The client is
http.client reading whole responses (or stripe-python `raw_request` with `--sdk`, which parses the JSON).

Measured (2-core container, 200,000 charges, Python 3.11):
  generation of 200,000 charges (+ ~18k other objects): 2.4-3.0 s, peak RSS ~470 MiB
  emulator in its own process, http.client:  1 thread ~1,990 pages/s (~199,000 charges/s);
                                              8 threads ~1,990 pages/s (client process is the limit)
  in-process (client and server share one GIL): 1 thread ~1,780 pages/s, 8 threads ~2,020 pages/s
  stripe-python raw_request client: ~195-200 pages/s (bound by the SDK's JSON parsing, not the server)
"""

from __future__ import annotations

import argparse
import http.client
import resource
import threading
import time

import orjson

from .server import StripeEmulator


def _walk_sdk(url: str, key: str, deadline: float, out: list) -> None:
    import stripe  # optional: the emulator itself never needs it

    client = stripe.StripeClient(key, base_addresses={"api": url}, max_network_retries=0)
    pages = objects = 0
    cursor = None
    while time.perf_counter() < deadline:
        page = client.raw_request("get", "/v1/charges", limit=100, starting_after=cursor).data
        pages += 1
        objects += len(page["data"])
        cursor = page["data"][-1]["id"] if page["has_more"] else None
    out.append((pages, objects))


def _walk(url: str, key: str, deadline: float, out: list) -> None:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port))
    headers = {"Authorization": f"Bearer {key}"}
    pages = objects = 0
    cursor = None
    while time.perf_counter() < deadline:
        path = "/v1/charges?limit=100" + (f"&starting_after={cursor}" if cursor else "")
        conn.request("GET", path, headers=headers)
        body = conn.getresponse().read()
        pages += 1
        tail = body.rfind(b'"id":"ch_', 0, body.rfind(b'"has_more"'))
        cursor = body[tail + 6 : body.index(b'"', tail + 6)].decode() if b'"has_more":true' in body else None
        objects += body.count(b'"object":"charge"')
    conn.close()
    out.append((pages, objects))


def measure(url: str, key: str, threads: int, seconds: float, sdk: bool = False) -> tuple[float, float]:
    deadline = time.perf_counter() + seconds
    out: list = []
    target = _walk_sdk if sdk else _walk
    workers = [threading.Thread(target=target, args=(url, key, deadline, out)) for _ in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    return sum(p for p, _ in out) / elapsed, sum(o for _, o in out) / elapsed


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--charges", type=int, default=200_000)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--url", default=None, help="measure a running emulator (e.g. the CLI) instead of an in-process one")
    p.add_argument("--key", default="sk_test_emulator")
    p.add_argument("--sdk", action="store_true", help="client: stripe-python raw_request (parses JSON) not http.client")
    a = p.parse_args()
    emu = None
    url = a.url
    if url is None:
        t0 = time.perf_counter()
        emu = StripeEmulator(counts={"charge": a.charges})
        gen = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"generated {sum(emu.counts().values()):,} objects ({a.charges:,} charges) in {gen:.2f}s, "
              f"peak RSS {rss:.0f} MiB")
        url = emu.start().url
    try:
        for threads in (1, 8):
            pages, objects = measure(url, a.key, threads, a.seconds, a.sdk)
            print(f"{threads} client thread(s): {pages:,.0f} pages/s, {objects:,.0f} charges/s (limit=100)")
        if emu is not None:
            print(orjson.dumps(emu.stats()["total"]).decode())
    finally:
        if emu is not None:
            emu.stop()


if __name__ == "__main__":
    main()
