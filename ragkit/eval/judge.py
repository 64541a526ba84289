"""The model that writes and answers RAGQuestEval's questions: the packaged local model or any
OpenAI-compatible server, behind an on-disk cache so a rerun asks it nothing twice.

Scores are only as good as the judge (CRUD-RAG used GPT-3.5 for this), so the judge's name
goes into every QuestEval record and the report. Repeated failures stop further calls: a
server that is down costs one round of retries, not one per item.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ragkit.errors import ModelServerError
from ragkit.models import GGUF_FILE_NAME
from ragkit.types import Prompt

DEFAULT_CACHE = Path(".ragkit") / "judge-cache.sqlite"
MAX_FAILURES = 3  # failed calls in a row before the judge is given up on for the run
QUESTION_TOKENS = 256
ANSWER_KWARGS: Mapping[str, Any] = {"max_new_tokens": 32, "stop": ["\n"]}


class JudgeUnavailable(ModelServerError):
    """The judge failed `MAX_FAILURES` times in a row; later items are not sent to it."""


class JudgeCache:
    """Judge replies by a hash of (judge, prompt, settings), in one SQLite file shared by runs."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, text TEXT)")
        self._db.commit()

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT text FROM replies WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, text: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO replies VALUES (?, ?)", (key, text))
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0])


class Judge:
    """A generator with a name and a cache: `invoke`/`batch` take Prompts and return strings,
    the shape `RAGQuestEval` expects. Only prompts not in the cache reach the generator."""

    def __init__(
        self,
        generator: Any,
        name: str,
        cache: JudgeCache | None = None,
        *,
        writes_questions: bool = True,
    ) -> None:
        self.generator = generator
        self._name = name
        self.cache = cache
        # A judge too small to write questions (the packaged model) only answers cloze ones.
        self.writes_questions = writes_questions
        self.calls = 0  # prompts sent to the generator (cache misses)
        self.failures = 0
        self.last_error = ""
        self._resolved = not hasattr(generator, "resolved_model")

    @property
    def name(self) -> str:
        """The judge as the report names it; a server's first model is asked for until known."""
        resolve = getattr(self.generator, "resolved_model", None)
        if not self._resolved and resolve is not None and self.failures < MAX_FAILURES:
            try:
                self._name = f"{resolve()} at {self.generator.base_url}"
                self._resolved = True
            except Exception as exc:  # an unreachable server still has a name to report
                self.failures += 1
                self.last_error = one_line(exc)
        return self._name

    def _key(self, name: str, prompt: Prompt, kwargs: Mapping[str, Any]) -> str:
        blob = json.dumps([name, asdict(prompt), dict(kwargs)], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def invoke(self, prompt: Prompt, **kwargs: Any) -> str:
        return self.batch([prompt], **kwargs)[0]

    def batch(self, prompts: Sequence[Prompt], **kwargs: Any) -> list[str]:
        name = self.name
        if self.failures >= MAX_FAILURES:
            raise JudgeUnavailable(
                f"judge {name} failed {self.failures} times in a row, not asked again "
                f"(last: {self.last_error})"
            )
        keys = [self._key(name, p, kwargs) for p in prompts]
        found = [self.cache.get(k) if self.cache is not None else None for k in keys]
        missing = [i for i, text in enumerate(found) if text is None]
        if missing:
            try:
                outputs = self.generator.batch([prompts[i] for i in missing], **kwargs)
                texts = [_text_of(o) for o in outputs]
            except Exception as exc:
                self.failures += 1
                self.last_error = one_line(exc)
                raise
            self.failures = 0
            self.calls += len(missing)
            for i, text in zip(missing, texts, strict=True):
                found[i] = text
                if self.cache is not None:
                    self.cache.put(keys[i], text)
        return [text or "" for text in found]


def _text_of(output: Any) -> str:
    if isinstance(output, str):
        return output
    text = getattr(output, "text", None)
    if not isinstance(text, str):
        raise ModelServerError(f"judge returned {type(output).__name__}, not text")
    return text


def one_line(exc: BaseException) -> str:
    """An exception as a short line for a report note."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


def make_judge(
    url: str | None = None,
    model: str | None = None,
    *,
    cache_path: Path | None = DEFAULT_CACHE,
    timeout_s: float = 120.0,
) -> Judge:
    """The packaged local model, or the OpenAI-compatible server at `url` (its first served
    model unless `model` names one); greedy decoding either way, so cached replies are the
    ones a fresh call would give."""
    cache = JudgeCache(cache_path) if cache_path is not None else None
    if url is None:
        if model is not None:
            raise ValueError("--judge-model needs --judge-url (the packaged judge has one model)")
        from ragkit.generation.local import LocalGenerator

        local = LocalGenerator(max_new_tokens=QUESTION_TOKENS, temperature=0.0)
        return Judge(local, f"packaged {GGUF_FILE_NAME} (local)", cache, writes_questions=False)
    from ragkit.generation.openai_compat import OpenAICompatibleGenerator

    generator = OpenAICompatibleGenerator(
        base_url=url,
        model=model,
        max_new_tokens=QUESTION_TOKENS,
        temperature=0.0,
        timeout_s=timeout_s,
        max_retries=1,
    )
    return Judge(generator, f"{model or 'first served model'} at {generator.base_url}", cache)
