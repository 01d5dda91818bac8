"""User-facing error types: the CLI prints their one-line message and exits 2 (no traceback).

Kept in a module with no heavy imports so the CLI can catch them without loading torch.
"""


class UserError(ValueError):
    """Bad input a user can fix; the message says what, where (file, field, line) and what to do."""


class ConfigError(UserError):
    """Bad manifest or override."""


class CorpusError(UserError):
    """A corpus folder that cannot be read or written as asked."""


class InputError(UserError):
    """A benchmark input file (metadata, detections, images, predictions) that breaks its format."""


class ModelLoadError(UserError):
    """A name or path that does not hold a loadable model; the message is one line naming it."""


class ServerError(UserError):
    """An OpenAI-compatible server (a captioner's or judge's endpoint) that answered none of a batch's requests."""
