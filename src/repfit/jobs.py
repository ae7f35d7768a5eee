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
    import json
    import time

    from repfit import tracking
    from repfit.io import write_text
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
    write_text(json.dumps(meta, indent=2), _model_meta(Path(out)))
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
    from repfit.io import write_table, write_text
    from repfit.scoring import read_scores, refresh_history, score_matrix

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
        bar = progress(len(ds.reps) * len(ds.accounts)) if progress else None
        P = score_matrix(refresh_history(scorer, ds), ds, progress=bar.update if bar else None)
        if bar:
            bar.close()
    plan = plan_assignment(ds, P, cfg)
    out = Path(out)
    paths = {
        "assignment": write_table(plan.assignment, out),
        "reps": write_table(plan.reps, out.with_name(out.stem + "_reps.csv")),
        "summary": write_text(json.dumps(plan.summary, indent=2, default=str), out.with_name(out.stem + "_summary.json")),
    }
    s = plan.summary
    run_id = tracker.log_job(
        "assign",
        params={"objective": cfg.objective, "require_match": cfg.require_match, "balance_tiers": cfg.balance_tiers,
                "continuity": cfg.continuity, "max_moves": cfg.max_moves, "solver": s["solver"], "data_dir": str(data_dir)},
        metrics={k: s[k] for k in ("expected_value_current", "expected_value_proposed", "uplift", "uplift_pct",
                                   "expected_wins_current", "expected_wins_proposed", "moves", "solve_seconds")},
        tags={"repfit.model_uri": uri, "repfit.model_version": version, "repfit.certified_optimal": s["certified_optimal"],
              "repfit.scores": str(scores) if scores else None},
        artifacts=list(paths.values()),
    )
    return AssignOutcome(plan, paths, run_id, uri)
