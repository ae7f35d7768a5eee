"""MLflow tracking and model registry. The only module that imports mlflow.

Embedded default store: ``sqlite:///<root>/mlruns/mlflow.db`` with artifacts in ``<root>/mlruns/artifacts``
(no server; supports the registry). ``root`` is the nearest directory, from the working directory up,
that already has an ``mlruns/`` folder, else the working directory (so running from a sub-folder of a
project does not silently start a second store).
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from repfit import schema as S
from repfit.errors import BundleError, RepfitError
from repfit.probability import log_loss

MODEL_NAME = "repfit-winprob"
EXPERIMENT = "repfit"
CHAMPION, CHALLENGER = "champion", "challenger"
SCORER_ARTIFACT = "bundle/scorer.joblib"


def _quiet() -> None:
    """MLflow's INFO logs, progress bars and advice about pickling are noise in a CLI's output."""
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    # an unreachable tracking server fails within seconds, not after minutes of retries
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    for name in ("mlflow", "alembic"):  # store failures reach the user as one RepfitError line, not as MLflow's logs
        logging.getLogger(name).setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", message=".*type hints.*")
    warnings.filterwarnings("ignore", category=UserWarning, module="mlflow")


def find_root(start: Path) -> Path:
    for d in [start, *start.parents]:
        if (d / "mlruns").is_dir():
            return d
    return start


def default_uri(root: Path) -> str:
    return f"sqlite:///{(root / 'mlruns' / 'mlflow.db').resolve()}"


def pip_requirements() -> list[str]:
    from importlib.metadata import version

    pkgs = ("mlflow", "lightgbm", "pandas", "numpy", "scikit-learn", "scipy", "joblib", "pyarrow")
    return [f"{p}=={version(p)}" for p in pkgs]


class WinProbPyfunc(mlflow.pyfunc.PythonModel):
    """pyfunc model: input DataFrame with ``rep_id``, ``account_id``; output adds ``p_win``.

    Scores with the features built from the training history the bundle carries. The ``pd.DataFrame`` type hint
    keeps MLflow from advising one at import (the signature is logged explicitly).
    """

    def load_context(self, context):
        from repfit.winprob import PairScorer

        self.scorer = PairScorer.load(context.artifacts["scorer"])

    def predict(self, context, model_input: pd.DataFrame, params=None):
        df = pd.DataFrame(model_input)
        p = self.scorer.score(df[S.REP_ID].astype(str).to_numpy(), df[S.ACCOUNT_ID].astype(str).to_numpy())
        return pd.DataFrame({S.REP_ID: df[S.REP_ID].astype(str), S.ACCOUNT_ID: df[S.ACCOUNT_ID].astype(str), "p_win": p})


@dataclass
class Decision:
    version: str
    promoted: bool
    reason: str
    challenger_log_loss: float
    champion_log_loss: float | None
    champion_version: str | None
    compared_rows: int


def _store_errors(method):
    """A tracking store that fails while a run is logged (read-only, full, gone) is one RepfitError naming it."""
    import functools

    @functools.wraps(method)
    def wrapped(self, *args, **kwargs):
        from mlflow.exceptions import MlflowException
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return method(self, *args, **kwargs)
        except (MlflowException, SQLAlchemyError, OSError) as exc:  # the store's failures, not the job's
            raise RepfitError(f"{self.uri}: the run could not be logged to this MLflow store ({_first_line(exc)}); "
                              "files already written stay. Fix: make the store writable (or free space), or use "
                              "another tracking URI.", option="tracking_uri") from None

    return wrapped


class Tracker:
    """A connection to one tracking store and experiment."""

    def __init__(self, uri: str, experiment: str = EXPERIMENT, artifact_root: Path | None = None):
        _quiet()
        self.uri = uri
        mlflow.set_tracking_uri(uri)
        try:
            with _schema_lock(uri):  # the first use of a new SQLite store creates its tables: one process at a time
                self.client = MlflowClient(uri)
                self._open(experiment, artifact_root)
        except RepfitError:
            raise
        except Exception as exc:  # noqa: BLE001 - a store we cannot use: unreachable, read-only, not MLflow's
            raise RepfitError(f"{uri}: cannot use this MLflow tracking store ({_first_line(exc)}). Fix: start the "
                              "tracking server or correct the URI, or leave it unset for the embedded store under "
                              "mlruns/.", option="tracking_uri") from None

    def _open(self, experiment: str, artifact_root: Path | None) -> None:
        uri = self.uri
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            location = None
            if artifact_root is None and uri.startswith("sqlite:///"):
                artifact_root = Path(uri[len("sqlite:///"):]).parent / "artifacts"
            if artifact_root is not None:
                location = Path(artifact_root).resolve().as_uri()
            exp_id = self.client.create_experiment(experiment, artifact_location=location)
        else:
            exp_id = exp.experiment_id
        self.experiment_id = exp_id
        mlflow.set_experiment(experiment_id=exp_id)

    # --- training ---------------------------------------------------------------------------
    @_store_errors
    def log_training(self, result, data_dir: str, configs: dict[str, str], promote: bool,
                     models_dir: Path | None, score_champion, data_tags: dict[str, str] | None = None,
                     findings: tuple[str, ...] = ()) -> tuple[str, Decision]:
        """Log one training run, register its model, and decide champion vs challenger.

        ``score_champion(scorer) -> np.ndarray`` scores the current champion on this run's test rows.
        ``data_tags`` (mapping, rows set aside, columns the leakage guard dropped) and ``findings`` (what
        ``validate`` prints) record how the data was read.
        """
        import matplotlib

        matplotlib.use("Agg")
        from repfit.training.plots import calibration_figure, importance_figure

        with mlflow.start_run(run_name="train") as run:
            run_id = run.info.run_id
            mlflow.set_tags({"repfit.kind": "train", "repfit.data_dir": str(data_dir), **result.fingerprint,
                             **{f"split.{k}": v for k, v in result.split.as_tags().items()},
                             "repfit.calibration": result.scorer.model.calibration_,
                             "repfit.signal": "detected" if result.scorer.card.signal.detected else "not detected"})
            mlflow.log_params({k: (",".join(map(str, v)) if isinstance(v, (tuple, list)) else v) for k, v in result.params.items()})
            mlflow.log_metrics({k: float(v) for k, v in result.metrics.items() if isinstance(v, (int, float)) and np.isfinite(v)})
            mlflow.set_tags(data_tags or {})
            mlflow.log_text("\n".join(findings) + "\n", "data/findings.txt")
            for name, text in configs.items():
                mlflow.log_text(text, f"config/{name}")
            mlflow.log_text(result.table.to_csv(index=False), "evaluation/test_metrics.csv")
            mlflow.log_text(result.calibration.to_csv(index=False), "evaluation/calibration.csv")
            mlflow.log_text(result.importance.to_csv(index=False), "evaluation/feature_importance.csv")
            mlflow.log_figure(calibration_figure(result.calibration), "plots/calibration.png")
            mlflow.log_figure(importance_figure(result.importance), "plots/feature_importance.png")

            scorer = result.scorer
            with tempfile.TemporaryDirectory() as tmp:
                bundle = scorer.save(Path(tmp) / "scorer.joblib")
                mlflow.log_artifact(str(bundle), "bundle")
                pairs = pd.DataFrame({S.REP_ID: scorer.space.rep_ids[:5].astype(str),
                                      S.ACCOUNT_ID: scorer.space.account_ids[:5].astype(str)})
                X = scorer.features(pairs[S.REP_ID], pairs[S.ACCOUNT_ID])
                booster = scorer.model.booster_
                mlflow.lightgbm.log_model(
                    booster, name="booster", signature=infer_signature(X, booster.predict(X)),
                    input_example=X, pip_requirements=pip_requirements(),
                )
                out = pairs.assign(p_win=scorer.score(pairs[S.REP_ID], pairs[S.ACCOUNT_ID]))
                info = self._log_pyfunc(bundle, pairs, out)
            version = str(info.registered_model_version)
            decision = self._decide(result, version, promote, score_champion)
            mlflow.set_tag("repfit.booster_start", scorer.model.offset_ or "constant")
            mlflow.set_tags({"repfit.model_version": version, "repfit.promoted": str(decision.promoted),
                             "repfit.decision": decision.reason})
            if decision.champion_log_loss is not None:
                mlflow.log_metrics({"champion.test.log_loss": decision.champion_log_loss,
                                    "challenger.test.log_loss_same_rows": decision.challenger_log_loss})
            if models_dir is not None:
                scorer.save(Path(models_dir) / f"{MODEL_NAME}-v{version}.joblib")
                if decision.promoted:
                    scorer.save(Path(models_dir) / f"{MODEL_NAME}-champion.joblib")
        return run_id, decision

    def _log_pyfunc(self, bundle: Path, pairs: pd.DataFrame, out: pd.DataFrame):
        return mlflow.pyfunc.log_model(
            name="winprob", python_model=WinProbPyfunc(), artifacts={"scorer": str(bundle)},
            code_paths=[str(Path(__file__).parent)], signature=infer_signature(pairs, out),
            input_example=pairs, pip_requirements=pip_requirements(), registered_model_name=MODEL_NAME,
        )

    def _decide(self, result, version: str, promote: bool, score_champion) -> Decision:
        c = self.client
        c.set_registered_model_alias(MODEL_NAME, CHALLENGER, version)
        try:
            champ = c.get_model_version_by_alias(MODEL_NAME, CHAMPION)
        except Exception:  # no champion yet
            champ = None
        rows = result.test_rows
        y = rows[S.WON].to_numpy(float)
        mine = result.scorer.model.predict_win(result.test_features)
        ours = log_loss(y, mine)
        if champ is None:
            c.set_registered_model_alias(MODEL_NAME, CHAMPION, version)
            return Decision(version, True, "no champion yet", ours, None, None, len(rows))
        try:
            theirs_p = score_champion(self.load_scorer(champ.run_id))
        except BundleError as exc:  # a bundle of an older format: nothing to compare with, never a dead end
            theirs_p, unreadable = np.full(len(y), np.nan), str(exc)
        else:
            unreadable = None
        ok = ~np.isnan(theirs_p)
        if unreadable:
            reason = f"champion v{champ.version} cannot be read by this repfit: {unreadable}"
            theirs = None
        elif ok.sum() == 0:
            reason = "champion cannot score this test period (no common reps/accounts)"
            theirs = None
        else:
            ours, theirs = log_loss(y[ok], mine[ok]), log_loss(y[ok], theirs_p[ok])
            reason = (f"test log loss {ours:.5f} vs champion v{champ.version} {theirs:.5f} "
                      f"on the same {int(ok.sum())} test rows")
        better = theirs is None or ours < theirs
        promoted = better or promote
        if promoted:
            c.set_registered_model_alias(MODEL_NAME, CHAMPION, version)
        verdict = ("promoted: the champion cannot be compared" if theirs is None else
                   "promoted: beats the champion" if better else
                   "promoted on request although it does not beat the champion" if promote else
                   "kept as challenger: does not beat the champion")
        return Decision(version, promoted, f"{verdict} ({reason})", ours, theirs, champ.version, int(ok.sum()))

    @_store_errors
    def log_job(self, kind: str, params: dict, metrics: dict, tags: dict, artifacts: list[Path],
                texts: dict[str, str] | None = None) -> str:
        """One MLflow run for a ``score`` / ``assign`` / ... job, with its outputs as artifacts."""
        with mlflow.start_run(run_name=kind) as run:
            mlflow.set_tags({"repfit.kind": kind, **{k: str(v) for k, v in tags.items() if v is not None}})
            mlflow.log_params({k: (",".join(map(str, v)) if isinstance(v, (tuple, list)) else v) for k, v in params.items()})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()
                                if isinstance(v, (int, float, np.floating)) and np.isfinite(v)})
            for path in artifacts:
                mlflow.log_artifact(str(path), "outputs")
            for name, text in (texts or {}).items():
                mlflow.log_text(text, name)
            return run.info.run_id

    def load_scorer(self, run_id: str):
        from repfit.winprob import PairScorer

        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=SCORER_ARTIFACT, dst_path=tmp,
                                                           tracking_uri=self.uri)
            except Exception as exc:  # noqa: BLE001 - deleted or unreachable artifacts
                raise RepfitError(f"{self.uri}: the model bundle of run {run_id} cannot be read ({_first_line(exc)}); "
                                  "its artifacts may have been deleted or moved. Fix: train the model again, or "
                                  "restore the store's artifacts folder.", option="model") from None
            return PairScorer.load(path)

    def scorer_for(self, model_uri: str):
        """A ``PairScorer`` for ``models:/NAME@alias`` / ``models:/NAME/VERSION`` (via its run) or a joblib path."""
        from repfit.winprob import PairScorer

        if not model_uri.startswith("models:/"):
            path = Path(model_uri)
            if not path.is_file():
                raise RepfitError(f"{model_uri}: model not found. Fix: name models:/{MODEL_NAME}@champion or a .joblib "
                                  "bundle.", option="model")
            return PairScorer.load(path), model_uri, None
        ref = model_uri[len("models:/"):]
        try:
            if "@" in ref:
                name, alias = ref.split("@", 1)
                mv = self.client.get_model_version_by_alias(name, alias)
            else:
                name, version = ref.split("/", 1)
                mv = self.client.get_model_version(name, version)
        except Exception:
            raise RepfitError(
                f"{model_uri}: no such registered model version in {self.uri}. "
                "Fix: train a model into this store first, or use the tracking URI of the store that holds it.",
                option="model",
            ) from None
        return self.load_scorer(mv.run_id), model_uri, str(mv.version)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


class _schema_lock:
    """An exclusive file lock beside a SQLite store while it is opened (MLflow creates the schema on first use;
    two processes doing that at once fail with "table ... already exists"). No-op for other stores."""

    def __init__(self, uri: str):
        self.path = Path(uri[len("sqlite:///"):]).with_suffix(".lock") if uri.startswith("sqlite:///") else None

    def __enter__(self):
        if self.path is not None and self.path.parent.is_dir():
            import fcntl

            self.fh = open(self.path, "a")
            fcntl.flock(self.fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if getattr(self, "fh", None) is not None:
            self.fh.close()  # closing releases the lock


def open_tracker(uri: str | None, cwd: Path) -> Tracker:
    root = find_root(cwd)
    if uri is None:
        (root / "mlruns").mkdir(parents=True, exist_ok=True)
        uri = default_uri(root)
    return Tracker(uri)
