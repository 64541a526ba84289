"""The contract every generator keeps: what `invoke` answers is what `stream` yields joined,
stop strings cut the answer, usage is counted, `batch` answers each prompt as `invoke` would,
`ainvoke` agrees with `invoke`, and a caller that gives up stops the generation where the
backend supports it."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, ClassVar, Literal

import pytest

from ragkit.generation.cancel import cancellable
from ragkit.types import Answer, AnswerChunk


class GeneratorContract:
    """Subclass in a test module and provide a `generator` fixture returning the generator,
    greedy (temperature 0), so that the same prompt gives the same text every time.

    `cancellation` says what a generation started with its caller's cancel event already set
    does (see `ragkit.generation.cancel`): `raises` (`cancelled_error`), `truncates` (its
    stream ends early with what it has), or None when the backend does not watch the event.
    """

    prompt: ClassVar[str] = "Describe a river in two sentences."
    batch_prompts: ClassVar[tuple[str, ...]] = (
        "Name a colour of the sky.",
        "Describe a river in two sentences.",
    )
    max_new_tokens: ClassVar[int] = 12
    cancellation: ClassVar[Literal["raises", "truncates"] | None] = None
    cancelled_error: ClassVar[type[BaseException]] = Exception

    @pytest.fixture
    def generator(self) -> Any:
        raise NotImplementedError("provide a `generator` fixture building the component")

    def _invoke(self, generator: Any, prompt: str, **kwargs: Any) -> Answer:
        answer = generator.invoke(prompt, **{"max_new_tokens": self.max_new_tokens, **kwargs})
        assert isinstance(answer, Answer), f"invoke returned {type(answer).__name__}"
        return answer

    def test_invoke_text_is_the_streamed_text_joined(self, generator: Any) -> None:
        chunks = list(generator.stream(self.prompt, max_new_tokens=self.max_new_tokens))
        assert chunks and all(isinstance(c, AnswerChunk) for c in chunks)
        final = chunks[-1].answer
        assert final is not None, "a stream ends with a chunk carrying the finished Answer"
        assert all(c.answer is None for c in chunks[:-1])
        assert "".join(c.text for c in chunks).strip() == final.text
        assert final.text == self._invoke(generator, self.prompt).text

    def test_stop_strings_cut_the_answer(self, generator: Any) -> None:
        full = self._invoke(generator, self.prompt).text
        words = full.split()
        if len(words) < 3:
            pytest.skip(f"the answer has too few words to cut: {full!r}")
        stop = " " + words[2]
        cut = self._invoke(generator, self.prompt, stop=[stop]).text
        assert stop not in cut
        assert cut == full[: full.index(stop)].strip()
        streamed = generator.stream(self.prompt, max_new_tokens=self.max_new_tokens, stop=[stop])
        assert "".join(c.text for c in streamed).strip() == cut

    def test_usage_is_counted(self, generator: Any) -> None:
        usage = self._invoke(generator, self.prompt).usage
        assert usage.prompt_tokens > 0
        assert 0 < usage.completion_tokens <= self.max_new_tokens
        assert 0 <= usage.cached_prompt_tokens <= usage.prompt_tokens
        assert 0 <= usage.time_to_first_token_s <= usage.total_time_s
        short = self._invoke(generator, self.prompt, max_new_tokens=2).usage
        assert 0 < short.completion_tokens <= 2

    def test_batch_answers_each_prompt_as_invoke_does(self, generator: Any) -> None:
        prompts = list(self.batch_prompts)
        answers = generator.batch(prompts, max_new_tokens=self.max_new_tokens)
        assert [a.text for a in answers] == [self._invoke(generator, p).text for p in prompts]
        assert generator.batch([]) == []

    def test_ainvoke_agrees_with_invoke(self, generator: Any) -> None:
        async def run() -> tuple[Answer, list[AnswerChunk]]:
            answer = await generator.ainvoke(self.prompt, max_new_tokens=self.max_new_tokens)
            chunks = [
                c async for c in generator.astream(self.prompt, max_new_tokens=self.max_new_tokens)
            ]
            return answer, chunks

        answer, chunks = asyncio.run(run())
        assert answer.text == self._invoke(generator, self.prompt).text
        assert chunks[-1].answer is not None and chunks[-1].answer.text == answer.text

    def test_a_cancelled_caller_stops_the_generation(self, generator: Any) -> None:
        if self.cancellation is None:
            pytest.skip("this generator does not watch its caller's cancel event")
        full = self._invoke(generator, self.prompt)
        event = threading.Event()
        event.set()  # the caller gave up before the first token
        with cancellable(event):
            if self.cancellation == "raises":
                with pytest.raises(self.cancelled_error):
                    self._invoke(generator, self.prompt)
                return
            # A stream is what a caller can give up on part-way (a server's client leaving).
            chunks = list(generator.stream(self.prompt, max_new_tokens=self.max_new_tokens))
        cut = chunks[-1].answer
        assert cut is not None, "a stopped stream still ends with its Answer"
        assert cut.usage.completion_tokens < full.usage.completion_tokens
        assert full.text.startswith(cut.text)
