"""Shared fixtures: small synthetic orgs whose right answers are known by construction."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # see ../shared/FIELD-NOTES.md
# The joint model's L-BFGS fits make ~100k tiny BLAS calls; OpenBLAS's two threads turn each into a hand-off
# (learn_joint on small_org: 5.4 s with 2 threads, 0.8 s with 1 on a busy 2-core box). Set before numpy loads;
# subprocesses inherit it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from repfit.synth import write_org  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MAVEN = Path(__file__).resolve().parents[2] / "shared" / "data" / "crm_sales_opportunities"
MAVEN_MAPPING = Path(__file__).resolve().parents[1] / "examples" / "maven_crm" / "repfit.toml"


@pytest.fixture(scope="session")
def small_org(tmp_path_factory) -> Path:
    """12 reps x 150 accounts, seed 3. Treat as read-only; copy it (``org_copy``) to modify."""
    out = tmp_path_factory.mktemp("small_org")
    write_org(out, 12, 150, seed=3)
    return out


@pytest.fixture
def org_copy(small_org, tmp_path) -> Path:
    dst = tmp_path / "org"
    shutil.copytree(small_org, dst)
    return dst


@pytest.fixture(scope="session")
def maven_dir() -> Path:
    if not (MAVEN / "sales_pipeline.csv").is_file():
        pytest.skip("../shared/data/crm_sales_opportunities is absent")
    return MAVEN


@pytest.fixture(scope="session")
def _migrated_db(tmp_path_factory) -> Path:
    """An MLflow SQLite store migrated once; each test gets a copy (migrating costs ~2 s)."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracking_uri(_migrated_db, tmp_path) -> str:
    store = tmp_path / "mlruns"
    store.mkdir()
    shutil.copy(_migrated_db, store / "mlflow.db")
    return f"sqlite:///{store / 'mlflow.db'}"


@pytest.fixture(scope="session")
def demo_org(tmp_path_factory) -> Path:
    """The demo's org: 40 reps x 2,000 accounts (~8,000 closed opportunities), seed 7."""
    out = tmp_path_factory.mktemp("demo_org")
    write_org(out, 40, 2000, seed=7)
    return out


@pytest.fixture(scope="session")
def demo_trained(demo_org):
    """The demo org's model, trained once per session (a TrainResult)."""
    from repfit.config import FeatureConfig, TrainConfig
    from repfit.schema import load_dataset
    from repfit.training.train import train

    return train(load_dataset(demo_org), FeatureConfig(), TrainConfig())


def run(*args):
    """Invoke the CLI in-process (as a user would: errors become messages and exit codes)."""
    from click.testing import CliRunner

    from repfit.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


class TrainedStore:
    """A tracking store with a model trained once per session, and the CLI result of that training (``result``).

    ``db`` (the MLflow SQLite store) and ``models`` (the exported bundles) are read-only: tests get copies
    (``copy_to``). The runs' artifacts stay in ``artifacts/`` next to ``db``: MLflow records artifact locations as
    absolute paths, so every copy of the store keeps reading the trained run's artifacts from there, and new runs
    logged through a copy write theirs there too, under new run ids (nothing already there is modified).
    """

    def __init__(self, folder: Path, result):
        self.folder, self.result = folder, result
        self.db, self.models = folder / "mlruns" / "mlflow.db", folder / "models"

    def copy_to(self, tmp_path: Path) -> str:
        """Copy the store's database to ``tmp_path/mlruns`` and its models to ``tmp_path/models``; return the URI."""
        store = tmp_path / "mlruns"
        store.mkdir()
        shutil.copy(self.db, store / "mlflow.db")
        if self.models.is_dir():
            shutil.copytree(self.models, tmp_path / "models")
        return f"sqlite:///{store / 'mlflow.db'}"


def _train_store(tmp_path_factory, template: Path, name: str, data: Path, *extra) -> TrainedStore:
    """Train through the CLI, as a user does, into a new store (its experiment's artifacts beside the database)."""
    folder = tmp_path_factory.mktemp(name)
    (folder / "mlruns").mkdir()
    shutil.copy(template, folder / "mlruns" / "mlflow.db")
    store = TrainedStore(folder, None)
    res = run("train", "--data", data, "--tracking-uri", f"sqlite:///{store.db}", "--models-dir", store.models, *extra)
    assert res.exit_code == 0, res.output
    assert not list(store.db.parent.glob("mlflow.db-*")), "the store is copied as a single file: no WAL/journal"
    store.result = res
    return store


@pytest.fixture(scope="session")
def trained_store(small_org, _migrated_db, tmp_path_factory) -> TrainedStore:
    """``small_org`` trained once per session with the default configs (model version 1, champion). Read-only."""
    return _train_store(tmp_path_factory, _migrated_db, "trained_store", small_org)


@pytest.fixture
def trained(small_org, trained_store, tmp_path):
    """``small_org`` with a trained model in this test's own store: (org, tracking_uri, tmp_path).

    The registry (version 1, the champion), its runs and ``tmp_path/models`` are this test's copy of
    ``trained_store``: a test may log runs, train again or move aliases without other tests seeing it.
    ``org`` is the shared ``small_org``: copy it to modify it.
    """
    return small_org, trained_store.copy_to(tmp_path), tmp_path


@pytest.fixture(scope="session")
def maven_trained(maven_dir, _migrated_db, tmp_path_factory) -> TrainedStore:
    """Maven CRM (~8,800 opportunities) trained once per session through its mapping, for the slow tests that need
    it (its CLI ``result`` and the store). Read-only; ``copy_to(tmp_path)`` gives a test its own store."""
    return _train_store(tmp_path_factory, _migrated_db, "maven_store", maven_dir, "--mapping", MAVEN_MAPPING)
