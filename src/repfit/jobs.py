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
