"""The `ragkit` command line: parses arguments into typed config at the edge and hands off to the
library; errors print as one line and exit non-zero.

Every command is here, each a thin function over the library, so `ragkit --help` and the
option names can be read in one file; work beyond argument checking lives in the library.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ragkit.errors import RagkitError
from ragkit.process import configure_process

if TYPE_CHECKING:
    from ragkit.distributed.ray_ingest import RayIngestor
    from ragkit.index.ingest import Ingestor

app = typer.Typer(
    name="ragkit",
    help="Build, serve and measure retrieval-augmented generation pipelines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _configure() -> None:
    # Every command runs after this: the process-wide settings go in before any library loads.
    configure_process()


PipelineOpt = Annotated[
    str, typer.Option("--pipeline", "-p", help="Pipeline name in pipelines/ or a YAML file.")
]
StoreOpt = Annotated[
    str | None,
    typer.Option("--store", help="Index folder, or http://host:port of a chroma server."),
]
CollectionOpt = Annotated[str | None, typer.Option("--collection", help="Collection name.")]
EngineOpt = Annotated[
    str, typer.Option("--engine", help="Where the work runs: 'local' or 'ray' (a Ray cluster).")
]
AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="With --engine ray: 'auto', ray://host:10001, or none to start Ray here.",
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers",
        help="With --engine ray: workers, each loading the models once (default: CPUs).",
    ),
]


def _one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Users get the reason, not a traceback; RAGKIT_DEBUG=1 shows the traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (RagkitError, ValueError, OSError) as exc:
            if os.environ.get("RAGKIT_DEBUG"):
                raise
            for line in str(exc).splitlines() or [""]:  # a check may list several problems
                typer.secho(f"error: {line}", err=True, fg=typer.colors.RED)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.secho("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


def _on_ray(engine: str, address: str | None, workers: int | None) -> bool:
    """Whether to run on Ray; Ray-only options without `--engine ray` are a mistake."""
    if engine not in ("local", "ray"):
        raise ValueError(f"--engine must be 'local' or 'ray', got {engine!r}")
    if engine == "local" and (address is not None or workers is not None):
        raise ValueError("--address and --workers need --engine ray")
    if workers is not None and workers <= 0:
        raise ValueError(f"--workers must be > 0, got {workers}")
    return engine == "ray"


def _spec(pipeline: str, store: str | None, collection: str | None, top_k: int | None = None):
    from ragkit.spec import load_spec

    spec = load_spec(pipeline).with_store(store, collection)
    return spec if top_k is None else spec.override(retriever={"top_k": top_k})


@app.command()
@_one_line_errors
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to index.")],
    pipeline: PipelineOpt = "naive",
    store: StoreOpt = None,
    collection: CollectionOpt = None,
    delete: Annotated[
        bool, typer.Option("--delete", help="Remove these documents from the index.")
    ] = False,
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
) -> None:
    """Chunk, embed and index documents; unchanged files are skipped, changed ones replaced."""
    from ragkit import build

    on_ray = _on_ray(engine, address, workers)
    spec = _spec(pipeline, store, collection)
    if on_ray:
        from ragkit.distributed.ray_ingest import RayIngestor, RayIngestReport

        ingestor: Ingestor | RayIngestor = RayIngestor(spec, address=address, workers=workers)
    else:
        ingestor = build.ingestor(spec)
    report = ingestor.ingest([str(p) for p in paths], progress=sys.stderr.isatty(), delete=delete)
    for issue in report.issues:
        typer.secho(f"skipped {issue.path}: {issue.reason}", err=True, fg=typer.colors.YELLOW)
    for note in report.notes:
        typer.secho(f"note: {note.path}: {note.reason}", err=True)
    typer.echo(
        f"{spec.store.location} [{spec.store.collection}]: "
        f"{report.documents_added} added, {report.documents_replaced} replaced, "
        f"{report.documents_unchanged} unchanged, {report.documents_deleted} deleted, "
        f"{report.chunks_added} chunks written in {report.seconds:.1f}s"
        + (
            f" ({report.chunks_reused} already stored by an interrupted run)"
            if report.chunks_reused
            else ""
        )
    )
    # A deletion on ray runs locally and reports no workers.
    if on_ray and isinstance(report, RayIngestReport) and report.workers:
        typer.echo(
            f"ray: {report.workers} workers; start-up {report.startup_seconds:.1f}s "
            f"(connect {report.connect_seconds:.1f}s, workers ready {report.pool_seconds:.1f}s), "
            f"ingest {report.steady_seconds:.1f}s"
        )


@app.command()
@_one_line_errors
def query(
    question: Annotated[str | None, typer.Argument(help="The question.")] = None,
    pipeline: PipelineOpt = "naive",
    store: StoreOpt = None,
    collection: CollectionOpt = None,
    top_k: Annotated[int | None, typer.Option("--top-k", "-k")] = None,
    questions: Annotated[
        Path | None,
        typer.Option("--questions", help="JSONL of {question, answer?} to answer in one batch."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="At most this many from --questions.")
    ] = None,
    stream: Annotated[bool, typer.Option("--stream/--no-stream")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print answers as JSON lines.")] = False,
) -> None:
    """Answer a question (or a file of them) with cited sources and timings."""
    from ragkit import build
    from ragkit.report import print_answer, read_questions
    from ragkit.serve.sources import SourceNames

    if (question is None) == (questions is None):
        raise ValueError("give either a question or --questions FILE")
    spec = _spec(pipeline, store, collection, top_k)
    build.store(spec).require_chunks()  # before any model loads: a missing index fails at once
    rag = build.pipeline(spec)
    shown = SourceNames.for_pipeline(rag).shown
    if question is not None and stream and not as_json and sys.stdout.isatty():
        answer = None
        for piece in rag.stream(question):
            if piece.answer is None:
                typer.echo(piece.text, nl=False)
            else:
                answer = piece.answer
        typer.echo()
        if answer is None:  # the pipeline contract ends every stream with the Answer
            raise RagkitError(f"pipeline {spec.name!r}: the stream ended without an answer")
        print_answer(answer, text_shown=True, shown=shown)
        return
    items: list[dict[str, Any]] = (
        read_questions(questions, limit) if questions is not None else [{"question": question}]
    )
    answers = rag.batch([item["question"] for item in items])
    for item, answer in zip(items, answers, strict=True):
        if as_json:
            from ragkit.report import answer_record

            typer.echo(json.dumps(answer_record(answer, item), ensure_ascii=False))
        else:
            print_answer(answer, reference=item.get("answer"), shown=shown)


kv_app = typer.Typer(
    help="Passage KV of the local generator (for generator.kv_reuse: passages).",
    no_args_is_help=True,
)
app.add_typer(kv_app, name="kv")


@kv_app.command("warm")
@_one_line_errors
def kv_warm(
    pipeline: PipelineOpt = "naive",
    store: StoreOpt = None,
    collection: CollectionOpt = None,
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir", help="Folder for the KV files (default: generator.passage_cache_dir)."
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="At most N chunks.")] = None,
) -> None:
    """Compute the KV of the index's passages ahead of time; a generator with kv_reuse:
    passages and the same passage_cache_dir reads them instead of computing them."""
    from ragkit.generation.passage_warm import warm_passages

    spec = _spec(pipeline, store, collection)
    report = warm_passages(spec, directory, limit, progress=sys.stderr.isatty())
    typer.echo(
        f"{report.directory}: {report.chunks} chunks, {report.computed} passages computed, "
        f"{report.present} already there; {report.files} files, {report.bytes / 2**20:.1f} MiB"
    )


@app.command()
@_one_line_errors
def info(
    pipeline: PipelineOpt = "naive",
    store: StoreOpt = None,
) -> None:
    """Show the index's collections, their sizes and models, and the known pipelines."""
    from ragkit import build
    from ragkit.spec import pipeline_names

    spec = _spec(pipeline, store, None)
    typer.echo(f"store: {spec.store.location}")
    from ragkit.index.store import MODEL_KEY
    from ragkit.languages import describe, read_mix

    for name, count, meta in build.store(spec).collections():
        model = (meta or {}).get(MODEL_KEY, "?")
        languages = describe(read_mix(meta))
        typer.echo(f"  {name}: {count} chunks, embeddings by {model}, languages {languages}")
    typer.echo(f"pipelines: {', '.join(pipeline_names())}")
    g = spec.generator
    typer.echo(
        f"pipeline {spec.name}: embedder {spec.embedder.model} ({spec.embedder.precision}), "
        f"retriever {spec.retriever.kind} top-{spec.retriever.top_k}, "
        f"generator {g.kind} {g.model or 'packaged'}{' at ' + g.base_url if g.base_url else ''}"
    )


@app.command()
@_one_line_errors
def kinds() -> None:
    """List every kind a pipeline YAML may name per section: its keys and what it uses."""
    from ragkit.registry import REGISTRIES

    for section, registry in REGISTRIES.items():
        typer.echo(f"{section}.{registry.key}:")
        for line in registry.describe():
            typer.echo(f"  {line}")
    typer.echo("or a 'module:Class' import path, with its settings under `options`")


@app.command("eval")
@_one_line_errors
def eval_command(
    suite: Annotated[
        str,
        typer.Option(
            "--suite",
            help="'bundled', 'crud-news' or 'crud-rag' (CRUD-RAG data: --data), or a suite.yaml.",
        ),
    ] = "bundled",
    pipelines: Annotated[
        list[str] | None, typer.Option("--pipeline", "-p", help="Repeat to compare pipelines.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="At most N items per task kind.")
    ] = None,
    tasks: Annotated[
        list[str] | None,
        typer.Option("--task", help="Only this task kind (create, read, update, delete); repeat."),
    ] = None,
    judge_url: Annotated[
        str | None,
        typer.Option(
            "--judge-url",
            help="OpenAI-compatible server judging RAGQuestEval and ragas' LLM metrics "
            "(default: the packaged model judges RAGQuestEval).",
        ),
    ] = None,
    judge_model: Annotated[
        str | None,
        typer.Option("--judge-model", help="Model at --judge-url (default: its first)."),
    ] = None,
    judge_cache: Annotated[
        Path,
        typer.Option("--judge-cache", help="SQLite file of judge replies reused across runs."),
    ] = Path(".ragkit") / "judge-cache.sqlite",
    runs: Annotated[Path, typer.Option("--runs", help="Folder for run folders.")] = Path("runs"),
    run_dir: Annotated[Path | None, typer.Option("--run-dir", help="Exact run folder.")] = None,
    store: StoreOpt = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", help="CRUD-RAG data folder (news/ and qa/); default ../shared/data/crud-rag."
        ),
    ] = None,
    articles: Annotated[int, typer.Option("--articles", help="CRUD-RAG articles to index.")] = 3000,
    ragas: Annotated[bool, typer.Option("--ragas/--no-ragas")] = True,
    questeval: Annotated[
        bool,
        typer.Option("--questeval/--no-questeval", help="RAGQuestEval (model calls per item)."),
    ] = True,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 4,
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
) -> None:
    """Run pipelines over a CRUD-style suite; resumable; writes JSONL, summary, report, plots."""
    from ragkit.eval.runner import EvalOptions, evaluate

    runner = None
    if _on_ray(engine, address, workers):
        from functools import partial

        from ragkit.distributed.ray_eval import RayEvalRunner

        runner = partial(RayEvalRunner, address=address, workers=workers)
    result = evaluate(
        suite,
        pipelines or ["naive"],
        limit=limit,
        tasks=tasks,
        runs=runs,
        run_dir=run_dir,
        store_location=store,
        options=EvalOptions(
            batch_size=batch_size,
            use_ragas=ragas,
            judge_url=judge_url,
            judge_model=judge_model,
            judge_cache=judge_cache,
            questeval=questeval,
        ),
        data=data,
        articles=articles,
        progress=sys.stderr.isatty(),
        runner=runner,
    )
    typer.echo(result.report)
    typer.echo(
        f"run folder: {result.run_dir} ({result.computed} items computed, "
        f"{len(result.records) - result.computed} from cache)"
    )


@app.command()
@_one_line_errors
def serve(
    pipelines: Annotated[
        list[str] | None, typer.Option("--pipeline", "-p", help="Repeat to serve several.")
    ] = None,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", envvar="RAGKIT_API_KEY", help="Require this bearer key."),
    ] = None,
    store: StoreOpt = None,
    collection: CollectionOpt = None,
    max_queue: Annotated[int, typer.Option("--max-queue", help="Waiting requests per model.")] = 8,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", help="Upper bound on max_tokens.")
    ] = 1024,
    max_concurrency: Annotated[
        int | None,
        typer.Option(
            "--max-concurrency",
            help="Requests generating at once per model (default: the generator's own).",
        ),
    ] = None,
    max_prompt_tokens: Annotated[
        int,
        typer.Option("--max-prompt-tokens", help="Longest question plus history, in tokens."),
    ] = 4096,
    shutdown_grace: Annotated[
        float,
        typer.Option("--shutdown-grace", help="Seconds running requests get after SIGTERM."),
    ] = 10.0,
) -> None:
    """Serve pipelines as an OpenAI-compatible chat endpoint with a chat page at /."""
    from ragkit.serve.command import serve as run_server

    run_server(
        pipelines or ["naive"],
        host=host,
        port=port,
        api_key=api_key,
        store=store,
        collection=collection,
        max_queue=max_queue,
        max_concurrency=max_concurrency,
        max_tokens=max_tokens,
        max_prompt_tokens=max_prompt_tokens,
        shutdown_grace_s=shutdown_grace,
    )


@app.command()
@_one_line_errors
def tune(
    space: Annotated[Path, typer.Option("--space", help="YAML: spec keys and values to try.")],
    suite: Annotated[
        str, typer.Option("--suite", help="'bundled', 'crud-rag' (needs --data), or a suite.")
    ] = "bundled",
    pipeline: Annotated[
        str | None, typer.Option("--pipeline", "-p", help="Base pipeline (default: naive).")
    ] = None,
    metric: Annotated[str, typer.Option("--metric", help="Score that picks the winner.")] = (
        "recall@5"
    ),
    budget: Annotated[
        int | None, typer.Option("--budget", help="At most N variants, the base included.")
    ] = None,
    yes: Annotated[
        bool,
        typer.Option("--yes", help="Run a space over the default budget of 200 variants whole."),
    ] = False,
    shortlist: Annotated[
        int, typer.Option("--shortlist", help="Best N by retrieval also answered (0: auto).")
    ] = 0,
    holdout: Annotated[float, typer.Option("--holdout", help="Share held back.")] = 0.3,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split and budget.")] = 0,
    compare: Annotated[
        list[str] | None, typer.Option("--compare", help="Named pipelines shown alongside.")
    ] = None,
    runs: Annotated[Path, typer.Option("--runs", help="Folder for run folders.")] = Path("runs"),
    run_dir: Annotated[Path | None, typer.Option("--run-dir", help="Exact run folder.")] = None,
    store: StoreOpt = None,
    data: Annotated[Path | None, typer.Option("--data", help="CRUD-RAG data folder.")] = None,
    articles: Annotated[int, typer.Option("--articles", help="CRUD-RAG articles to index.")] = 3000,
) -> None:
    """Try pipeline settings on a suite; resumable; leaderboard, Pareto plot, winner YAML."""
    from ragkit.tune.run import tune as run_tune
    from ragkit.tune.sweep import TuneOptions

    result = run_tune(
        suite,
        space,
        pipeline=pipeline,
        options=TuneOptions(
            metric=metric,
            holdout=holdout,
            seed=seed,
            budget=budget,
            yes=yes,
            shortlist=shortlist,
        ),
        compare=compare or (),
        runs=runs,
        run_dir=run_dir,
        store_location=store,
        data=data,
        articles=articles,
        progress=sys.stderr.isatty(),
        say=lambda line: typer.echo(line, err=True),
    )
    typer.echo(result.report)
    typer.echo(f"run folder: {result.run_dir}")
    typer.echo(f"winner: {result.winner_path} (ragkit query -p {result.winner_path} ...)")


@app.command()
@_one_line_errors
def synth(
    source: Annotated[
        str, typer.Argument(help="A folder of documents, or an index folder or chroma URL.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the suite.")],
    n: Annotated[int, typer.Option("--n", help="Questions to keep.")] = 100,
    pipeline: PipelineOpt = "naive",
    collection: CollectionOpt = None,
    url: Annotated[
        str | None, typer.Option("--url", help="OpenAI-compatible server writing the questions.")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model name at --url.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the chunk order.")] = 0,
    max_candidates: Annotated[
        int | None, typer.Option("--max-candidates", help="Stop after trying this many.")
    ] = None,
) -> None:
    """Write a question-answer suite from documents; resumable; reports what each check dropped."""
    from ragkit.spec import load_spec
    from ragkit.synth.run import synth as run_synth
    from ragkit.synth.run import with_server

    spec = with_server(load_spec(pipeline), url, model)
    result = run_synth(
        source,
        out,
        spec=spec,
        n=n,
        seed=seed,
        collection=collection,
        max_candidates=max_candidates,
        progress=sys.stderr.isatty(),
    )
    dropped = ", ".join(f"{k} {v}" for k, v in result.dropped.items() if v) or "none"
    typer.echo(
        f"{result.out_dir}: {result.kept} questions kept of {result.candidates} candidates "
        f"({result.generated} written this run); dropped: {dropped}"
    )
    typer.echo(f"evaluate: ragkit eval --suite {result.out_dir}")


if __name__ == "__main__":
    app()
