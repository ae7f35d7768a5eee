"""The jobs behind the CLI commands: each wires library functions together (load -> compute -> track).

Nothing here parses options or prints; ``repfit.cli`` does that.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from repfit.config import load_feature_config, load_train_config
from repfit.schema import load_dataset


@dataclass
class TrainOutcome:
    result: object  # TrainResult
    run_id: str
    decision: object  # tracking.Decision
    tracking_uri: str
    summary: dict


def train_job(data_dir: Path, mapping: Path | None, features: Path | None, config: Path | None,
              tracking_uri: str | None, promote: bool, models_dir: Path | None, cwd: Path, progress=None) -> TrainOutcome:
    """Load, train, evaluate, log to MLflow, register, and decide champion/challenger."""
    from repfit import tracking
    from repfit.training.train import score_rows, train

    fcfg, tcfg = load_feature_config(features), load_train_config(config)
    ds = load_dataset(data_dir, mapping)
    truth = Path(data_dir) / "truth"
    result = train(ds, fcfg, tcfg, truth if (truth / "params.json").is_file() else None, progress=progress)
    tracker = tracking.open_tracker(tracking_uri, cwd)
    configs = {name: Path(p).read_text() for name, p in (("features.toml", features), ("training.toml", config)) if p}
    if progress:
        progress("mlflow")
    run_id, decision = tracker.log_training(
        result, str(data_dir), configs, promote, models_dir,
        score_champion=lambda champ: score_rows(champ, ds, result.test_rows),
    )
    return TrainOutcome(result, run_id, decision, tracker.uri, ds.summary())


DEFAULT_MODEL = "models:/repfit-winprob@champion"
ARTIFACT_MAX_BYTES = 200 * 1024 * 1024  # larger score files stay on disk; the run records their path


def _model_meta(path: Path) -> Path:
    return path.with_name(path.name + ".json")


@dataclass
class ScoreOutcome:
    out: Path
    rows: int
    seconds: float
    model_uri: str
    model_version: str | None
    run_id: str


def score_job(data_dir: Path, mapping: Path | None, model_uri: str | None, out: Path, tracking_uri: str | None,
              cwd: Path, block_pairs: int = 200_000, progress=None) -> ScoreOutcome:
    """Score every rep x account pair of ``data_dir`` with a model, streamed to ``out``; log an MLflow run."""
    import time

    from repfit import tracking
    from repfit.io import write_json
    from repfit.scoring import refresh_history, score_blocks, write_scores

    ds = load_dataset(data_dir, mapping)
    tracker = tracking.open_tracker(tracking_uri, cwd)
    scorer, uri, version = tracker.scorer_for(model_uri or DEFAULT_MODEL)
    scorer = refresh_history(scorer, ds)
    total = len(ds.reps) * len(ds.accounts)
    bar = progress(total) if progress else None
    t0 = time.perf_counter()
    rows = write_scores(score_blocks(scorer, ds, block_pairs), Path(out), bar.update if bar else None)
    seconds = time.perf_counter() - t0
    if bar:
        bar.close()
    meta = {"model_uri": uri, "model_version": version, "data_dir": str(data_dir), "pairs": rows}
    write_json(meta, _model_meta(Path(out)))
    big = Path(out).stat().st_size > ARTIFACT_MAX_BYTES
    run_id = tracker.log_job(
        "score", params={"data_dir": str(data_dir), "block_pairs": block_pairs, "out": str(out)},
        metrics={"pairs": rows, "seconds": seconds, "pairs_per_second": rows / max(seconds, 1e-9)},
        tags={"repfit.model_uri": uri, "repfit.model_version": version, "repfit.output": str(Path(out).resolve())},
        artifacts=[_model_meta(Path(out))] + ([] if big else [Path(out)]),
    )
    return ScoreOutcome(Path(out), rows, seconds, uri, version, run_id)


@dataclass
class AssignOutcome:
    plan: object
    paths: dict
    run_id: str
    model_uri: str | None


def assign_job(data_dir: Path, mapping: Path | None, scores: Path | None, model_uri: str | None, cfg,
               out: Path, tracking_uri: str | None, cwd: Path, progress=None) -> AssignOutcome:
    """Solve the assignment from a scores file (or by scoring with a model), write the outputs, log a run."""
    import json

    from repfit import tracking
    from repfit.assign.plan import plan_assignment
    from repfit.io import write_json, write_table
    from repfit.scoring import read_scores, refresh_history

    ds = load_dataset(data_dir, mapping)
    tracker = tracking.open_tracker(tracking_uri, cwd)
    version = None
    if scores is not None:
        P = read_scores(Path(scores), ds)
        meta = _model_meta(Path(scores))
        info = json.loads(meta.read_text()) if meta.is_file() else {}
        uri, version = info.get("model_uri"), info.get("model_version")
    else:
        scorer, uri, version = tracker.scorer_for(model_uri or DEFAULT_MODEL)
        P = _score_all(refresh_history(scorer, ds), ds, progress)
    plan = plan_assignment(ds, P, cfg)
    out = Path(out)
    paths = {
        "assignment": write_table(plan.assignment, out),
        "reps": write_table(plan.reps, out.with_name(out.stem + "_reps.csv")),
        "summary": write_json(plan.summary.to_dict(), out.with_name(out.stem + "_summary.json")),
    }
    s = plan.summary
    run_id = tracker.log_job(
        "assign",
        params={"objective": cfg.objective, "require_match": cfg.require_match, "balance_tiers": cfg.balance_tiers,
                "continuity": cfg.continuity, "max_moves": cfg.max_moves, "solver": s.solver, "data_dir": str(data_dir)},
        metrics={k: getattr(s, k) for k in ("expected_value_current", "expected_value_proposed", "uplift", "uplift_pct",
                                   "expected_wins_current", "expected_wins_proposed", "moves", "solve_seconds")},
        tags={"repfit.model_uri": uri, "repfit.model_version": version, "repfit.certified_optimal": s.certified_optimal,
              "repfit.scores": str(scores) if scores else None},
        artifacts=list(paths.values()),
    )
    return AssignOutcome(plan, paths, run_id, uri)


def _score_all(scorer, ds, progress):
    """(A, R) P(win) of every pair, with a progress bar (``progress(total)`` makes one) if given."""
    from repfit.scoring import score_matrix

    bar = progress(len(ds.reps) * len(ds.accounts)) if progress else None
    try:
        return score_matrix(scorer, ds, progress=bar.update if bar else None)
    finally:
        if bar:
            bar.close()


def _context(data_dir, mapping, scores, model_uri, tracker, progress):
    """Data, model (history refreshed from the data), P(win) matrix and the model's rep-strength verdict."""
    from repfit.scoring import read_scores, refresh_history
    from repfit.suggest import Context

    ds = load_dataset(data_dir, mapping)
    scorer, uri, version = tracker.scorer_for(model_uri or DEFAULT_MODEL)
    scorer = refresh_history(scorer, ds)
    if scores is not None:
        P = read_scores(Path(scores), ds)
    else:
        P = _score_all(scorer, ds, progress)
    signal = bool(scorer.info.get("signal", {}).get("signal.detected", 0.0))
    return Context(ds, scorer, P, signal), uri, version


@dataclass
class SuggestOutcome:
    table: object  # DataFrame
    mode: str
    signal: bool
    summary: object | None  # PlanSummary (mode "all")
    out: Path | None
    run_id: str


def suggest_job(data_dir: Path, mapping: Path | None, account: str | None, rep: str | None, all_: bool, top: int,
                cfg, scores: Path | None, model_uri: str | None, out: Path | None, tracking_uri: str | None,
                cwd: Path, progress=None) -> SuggestOutcome:
    """Ranked suggestions for one account, one rep, or the whole book; logged as an MLflow run."""
    from repfit import suggest, tracking
    from repfit.io import write_table

    tracker = tracking.open_tracker(tracking_uri, cwd)
    ctx, uri, version = _context(data_dir, mapping, scores, model_uri, tracker, progress)
    summary = None
    if account is not None:
        table, mode = suggest.for_account(ctx, account, top), f"account {account}"
    elif rep is not None:
        table, mode = suggest.for_rep(ctx, rep, top), f"rep {rep}"
    else:
        table, summary = suggest.for_all(ctx, cfg)
        mode = "all"
    paths = [write_table(table, out)] if out is not None else []
    run_id = tracker.log_job(
        "suggest", params={"mode": mode, "top": top, "max_moves": cfg.max_moves, "data_dir": str(data_dir)},
        metrics={"suggestions": len(table), "confident": int((table.get("confidence") == "confident").sum()) if len(table) else 0},
        tags={"repfit.model_uri": uri, "repfit.model_version": version, "repfit.signal": str(ctx.signal)},
        artifacts=paths, texts={"suggestions.csv": table.to_csv(index=False)} if not paths else None,
    )
    return SuggestOutcome(table, mode, ctx.signal, summary, out, run_id)


@dataclass
class ReportOutcome:
    out: Path
    summary: object  # PlanSummary
    curve: object  # DataFrame
    signal: bool
    run_id: str


def report_job(data_dir: Path, mapping: Path | None, scores: Path | None, model_uri: str | None, cfg, top: int,
               out: Path, title: str, tracking_uri: str | None, cwd: Path, progress=None, step=None) -> ReportOutcome:
    """Write the self-contained HTML report and log it as an MLflow run."""
    from repfit import report, tracking
    from repfit.io import write_text

    tracker = tracking.open_tracker(tracking_uri, cwd)
    ctx, uri, version = _context(data_dir, mapping, scores, model_uri, tracker, progress)
    page, plan, curve = report.build(ctx, cfg, top, uri, version, title, progress=step)
    path = write_text(page, out)
    s = plan.summary
    run_id = tracker.log_job(
        "report", params={"top": top, "max_moves": cfg.max_moves, "balance_tiers": cfg.balance_tiers,
                          "require_match": cfg.require_match, "continuity": cfg.continuity, "data_dir": str(data_dir)},
        metrics={"uplift": s.uplift, "moves": s.moves, "curve_points": len(curve)},
        tags={"repfit.model_uri": uri, "repfit.model_version": version, "repfit.signal": str(ctx.signal)},
        artifacts=[path],
    )
    return ReportOutcome(path, s, curve, ctx.signal, run_id)


@dataclass
class CapacityOutcome:
    result: object  # capacity.Headcount
    paths: dict
    run_id: str


def capacity_job(data_dir: Path, mapping: Path | None, scores: Path | None, model_uri: str | None, cfg, add: int,
                 like: str | None, out: Path, tracking_uri: str | None, cwd: Path, progress=None) -> CapacityOutcome:
    """Headcount check: coverage, each rep's value, the value of more reps; outputs and an MLflow run."""

    from repfit import tracking
    from repfit.capacity import headcount
    from repfit.io import write_json, write_table, write_text
    from repfit.report import headcount_svg

    tracker = tracking.open_tracker(tracking_uri, cwd)
    ctx, uri, version = _context(data_dir, mapping, scores, model_uri, tracker, progress)
    bar = progress(len(ctx.ds.reps) + add + 1, unit="solve", desc="solving") if progress else None
    h = headcount(ctx.ds, ctx.p_win, cfg, add=add, like=like, progress=bar.update if bar else None)
    if bar:
        bar.close()
    out = Path(out)
    c = h.coverage
    summary = {**c.to_dict(), "base_value": h.base_value, "model_uri": uri, "model_version": version}
    paths = {
        "rep_value": write_table(h.rep_value, out),
        "added": write_table(h.added, out.with_name(out.stem + "_added.csv")),
        "plot": write_text(headcount_svg(h.added, h.base_value, c.like), out.with_name(out.stem + "_added.svg")),
        "summary": write_json(summary, out.with_name(out.stem + "_summary.json")),
    }
    run_id = tracker.log_job(
        "capacity", params={"add": add, "like": c.like, "require_match": cfg.require_match, "data_dir": str(data_dir)},
        metrics={"shortfall": c.shortfall, "reps_needed": c.reps_needed, "base_value": h.base_value,
                 **{f"value_with_{int(r.reps_added)}_added": r.total_value for r in h.added.itertuples()}},
        tags={"repfit.model_uri": uri, "repfit.model_version": version},
        artifacts=list(paths.values()),
    )
    return CapacityOutcome(h, paths, run_id)
