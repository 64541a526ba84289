"""Local generation backends on a ~1,000-token RAG prompt: load, prefill, decode, TTFT, KV reuse.

Compares the transformers backend (the baseline, prefix cache off, bf16, int8 or float32 as
the CPU suits) with llama-cpp-python on the same packaged GGUF, then the time to first token
of a prompt that extends a cached one, the prefill block size, and batched against sequential
prefill/decode. Figures are printed as
ratios against the baseline measured in the same run.

With `--clients 1,4,8` it measures continuous batching instead: that many threads each stream
their own prompts through one generator at once; aggregate decode tokens/s and p95 time to
first token per client count, as ratios against the first count (one client) of the same run.

    python benchmarks/generators.py [--json out.json] [--tokens 1000] [--decode-tokens 48]
        [--dtype auto|bfloat16|float32|int8] [--other-dtype] [--block-sweep]
    python benchmarks/generators.py --clients 1,4,8 [--requests 2] [--tokens 300]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import statistics
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from ragkit.generation.local import (  # noqa: E402
    LocalGenerator,
    converted_folder,
    load_model,
    resolve_dtype,
)
from ragkit.models import packaged_gguf  # noqa: E402
from ragkit.types import Prompt, Segment  # noqa: E402

SYSTEM = "Answer from the numbered passages only; cite them like [1]. If unsure, say so."
FACTS = [
    "The Kestrel Bridge in Harwick opened in {y} and spans the river Lune with {n} steel arches.",
    "Harwick's council meets in the old corn exchange; it has {n} members since {y}.",
    "In {y} the river rose {n}.2 metres above its usual level and closed the bridge for days.",
    "哈威克镇的图书馆建于{y}年，藏书约{n}万册，每周开放六天，周一闭馆。",
    "The market square hosts {n} stalls every Saturday; the tradition dates from {y}.",
]


def passage(i: int) -> str:
    sentences = [
        FACTS[(i + k) % len(FACTS)].format(y=1900 + 7 * i + k, n=3 + i + k) for k in range(4)
    ]
    return f"[{i + 1}] " + " ".join(sentences) + "\n"


def rag_prompt(n_passages: int) -> Prompt:
    question = "When did the Kestrel Bridge open, and how many arches does it have?"
    segments = tuple(
        Segment(i + 1, f"c{i}", f"d{i}", f"doc{i}.txt", passage(i)) for i in range(n_passages)
    )
    return Prompt(SYSTEM, f"Question: {question}\nPassages:\n", segments, "\nAnswer:", question)


def prompt_with_tokens(gen: LocalGenerator, target: int) -> Prompt:
    n = 1
    while len(gen.token_ids(rag_prompt(n))) < target:
        n += 1
    return rag_prompt(n)


def measure_transformers(prompt: Prompt, decode_tokens: int, dtype: str) -> dict:
    had_folder = (packaged_gguf().parent / f"{packaged_gguf().stem}-bfloat16").exists()
    started = time.perf_counter()
    converted_folder("bfloat16")
    convert_s = time.perf_counter() - started
    loaded = load_model("packaged", dtype)
    gen = LocalGenerator(prefix_cache_bytes=0, dtype=dtype)
    gen.invoke("Warm up.", max_new_tokens=2)
    first = gen.invoke(prompt, max_new_tokens=1).usage
    full = gen.invoke(prompt, max_new_tokens=decode_tokens, stop=[]).usage
    decode_s = full.total_time_s - full.time_to_first_token_s
    return {
        "load_s": round(loaded.load_time_s, 2),
        "conversion_s": None if had_folder else round(convert_s, 1),
        "prompt_tokens": first.prompt_tokens,
        "ttft_s": round(first.time_to_first_token_s, 3),
        "prefill_tok_s": round(first.prompt_tokens / first.time_to_first_token_s, 1),
        "decode_tok_s": round(max(full.completion_tokens - 1, 1) / decode_s, 2),
    }


def measure_llama_cpp(text: str, decode_tokens: int) -> dict | None:
    if importlib.util.find_spec("llama_cpp") is None:
        return None
    from llama_cpp import Llama

    started = time.perf_counter()
    llm = Llama(model_path=str(packaged_gguf()), n_ctx=2048, verbose=False)
    load_s = time.perf_counter() - started
    tokens = len(llm.tokenize(text.encode(), special=True))
    llm.create_completion("Warm up.", max_tokens=2)

    def timed(max_tokens: int) -> tuple[float, float, int]:
        llm.reset()  # no reuse of the previous call's prefix
        t0 = time.perf_counter()
        first = None
        n = 0
        for _ in llm.create_completion(text, max_tokens=max_tokens, temperature=0, stream=True):
            n += 1
            first = first or time.perf_counter()
        return (first or time.perf_counter()) - t0, time.perf_counter() - t0, n

    ttft, _, _ = timed(1)
    ttft2, total, n = timed(decode_tokens)
    return {
        "load_s": round(load_s, 2),
        "prompt_tokens": tokens,
        "ttft_s": round(ttft, 3),
        "prefill_tok_s": round(tokens / ttft, 1),
        "decode_tok_s": round(max(n - 1, 1) / (total - ttft2), 2),
    }


def measure_prefix_cache(short: Prompt, extended: Prompt, dtype: str) -> dict:
    cached = LocalGenerator(max_new_tokens=1, dtype=dtype)
    uncached = LocalGenerator(max_new_tokens=1, prefix_cache_bytes=0, dtype=dtype)
    cached.invoke(short)
    on = cached.invoke(extended).usage
    off = uncached.invoke(extended).usage
    return {
        "prompt_tokens": on.prompt_tokens,
        "cached_prompt_tokens": on.cached_prompt_tokens,
        "ttft_cache_off_s": round(off.time_to_first_token_s, 3),
        "ttft_cache_on_s": round(on.time_to_first_token_s, 3),
        "speedup": round(off.time_to_first_token_s / on.time_to_first_token_s, 2),
    }


def measure_block_sizes(prompt: Prompt, sizes: tuple[int, ...], dtype: str) -> dict:
    out = {}
    for size in sizes:
        gen = LocalGenerator(prefix_cache_bytes=0, prefill_block_tokens=size, dtype=dtype)
        usage = gen.invoke(prompt, max_new_tokens=1).usage
        out[str(size)] = round(usage.prompt_tokens / usage.time_to_first_token_s, 1)
    return out


def measure_batching(gen: LocalGenerator, batch: int = 4, length: int = 256) -> dict:
    """Equal-length prompts (no padding) through one batched forward versus one at a time."""
    import torch
    from transformers import DynamicCache

    model = gen.loaded().model
    ids = torch.randint(1000, 20000, (batch, length), generator=torch.Generator().manual_seed(0))

    def run(rows: torch.Tensor, steps: int) -> tuple[float, float]:
        kv = DynamicCache(config=model.config)
        t0 = time.perf_counter()
        out = model(input_ids=rows, cache=kv, use_cache=True, logits_to_keep=1)
        t1 = time.perf_counter()
        for _ in range(steps):
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            out = model(input_ids=nxt, cache=kv, use_cache=True)
        return t1 - t0, time.perf_counter() - t1

    with torch.inference_mode():
        run(ids[:1, :32], 1)
        seq = [run(ids[i : i + 1], 8) for i in range(batch)]
        together = run(ids, 8)
    seq_prefill, seq_decode = sum(s[0] for s in seq), sum(s[1] for s in seq)
    return {
        "batch": batch,
        "prompt_tokens_each": length,
        "prefill_speedup_batched": round(seq_prefill / together[0], 2),
        "decode_speedup_batched": round(seq_decode / together[1], 2),
    }


def client_prompt(client: int, request: int, tokens: int, gen: LocalGenerator) -> Prompt:
    """A prompt of about `tokens` tokens that no other client or request shares a prefix with."""
    base = prompt_with_tokens(gen, tokens)
    ask = f"Request {client}-{request}: write a detailed account of everything in the passages."
    return dataclasses.replace(base, system=ask, question=ask)


def measure_clients(
    gen: LocalGenerator, clients: int, requests: int, tokens: int, decode_tokens: int
) -> dict:
    """`clients` threads, each streaming `requests` prompts one after another."""
    usages: list = []
    spans: list[tuple[float, float]] = []  # (first token, finish) of each request, absolute
    pieces: list[float] = []  # arrival of every text chunk
    lock = threading.Lock()

    def client(c: int) -> None:
        for r in range(requests):
            prompt = client_prompt(c, r, tokens, gen)
            t0 = time.perf_counter()
            for chunk in gen.stream(prompt, max_new_tokens=decode_tokens, stop=[]):
                if chunk.text:
                    with lock:
                        pieces.append(time.perf_counter())
                if chunk.answer is not None:
                    u = chunk.answer.usage
                    with lock:
                        usages.append(u)
                        spans.append((t0 + u.time_to_first_token_s, t0 + u.total_time_s))

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ttfts = sorted(u.time_to_first_token_s for u in usages)
    # Each request's own decode rate; while requests overlap, their rates add up.
    rates = [
        (u.completion_tokens - 1) / (u.total_time_s - u.time_to_first_token_s)
        for u in usages
        if u.completion_tokens > 1 and u.total_time_s > u.time_to_first_token_s
    ]
    # Decoding once every request is past its prefill: text chunks (about one per token, never
    # more) after the last first token, over the time from then to the last finish.
    opened = max(t for t, _ in spans)
    window = max(f for _, f in spans) - opened
    decoded = sum(1 for t in pieces if t > opened)
    return {
        "clients": clients,
        "window_decode_tok_s": round(decoded / window, 2) if window > 0 else None,
        "requests": len(usages),
        "prompt_tokens_mean": round(statistics.mean(u.prompt_tokens for u in usages)),
        "completion_tokens": sum(u.completion_tokens for u in usages),
        "wall_s": round(wall, 1),
        "aggregate_decode_tok_s": round(statistics.mean(rates) * clients, 2),
        "end_to_end_tok_s": round(sum(u.completion_tokens for u in usages) / wall, 2),
        "ttft_p50_s": round(statistics.median(ttfts), 2),
        "ttft_p95_s": round(ttfts[min(len(ttfts) - 1, round(0.95 * (len(ttfts) - 1)))], 2),
    }


def run_clients(args: argparse.Namespace, dtype: str) -> dict:
    counts = [int(c) for c in args.clients.split(",")]
    gen = LocalGenerator(prefix_cache_bytes=0, dtype=dtype, max_batch_size=max(counts))
    gen.invoke("Warm up.", max_new_tokens=2)
    rows = []
    for n in counts:
        rows.append(measure_clients(gen, n, args.requests, args.tokens, args.decode_tokens))
        report(f"clients={n}", rows[-1])
    base = rows[0]
    print(f"\nratios against {base['clients']} client(s), {dtype}:")
    for row in rows[1:]:
        decode = row["aggregate_decode_tok_s"] / base["aggregate_decode_tok_s"]
        window = (row["window_decode_tok_s"] or 0) / (base["window_decode_tok_s"] or 1)
        e2e = row["end_to_end_tok_s"] / base["end_to_end_tok_s"]
        ttft = row["ttft_p95_s"] / base["ttft_p95_s"]
        print(
            f"  {row['clients']} clients: aggregate decode {decode:.2f}x "
            f"(all decoding at once: {window:.2f}x), "
            f"end-to-end tokens/s {e2e:.2f}x, p95 time to first token {ttft:.2f}x"
        )
    return {"dtype": dtype, "clients": rows}


def report(name: str, figures: dict | None) -> None:
    """Print each section as it finishes, so a slow machine still shows partial results."""
    print(f"{name}: {json.dumps(figures, ensure_ascii=False)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--decode-tokens", type=int, default=48)
    parser.add_argument("--tokens", type=int, default=1000, help="prompt length to aim for")
    parser.add_argument("--dtype", default="auto", choices=("auto", "bfloat16", "float32", "int8"))
    parser.add_argument("--other-dtype", action="store_true", help="also time the other dtype")
    parser.add_argument("--block-sweep", action="store_true", help="prefill speed per block size")
    parser.add_argument("--clients", help="measure concurrent clients instead, e.g. 1,4,8")
    parser.add_argument("--requests", type=int, default=2, help="requests per client")
    args = parser.parse_args()
    dtype = resolve_dtype(args.dtype)
    if args.clients:
        results = run_clients(args, dtype)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as fh:
                json.dump(results, fh, indent=2, ensure_ascii=False)
        return

    base = measure_transformers(Prompt.plain("x"), 2, dtype)  # loads; real figures below
    gen = LocalGenerator(prefix_cache_bytes=0, dtype=dtype)
    prompt = prompt_with_tokens(gen, args.tokens)
    short = rag_prompt(max(1, len(prompt.segments) - 2))
    hf = measure_transformers(prompt, args.decode_tokens, dtype)
    hf.update(load_s=base["load_s"], conversion_s=base["conversion_s"], dtype=dtype)
    results: dict = {"transformers": hf}
    report("transformers", hf)
    if args.other_dtype:
        other = "bfloat16" if dtype == "float32" else "float32"
        results[f"transformers_{other}"] = measure_transformers(prompt, args.decode_tokens, other)
    results["llama_cpp"] = measure_llama_cpp(gen.render(prompt), args.decode_tokens)
    report("llama_cpp", results["llama_cpp"])
    results["prefix_cache"] = measure_prefix_cache(short, prompt, dtype)
    report("prefix_cache", results["prefix_cache"])
    if args.block_sweep:
        sizes = (32, 64, 128, 256, 4096)
        results["prefill_tok_s_by_block"] = measure_block_sizes(prompt, sizes, dtype)
    results["batching"] = measure_batching(gen)

    lc = results["llama_cpp"]
    report("batching", results["batching"])
    print(f"\nratios against transformers {dtype} (higher is better for llama.cpp):")
    if lc:
        for key in ("prefill_tok_s", "decode_tok_s"):
            print(f"  llama.cpp {key}: {lc[key] / hf[key]:.2f}x")
        print(f"  llama.cpp ttft: {hf['ttft_s'] / lc['ttft_s']:.2f}x faster")
    else:
        print("  llama.cpp: not installed (pip install llama-cpp-python)")
    pc = results["prefix_cache"]
    print(f"  prefix cache ttft on an extended prompt: {pc['speedup']:.2f}x faster")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2, ensure_ascii=False)


if __name__ == "__main__":
    main()
