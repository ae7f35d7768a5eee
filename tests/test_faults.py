"""Faults and small traps around outputs (issue 11, minor items): each ends in a right answer or one clear line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from conftest import run


def test_an_upper_case_csv_suffix_gets_csv_and_an_input_table_is_never_overwritten(trained):
    org, uri, tmp = trained
    res = run("score", "--data", org, "--tracking-uri", uri, "--out", tmp / "s.CSV")
    assert res.exit_code == 0, res.output
    assert (tmp / "s.CSV").read_text().startswith("rep_id,account_id,p_win")  # not Parquet bytes
    before = (org / "accounts.csv").read_bytes()
    res = run("assign", "--data", org, "--tracking-uri", uri, "--out", org / "accounts.csv")
    assert res.exit_code == 2 and "is an input table of this run" in res.output and "Traceback" not in res.output
    assert (org / "accounts.csv").read_bytes() == before


def test_a_huge_value_is_shortened_in_the_message(org_copy):
    acc = pd.read_csv(org_copy / "accounts.csv", dtype=str, keep_default_na=False)
    acc.loc[0, "current_rep_id"] = "X" * 200_000
    acc.to_csv(org_copy / "accounts.csv", index=False)
    res = run("validate", "--data", org_copy)
    assert res.exit_code == 2 and "characters) (on line 2)" in res.output  # 200,000 X and the quotes
    assert len(res.output) < 2_000


def test_sigterm_leaves_no_half_written_file(tmp_path):
    """A scheduler stopping the job: the temporary file of the output being written is removed, as on Ctrl-C."""
    out = tmp_path / "org"
    exe = Path(sys.executable).with_name("repfit")
    proc = subprocess.Popen([str(exe), "synth", "--out", str(out), "--reps", "300", "--accounts", "300000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(out.glob(".*.tmp")) and proc.poll() is None:
        time.sleep(0.05)
    assert list(out.glob(".*.tmp")), "the output was never being written (machine too fast for this check?)"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert not list(out.glob(".*.tmp"))


def test_an_unreachable_tracking_server_fails_fast_with_one_line(small_org, tmp_path):
    """Issue 11, item 11: MLflow retried for 4 minutes, then printed a traceback."""
    t0 = time.monotonic()
    res = run("score", "--data", small_org, "--tracking-uri", "http://127.0.0.1:9", "--out", tmp_path / "s.csv")
    assert time.monotonic() - t0 < 30
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: --tracking-uri: http://127.0.0.1:9: cannot use this MLflow tracking store")
    assert len(res.output.strip().splitlines()) == 1


def test_a_registered_model_whose_artifacts_are_gone_is_one_line(small_org, tracking_uri, tmp_path):
    import shutil

    assert run("train", "--data", small_org, "--tracking-uri", tracking_uri, "--models-dir", tmp_path / "m").exit_code == 0
    shutil.rmtree(Path(tracking_uri[len("sqlite:///"):]).parent / "artifacts")
    res = run("score", "--data", small_org, "--tracking-uri", tracking_uri, "--out", tmp_path / "s.csv")
    assert res.exit_code == 2, res.output
    assert "the model bundle of run" in res.output and "artifacts may have been deleted" in res.output
    assert "Traceback" not in res.output


def test_concurrent_first_use_of_a_new_store_creates_its_schema_once(tmp_path):
    """Issue 11, item 11: two jobs starting on a new SQLite store raced to create its tables."""
    code = ("import sys; from pathlib import Path; from repfit.tracking import open_tracker; "
            "open_tracker(sys.argv[1], Path('.')); print('ok')")
    uri = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
    (tmp_path / "new").mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", code, uri], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e[-500:] for _, e in outs]


def test_a_full_disk_keeps_the_previous_output_and_says_so(tmp_path):
    """Issue 11, item 11: a write that fails half-way (ENOSPC) leaves the previous file and no temporary file."""
    import errno

    import pytest

    from repfit.errors import RepfitError
    from repfit.io import atomic_write

    target = tmp_path / "out.csv"
    target.write_text("previous\n")

    def fill_the_disk(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(RepfitError, match=r"out.csv: could not be written \(No space left on device\)"):
        atomic_write(target, fill_the_disk)
    assert target.read_text() == "previous\n" and sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_a_read_only_store_is_one_line_and_the_outputs_stay(trained, tmp_path, monkeypatch):
    """Issue 11, item 11: a store that cannot be written (opened read-only here: as root, file modes do not stop
    writes) fails with one line when the run is logged."""
    org, uri, tmp = trained
    ro = f"sqlite:///file:{uri[len('sqlite:///'):]}?mode=ro&uri=true"
    monkeypatch.chdir(tmp_path)  # MLflow makes the folders of a "file:..." database path relative to the cwd
    res = run("score", "--data", org, "--tracking-uri", ro, "--out", tmp_path / "s.csv")
    assert res.exit_code == 2, res.output
    assert "error: --tracking-uri: " in res.output and "Traceback" not in res.output
    assert "the run could not be logged to this MLflow store" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert (tmp_path / "s.csv").stat().st_size > 0  # the scores were written before the run failed to log
