"""The jobs behind the CLI commands: each wires library functions together (load -> compute -> write -> track).

Nothing here parses options or prints; ``repfit.cli`` does that. Every job takes keyword-only typed inputs:
where the data is (``DataSource``), where runs are tracked (``Store``), where P(win) comes from
(``PairSource``), the options of its concern (``AssignConfig`` ...) and a ``Progress``; it returns a frozen
outcome dataclass.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
import pandas as pd

from repfit.config import BLOCK_PAIRS, AssignConfig, load_feature_config, load_train_config
from repfit.errors import RepfitError
from repfit.progress import NO_PROGRESS, Progress
from repfit.schema import Dataset, load_dataset

DEFAULT_MODEL = "models:/repfit-winprob@champion"
ARTIFACT_MAX_BYTES = 200 * 1024 * 1024  # larger score files stay on disk; the run records their path


@dataclass(frozen=True)
class DataSource:
    """Where the data is (a directory of tables, or one CRM export file), the mapping to read it with (a file, a
    preset name, or None: repfit.toml beside the data if present), and what to do with bad rows.

    ``on_bad_rows`` / ``max_rejected_share``: None takes the mapping's ``[rows]`` (else strict, 20%). In
    quarantine the rows set aside are written to ``rejected`` (default ``rejected_rows.csv`` in the working
    directory) and ``notify`` (a line printer) hears how many per reason, and which columns the leakage guard
    dropped."""

    path: Path
    mapping: str | Path | None = None
    on_bad_rows: str | None = None
    max_rejected_share: float | None = None
    rejected: Path | None = None
    notify: Callable[[str], None] | None = None
    announce_dropped: bool = True  # validate lists them among its findings instead

    def load(self) -> Dataset:
        """The validated tables; none of their files may then be written as an output."""
        from repfit.io import protect_inputs, write_table

        ds = load_dataset(self.path, self.mapping, on_bad_rows=self.on_bad_rows,
                          max_rejected_share=self.max_rejected_share)
        protect_inputs(ds.paths.values())
        say = self.notify or (lambda line: None)
        if ds.rejected is not None:
            target = self.rejected or Path("rejected_rows.csv")
            try:
                write_table(ds.rejected, target)
            except RepfitError as exc:
                raise RepfitError(str(exc), option="rejected") from None
            per = ", ".join(f"{code} {n:,}" for code, n in ds.rejected_counts.items()) or "none"
            say(f"set aside {len(ds.rejected):,} bad row(s) of {Path(ds.paths['opportunities']).name} ({per}): "
                f"written to {target}")
        for d in ds.dropped if self.announce_dropped else ():
            say(f"warning: {d.message}")
        return ds


@dataclass(frozen=True)
class Store:
    """The MLflow store runs go to (None: the embedded store found from ``cwd``)."""

    tracking_uri: str | None
    cwd: Path

    def open(self):
        from repfit import tracking

        return tracking.open_tracker(self.tracking_uri, self.cwd)


@dataclass(frozen=True)
class PairSource:
    """Where P(win) of every pair comes from: a scores file of ``repfit score``, else scoring now with a model."""

    scores: Path | None = None
    model_uri: str | None = None


# --- train -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainOutcome:
    result: "TrainResult"  # noqa: F821 - repfit.training.train, imported lazily (LightGBM)
    run_id: str
    decision: "Decision"  # noqa: F821 - repfit.tracking
    tracking_uri: str


def train_job(*, data: DataSource, store: Store, features: Path | None = None, config: Path | None = None,
              promote: bool = False, models_dir: Path | None = None, progress: Progress = NO_PROGRESS) -> TrainOutcome:
    """Load, train, evaluate, log to MLflow, register, and decide champion/challenger."""
    from repfit.training.train import score_rows, train

    fcfg, tcfg = load_feature_config(features), load_train_config(config)
    ds = data.load()
    result = train(ds, fcfg, tcfg, progress=progress)
    tracker = store.open()
    configs = {name: Path(p).read_text() for name, p in (("features.toml", features), ("training.toml", config)) if p}
    progress.stage("mlflow")
    run_id, decision = tracker.log_training(
        result, str(data.path), configs, promote, models_dir,
        score_champion=lambda champ: score_rows(champ, ds, result.test_rows),
        data_tags={"repfit.mapping": str(data.mapping or "default"), "repfit.rows.on_bad": ds.policy.on_bad,
                   "repfit.rows.rejected": str(sum(ds.rejected_counts.values())),
                   "repfit.leakage.dropped": ",".join(d.column for d in ds.dropped) or "none"},
        findings=ds.warnings,
    )
    return TrainOutcome(result, run_id, decision, tracker.uri)


# --- score -------------------------------------------------------------------------------------------
def _model_meta(path: Path) -> Path:
    return path.with_name(path.name + ".json")


@dataclass(frozen=True)
class ScoreOutcome:
    out: Path
    rows: int  # rows written
    seconds: float
    model_uri: str
    model_version: str | None
    run_id: str
    pairs: int = 0  # pairs scored (= rows without a transform)
    engine: str = "lightgbm"  # how the trees were evaluated: compiled (lleaves) or lightgbm (Booster.predict)
    note: str = ""  # e.g. why the trees were not compiled
    parts: int | None = None  # with Dask: the Parquet parts written into the ``out`` directory
    workers: int | None = None


def score_job(*, data: DataSource, store: Store, out: Path, model_uri: str | None = None,
              block_pairs: int = BLOCK_PAIRS, engine: str = "auto", dask: str | None = None,
              transform: Callable[[pd.DataFrame], pd.DataFrame] | None = None, cache_dir: Path | None = None,
              progress: Progress = NO_PROGRESS, top_k: int | None = None,
              plan: Path | None = None) -> ScoreOutcome:
    """Score every rep x account pair of the data with a model, streamed to ``out``; log an MLflow run.

    ``engine``: how the trees are evaluated (``repfit.compiled``: auto, compiled, lightgbm). ``dask``: score on a
    Dask cluster (``local:N`` or a scheduler address) into a directory of Parquet parts at ``out``
    (``repfit.distributed``). ``transform``: a function applied to every scored block before it is written (on the
    workers with Dask), e.g. a per-account top-k filter. ``plan``: with ``top_k``, rank by that plan's rep prices
    (the ``<stem>_prices.csv`` beside it) instead of a sample's, and keep each account's rep in it."""
    from repfit.io import refuse_input, write_json
    from repfit.scoring import ScoreGrid, data_fingerprint, refresh_history

    out = Path(out)
    if dask is not None and out.suffix.lower() == ".csv":
        raise RepfitError(f"{out}: with --dask the scores are written as a directory of Parquet parts, not one CSV "
                          "file. Fix: give --out a directory name (e.g. scores.parquet), or drop --dask.", option="out")
    ds = data.load()
    refuse_input(out)
    tracker = store.open()
    scorer, uri, version = tracker.scorer_for(model_uri or DEFAULT_MODEL)
    scorer = refresh_history(scorer, ds)
    grid = ScoreGrid.of(scorer, ds)
    t0 = time.perf_counter()
    parts = workers = prices = None
    if plan is not None and top_k is None:
        raise RepfitError("--plan ranks the candidates of --top-k. Fix: give --top-k too, or drop --plan.",
                          option="plan")
    if top_k is not None:  # a per-block filter, on the workers too with Dask
        if transform is not None:
            raise ValueError("top_k and transform are exclusive")
        transform, prices = _top_k_transform(scorer, ds, top_k, block_pairs, plan)
    with progress.bar(grid.pairs) as bar:
        if dask is None:
            pairs, rows, used, note = _score_local(scorer, grid, out, block_pairs, engine, cache_dir, transform, bar)
        else:
            from repfit.distributed import dask_client, score_on_cluster

            with dask_client(dask) as client:
                res = score_on_cluster(client, scorer, grid, out, block_pairs=block_pairs, engine=engine,
                                       cache_dir=cache_dir, transform=transform, bar=bar)
            pairs, rows, used, note, parts, workers = res.pairs, res.rows, res.engine, res.note, res.parts, res.workers
    seconds = time.perf_counter() - t0
    write_json({"model_uri": uri, "model_version": version, "data_dir": str(data.path), "pairs": pairs, "rows": rows,
                "parts": parts, "trees": used, "seconds": round(seconds, 3), "top_k": top_k,
                "prices": None if prices is None else {str(r): float(v) for r, v in prices.items()},
                **({"dask": res.timings()} if dask is not None else {}),
                "fingerprint": data_fingerprint(ds)}, _model_meta(out))
    size = sum(f.stat().st_size for f in out.glob("*.parquet")) if out.is_dir() else out.stat().st_size
    run_id = tracker.log_job(
        "score", params={"data_dir": str(data.path), "block_pairs": block_pairs, "out": str(out), "engine": used,
                         "dask": dask or "none"},
        metrics={"pairs": pairs, "rows": rows, "seconds": seconds, "pairs_per_second": pairs / max(seconds, 1e-9)},
        tags={"repfit.model_uri": uri, "repfit.model_version": version, "repfit.output": str(out.resolve())},
        artifacts=[_model_meta(out)] + ([] if out.is_dir() or size > ARTIFACT_MAX_BYTES else [out]),
    )
    return ScoreOutcome(out, rows, seconds, uri, version, run_id, pairs, used, note, parts, workers)


def _score_local(scorer, grid, out: Path, block_pairs: int, engine: str, cache_dir, transform, bar):
    """Score in this process, each block through ``transform`` if given; (pairs, rows, trees used, note)."""
    from repfit.progress import NO_BAR
    from repfit.scoring import score_blocks, write_scores

    trees = scorer.model.trees(engine, pairs=grid.pairs, cache_dir=cache_dir)
    pairs = 0

    def blocks():
        nonlocal pairs
        for b in score_blocks(scorer, grid, block_pairs, trees=trees):
            pairs += len(b)
            if transform is None:
                yield b
            else:  # the bar counts pairs scored, not the fewer rows written
                bar.update(len(b))
                yield transform(b)

    rows = write_scores(blocks(), out, bar if transform is None else NO_BAR)
    return pairs, rows, trees.name, trees.note


def _top_k_transform(scorer, ds: Dataset, k: int, block_pairs: int, plan: Path | None = None):
    """The per-block top-``k`` filter (``repfit.candidates.top_k``; picklable, for Dask workers), ranked by expected
    value minus rep prices: from ``plan`` (a plan from candidates, whose reps are kept too), else from a sample of
    accounts scored first; and those prices (rep_id -> expected-value units)."""
    from dataclasses import replace
    from functools import partial

    from repfit.candidates import read_plan, sample_prices, sample_size, top_k
    from repfit.scoring import score_blocks

    A, R = len(ds.accounts), len(ds.reps)
    planned = None
    if plan is not None:
        prices, planned = read_plan(Path(plan), ds)
    else:
        rows = np.sort(np.random.default_rng(0).choice(A, size=sample_size(A, R), replace=False))
        sample = replace(ds, accounts=ds.accounts.iloc[rows])
        prices = sample_prices(score_blocks(scorer, sample, block_pairs), ds.reps.set_index("rep_id")["capacity"], A)
    owners = ds.accounts.set_index("account_id")["current_rep_id"]
    return partial(top_k, k=k, current=owners, prices=prices, planned=planned), prices


# --- P(win) of every pair, and the suggestion context ------------------------------------------------
@dataclass(frozen=True)
class Scored:
    """A data set with P(win) of every (account, rep) pair, the scorer (when one was loaded) and its origin."""

    ds: Dataset
    p_win: np.ndarray | None  # (A, R) in ds order; None for candidates (a top-K file: see ``candidates``)
    model_uri: str | None
    model_version: str | None
    scorer: "PairScorer | None" = None  # noqa: F821 - repfit.winprob
    candidates: "Candidates | None" = None  # noqa: F821 - repfit.scores_io: the pairs of a top-K file


def _score_all(scorer, ds: Dataset, progress: Progress) -> np.ndarray:
    """(A, R) P(win) of every pair, with a progress bar."""
    from repfit.scoring import score_matrix

    pairs = len(ds.reps) * len(ds.accounts)
    with progress.bar(pairs) as bar:
        return score_matrix(scorer, ds, bar=bar, trees=scorer.model.trees("auto", pairs=pairs))


def scored(*, data: DataSource, pairs: PairSource, tracker, progress: Progress, need_scorer: bool,
           candidates_ok: bool = False) -> Scored:
    """The data and P(win) of every pair: read from ``pairs.scores``, else scored now with the model. With
    ``need_scorer`` the model is loaded either way (suggestions read its features and history). With
    ``candidates_ok`` a top-K scores file is read too (``Scored.candidates``, and no ``p_win``)."""
    from repfit.scores_io import Candidates
    from repfit.scoring import check_fingerprint, read_scores, refresh_history

    ds = data.load()
    scorer = uri = version = None
    if pairs.scores is None or need_scorer:
        scorer, uri, version = tracker.scorer_for(pairs.model_uri or DEFAULT_MODEL)
        scorer = refresh_history(scorer, ds)
    if pairs.scores is not None:
        from repfit.io import protect_inputs

        protect_inputs([pairs.scores])  # an input too: `--out` must not overwrite it
        info = _read_meta(_model_meta(Path(pairs.scores)))
        if "fingerprint" in info:  # before reading: scores of other data are refused without reading them
            check_fingerprint(Path(pairs.scores), info["fingerprint"], ds)
        P = read_scores(Path(pairs.scores), ds, candidates_ok=candidates_ok)
        if not need_scorer:
            uri, version = info.get("model_uri"), info.get("model_version")
    else:
        P = _score_all(scorer, ds, progress)
    if isinstance(P, Candidates):
        from dataclasses import replace

        priced = info.get("prices")
        pi = None if not isinstance(priced, dict) else ds.reps["rep_id"].astype(str).map(priced).to_numpy(float)
        P = replace(P, top_k=info.get("top_k"), prices=None if pi is None or np.isnan(pi).any() else pi)
        return Scored(ds, None, uri, version, scorer, P)  # no (accounts, reps) array: the plan works on the pairs
    return Scored(ds, P, uri, version, scorer)


def _read_meta(meta: Path) -> dict:
    """The sidecar of a scores file ({} when there is none); a corrupt one is an error naming it."""
    if not meta.is_file():
        return {}
    try:
        info = json.loads(meta.read_text())
    except (ValueError, UnicodeDecodeError, OSError):
        info = None
    if not isinstance(info, dict):
        from repfit.errors import SchemaError

        raise SchemaError(f"{meta}: not a readable scores sidecar (JSON written by repfit score). Fix: score the data "
                          "set again, or delete the sidecar to use the scores without its checks.", option="scores")
    return info


def _context(s: Scored):
    from repfit.suggest import Context

    return Context(s.ds, s.scorer, s.p_win, s.scorer.card.signal.detected)


def suggestion_context(*, data: DataSource, store: Store, pairs: PairSource = PairSource(),
                       progress: Progress = NO_PROGRESS):
    """What suggestions are computed from (``suggest.Context``): the data, the model with its history refreshed
    from the data, P(win) of every pair, and the model's verdict on its rep strengths."""
    return _context(scored(data=data, pairs=pairs, tracker=store.open(), progress=progress, need_scorer=True))


# --- assign ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AssignOutcome:
    plan: "Plan"  # noqa: F821 - repfit.assign.plan
    paths: dict[str, Path]
    run_id: str
    model_uri: str | None


def assign_job(*, data: DataSource, store: Store, pairs: PairSource, options: AssignConfig, out: Path,
               progress: Progress = NO_PROGRESS) -> AssignOutcome:
    """Solve the assignment from a scores file (or by scoring with a model), write the outputs, log a run."""
    from repfit.assign.plan import plan_assignment
    from repfit.io import write_json, write_table

    tracker = store.open()
    s = scored(data=data, pairs=pairs, tracker=tracker, progress=progress, need_scorer=False, candidates_ok=True)
    plan = plan_assignment(s.ds, s.p_win, options, candidates=s.candidates)
    out = Path(out)
    paths = {
        "assignment": write_table(plan.assignment, out),
        "reps": write_table(plan.reps, out.with_name(out.stem + "_reps.csv")),
        "summary": write_json(plan.summary.to_dict(), out.with_name(out.stem + "_summary.json")),
    }
    priced = out.with_name(out.stem + "_prices.csv")
    if plan.prices is not None:  # for `repfit score --top-k K --plan`: candidates ranked as this optimum ranks them
        paths["prices"] = write_table(plan.prices.reset_index(), priced)
    else:  # an earlier plan's prices at this --out are not this plan's: `score --plan` must not pair them (review 16)
        priced.unlink(missing_ok=True)
    sm = plan.summary
    run_id = tracker.log_job(
        "assign", params={**options.as_params(), "solver": sm.solver, "data_dir": str(data.path)},
        metrics={k: getattr(sm, k) for k in ("expected_value_current", "expected_value_proposed", "uplift", "uplift_pct",
                                             "expected_wins_current", "expected_wins_proposed", "moves", "solve_seconds")},
        tags={"repfit.model_uri": s.model_uri, "repfit.model_version": s.model_version,
              "repfit.certified_optimal": sm.certified_optimal, "repfit.scores": pairs.scores},
        artifacts=list(paths.values()),
    )
    return AssignOutcome(plan, paths, run_id, s.model_uri)


# --- suggest -----------------------------------------------------------------------------------------
class SuggestMode(Enum):
    ACCOUNT = "account"  # the best reps for one account
    REP = "rep"  # the accounts one rep should take on and hand over
    ALL = "all"  # the moves of the optimal assignment, grouped and ranked


@dataclass(frozen=True)
class SuggestRequest:
    mode: SuggestMode
    target: str | None = None  # the account_id or rep_id (modes ACCOUNT, REP)
    top: int = 5

    @property
    def label(self) -> str:
        return "all" if self.mode is SuggestMode.ALL else f"{self.mode.value} {self.target}"


@dataclass(frozen=True)
class SuggestOutcome:
    request: SuggestRequest
    table: pd.DataFrame
    signal: bool
    summary: "PlanSummary | None"  # noqa: F821 - the plan's, in mode ALL
    out: Path | None
    run_id: str


def suggest_job(*, data: DataSource, store: Store, pairs: PairSource, request: SuggestRequest,
                options: AssignConfig = AssignConfig(), out: Path | None = None,
                progress: Progress = NO_PROGRESS) -> SuggestOutcome:
    """Ranked suggestions for one account, one rep, or the whole book; logged as an MLflow run."""
    from repfit import suggest
    from repfit.io import write_table

    tracker = store.open()
    ctx = _context(s := scored(data=data, pairs=pairs, tracker=tracker, progress=progress, need_scorer=True))
    summary = None
    if request.mode is SuggestMode.ACCOUNT:
        table = suggest.for_account(ctx, request.target, request.top)
    elif request.mode is SuggestMode.REP:
        table = suggest.for_rep(ctx, request.target, request.top)
    else:
        table, summary = suggest.for_all(ctx, options)
    paths = [write_table(table, out)] if out is not None else []
    confident = int((table["confidence"] == "confident").sum()) if len(table) else 0
    run_id = tracker.log_job(
        "suggest", params={"mode": request.label, "top": request.top, **options.as_params(), "data_dir": str(data.path)},
        metrics={"suggestions": len(table), "confident": confident},
        tags={"repfit.model_uri": s.model_uri, "repfit.model_version": s.model_version, "repfit.signal": str(ctx.signal)},
        artifacts=paths, texts={"suggestions.csv": table.to_csv(index=False)} if not paths else None,
    )
    return SuggestOutcome(request, table, ctx.signal, summary, out, run_id)


# --- report ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReportOutcome:
    out: Path
    summary: "PlanSummary"  # noqa: F821
    curve: pd.DataFrame
    signal: bool
    run_id: str


def report_job(*, data: DataSource, store: Store, pairs: PairSource, options: AssignConfig, out: Path,
               top: int = 20, title: str = "repfit: who should own which account",
               progress: Progress = NO_PROGRESS) -> ReportOutcome:
    """Write the self-contained HTML report and log it as an MLflow run."""
    from repfit import report
    from repfit.io import write_text

    tracker = store.open()
    s = scored(data=data, pairs=pairs, tracker=tracker, progress=progress, need_scorer=True)
    page, plan, curve = report.build(_context(s), options=options, top=top, model_uri=s.model_uri,
                                     model_version=s.model_version, title=title, progress=progress)
    path = write_text(page, out)
    run_id = tracker.log_job(
        "report", params={"top": top, **options.as_params(), "data_dir": str(data.path)},
        metrics={"uplift": plan.summary.uplift, "moves": plan.summary.moves, "curve_points": len(curve)},
        tags={"repfit.model_uri": s.model_uri, "repfit.model_version": s.model_version,
              "repfit.signal": str(s.scorer.card.signal.detected)},
        artifacts=[path],
    )
    return ReportOutcome(path, plan.summary, curve, s.scorer.card.signal.detected, run_id)


# --- capacity ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CapacityOutcome:
    result: "Headcount"  # noqa: F821 - repfit.capacity
    paths: dict[str, Path]
    run_id: str


def capacity_job(*, data: DataSource, store: Store, pairs: PairSource, options: AssignConfig, out: Path,
                 add: int = 3, like: str | None = None, progress: Progress = NO_PROGRESS) -> CapacityOutcome:
    """Headcount check: coverage, each rep's value, the value of more reps; outputs and an MLflow run."""
    from repfit.capacity import headcount
    from repfit.io import write_json, write_table, write_text
    from repfit.report import headcount_svg

    tracker = store.open()
    s = scored(data=data, pairs=pairs, tracker=tracker, progress=progress, need_scorer=False)
    with progress.bar(len(s.ds.reps) + add + 1, unit="solve", desc="solving") as bar:
        h = headcount(s.ds, s.p_win, options, add=add, like=like, bar=bar)
    out = Path(out)
    c = h.coverage
    paths = {
        "rep_value": write_table(h.rep_value, out),
        "added": write_table(h.added, out.with_name(out.stem + "_added.csv")),
        "plot": write_text(headcount_svg(h.added, h.base_value, c.like), out.with_name(out.stem + "_added.svg")),
        "summary": write_json({**c.to_dict(), "base_value": h.base_value, "model_uri": s.model_uri,
                               "model_version": s.model_version}, out.with_name(out.stem + "_summary.json")),
    }
    run_id = tracker.log_job(
        "capacity", params={"add": add, "like": c.like, **options.as_params(), "data_dir": str(data.path)},
        metrics={"shortfall": c.shortfall, "reps_needed": c.reps_needed, "base_value": h.base_value,
                 **{f"value_with_{int(r.reps_added)}_added": r.total_value for r in h.added.itertuples()}},
        tags={"repfit.model_uri": s.model_uri, "repfit.model_version": s.model_version},
        artifacts=list(paths.values()),
    )
    return CapacityOutcome(h, paths, run_id)
