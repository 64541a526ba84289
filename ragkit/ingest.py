"""Moved to `ragkit.index.ingest` (the run's bookkeeping to `ragkit.index.ledger`); import from
there. This module re-exports their public names so that existing imports keep working."""

from ragkit.index.ingest import Ingestor, IngestProgress
from ragkit.index.ledger import IngestReport, Ledger, Verdict, document_record, write_batch

__all__ = [
    "IngestProgress",
    "IngestReport",
    "Ingestor",
    "Ledger",
    "Verdict",
    "document_record",
    "write_batch",
]
