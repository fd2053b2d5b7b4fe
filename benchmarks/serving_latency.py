"""Scoring-service latency over HTTP for 1 and 100 entities, on the workspace of `make demo`.

    make demo && .venv/bin/python benchmarks/serving_latency.py [--requests 500]

Sequential requests from one client after a warm-up; p50 and p99 in milliseconds. The service
reads Feast online features and scores the champion in this process (uvicorn in a thread).
"""

from __future__ import annotations

import argparse
import time

import httpx
import numpy as np

from flows import runtime
from flows.service_contract import PREDICT
from flows.service_runner import running_service
from flows.settings import Settings


def measure(
    client: httpx.Client, batch: int, requests: int, rng: np.random.Generator
) -> list[float]:
    timings = []
    for _ in range(requests):
        ids = [int(i) for i in rng.integers(1000, 4000, batch)]
        started = time.perf_counter()
        client.post(PREDICT, json={"customer_ids": ids}).raise_for_status()
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=500)
    requests = parser.parse_args().requests
    settings = Settings()
    runtime.prepare(settings)
    rng = np.random.default_rng(7)
    with running_service(settings) as url, httpx.Client(base_url=url, timeout=10) as client:
        measure(client, 100, 50, rng)  # warm-up
        print("| entities | p50 (ms) | p99 (ms) |\n| --- | --- | --- |")
        for batch in (1, 100):
            timings = measure(client, batch, requests, rng)
            p50, p99 = np.percentile(timings, [50, 99])
            print(f"| {batch} | {p50:.1f} | {p99:.1f} |")


if __name__ == "__main__":
    main()
