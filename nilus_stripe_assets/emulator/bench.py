"""Quick throughput check: `python -m nilus_stripe_assets.emulator.bench [--charges N] [--seconds S]`.

Walks `GET /v1/charges?limit=100` pages over keep-alive connections (http.client, responses read fully,
not parsed) with 1 and 8 client threads against an in-process emulator, and reports generation time,
pages/s and objects/s. Measured figures are in the package report / README of the emulator.
"""

from __future__ import annotations

import argparse
import http.client
import resource
import threading
import time

import orjson

from .server import StripeEmulator


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


def measure(emu: StripeEmulator, threads: int, seconds: float) -> tuple[float, float]:
    deadline = time.perf_counter() + seconds
    out: list = []
    workers = [threading.Thread(target=_walk, args=(emu.url, emu.api_key, deadline, out)) for _ in range(threads)]
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
    a = p.parse_args()
    t0 = time.perf_counter()
    emu = StripeEmulator(counts={"charge": a.charges})
    gen = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"generated {sum(emu.counts().values()):,} objects ({a.charges:,} charges) in {gen:.2f}s, "
          f"peak RSS {rss:.0f} MiB")
    with emu:
        for threads in (1, 8):
            pages, objects = measure(emu, threads, a.seconds)
            print(f"{threads} client thread(s): {pages:,.0f} pages/s, {objects:,.0f} charges/s (limit=100)")
        print(orjson.dumps(emu.stats()["total"]).decode())


if __name__ == "__main__":
    main()
