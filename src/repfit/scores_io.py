"""Reading a scores file (``repfit score`` output) at scale (issue 14, point 1).

The file is read in batches of rows; the id columns come in dictionary-encoded (Parquet: each row group holds
its distinct ids once), so an id becomes an integer index by looking up the dictionary, never as a Python
object per row. Range, duplicates, unknown ids and coverage are checked on those indices while the matrix
fills; nothing is read twice. Peak memory is the float32 (accounts, reps) matrix plus one batch.

A file of candidates (``repfit score --top-k K``: each account's best K reps, its current rep, and in
``p_win_left_out`` the largest P(win) of its pairs left out) reads into ``Candidates`` instead, without any
(accounts, reps) array.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from repfit import schema as S
from repfit.errors import SchemaError
from repfit.messages import listed

P_WIN = "p_win"
LEFT_OUT = "p_win_left_out"  # candidates files: the largest P(win) of the account's pairs not in the file (NaN: none)
# ... and, when ranked by expected value minus rep prices (the sidecar's "prices"), the largest of that among them
NET_LEFT_OUT = "ev_net_left_out"
# ... and what it would be had the file kept each account's best K' reps: ev_net_left_out_<K'> (NaN: none left out)
DEEPER = re.compile(NET_LEFT_OUT + r"_(\d+)")
# ... and per price tier j of the reps (``repfit.assign.sparse.price_tiers``), on each account's first row only
TIERED = re.compile(NET_LEFT_OUT + r"_tier(\d+)")
BATCH_ROWS = 1 << 20  # rows per batch; below 2**24, so a row's position is exact in float32 (see _Dense.add)
RESCORE = "Fix: score this same data set again (repfit score)."


@dataclass(frozen=True, eq=False)
class Candidates:
    """Some pairs of each account (its best K reps and its current rep), with a bound on the rest.

    Attributes
    ----------
    acc, rep : (n,) int32 indices into ``ds.accounts`` / ``ds.reps`` of each candidate pair, by account.
    p_win : (n,) float32 P(win) of each candidate pair.
    left_out : (A,) float32, the largest P(win) of each account's pairs NOT listed; NaN when none is left out.
    shape : (A, R).
    top_k : the K the file was scored with (None when it does not say).
    left_out_net : (A,) float64, the largest expected value minus ``prices`` of each account's pairs NOT listed
        (-inf when none is left out), or None when the file does not say.
    prices : (R,) the rep prices the file was ranked with (expected-value units), or None.
    deeper : K' -> (A,) float64, what ``left_out_net`` would be had the file kept each account's best K' reps
        (the file's ``ev_net_left_out_<K'>`` columns: for the K that would close a gap), or None.
    tiered : (A, J) float64, ``left_out_net`` among the reps of each price tier (-inf: none left out there), or None.
    """

    acc: np.ndarray
    rep: np.ndarray
    p_win: np.ndarray
    left_out: np.ndarray
    shape: tuple[int, int]
    top_k: int | None = None
    left_out_net: np.ndarray | None = None
    prices: np.ndarray | None = None
    deeper: dict[int, np.ndarray] | None = None
    tiered: np.ndarray | None = None

    def mask(self) -> np.ndarray:
        """(A, R) bool: the listed pairs."""
        m = np.zeros(self.shape, bool)
        m[self.acc, self.rep] = True
        return m

    def dense(self) -> np.ndarray:
        """(A, R) float32 P(win): the listed pairs, 0 elsewhere (use with ``mask``)."""
        M = np.zeros(self.shape, np.float32)
        M[self.acc, self.rep] = self.p_win
        return M


def read_scores(path: Path, ds: S.Dataset, *, candidates_ok: bool = False) -> np.ndarray | Candidates:
    """Read a scores file into an (accounts, reps) float32 P(win) matrix in ``ds`` order, checking that it names
    only ids of ``ds``, holds every pair exactly once, and P(win) in [0, 1]; or, for a candidates file and
    ``candidates_ok``, into ``Candidates``.

    Raises
    ------
    SchemaError
        Naming the file, the offending values or pairs (a few of each, with counts) and the fix.
    """
    path = Path(path)
    cols = _columns(path)
    missing = [c for c in (S.REP_ID, S.ACCOUNT_ID, P_WIN) if c not in cols]
    if missing:
        raise SchemaError(f"{path}: column {', '.join(map(repr, missing))} is missing (found: "
                          f"{', '.join(map(repr, cols))}). Fix: score the data set again (repfit score).", option="scores")
    reps, accs = pd.Index(ds.reps[S.REP_ID].astype(str)), pd.Index(ds.accounts[S.ACCOUNT_ID].astype(str))
    top = LEFT_OUT in cols
    if top and not candidates_ok:
        raise SchemaError(f"{path}: holds each account's top reps only (repfit score --top-k), and this command needs "
                          "every (rep, account) pair. Fix: score without --top-k for it (repfit assign reads either).",
                          option="scores")
    sink: _Sink = _Sparse(path, reps, accs) if top else _Dense(path, reps, accs)
    for batch in _batches(path, reps, accs, top):
        sink.add(batch)
    return sink.finish()


# --- reading batches ----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class _Batch:
    acc: np.ndarray  # (n,) int64 account index, -1 unknown id, -2 missing id
    rep: np.ndarray  # (n,) int64 rep index, likewise
    p: np.ndarray  # (n,) float32, NaN where not a number
    raw_p: pd.Series | np.ndarray  # as written, for messages
    left_out: np.ndarray | None  # (n,) float32 or None
    unknown: dict[str, list[str]]  # column -> unknown ids seen in this batch (distinct)
    net: np.ndarray | None = None  # (n,) float64 or None
    deeper: dict[int, np.ndarray] | None = None  # K' -> (n,) float64 (``DEEPER`` columns)
    tiered: dict[int, np.ndarray] | None = None  # j -> (n,) float64 (``TIERED`` columns)


def _unreadable(path: Path, exc: Exception) -> SchemaError:
    return SchemaError(f"{path}: not a readable scores file ({type(exc).__name__}). Fix: score the data set again "
                       "(repfit score).", option="scores")


def _not_found(path: Path) -> SchemaError:
    return SchemaError(f"{path}: scores file not found. Fix: score the data set into that file first (repfit score).",
                       option="scores")


def _is_parquet(path: Path) -> bool:
    return path.is_dir() or path.suffix.lower() == ".parquet"


def _parts(path: Path) -> list[Path]:
    """The Parquet files of a scores path: itself, or a directory's parts in name order (`repfit score --dask`)."""
    if not path.is_dir():
        return [path]
    parts = sorted(path.glob("*.parquet"))
    if not parts:
        raise SchemaError(f"{path}: a directory with no .parquet parts. Fix: score into it again (repfit score --dask).",
                          option="scores")
    return parts


def _columns(path: Path) -> list[str]:
    if not path.is_file() and not path.is_dir():
        raise _not_found(path)
    try:
        if _is_parquet(path):
            import pyarrow.parquet as pq

            return list(pq.ParquetFile(_parts(path)[0]).schema_arrow.names)
        return list(pd.read_csv(path, nrows=0).columns)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a malformed file for the user
        raise _unreadable(path, exc) from None


def _batches(path: Path, reps: pd.Index, accs: pd.Index, top: bool) -> Iterator[_Batch]:
    cols = [S.REP_ID, S.ACCOUNT_ID, P_WIN] + ([LEFT_OUT] if top else [])
    if top and NET_LEFT_OUT in _columns(path):
        cols += [NET_LEFT_OUT] + [c for c in _columns(path) if DEEPER.fullmatch(c) or TIERED.fullmatch(c)]
    reader = _parquet_batches if _is_parquet(path) else _csv_batches
    it = reader(path, cols, reps, accs)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except SchemaError:
            raise
        except Exception as exc:  # noqa: BLE001 - a corrupt row group, a bad CSV line: a malformed file
            raise _unreadable(path, exc) from None
        yield batch


def _parquet_batches(path: Path, cols: list[str], reps: pd.Index, accs: pd.Index) -> Iterator[_Batch]:
    import pyarrow.parquet as pq

    files = (pq.ParquetFile(part, read_dictionary=[S.REP_ID, S.ACCOUNT_ID]) for part in _parts(path))
    # row group by row group: ParquetFile.iter_batches kept ~1 GiB more by the end of a 100M-row file (pyarrow 25,
    # measured); read_row_group stays flat
    batches = (rb for f in files for g in range(f.num_row_groups)
               for rb in f.read_row_group(g, columns=cols).to_batches(max_chunksize=BATCH_ROWS))
    for rb in batches:
        unknown: dict[str, list[str]] = {}
        rep = _indices(rb.column(S.REP_ID), reps, S.REP_ID, unknown)
        acc = _indices(rb.column(S.ACCOUNT_ID), accs, S.ACCOUNT_ID, unknown)
        p, raw = _numbers(rb.column(P_WIN))
        left = _numbers(rb.column(LEFT_OUT))[0] if LEFT_OUT in cols else None
        net = rb.column(NET_LEFT_OUT).to_numpy(zero_copy_only=False).astype(float) if NET_LEFT_OUT in cols else None
        extra = {c: rb.column(c).to_numpy(zero_copy_only=False).astype(float) for c in cols
                 if DEEPER.fullmatch(c) or TIERED.fullmatch(c)}
        yield _Batch(acc, rep, p, raw, left, unknown, net, *_extra(extra))


def _indices(col, known: pd.Index, name: str, unknown: dict) -> np.ndarray:
    """(n,) int64 index into ``known`` of each id in the Arrow column ``col`` (-1 unknown, -2 missing), looked up
    once per distinct id of the batch's dictionary (a row group of ``repfit score`` holds a few hundred accounts)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_dictionary(col.type):  # ids that are not strings (or a writer without dictionaries)
        col = pc.dictionary_encode(col)
    ids = pd.Index(col.dictionary.to_pandas().astype(str))
    to_known = known.get_indexer(ids).astype(np.int64)
    codes = pc.fill_null(col.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    idx = np.where(codes >= 0, to_known[np.maximum(codes, 0)], -2)
    if (codes < 0).any():
        unknown[name] = [""]
    bad = np.flatnonzero(to_known < 0)
    if len(bad):
        used = np.intersect1d(bad, codes)
        if len(used):
            unknown[name] = unknown.get(name, []) + [str(ids[i]) for i in used[:5]]
    return idx


def _numbers(col) -> tuple[np.ndarray, np.ndarray | pd.Series]:
    """(n,) float32 of an Arrow column (NaN where null or not a number), and the values as written."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_floating(col.type) or pa.types.is_integer(col.type) or pa.types.is_decimal(col.type):
        v = pc.fill_null(pc.cast(col, pa.float32()), float("nan")).to_numpy(zero_copy_only=False)
        return v, v
    raw = col.to_pandas()
    return pd.to_numeric(raw, errors="coerce").to_numpy(np.float32), raw


def _csv_batches(path: Path, cols: list[str], reps: pd.Index, accs: pd.Index) -> Iterator[_Batch]:
    from repfit.io import unescape_ids

    na = {c: [""] for c in cols if c not in (S.REP_ID, S.ACCOUNT_ID)}
    for df in pd.read_csv(path, usecols=cols, dtype={S.REP_ID: str, S.ACCOUNT_ID: str}, keep_default_na=False,
                          na_values=na, chunksize=BATCH_ROWS):
        unknown: dict[str, list[str]] = {}
        idx = {}
        for name, known in ((S.REP_ID, reps), (S.ACCOUNT_ID, accs)):
            ids = unescape_ids(df[name], known)  # ids that looked like formulas were quoted for spreadsheets
            idx[name] = known.get_indexer(ids).astype(np.int64)
            if (idx[name] < 0).any():
                unknown[name] = list(dict.fromkeys(ids[idx[name] < 0]))[:5]
        p = pd.to_numeric(df[P_WIN], errors="coerce").to_numpy(np.float32)
        left = pd.to_numeric(df[LEFT_OUT], errors="coerce").to_numpy(np.float32) if LEFT_OUT in cols else None
        net = pd.to_numeric(df[NET_LEFT_OUT], errors="coerce").to_numpy(float) if NET_LEFT_OUT in cols else None
        extra = {c: pd.to_numeric(df[c], errors="coerce").to_numpy(float) for c in cols
                 if DEEPER.fullmatch(c) or TIERED.fullmatch(c)}
        yield _Batch(idx[S.ACCOUNT_ID], idx[S.REP_ID], p, df[P_WIN], left, unknown, net, *_extra(extra))


def _extra(columns: dict[str, np.ndarray]) -> tuple[dict | None, dict | None]:
    """The ``DEEPER`` and the ``TIERED`` columns of a batch, each by its number (None: none)."""
    deeper = {int(DEEPER.fullmatch(c)[1]): v for c, v in columns.items() if DEEPER.fullmatch(c)}
    tiered = {int(TIERED.fullmatch(c)[1]): v for c, v in columns.items() if TIERED.fullmatch(c)}
    return deeper or None, tiered or None


# --- checking and filling -----------------------------------------------------------------------------
class _Sink:
    """Checks batches as they come and keeps what they hold; ``finish`` raises what the whole file breaks."""

    def __init__(self, path: Path, reps: pd.Index, accs: pd.Index):
        self.path, self.reps, self.accs = path, reps, accs
        self.A, self.R = len(accs), len(reps)
        self.rows = 0
        self.unknown: dict[str, dict[str, None]] = {S.REP_ID: {}, S.ACCOUNT_ID: {}}
        self.unknown_rows = 0
        self.dup_rows = 0
        self.dups: list[tuple[str, str]] = []

    def add(self, b: _Batch) -> None:
        bad = ~((b.p >= 0) & (b.p <= 1))  # NaN (not a number) is outside too
        if bad.any():
            raw = b.raw_p[bad][:5]
            raw = raw.tolist() if hasattr(raw, "tolist") else list(raw)
            raise SchemaError(f"{self.path}: column 'p_win' must be numbers in [0, 1]; found {raw} (rows "
                              f"{listed((self.rows + np.flatnonzero(bad)[:5] + 1).tolist())} of the file). "
                              "Fix: score the data set again (repfit score).", option="scores")
        for name, ids in b.unknown.items():
            self.unknown[name].update(dict.fromkeys(ids))
        known = (b.acc >= 0) & (b.rep >= 0)
        self.unknown_rows += int((~known).sum())
        self.rows += len(b.p)
        self.keep(b, known)

    def keep(self, b: _Batch, known: np.ndarray) -> None:
        raise NotImplementedError

    def pair(self, a: int, r: int) -> tuple[str, str]:
        return (str(self.reps[r]), str(self.accs[a]))

    def note_dups(self, flat: np.ndarray) -> None:
        self.dup_rows += len(flat)
        self.dups += [self.pair(f // self.R, f % self.R) for f in flat[:5 - len(self.dups)]]

    def problems(self) -> list[str]:
        """What the file breaks, one phrase each (empty: nothing)."""
        out = []
        for name, ids in self.unknown.items():
            if ids:
                shown = [i for i in ids if i][:5]
                out.append(f"{name} values the data does not hold: {listed(shown) if shown else '(empty)'}"
                           f"{' and more' if len(ids) > 5 else ''}")
        if self.unknown_rows and out:
            out[-1] += f" ({self.unknown_rows:,} rows with an unknown id)"
        if self.dup_rows:
            out.append(f"{self.dup_rows:,} repeated (rep_id, account_id) pairs, e.g. {self.dups}")
        return out

    def refuse(self, problems: list[str], fix: str = RESCORE) -> None:
        if problems:
            raise SchemaError(f"{self.path}: " + "; ".join(problems) + f". {fix}", option="scores")


class _Dense(_Sink):
    """Fills the float32 (A, R) matrix; a cell still NaN at the end is a pair the file misses."""

    def __init__(self, path: Path, reps: pd.Index, accs: pd.Index):
        super().__init__(path, reps, accs)
        self.M = np.full((self.A, self.R), np.nan, np.float32)
        self.flat = self.M.reshape(-1)

    def keep(self, b: _Batch, known: np.ndarray) -> None:
        f = b.acc[known] * self.R + b.rep[known]
        if not len(f):
            return
        seen = ~np.isnan(self.flat[f])  # filled by an earlier batch
        stamp = -np.arange(1, len(f) + 1, dtype=np.float32)  # exact: len(f) <= BATCH_ROWS < 2**24
        self.flat[f] = stamp
        again = self.flat[f] != stamp  # a later row of this batch holds the same pair
        dup = seen | again
        if dup.any():
            self.note_dups(f[dup])
        self.flat[f] = b.p[known]

    def finish(self) -> np.ndarray:
        missing, examples = 0, []
        block = max(1, (1 << 22) // max(self.R, 1))
        for lo in range(0, self.A, block):
            gap = np.isnan(self.M[lo:lo + block])
            n = int(gap.sum())
            if n and len(examples) < 5:
                a, r = np.nonzero(gap)
                examples += [(str(self.accs[lo + i]), str(self.reps[j])) for i, j in zip(a[:5], r[:5])]
            missing += n
        problems = self.problems()
        if missing:
            total = self.A * self.R
            problems.append(f"covers {total - missing:,} of the {total:,} (rep, account) pairs of the data; missing "
                            f"e.g. {examples[:5]} (as (account, rep))")
        self.refuse(problems)
        return self.M


class _Sparse(_Sink):
    """Collects candidate pairs; every account needs one, no pair twice, and a bound in [0, 1] or empty."""

    def __init__(self, path: Path, reps: pd.Index, accs: pd.Index):
        super().__init__(path, reps, accs)
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.left = np.full(self.A, -np.inf, np.float32)
        self.net: np.ndarray | None = None
        self.deeper: dict[int, np.ndarray] = {}
        self.tiered: dict[int, np.ndarray] = {}

    def keep(self, b: _Batch, known: np.ndarray) -> None:
        lo = b.left_out
        bad = ~(np.isnan(lo) | ((lo >= 0) & (lo <= 1)))
        if bad.any():
            raise SchemaError(f"{self.path}: column '{LEFT_OUT}' must be numbers in [0, 1] or empty; found "
                              f"{lo[bad][:5].tolist()}. {RESCORE}", option="scores")
        a = b.acc[known].astype(np.int32)
        self.parts.append((a, b.rep[known].astype(np.int32), b.p[known]))
        np.maximum.at(self.left, a, np.where(np.isnan(lo[known]), -np.inf, lo[known]))
        if b.net is not None:
            if np.isinf(b.net).any() or (np.isnan(b.net) & ~np.isnan(lo)).any():
                raise SchemaError(f"{self.path}: column '{NET_LEFT_OUT}' must be a number wherever '{LEFT_OUT}' is; "
                                  f"found {b.net[np.isinf(b.net) | (np.isnan(b.net) & ~np.isnan(lo))][:5].tolist()}. "
                                  f"{RESCORE}", option="scores")
            if self.net is None:
                self.net = np.full(self.A, -np.inf)
            np.maximum.at(self.net, a, np.where(np.isnan(b.net[known]), -np.inf, b.net[known]))
        for into, name, cols in ((self.deeper, "_", b.deeper), (self.tiered, "_tier", b.tiered)):
            for k, v in (cols or {}).items():
                if np.isinf(v).any():
                    raise SchemaError(f"{self.path}: column '{NET_LEFT_OUT}{name}{k}' must be numbers or empty; found "
                                      f"{v[np.isinf(v)][:5].tolist()}. {RESCORE}", option="scores")
                np.maximum.at(into.setdefault(k, np.full(self.A, -np.inf)), a,
                              np.where(np.isnan(v[known]), -np.inf, v[known]))

    def finish(self) -> Candidates:
        if self.parts:
            acc, rep, p = (np.concatenate(x) for x in zip(*self.parts))
        else:
            acc, rep, p = np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0, np.float32)
        order = np.lexsort((rep, acc))
        acc, rep, p = acc[order], rep[order], p[order]
        same = np.flatnonzero((acc[1:] == acc[:-1]) & (rep[1:] == rep[:-1])) + 1
        if len(same):
            self.note_dups(acc[same].astype(np.int64) * self.R + rep[same])
        problems = self.problems()
        count = np.bincount(acc, minlength=self.A)
        none = np.flatnonzero(count == 0)
        if len(none):
            problems.append(f"{len(none):,} accounts of the data have no pair, e.g. {listed(self.accs[none[:5]].tolist())}")
        # empty means every rep is listed; on an account listing fewer, the left-out pairs would be taken as none and
        # a plan certified over all pairs that it never saw (review 16)
        unbounded = np.flatnonzero((count > 0) & (count < self.R) & ~np.isfinite(self.left))
        if len(unbounded):
            problems.append(f"column '{LEFT_OUT}' is empty for {len(unbounded):,} accounts that list "
                            f"{int(count[unbounded].max()):,} of the {self.R:,} reps or fewer, e.g. "
                            f"{listed(self.accs[unbounded[:5]].tolist())} (empty: every rep listed)")
        self.refuse(problems)
        left = np.where(np.isfinite(self.left), self.left, np.nan).astype(np.float32)
        left[count >= self.R] = np.nan  # every pair listed: nothing left out
        if self.net is not None:
            self.net[count >= self.R] = -np.inf
        tiered = np.stack([self.tiered[j] for j in sorted(self.tiered)], axis=1) if self.tiered else None
        if tiered is not None and sorted(self.tiered) != list(range(tiered.shape[1])):
            raise SchemaError(f"{self.path}: the '{NET_LEFT_OUT}_tier<j>' columns must be numbered 0 to "
                              f"{tiered.shape[1] - 1} (found {listed(sorted(self.tiered))}). {RESCORE}", option="scores")
        if tiered is not None:
            tiered[count >= self.R] = -np.inf
        return Candidates(acc, rep, p, left, (self.A, self.R), left_out_net=self.net, deeper=self.deeper or None,
                          tiered=tiered)
