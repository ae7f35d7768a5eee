"""repfit: recommend which sales rep should own which account."""

__version__ = "0.1.0"
