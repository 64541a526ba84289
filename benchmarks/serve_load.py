"""Load test of `ragkit serve`: many concurrent streaming clients against one server.

Starts a server on 127.0.0.1 over an index of the bundled corpus (or connects to `--url`), runs a
short unloaded baseline, then `--clients` concurrent clients × `--requests` streamed chat
completions each with httpx. Prints throughput, p50/p95 latency and time to first token (also as
ratios to the unloaded baseline), counts by status with refusals (503) apart, and checks that
every accepted request got a complete answer (text, sources, usage, `[DONE]`).

New requests stop after `--deadline` seconds; those in flight finish, so the run ends by itself.

    python benchmarks/serve_load.py                      # self-hosted, 32 x 4, max_tokens 8
    python benchmarks/serve_load.py --url http://127.0.0.1:8000 --api-key KEY --model naive
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = (
    "Who founded Varrow Point?",
    "When did the Brinewell Desalination Plant open?",
    "How many members does the town council have?",
    "What does the Saltreach Fishermen's Cooperative land?",
)


@dataclass
class Outcome:
    status: int
    latency_s: float
    ttft_s: float | None = None
    complete: bool = False
    problem: str = ""


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def one_request(client: httpx.AsyncClient, args: argparse.Namespace, n: int) -> Outcome:
    body = {
        "model": args.model,
        "messages": [{"role": "user", "content": QUESTIONS[n % len(QUESTIONS)]}],
        "max_tokens": args.max_tokens,
        "stream": True,
    }
    started = time.perf_counter()
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                await response.aread()
                return Outcome(response.status_code, time.perf_counter() - started)
            ttft, text, final, done = None, "", None, False
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    done = True
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    return Outcome(200, time.perf_counter() - started, ttft, False, str(chunk))
                delta = chunk["choices"][0]["delta"]
                if delta.get("content"):
                    ttft = ttft if ttft is not None else time.perf_counter() - started
                    text += delta["content"]
                if chunk["choices"][0].get("finish_reason"):
                    final = chunk
            latency = time.perf_counter() - started
            problems = [
                name
                for name, ok in (
                    ("no text", text.strip()),
                    ("no [DONE]", done),
                    ("no final chunk", final),
                    ("no sources", final and final["choices"][0]["delta"].get("sources")),
                    ("no usage", final and final.get("usage")),
                )
                if not ok
            ]
            return Outcome(200, latency, ttft, not problems, ", ".join(problems))
    except httpx.HTTPError as exc:
        return Outcome(0, time.perf_counter() - started, problem=f"{type(exc).__name__}: {exc}")


async def load(args: argparse.Namespace, url: str) -> tuple[list[Outcome], float, list[Outcome]]:
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    timeout = httpx.Timeout(args.timeout, connect=30)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=timeout
    ) as client:
        await one_request(client, args, 0)  # warm-up: loads models, fills caches
        baseline = [await one_request(client, args, i) for i in range(args.baseline)]
        stop_at = time.perf_counter() + args.deadline
        outcomes: list[Outcome] = []

        async def user(u: int) -> None:
            for r in range(args.requests):
                if time.perf_counter() > stop_at:
                    return
                outcomes.append(await one_request(client, args, u * args.requests + r))

        started = time.perf_counter()
        await asyncio.gather(*(user(u) for u in range(args.clients)))
        return outcomes, time.perf_counter() - started, baseline


def self_hosted(args: argparse.Namespace, stack: ExitStack) -> str:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    from ragkit import build
    from ragkit.serve.app import ServeSettings, create_app
    from ragkit.serve.background import BackgroundServer
    from ragkit.spec import load_spec

    store = args.store
    if store is None:
        store = stack.enter_context(tempfile.TemporaryDirectory(prefix="ragkit-load-"))
    spec = load_spec(args.pipeline).with_store(store, args.collection)
    if args.store is None:
        build.ingestor(spec).ingest(
            [str(REPO / "ragkit" / "eval" / "bundled" / "corpus")], progress=False
        )
    rag = build.pipeline(spec)
    args.model = rag.pipeline_name
    settings = ServeSettings(api_key=args.api_key, max_queue=args.max_queue)
    server = stack.enter_context(BackgroundServer(create_app([rag], settings)))
    return server.url


def report(outcomes: list[Outcome], seconds: float, baseline: list[Outcome]) -> bool:
    statuses = Counter(o.status for o in outcomes)
    accepted = [o for o in outcomes if o.status == 200]
    complete = [o for o in accepted if o.complete]
    lat = [o.latency_s for o in complete]
    ttft = [o.ttft_s for o in complete if o.ttft_s is not None]
    base_lat = statistics.median(o.latency_s for o in baseline) if baseline else float("nan")
    base_ttft = statistics.median(o.ttft_s or 0.0 for o in baseline) if baseline else float("nan")
    print(
        f"unloaded baseline ({len(baseline)} sequential): latency {base_lat:.2f}s, "
        f"TTFT {base_ttft:.2f}s"
    )
    print(
        f"load: {len(outcomes)} requests in {seconds:.1f}s = {len(outcomes) / seconds:.2f} req/s; "
        f"{len(complete)} answered = {len(complete) / seconds:.3f} answers/s"
    )
    print("status counts: " + ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items())))
    print(f"refused as busy (503): {statuses.get(503, 0)}")
    if lat:
        print(
            f"latency p50 {percentile(lat, 0.5):.2f}s ({percentile(lat, 0.5) / base_lat:.1f}x "
            f"baseline), p95 {percentile(lat, 0.95):.2f}s "
            f"({percentile(lat, 0.95) / base_lat:.1f}x)"
        )
    if ttft:
        print(
            f"TTFT p50 {percentile(ttft, 0.5):.2f}s ({percentile(ttft, 0.5) / base_ttft:.1f}x "
            f"baseline), p95 {percentile(ttft, 0.95):.2f}s"
        )
    incomplete = [o for o in accepted if not o.complete]
    failed = [o for o in outcomes if o.status not in (200, 503)]
    for o in incomplete[:5] + failed[:5]:
        print(f"  problem: status {o.status}: {o.problem}")
    ok = not incomplete and not failed and all(o.complete for o in baseline)
    print(f"every accepted request got a complete answer: {'yes' if not incomplete else 'NO'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an already running server; default: start one here")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--model", default="naive", help="pipeline name on --url")
    parser.add_argument("--pipeline", default="naive", help="pipeline to host when self-hosting")
    parser.add_argument("--store", default=None, help="index to serve (default: bundled corpus)")
    parser.add_argument("--collection", default=None)
    parser.add_argument("--max-queue", type=int, default=8)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=4, help="requests per client")
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--baseline", type=int, default=2, help="sequential unloaded requests")
    parser.add_argument("--deadline", type=float, default=300.0, help="no new requests after")
    parser.add_argument("--timeout", type=float, default=600.0, help="per request, seconds")
    args = parser.parse_args(argv)
    for name in ("clients", "requests", "max_tokens"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0")
    with ExitStack() as stack:
        url = args.url or self_hosted(args, stack)
        print(
            f"server {url}, model {args.model}: {args.clients} clients x {args.requests} "
            f"requests, max_tokens {args.max_tokens}"
        )
        outcomes, seconds, baseline = asyncio.run(load(args, url))
        return 0 if report(outcomes, seconds, baseline) else 1


if __name__ == "__main__":
    sys.exit(main())
