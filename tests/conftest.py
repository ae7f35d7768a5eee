"""Shared fixtures: small synthetic orgs whose right answers are known by construction."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # see ../shared/FIELD-NOTES.md

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


@pytest.fixture
def trained(small_org, tracking_uri, tmp_path):
    """``small_org`` with a model trained through the CLI into a fresh store: (org, tracking_uri, tmp_path)."""
    res = run("train", "--data", small_org, "--tracking-uri", tracking_uri, "--models-dir", tmp_path / "models")
    assert res.exit_code == 0, res.output
    return small_org, tracking_uri, tmp_path
