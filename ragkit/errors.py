"""Errors a user can act on: each names the input at fault and the reason."""


class RagkitError(Exception):
    """Base for errors the CLI prints as one line instead of a traceback."""


class InputError(RagkitError):
    """A file or folder that cannot be read as documents."""


class ConfigError(RagkitError):
    """A pipeline spec or option that is invalid; the message names file, key and reason."""


class ModelServerError(RagkitError):
    """A model server that cannot be reached or answered badly."""


class StoreError(RagkitError):
    """A vector store that cannot be opened or written."""
