"""Running ingestion and evaluation on a Ray cluster with the same results as the local engine.

Nothing here is imported by `import ragkit`; Ray loads only when `--engine ray` is asked for.
"""
