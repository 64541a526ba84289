"""Pass-through throughput of `ragkit serve` in front of a batching model server.

Starts llama.cpp's `llama-server` (built by scripts/build_llama_server.sh) with the packaged GGUF
model and `--parallel` slots, indexes the bundled corpus, and runs the same load three ways:

- direct: the model server itself, sent the exact prompts the pipeline builds (retrieved
  passages included), streamed;
- ragkit: `ragkit serve` (a real process) over a pipeline whose generator is that server;
- baseline (with `--baseline-tree`): `ragkit serve` from another source tree, same spec.

Every distinct prompt is sent once before the timed runs, so all runs meet the model server's
prompt cache in the same state and measure what the server in front adds.

Each is `--clients` concurrent clients x `--requests` streamed requests. Printed per run:
completed requests/s, p50/p95 latency, errors (anything but a complete answer), and ratios of
ragkit's requests/s to the direct run's in the same process.

On a CPU-only machine the model server and the server in front share the cores, so whatever
ragkit computes per request (query embedding, retrieval) is taken from the engine's decode and
shows up as pass-through loss, which a GPU engine would not see. `--engine-cpus` (default: the
last core) pins the model server to its own cores and everything else (this script, its
clients, `ragkit serve`) to the rest, so every run gives the engine the same compute.
`--engine-cpus none` shares all cores.

    python benchmarks/serve_load.py [--clients 32] [--requests 4] [--baseline-tree DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "evals" / "bundled"
# Short passages and instructions keep prompts small: the run measures the server's overhead
# on a shared CPU, not the model's prefill speed.
SPEC = """\
name: passthrough
chunker: {{chunk_tokens: 48, overlap_tokens: 8}}
retriever: {{kind: dense, top_k: 1}}
prompt: {{system: "Answer from the passage in a few words."}}
generator:
  {{kind: openai, base_url: "{url}", model: packaged, max_new_tokens: {tokens}, timeout_s: 900}}
"""


@dataclass
class Run:
    name: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    busy_slots: list[int] = field(default_factory=list)

    def occupancy(self) -> float:
        """Mean number of the model server's slots decoding while the run was timed."""
        return sum(self.busy_slots) / len(self.busy_slots) if self.busy_slots else 0.0

    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, process: subprocess.Popen, what: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not become healthy within {timeout_s} s")
        time.sleep(0.5)


@contextlib.contextmanager
def started(
    command: list[str], url: str, what: str, log: Path, env=None, cwd: str | None = None
) -> Iterator[str]:
    # `python -m` puts the working folder first on sys.path: a tree's server must start in it.
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    try:
        wait_healthy(url, process, what)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def llama_server_binary() -> Path:
    configured = os.environ.get("RAGKIT_LLAMA_SERVER")
    builds = sorted(Path(sys.prefix).glob("llama-server/*/llama-server"), key=os.path.getmtime)
    path = Path(configured) if configured else (builds[-1] if builds else Path("llama-server"))
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run scripts/build_llama_server.sh {sys.prefix}")
    return path


async def one(client: httpx.AsyncClient, path: str, body: dict, run: Run, sources: bool) -> None:
    began = time.perf_counter()
    try:
        async with client.stream("POST", path, json=body) as response:
            if response.status_code != 200:
                await response.aread()
                run.errors.append(f"HTTP {response.status_code}")
                return
            text, done, final = "", False, None
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    done = True
                    break
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    run.errors.append(str(chunk["error"].get("code")))
                    return
                choices = chunk.get("choices") or [{}]
                text += (choices[0].get("delta") or {}).get("content") or ""
                final = chunk
        complete = done and text.strip()
        if sources:
            complete = complete and final and final["choices"][0]["delta"].get("sources")
        if not complete:
            run.errors.append("incomplete answer")
            return
        run.latencies.append(time.perf_counter() - began)
    except httpx.HTTPError as exc:
        run.errors.append(type(exc).__name__)


@contextlib.contextmanager
def sampling_slots(backend: str, run: Run) -> Iterator[None]:
    """Polls the model server's /slots while the block runs: how busy the engine was kept."""
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(timeout=5) as client:
            while not stop.wait(0.25):
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    slots = client.get(backend + "/slots").json()
                    run.busy_slots.append(sum(1 for s in slots if s.get("is_processing")))

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


async def load(url: str, path: str, bodies: list[dict], args, run: Run, sources: bool) -> Run:
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=600) as client:
        await one(client, path, bodies[0], Run("warm-up"), sources)

        async def user(u: int) -> None:
            for r in range(args.requests):
                await one(client, path, bodies[(u * args.requests + r) % len(bodies)], run, sources)

        began = time.perf_counter()
        await asyncio.gather(*(user(u) for u in range(args.clients)))
        run.seconds = time.perf_counter() - began
    return run


async def warm(url: str, bodies: list[dict]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        for body in bodies:
            await one(client, "/v1/chat/completions", body, Run("warm-up"), False)


def serve_command(spec: Path, store: str, port: int, extra: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "ragkit.cli", "serve", "--pipeline", str(spec), "--store", store,
        "--port", str(port), *extra,
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=4, help="requests per client")
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--parallel", type=int, default=8, help="llama-server slots")
    parser.add_argument("--threads", type=int, default=1, help="llama-server threads")
    parser.add_argument("--questions", type=int, default=8, help="distinct questions used")
    parser.add_argument("--baseline-tree", help="another source tree to measure the same way")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of direct + ragkit")
    parser.add_argument(
        "--engine-cpus",
        default="auto",
        help="cores for llama-server alone, e.g. '1' or '2,3' (auto: the last; none: shared)",
    )
    args = parser.parse_args(argv)
    engine_cpus = pin_engine(args.engine_cpus)
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(key, "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    from ragkit import build
    from ragkit.models import packaged_gguf
    from ragkit.spec import load_spec

    questions = [
        json.loads(line)["question"]
        for line in (BUNDLED / "questions.jsonl").read_text().splitlines()
    ][: args.questions]
    work = Path(tempfile.mkdtemp(prefix="ragkit-serve-load-"))
    port = free_port()
    backend = f"http://127.0.0.1:{port}"
    llama = [
        str(llama_server_binary()), "--model", str(packaged_gguf()), "--host", "127.0.0.1",
        "--port", str(port), "--parallel", str(args.parallel),
        "--ctx-size", str(args.parallel * 2048), "--threads", str(args.threads), "--slots",
    ]  # fmt: skip
    if engine_cpus:
        llama = ["taskset", "-c", ",".join(map(str, sorted(engine_cpus))), *llama]
    with started(llama, backend, "llama-server", work / "llama.log"):
        spec_file = work / "passthrough.yaml"
        spec_file.write_text(SPEC.format(url=backend, tokens=args.max_tokens))
        store = str(work / "idx")
        spec = load_spec(spec_file).with_store(store)
        build.ingestor(spec).ingest([str(BUNDLED / "corpus")], progress=False)
        rag = build.pipeline(spec)
        hits = rag.retrieve([rag_query(q) for q in questions])
        direct_bodies = [
            {
                "model": "packaged",
                "messages": rag.prompt_for(rag_query(q), h).messages(),
                "max_tokens": args.max_tokens,
                "temperature": 0.0,
                "stream": True,
            }
            for q, h in zip(questions, hits, strict=True)
        ]
        served_bodies = [
            {
                "model": "passthrough",
                "messages": [{"role": "user", "content": q}],
                "max_tokens": args.max_tokens,
                "stream": True,
            }
            for q in questions
        ]
        print(
            f"{args.clients} clients x {args.requests} streamed requests, max_tokens "
            f"{args.max_tokens}; llama-server --parallel {args.parallel} --threads {args.threads}"
            f"; engine cores {sorted(engine_cpus) or 'shared'}, the rest "
            f"{sorted(os.sched_getaffinity(0))}; load average {os.getloadavg()[0]:.2f}"
        )
        # Every distinct prompt once, untimed: each run then finds them in the server's prompt
        # cache alike, whatever order the runs come in.
        asyncio.run(warm(backend, direct_bodies))

        def timed(target: str, bodies: list[dict], run: Run, sources: bool) -> None:
            with sampling_slots(backend, run):
                asyncio.run(load(target, "/v1/chat/completions", bodies, args, run, sources))

        pairs: list[tuple[Run, Run]] = []
        baseline: Run | None = None
        with served(spec_file, store, str(REPO), "ragkit serve", work) as url:
            # Direct and through ragkit, alternating which goes first: the engine's speed drifts
            # with its prompt cache and the shared machine, so only same-round pairs compare.
            for round_ in range(args.repeats):
                direct, through = Run(f"direct #{round_ + 1}"), Run(f"ragkit serve #{round_ + 1}")
                arms = [(backend, direct_bodies, direct, False)]
                arms.append((url, served_bodies, through, True))
                for arm in arms[:: 1 if round_ % 2 == 0 else -1]:
                    timed(*arm)
                pairs.append((direct, through))
        if args.baseline_tree:
            with served(spec_file, store, args.baseline_tree, "baseline ragkit serve", work) as url:
                baseline = Run("baseline ragkit serve")
                timed(url, served_bodies, baseline, True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    print(
        f"{'run':<24}{'req/s':>8}{'ratio':>8}{'p50 s':>8}{'p95 s':>8}{'errors':>8}"
        f"{'busy slots':>12}"
    )
    for direct, through in pairs:
        show(direct, direct)
        show(through, direct)
    if baseline is not None:
        show(baseline, pairs[-1][0])
    ratios = sorted(t.rps() / d.rps() for d, t in pairs if d.rps())
    median = ratios[len(ratios) // 2] if ratios else 0.0
    errors = sum(len(t.errors) for _, t in pairs)
    print(f"ragkit serve / direct requests/s per round: {', '.join(f'{r:.2f}' for r in ratios)}")
    print(f"median {median:.2f}; errors through ragkit serve: {errors}")
    return 0 if not errors and median >= 0.9 else 1


def show(run: Run, direct: Run) -> None:
    ratio = run.rps() / direct.rps() if direct.rps() else 0.0
    print(
        f"{run.name:<24}{run.rps():>8.2f}{ratio:>8.2f}{run.pct(0.5):>8.2f}"
        f"{run.pct(0.95):>8.2f}{len(run.errors):>8}{run.occupancy():>12.2f}"
    )
    if run.errors:
        kinds = sorted(set(run.errors))
        print(f"  errors: {', '.join(f'{k} x{run.errors.count(k)}' for k in kinds)}")


@contextlib.contextmanager
def served(spec_file: Path, store: str, tree: str, name: str, work: Path) -> Iterator[str]:
    """`ragkit serve` of the source `tree` as a process, default limits; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": tree}
    command = serve_command(spec_file, store, port, [])
    log = work / f"{name.replace(' ', '-')}.log"
    with started(command, url, name, log, env, cwd=tree):
        yield url


def pin_engine(choice: str) -> set[int]:
    """The cores reserved for the model server; this process (and so every server it starts
    afterwards) keeps the others. An empty set: nothing pinned."""
    cores = sorted(os.sched_getaffinity(0))
    if choice == "none" or len(cores) < 2:
        return set()
    engine = {cores[-1]} if choice == "auto" else {int(c) for c in choice.split(",")}
    rest = set(cores) - engine
    if not engine <= set(cores) or not rest:
        raise SystemExit(f"--engine-cpus {choice}: pick some but not all of the cores {cores}")
    os.sched_setaffinity(0, rest)
    return engine


def rag_query(question: str):
    from ragkit.types import Query

    return Query(question)


if __name__ == "__main__":
    sys.exit(main())
