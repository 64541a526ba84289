"""The kv_append benchmark on vLLM in-process with automatic prefix caching (a CUDA GPU).

Same suites, questions, retrieval, workloads and report as `kv_append.py`; only the engine
differs. The report's "cache hit rate" column is vLLM's own count (sum of
`num_cached_tokens` over sum of prompt tokens) and "calls/s" / "prompt tok/s" its throughput;
`--group` sets how many questions share one `LLM.generate` call per round.

    python benchmarks/vllm_prefix.py [--model Qwen/Qwen2.5-0.5B-Instruct] [--group 24]
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import kv_append  # noqa: E402

DEFAULT_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"


def _model_arg(argv: list[str]) -> tuple[str, list[str]]:
    """Take `--model NAME` out of the arguments; the rest are kv_append's."""
    if "--model" in argv:
        i = argv.index("--model")
        if i + 1 >= len(argv):
            sys.exit("--model needs a model name or folder")
        return argv[i + 1], argv[:i] + argv[i + 2 :]
    return DEFAULT_MODEL, argv


def main() -> None:
    if importlib.util.find_spec("vllm") is None:
        sys.exit(
            "vLLM is not installed, so there is nothing to measure: this benchmark needs "
            "`pip install vllm` and a CUDA GPU. benchmarks/kv_append.py measures the same "
            "workloads on the CPU LocalGenerator."
        )
    model, rest = _model_arg(sys.argv[1:])

    def make_generator(args: Any) -> Any:
        from ragkit.generation.vllm import VLLMGenerator

        return VLLMGenerator(
            model=model, enable_prefix_caching=True, max_new_tokens=args.max_new_tokens
        )

    def reset_cache(generator: Any) -> None:
        generator.reset_prefix_cache()

    kv_append.main(
        rest,
        make_generator,
        reset_cache,
        f"vLLM in-process ({model}, enable_prefix_caching=True)",
        kv_append.RESULTS / "vllm_prefix.md",
    )


if __name__ == "__main__":
    main()
