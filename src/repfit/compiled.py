"""The booster's trees compiled to machine code (lleaves, via LLVM), for batch scoring; LightGBM's own ``predict``
when they cannot be compiled here.

Both give the booster's raw score (log-odds before its start and calibration) of each row of a float64 matrix whose
columns are the model's features; the compiled trees agree with ``Booster.predict(raw_score=True)`` to ~1e-15 (they
sum the same tree outputs in another order). Compiling takes seconds (7-10 s for 100-200 trees), so the object code
is cached on disk, keyed by the model text, the host CPU and the compiler's versions; a cached model loads in 0.01 s.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the CLI reads ENGINES for its help text: no LightGBM import for that
    import lightgbm as lgb

COMPILE_MIN_PAIRS = 2_000_000  # "auto" compiles (when not cached) from this many pairs: compiling takes ~1 s for
# 100 trees x 15 leaves and 7-10 s for 200 x 31, and saves ~3 us a pair (Booster.predict ~0.25M rows/s vs
# compiled ~1.5M rows/s on 2 threads); small runs (tests, the demo) never wait for a compiler
ENGINES = ("auto", "compiled", "lightgbm")


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "repfit" / "compiled"


@dataclass
class BoosterTrees:
    """LightGBM's own ``Booster.predict`` (the reference, and the fallback)."""

    booster: lgb.Booster
    num_iteration: int
    n_jobs: int
    note: str = ""
    name: str = "lightgbm"

    def raw(self, X: np.ndarray) -> np.ndarray:
        return self.booster.predict(X, num_iteration=self.num_iteration, raw_score=True, num_threads=self.n_jobs)


@dataclass
class CompiledTrees:
    """The same trees compiled by lleaves; ``raw`` is ``Booster.predict(raw_score=True)`` to ~1e-15."""

    model: object  # lleaves.Model
    n_jobs: int
    cache: Path
    note: str = ""
    name: str = "compiled"

    def raw(self, X: np.ndarray) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.model.num_feature():
            raise ValueError(f"expected a matrix of {self.model.num_feature()} feature columns, got shape {X.shape}")
        entry = getattr(self.model, "_c_entry_func", None)
        if self.n_jobs <= 1 or entry is None or len(X) < 2048:
            return self.model.predict(X, n_jobs=max(1, self.n_jobs) if len(X) >= 2048 else 1)
        # lleaves' own predict starts a thread pool per call (~2 ms each, 10% of scoring at 32k rows a call): keep
        # one pool and call its compiled entry point (which releases the GIL) on row ranges directly
        from lleaves.data_processing import ndarray_to_ptr

        out = np.empty(len(X))
        px, po = ndarray_to_ptr(X, use_fp64=True), ndarray_to_ptr(out, use_fp64=True)
        step = -(-len(X) // self.n_jobs)
        pool = self._pool()
        list(pool.map(lambda i: entry(px, po, i, min(i + step, len(X))), range(0, len(X), step)))
        return out

    def _pool(self):
        if getattr(self, "_executor", None) is None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(max_workers=self.n_jobs, thread_name_prefix="repfit-trees")
        return self._executor


def model_text(booster: lgb.Booster, num_iteration: int) -> str:
    return booster.model_to_string(num_iteration=num_iteration)


def cache_key(text: str) -> str:
    """What the object code depends on: the trees, the host CPU, and the lleaves / llvmlite versions."""
    import lleaves  # noqa: F401 - its version is part of the key
    import llvmlite.binding as llvm
    from importlib.metadata import version

    llvm.initialize_native_target()
    try:
        features = llvm.get_host_cpu_features().flatten()
    except RuntimeError:
        features = ""
    h = hashlib.sha256()
    for part in (text, llvm.get_host_cpu_name(), features, version("lleaves"), version("llvmlite")):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def compile_trees(booster: lgb.Booster, num_iteration: int, n_jobs: int, cache_dir: Path | None = None,
                  compile_new: bool = True) -> CompiledTrees | None:
    """The booster's first ``num_iteration`` trees compiled (or loaded from ``cache_dir``); None when the cache lacks
    them and ``compile_new`` is false. Raises whatever lleaves / LLVM raise (``trees_for`` turns it into a note)."""
    cache_dir = Path(cache_dir or default_cache_dir())
    if not compile_new and not (cache_dir.is_dir() and any(cache_dir.glob("*.o"))):
        return None  # nothing cached at all: spare a small run the compiler's import (~0.2 s)
    import lleaves

    text = model_text(booster, num_iteration)
    cache = cache_dir / f"{cache_key(text)}.o"
    if not cache.is_file() and not compile_new:
        return None
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        src = Path(tmp) / "model.txt"
        src.write_text(text)
        model = lleaves.Model(model_file=str(src))
        if cache.is_file():
            model.compile(cache=str(cache), raw_score=True)
        else:  # lleaves writes its cache file in place: compile into a temporary name, then rename (atomic)
            part = Path(tmp) / "trees.o"
            model.compile(cache=str(part), raw_score=True)
            os.replace(part, cache)
    return CompiledTrees(model, n_jobs, cache)


def trees_for(booster: lgb.Booster, num_iteration: int, n_jobs: int, engine: str = "auto", pairs: int = 0,
              cache_dir: Path | None = None) -> BoosterTrees | CompiledTrees:
    """What evaluates the trees: ``engine`` "lightgbm" (``Booster.predict``), "compiled" (lleaves, compiling now if
    not cached) or "auto" (compiled when cached, or when ``pairs`` >= ``COMPILE_MIN_PAIRS``). When compiling fails
    (lleaves or LLVM missing or broken on this machine), LightGBM's predict with a one-line ``note`` saying why."""
    base = BoosterTrees(booster, num_iteration, n_jobs)
    if engine == "lightgbm":
        return base
    try:
        trees = compile_trees(booster, num_iteration, n_jobs, cache_dir,
                              compile_new=engine == "compiled" or pairs >= COMPILE_MIN_PAIRS)
    except Exception as exc:  # noqa: BLE001 - any failure of the optional compiler: score with LightGBM instead
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        base.note = (f"note: trees not compiled ({type(exc).__name__}: {first[:120]}); scoring with LightGBM's "
                     "Booster.predict instead (slower, same P(win))")
        return base
    return trees or base
