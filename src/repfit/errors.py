"""One exception hierarchy for the library; only ``repfit.cli`` turns it into a message and exit code.

Library messages speak of settings by their library names (``require_match``), never of command-line
flags: an error about one setting says which in ``option``, and the CLI prefixes its flag (``--require-match``).
"""


class RepfitError(Exception):
    """Base class of every error repfit raises on purpose (bad input, infeasible problem, ...).

    Parameters
    ----------
    message : the whole message: what, what was expected, what arrived, and the fix.
    option : the library name of the setting the error is about (e.g. ``"max_moves"``), or None.
    """

    exit_code = 2

    def __init__(self, message: str, *, option: str | None = None):
        super().__init__(message)
        self.option = option


class SchemaError(RepfitError):
    """An input table breaks the data contract (missing file or column, bad values, unknown ids)."""


class ConfigError(RepfitError):
    """A configuration or mapping file is malformed or names something that does not exist."""


class NotFittedError(RepfitError):
    """A model was used before ``fit`` was called."""


class InfeasibleAssignment(RepfitError):
    """The assignment constraints cannot all hold at once (stated before any solving)."""


class BundleError(RepfitError):
    """A file or artifact is not a model bundle this repfit can read (another format version, not a bundle)."""


class SolverError(RepfitError):
    """A solver was asked for something it does not model (e.g. tier balance in ``hungarian``)."""
