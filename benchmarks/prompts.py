"""What building a request's prompt costs the load generator, per request.

capdisc builds each request's prompt lazily, when the request is sent, from a seeded
generator (``apis.prompts.PromptSource.request``): nothing is prepared before a step
and nothing is kept. This times, side by side in one run, building the messages and the
JSON body of one request for the fixed prompt, synthetic prompts of several lengths and
the shipped sample dataset, and prints the cost per request, the ratio to the fixed
prompt and the share of one core it takes at 100 requests per second.

    .venv/bin/python benchmarks/prompts.py            # ~10 s
"""

from __future__ import annotations

import argparse
import json
import time

from capdisc.apis.prompts import prompt_source
from capdisc.apis.wire import wire_format
from capdisc.settings import TokenCount, WorkloadSettings

CASES: list[tuple[str, WorkloadSettings]] = [
    ("fixed prompt", WorkloadSettings()),
    ("synthetic 128 tokens", WorkloadSettings(prompt_tokens=TokenCount(128, 0))),
    ("synthetic 1500:200 tokens", WorkloadSettings(prompt_tokens=TokenCount(1500, 200))),
    ("synthetic 4000 tokens", WorkloadSettings(prompt_tokens=TokenCount(4000, 0))),
    ("dataset sample", WorkloadSettings(dataset="sample")),
]


def per_request_us(workload: WorkloadSettings, requests: int, rounds: int) -> float:
    """Best of ``rounds`` of ``requests`` builds (messages + JSON body), in microseconds."""
    source = prompt_source(workload, "Explain constant pacing.", 64, seed=1)
    fmt = wire_format("openai")
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for index in range(requests):
            messages, max_tokens = source.request(index)
            body = fmt.body(
                model="sim-llm",
                messages=messages,
                max_tokens=max_tokens,
                temperature=0.0,
                stream=True,
            )
            json.dumps(body).encode()
        best = min(best, (time.perf_counter() - start) / requests)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    fixed = None
    print(f"{'prompts':<28}{'us/request':>12}{'vs fixed':>10}{'core at 100 req/s':>20}")
    for name, workload in CASES:
        cost = per_request_us(workload, args.requests, args.rounds)
        fixed = fixed or cost
        share = cost * 100 / 1e6
        print(f"{name:<28}{cost:>12.1f}{cost / fixed:>9.1f}x{share:>19.2%}")


if __name__ == "__main__":
    main()
