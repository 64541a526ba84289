"""The write side: files to Documents (`loaders`, `decoding`, `html_text`, `sources`), Documents
to chunks (`chunking`, `chunk_stream`), chunks and vectors into chroma (`store`, `manifest`,
`chroma_io`), and the resumable ingestion that drives them (`ingest`, `ledger`)."""
