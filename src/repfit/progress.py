"""One progress protocol for long jobs: named stages, and bars for counted work.

The library reports through a ``Progress`` it is given (default: ``NO_PROGRESS``, silent); the CLI passes one
that prints stages to stderr and draws tqdm bars. A bar is a context manager::

    with progress.bar(total_pairs, unit="pair", desc="scoring") as bar:
        for block in blocks:
            bar.update(len(block))
"""

from __future__ import annotations

from typing import Protocol


class Bar(Protocol):
    def update(self, n: int = 1) -> None: ...

    def __enter__(self) -> Bar: ...

    def __exit__(self, *exc) -> None: ...


class Progress(Protocol):
    def stage(self, name: str) -> None:
        """A named step of a job begins (e.g. "features", "lightgbm")."""

    def bar(self, total: int, *, unit: str = "pair", desc: str = "scoring") -> Bar:
        """A bar for ``total`` units of counted work."""


class _NullBar:
    def update(self, n: int = 1) -> None:
        pass

    def __enter__(self) -> _NullBar:
        return self

    def __exit__(self, *exc) -> None:
        pass


class NullProgress:
    """Reports nothing."""

    def stage(self, name: str) -> None:
        pass

    def bar(self, total: int, *, unit: str = "pair", desc: str = "scoring") -> Bar:
        return _NullBar()


NO_PROGRESS: Progress = NullProgress()
NO_BAR: Bar = _NullBar()
