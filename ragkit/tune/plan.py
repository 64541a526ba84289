"""What a sweep will do, said before it starts: the invalid combinations it skips, how many
variants it runs and the work they need, and the gate that stops a space larger than intended
until the user names a budget or confirms."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ragkit.errors import ConfigError
from ragkit.tune import retrieval
from ragkit.tune.space import Checked, Variant

# Variants a sweep runs without `--budget` or `--yes`: a space larger than this is more often
# a grid that grew by accident than a search anyone meant to wait for.
DEFAULT_BUDGET = 200
SHOWN_INVALID = 20  # invalid combinations listed on the terminal; the run folder has them all
INVALID_FILE = "invalid-combinations.txt"


@dataclass(frozen=True)
class Work:
    """The work a sweep's variants need, counted the way the sweep shares it."""

    variants: int
    embedded_indexes: int  # chunkings whose corpus is embedded into the store
    lexical_indexes: int  # chunkings kept in memory for BM25 only
    searches: int  # one per group of variants that rank alike
    questions: int
    answered: int  # variants whose answers are generated

    def line(self) -> str:
        indexes = self.embedded_indexes + self.lexical_indexes
        answers = (
            f"; answers for the best {self.answered} by retrieval "
            f"({self.answered * self.questions:,} generations)"
            if self.answered
            else "; no answers generated (a retrieval metric ranks)"
        )
        return (
            f"{self.variants:,} variants: {indexes} indexes ({self.embedded_indexes} embedded, "
            f"{self.lexical_indexes} BM25 in memory), {self.searches:,} searches of "
            f"{self.questions} questions ({self.searches * self.questions:,} queries){answers}"
        )


def estimate(variants: Sequence[Variant], questions: int, answered: int) -> Work:
    """Count indexes and searches as `Sweep` groups them: one index per chunking (embedded
    when any variant on it searches vectors), one search per retrieval setting."""
    chunkings: dict[str, bool] = {}
    searches: set[tuple[str, str]] = set()
    for v in variants:
        key = retrieval.chunking_key(v.spec)
        chunkings[key] = chunkings.get(key, False) or retrieval.needs_embeddings(v.spec)
        searches.add((key, retrieval.retrieval_key(v.spec)))
    embedded = sum(chunkings.values())
    return Work(
        variants=len(variants),
        embedded_indexes=embedded,
        lexical_indexes=len(chunkings) - embedded,
        searches=len(searches),
        questions=questions,
        answered=min(answered, len(variants)),
    )


def invalid_lines(checked: Checked) -> list[str]:
    """One line per invalid combination skipped, at most `SHOWN_INVALID`, then a count."""
    path = checked.space.path
    lines = [i.line(path) for i in checked.invalid[:SHOWN_INVALID]]
    hidden = len(checked.invalid) - len(lines)
    if hidden > 0:
        lines.append(f"{path}: ... and {hidden:,} more invalid combinations")
    if checked.invalid:
        lines.append(
            f"{path}: {len(checked.invalid):,} invalid combinations skipped "
            f"(of {checked.space.size:,})"
        )
    return lines


def write_invalid(checked: Checked, folder: Path) -> Path | None:
    """Every invalid combination, one a line, in the run folder; None when there are none."""
    if not checked.invalid:
        return None
    path = folder / INVALID_FILE
    path.write_text(
        "".join(i.line(checked.space.path) + "\n" for i in checked.invalid), encoding="utf-8"
    )
    return path


def gate(checked: Checked, budget: int | None, yes: bool) -> None:
    """Refuse a space over `DEFAULT_BUDGET` variants unless `--budget` or `--yes` says how
    much of it to run."""
    if budget is None and not yes and checked.size > DEFAULT_BUDGET:
        raise ConfigError(
            f"{checked.space.path}: {checked.size:,} variants, over the default budget of "
            f"{DEFAULT_BUDGET}: pass --budget N to run N of them (drawn with --seed), or --yes "
            "to run them all"
        )
