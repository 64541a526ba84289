"""Continuous batching for the local model: one thread owns it and decodes every active sequence
in one forward pass per step.

Callers submit a `Sequence` and read their own queue; the scheduler prefills newcomers one at a
time (in blocks aligned to absolute positions, through the prefix KV cache, exactly as a lone
generation would) at a step boundary, then runs a decode step for all active sequences. A
sequence leaves when it ends (EOS, stop string, max_new_tokens), when its consumer closes it,
or when its caller's cancellation event is set; cancellation is checked between prefill blocks
and between decode steps. The batch is bounded by a number of sequences and by a token budget
(prompt plus new tokens of everything admitted), so KV memory stays bounded.

The thread is a daemon, so it never keeps a process alive, but it must not be inside a forward
pass when the interpreter exits: CPython ends a daemon thread that wakes up after finalization
with `pthread_exit`, whose forced unwind meets a `noexcept` frame of torch's C++ and aborts the
whole process ("terminate called without an active exception", status 134). So every
scheduler is closed at exit (`atexit`): the step in progress finishes, every sequence still
queued or decoding fails with `GenerationCancelled`, and the thread ends before finalization.
"""

from __future__ import annotations

import atexit
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ragkit.generation.base import GenerationParams, StopScanner, build_usage
from ragkit.generation.kv_cache import PrefixKVCache
from ragkit.generation.passage_encode import PassageReuse
from ragkit.generation.passage_plan import PromptPlan
from ragkit.generation.passage_prefill import prefill_passages
from ragkit.generation.ragged import decode_step
from ragkit.types import Answer, AnswerChunk


class GenerationCancelled(Exception):
    """The caller cancelled the generation (or closed its stream) before it finished."""


END = object()  # the queue's last item after the final AnswerChunk


@dataclass(eq=False)
class Sequence:
    """One request: what to generate, where its chunks go, and its decoding state."""

    ids: list[int]
    params: GenerationParams
    prefix_cache: PrefixKVCache | None
    block_tokens: int
    max_batch_size: int
    caller_event: threading.Event | None = None
    # Set together when the prompt's passages are prefilled from the passage KV store.
    plan: PromptPlan | None = None
    passage_reuse: PassageReuse | None = None
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    closed: threading.Event = field(default_factory=threading.Event)
    # decoding state, touched only by the scheduler thread
    started: float = field(default_factory=time.perf_counter)
    kv: Any = None
    reused: int = 0
    passage_counts: tuple[int, int, int] = (0, 0, 0)  # hits, misses, evictions
    first_token_at: float | None = None
    generated: list[int] = field(default_factory=list)
    text: str = ""
    scanner: StopScanner | None = None
    sampler: Any = None
    next_input: int | None = None

    @property
    def input_token(self) -> int:
        """The token the next decode step feeds, set when the sequence becomes active."""
        assert self.next_input is not None, "an active sequence has a token to feed"
        return self.next_input

    @property
    def reserved_tokens(self) -> int:
        return len(self.ids) + self.params.max_new_tokens

    def cancelled(self) -> bool:
        event = self.caller_event
        return self.closed.is_set() or (event is not None and event.is_set())

    def close(self) -> None:
        """The consumer is gone: the scheduler drops the sequence at its next boundary."""
        self.closed.set()

    def chunks(self) -> Any:
        """The chunks the scheduler produces for this sequence, ending with the Answer."""
        try:
            while (item := self.out.get()) is not END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.close()


# How long the interpreter's exit waits for a scheduler's step in progress (one prefill block
# or one decode step); a generous bound, reached only by a thread that is stuck.
CLOSE_TIMEOUT_S = 60.0


class Scheduler:
    """Owns one loaded model; runs prefills and batched decode steps on its own thread."""

    def __init__(self, loaded: Any, *, batching: bool, max_batch_tokens: int) -> None:
        self.loaded = loaded
        self.batching = batching
        self.max_batch_tokens = max_batch_tokens
        self._waiting: deque[Sequence] = deque()
        self._active: list[Sequence] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="ragkit-decode", daemon=True)
        self._thread.start()
        atexit.register(self.close, CLOSE_TIMEOUT_S)

    def submit(self, seq: Sequence) -> Sequence:
        with self._cond:
            if self._closed:
                seq.out.put(GenerationCancelled("the model has been shut down"))
                return seq
            self._waiting.append(seq)
            self._cond.notify()
        return seq

    def close(self, timeout: float | None = None) -> bool:
        """Stops the thread at its next step boundary (a forward pass running now finishes),
        failing every queued and decoding sequence; True once the thread has ended."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def active(self) -> int:
        """Sequences decoding now (admitted and prefilled)."""
        return len(self._active)

    # -- the scheduler thread ------------------------------------------------------------

    def _run(self) -> None:
        import torch

        try:
            with torch.inference_mode():
                while not self._closed:
                    for seq in self._admit():
                        self._guarded([seq], self._start, seq)
                    self._drop_cancelled()
                    if self._active and not self._closed:
                        self._guarded(list(self._active), self._step)
        finally:
            with self._cond:
                self._closed = True
                ended = [*self._waiting, *self._active]
                self._waiting.clear()
                self._active.clear()
            for seq in ended:
                seq.kv = None
                seq.out.put(GenerationCancelled("the model has been shut down"))

    def _admit(self) -> list[Sequence]:
        """Waiting sequences that fit the batch now, first come first served; blocks when idle."""
        with self._cond:
            while not self._waiting and not self._active and not self._closed:
                self._cond.wait()
            if self._closed:
                return []
            admitted: list[Sequence] = []
            while self._waiting:
                seq = self._waiting[0]
                if seq.cancelled():
                    self._waiting.popleft()
                    seq.out.put(GenerationCancelled("generation cancelled before it started"))
                    continue
                members = self._active + admitted
                if members and not (self.batching and fits(seq, members, self.max_batch_tokens)):
                    break
                admitted.append(self._waiting.popleft())
            return admitted

    def _guarded(self, seqs: list[Sequence], work: Any, *args: Any) -> None:
        """Run `work`; on an error, hand it to the sequences involved and drop them."""
        try:
            work(*args)
        except Exception as exc:  # noqa: BLE001 - the caller gets it, the thread lives on
            for seq in seqs:
                if seq in self._active:
                    self._active.remove(seq)
                seq.out.put(exc)

    def _start(self, seq: Sequence) -> None:
        """Prefill a newcomer and take its first token; it joins the batch unless done."""
        import torch

        seq.scanner = StopScanner(seq.params.stop)
        if seq.params.temperature > 0:
            seq.sampler = torch.Generator().manual_seed(seq.params.seed)
        if seq.plan is not None and seq.passage_reuse is not None:
            done = prefill_passages(
                self.loaded,
                seq.plan,
                seq.passage_reuse,
                seq.prefix_cache,
                seq.block_tokens,
                seq.cancelled,
            )
            logits = None if done is None else done.logits
            if done is not None:
                seq.kv, seq.reused = done.kv, done.reused
                seq.passage_counts = (done.hits, done.misses, done.evictions)
        else:
            logits = self._prefill(seq)
        if logits is None:
            seq.out.put(GenerationCancelled("generation cancelled during prefill"))
            return
        self._active.append(seq)
        self._accept(seq, logits)

    def _prefill(self, seq: Sequence) -> Any:
        """Prefill in aligned blocks through the exact prefix cache; None when cancelled."""
        import torch
        from transformers import DynamicCache

        model = self.loaded.model
        hit = seq.prefix_cache.lookup(seq.ids) if seq.prefix_cache is not None else None
        seq.reused = hit.tokens if hit is not None else 0
        seq.kv = DynamicCache(hit.layers if hit is not None else None, config=model.config)
        logits = None
        block = seq.block_tokens
        for lo in range(seq.reused, len(seq.ids), block):
            if seq.cancelled() or self._closed:
                return None
            chunk = torch.tensor([seq.ids[lo : min(lo + block, len(seq.ids))]])
            with self.loaded.lock:
                out = model(input_ids=chunk, cache=seq.kv, use_cache=True, logits_to_keep=1)
            logits = out.logits[0, -1]
        if seq.prefix_cache is not None:
            seq.prefix_cache.put(seq.ids, [(layer.keys, layer.values) for layer in seq.kv.layers])
        return logits

    def _step(self) -> None:
        import torch

        seqs = list(self._active)
        model = self.loaded.model
        with self.loaded.lock:
            if self.batching:
                logits = decode_step(model, [s.kv for s in seqs], [s.input_token for s in seqs])
            else:  # a model without ragged attention decodes alone, the plain way
                token = torch.tensor([[seqs[0].input_token]])
                logits = model(input_ids=token, cache=seqs[0].kv, use_cache=True).logits[:, -1]
        for seq, row in zip(seqs, logits, strict=True):
            self._accept(seq, row)

    def _drop_cancelled(self) -> None:
        for seq in [s for s in self._active if s.cancelled()]:
            self._active.remove(seq)
            seq.kv = None
            seq.out.put(GenerationCancelled("generation cancelled"))

    def _accept(self, seq: Sequence, logits: Any) -> None:
        """Take the next token from `logits`; emit text; finish the sequence or queue its input."""
        token = next_token(logits, seq.params.temperature, seq.sampler)
        if seq.first_token_at is None:
            seq.first_token_at = time.perf_counter()
        scanner = seq.scanner
        assert scanner is not None
        if token in self.loaded.eos_ids:
            return self._finish(seq)
        seq.generated.append(token)
        decoded = self.loaded.tokenizer.decode(seq.generated, skip_special_tokens=True)
        if not decoded.endswith("\ufffd"):  # wait for the rest of a multi-byte char
            delta = scanner.feed(decoded[len(seq.text) :])
            seq.text = decoded
            if delta:
                seq.out.put(AnswerChunk(delta))
            if scanner.stopped:
                return self._finish(seq)
        if len(seq.generated) >= seq.params.max_new_tokens:
            return self._finish(seq)
        seq.next_input = token

    def _finish(self, seq: Sequence) -> None:
        if seq in self._active:
            self._active.remove(seq)
        seq.kv = None
        scanner = seq.scanner
        assert scanner is not None
        tail = scanner.flush()
        if tail:
            seq.out.put(AnswerChunk(tail))
        usage = build_usage(
            prompt_tokens=len(seq.ids),
            cached_prompt_tokens=seq.reused,
            completion_tokens=len(seq.generated),
            passage_counts=seq.passage_counts,
            started=seq.started,
            first_token_at=seq.first_token_at,
            finished=time.perf_counter(),
        )
        seq.out.put(AnswerChunk("", answer=Answer(text=scanner.text.strip(), usage=usage)))
        seq.out.put(END)


def fits(seq: Sequence, members: list[Sequence], max_batch_tokens: int) -> bool:
    """Whether `seq` may join `members` within the batch size every one of them allows and the
    token budget; a lone sequence always runs, whatever its size."""
    if not members:
        return True
    limit = min(s.max_batch_size for s in [*members, seq])
    tokens = sum(s.reserved_tokens for s in members) + seq.reserved_tokens
    return len(members) < limit and tokens <= max_batch_tokens


def next_token(logits: Any, temperature: float, sampler: Any) -> int:
    import torch

    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return int(torch.multinomial(probs, 1, generator=sampler))
