"""The offline default generator: the packaged Qwen2.5 0.5B on CPU through transformers.

Every generation on a loaded model goes through that model's scheduler thread, which prefills
each prompt alone and decodes all active prompts together, one forward pass per step, so
concurrent callers and `batch` share the model's weight reads. Prompts are prefilled in fixed
blocks aligned to absolute positions, so a prefix taken from the cache is bit-for-bit what a
fresh prefill computes and greedy output is the same with the cache on or off.
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator

from ragkit.errors import ConfigError, InputError
from ragkit.generation.base import AnswerChunks, GenerationParams, Generator, drain, to_prompt
from ragkit.generation.cancel import current_event
from ragkit.generation.kv_cache import PrefixKVCache
from ragkit.generation.passage_disk import PassageKVDisk
from ragkit.generation.passage_encode import PassageReuse, precompute
from ragkit.generation.passage_plan import PromptPlan, plan_prompt
from ragkit.generation.passage_store import PassageKVStore
from ragkit.generation.ragged import enable_ragged_decode
from ragkit.generation.scheduler import Scheduler, Sequence
from ragkit.models import cache_dir, is_packaged_generator, packaged_gguf
from ragkit.terminal import library_progress_bars
from ragkit.types import Answer, Prompt

DEFAULT_PREFIX_CACHE_BYTES = 512 * 1024 * 1024
DEFAULT_PASSAGE_CACHE_BYTES = 1024 * 1024 * 1024
DEFAULT_PASSAGE_RECOMPUTE_TOKENS = 16
DEFAULT_PASSAGE_RECOMPUTE_SHARE = 0.1
KVReuse = Literal["passages", "prefix", "off"]
DEFAULT_MAX_BATCH_SIZE = 8
# Prompt plus new tokens of all sequences decoding at once: bounds the batch's KV memory.
DEFAULT_MAX_BATCH_TOKENS = 16384
_STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")


@dataclass
class LoadedModel:
    """A tokenizer and model pair, the lock every forward pass on it holds, and its scheduler."""

    tokenizer: Any
    model: Any
    eos_ids: frozenset[int]
    load_time_s: float
    batching: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    _scheduler: Scheduler | None = None
    _scheduler_lock: threading.Lock = field(default_factory=threading.Lock)

    def scheduler(self, max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS) -> Scheduler:
        """The one thread that runs this model, started on first use.

        The token budget is the first caller's; generators sharing weights share one batch.
        """
        with self._scheduler_lock:
            if self._scheduler is None:
                self._scheduler = Scheduler(
                    self, batching=self.batching, max_batch_tokens=max_batch_tokens
                )
            return self._scheduler


_LOADED: dict[tuple[str, str], LoadedModel] = {}
_LOAD_LOCK = threading.Lock()


def load_model(name: str, dtype: str) -> LoadedModel:
    """The process-wide copy of (name, dtype), loaded on first use.

    Generators that differ only in sampling or cache settings share the weights, so a second
    instance costs nothing.
    """
    with _LOAD_LOCK:
        if (name, dtype) not in _LOADED:
            _LOADED[(name, dtype)] = _load(name, dtype)
        return _LOADED[(name, dtype)]


@functools.cache
def resolve_dtype(dtype: str) -> str:
    """`auto` → bfloat16 where the CPU multiplies bf16 natively (AMX, AVX512-BF16), else int8.

    Without those units torch computes bf16 matmuls through conversions, about 2x slower than
    float32 (measured on an AVX2-only CPU); with AMX, bf16 prefill is ~4x faster than float32.
    On AVX2, int8 linear layers prefill and decode about 2x faster than float32 (measured: 169
    vs 80 prompt tokens/s, 12 vs 5.8 decoded), and the packaged weights are 4-bit to begin with,
    so int8 loses little of what they hold. Cached: the CPU does not change, and every
    generation asks.
    """
    if dtype != "auto":
        return dtype
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    if "amx_bf16" in flags or "avx512_bf16" in flags:
        return "bfloat16"
    return "int8" if _int8_kernels() else "float32"


def _int8_kernels() -> bool:
    """Whether torch ships the fbgemm/x86 kernels that dynamic int8 linear layers run on."""
    import torch

    return bool({"x86", "fbgemm"} & set(torch.backends.quantized.supported_engines))


# Linear layers left in float32 under int8: the MLP's down projection reads the SiLU-gated
# activations, whose outliers a per-call 8-bit scale crushes. Quantizing it too made the model
# answer "cannot infer" on 11 of 20 Chinese factoid prompts where float32 did on 2.
FLOAT_LAYERS = ("mlp.down_proj",)


def quantize_int8(model: Any) -> Any:
    """Swap the linear layers (all but `FLOAT_LAYERS`) for torch's dynamic int8 ones, in place.

    Weights become int8 per output channel; activations are quantized per call, so a 64-token
    prefill block is quantized the same way whether it comes from the cache or not, and the
    cache stays exact. torch's own kernels are used because torchao's CPU int8 path, without
    `torch.compile`, prefilled 25x slower here.
    """
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    chosen = {
        name: per_channel_dynamic_qconfig
        for name, module in model.named_modules()
        if type(module) is torch.nn.Linear and not name.endswith(FLOAT_LAYERS)
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notices, once per layer
        return quantize_dynamic(model, chosen, dtype=torch.qint8, inplace=True)


def _load(name: str, dtype: str) -> LoadedModel:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    # The packaged weights are stored once, in bf16; float32 upcasts them exactly on load.
    source = str(converted_folder("bfloat16")) if is_packaged_generator(name) else name
    weights = "float32" if dtype == "int8" else dtype
    try:
        with library_progress_bars():
            tokenizer = AutoTokenizer.from_pretrained(source)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, weights))
    except OSError as exc:
        raise ConfigError(f"generator model {name!r} cannot be loaded: {exc}") from exc
    model.eval()
    if dtype == "int8":
        quantize_int8(model)
    eos = {tokenizer.convert_tokens_to_ids(t) for t in _STOP_TOKENS}
    configured = model.generation_config.eos_token_id
    eos |= set(configured if isinstance(configured, list) else [configured])
    eos |= {tokenizer.eos_token_id}
    eos_ids = frozenset(i for i in eos if isinstance(i, int) and i >= 0)
    batching = enable_ragged_decode(model)
    return LoadedModel(tokenizer, model, eos_ids, time.perf_counter() - started, batching)


def converted_folder(dtype: str) -> Path:
    """The packaged GGUF saved as a Hugging Face folder in `dtype`, converted once, atomically.

    Loading from GGUF dequantises every tensor (~33 s); the saved folder loads in 2-3 s. It is
    written under a temporary name and renamed, so a half-written folder is never used, and a
    file lock makes concurrent processes wait for one conversion instead of each running one.
    """
    gguf = packaged_gguf()
    target = cache_dir() / f"{gguf.stem}-{dtype}"
    if (target / "config.json").exists():
        return target
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "config.json").exists():
            _convert(gguf, dtype, target)
    return target


def _convert(gguf: Path, dtype: str, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide the shared cache from other users
    try:
        with library_progress_bars():
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(
                gguf.parent, gguf_file=gguf.name, dtype=getattr(torch, dtype)
            )
        _drop_gguf_quantizer(model)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():  # a folder without config.json is a leftover: replace it
            shutil.rmtree(target)
        os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _drop_gguf_quantizer(model: Any) -> None:
    """Mark a dequantised GGUF model as plain weights so `save_pretrained` accepts it."""
    packed = [n for n, m in model.named_modules() if "Gguf" in type(m).__name__]
    if packed:
        raise ConfigError(f"GGUF weights stayed packed in {packed[:3]}; cannot save a folder")
    model.hf_quantizer = None
    if hasattr(model, "is_quantized"):
        model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


class LocalGenerator(Generator):
    """Generates on this machine's CPU; loads lazily, once per process, and is thread-safe.

    Prompts given together (`batch`) and requests from concurrent callers decode together, up
    to `max_batch_size` sequences and `max_batch_tokens` prompt-plus-new tokens at once; decode
    reads every weight once per step whatever the batch, so the batch shares that cost. Prefill
    stays one prompt at a time through the prefix cache: on CPU it is compute-bound, so padding
    prompts together saves nothing there, while a shared prefix computed once saves it for
    every prompt after the first.
    """

    model: str = "packaged"
    dtype: Literal["auto", "bfloat16", "float32", "int8"] = "auto"
    # `prefix`: exact reuse of a cached prompt prefix; `passages`: also reuse each passage's KV
    # wherever it lands (approximate, see passage_prefill); `off`: compute every prompt whole.
    kv_reuse: KVReuse = "prefix"
    prefix_cache_bytes: int = Field(default=DEFAULT_PREFIX_CACHE_BYTES, ge=0)
    passage_cache_bytes: int = Field(default=DEFAULT_PASSAGE_CACHE_BYTES, ge=0)
    passage_recompute_tokens: int = Field(default=DEFAULT_PASSAGE_RECOMPUTE_TOKENS, ge=0)
    passage_recompute_share: float = Field(default=DEFAULT_PASSAGE_RECOMPUTE_SHARE, ge=0.0, le=1.0)
    # `in_prompt`: a passage not stored yet is computed exactly in its prompt, then stored;
    # `alone`: computed first on its own, so what is stored is the same whichever prompt did.
    passage_misses: Literal["in_prompt", "alone"] = "in_prompt"
    # A folder `ragkit kv warm` filled: passages missing from memory are read from it.
    passage_cache_dir: str | None = None
    prefill_block_tokens: int = Field(default=64, gt=0)
    max_batch_size: int = Field(default=DEFAULT_MAX_BATCH_SIZE, gt=0)
    max_batch_tokens: int = Field(default=DEFAULT_MAX_BATCH_TOKENS, gt=0)

    _cache: PrefixKVCache | None = PrivateAttr(default=None)
    _passages: PassageKVStore | None = PrivateAttr(default=None)

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("model must name a packaged model, a hub model or a folder")
        return value

    def model_post_init(self, context: Any) -> None:
        if "max_concurrency" not in self.model_fields_set:
            self.max_concurrency = self.max_batch_size
        if self.kv_reuse != "off" and self.prefix_cache_bytes > 0:
            self._cache = PrefixKVCache(self.prefix_cache_bytes, self.prefill_block_tokens)
        if self.kv_reuse == "passages":
            self._passages = PassageKVStore(self.passage_cache_bytes)

    @property
    def prefix_cache(self) -> PrefixKVCache | None:
        return self._cache

    @property
    def passage_store(self) -> PassageKVStore | None:
        """The passage KV store (with `kv_reuse: passages`), else None."""
        return self._passages

    @property
    def resolved_dtype(self) -> str:
        """The dtype `auto` settles on for this CPU (bf16 only where it is fast)."""
        return resolve_dtype(self.dtype)

    def loaded(self) -> LoadedModel:
        """Load the weights now (otherwise the first call does)."""
        return load_model(self.model, self.resolved_dtype)

    def _chat_tokenizer(self) -> Any:
        return self.loaded().tokenizer

    def token_ids(self, prompt: Prompt | str) -> list[int]:
        """The prompt's token ids exactly as generation feeds them to the model."""
        ids, _ = self._tokenize(to_prompt(prompt))
        return ids

    def _tokenize(self, prompt: Prompt) -> tuple[list[int], PromptPlan | None]:
        """Token ids, and where the passages lie in them when they are reused by passage (then
        the ids are the pieces tokenized apart, so a passage has the same ids everywhere)."""
        tokenizer = self.loaded().tokenizer
        rendered = self.render(prompt)
        if self._passages is not None:
            plan = plan_prompt(tokenizer, rendered, prompt)
            if plan is not None:
                return list(plan.ids), plan
        return list(tokenizer(rendered, add_special_tokens=False).input_ids), None

    def _stream_one(self, prompt: Prompt, params: GenerationParams) -> AnswerChunks:
        # Submitted on the first `next`, in the consuming thread, whose cancellation it takes.
        yield from self._submit(*self._checked_ids(prompt, params), params).chunks()

    def _batch(self, prompts: list[Prompt], params: GenerationParams) -> list[Answer]:
        """Submit every prompt before waiting on any, so they decode together."""
        prepared = [self._checked_ids(p, params) for p in prompts]
        seqs = [self._submit(ids, plan, params) for ids, plan in prepared]
        try:
            return [drain(seq.chunks()) for seq in seqs]
        finally:
            for seq in seqs:
                seq.close()

    def _checked_ids(
        self, prompt: Prompt, params: GenerationParams
    ) -> tuple[list[int], PromptPlan | None]:
        ids, plan = self._tokenize(prompt)
        limit = self.loaded().model.config.max_position_embeddings
        if len(ids) + params.max_new_tokens > limit:
            raise InputError(
                f"prompt of {len(ids)} tokens plus max_new_tokens={params.max_new_tokens} "
                f"exceeds the model's context of {limit} tokens"
            )
        return ids, plan

    def _reuse(self) -> PassageReuse | None:
        if self._passages is None:
            return None
        disk = PassageKVDisk(self.passage_cache_dir) if self.passage_cache_dir else None
        return PassageReuse(
            self._passages,
            f"{self.model}|{self.resolved_dtype}",
            self.passage_recompute_tokens,
            disk,
            self.passage_recompute_share,
            self.passage_misses == "in_prompt",
        )

    def precompute_passages(self, prompts: Seq[Prompt]) -> tuple[int, int]:
        """Compute and store every passage of `prompts` now (and write it to
        `passage_cache_dir` when set), so later prompts find them; returns (computed, found
        already). Needs `kv_reuse: passages`."""
        import torch

        reuse = self._reuse()
        if reuse is None:
            raise ConfigError("precomputing passages needs kv_reuse 'passages'")
        computed = present = 0
        for prompt in prompts:
            _, plan = self._tokenize(to_prompt(prompt))
            if plan is None:
                continue
            with torch.inference_mode():
                now, before = precompute(self.loaded(), plan, reuse, self.prefill_block_tokens)
            computed, present = computed + now, present + before
        return computed, present

    def _submit(
        self, ids: list[int], plan: PromptPlan | None, params: GenerationParams
    ) -> Sequence:
        seq = Sequence(
            ids=ids,
            params=params,
            prefix_cache=self._cache,
            block_tokens=self.prefill_block_tokens,
            max_batch_size=self.max_batch_size,
            caller_event=current_event(),
            plan=plan,
            passage_reuse=self._reuse() if plan is not None else None,
        )
        return self.loaded().scheduler(self.max_batch_tokens).submit(seq)
