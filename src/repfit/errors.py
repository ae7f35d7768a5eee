"""One exception hierarchy for the library; only ``repfit.cli`` turns it into a message and exit code."""


class RepfitError(Exception):
    """Base class of every error repfit raises on purpose (bad input, infeasible problem, ...)."""

    exit_code = 2


class SchemaError(RepfitError):
    """An input table breaks the data contract (missing file or column, bad values, unknown ids)."""


class ConfigError(RepfitError):
    """A configuration or mapping file is malformed or names something that does not exist."""


class NotFittedError(RepfitError):
    """A model was used before ``fit`` was called."""


class InfeasibleAssignment(RepfitError):
    """The assignment constraints cannot all hold at once (stated before any solving)."""
