"""Measuring pipelines: metrics, RAGQuestEval and the ragas bridge (each module imports its own
heavy libraries lazily, so importing this package stays cheap)."""
