"""Config files (issue 10, point 6): every key checked against its section and declared type, one line per error."""

from __future__ import annotations

import re
import tomllib
from dataclasses import fields

import pytest

from repfit.config import (
    AUTO,
    FeatureConfig,
    TrainConfig,
    load_feature_config,
    load_train_config,
    sections,
)
from repfit.errors import ConfigError

from conftest import ROOT, run

F, T = load_feature_config, load_train_config

# case -> (loader, file text, pattern after "<file>: "; each names the key)
BAD = {
    # structure: unknown / misplaced keys and sections
    "unknown key": (T, "[lightgbm]\nlearnin_rate = 0.1\n",
                    r"\[lightgbm\] unknown setting 'learnin_rate'; known keys in \[lightgbm\]: learning_rate, .*"
                    r"Fix: correct the spelling \(did you mean 'learning_rate' in \[lightgbm\]\?\)"),
    "key in the wrong section": (T, "[lightgbm]\nseed = 7\n",
                                 r"\[lightgbm\] key 'seed' belongs in \[run\], not \[lightgbm\]; known keys in \[lightgbm\]: "
                                 r".*Fix: move the seed line under \[run\]"),
    "strengths key under joint": (F, "[joint]\nn_bands = 4\n", r"\[joint\] key 'n_bands' belongs in \[strengths\]"),
    "unknown section": (F, "[strength]\nn_bands = 4\n",
                        r"\[strength\] unknown section \(holding 'n_bands'\); known sections: \[strengths\], \[shrinkage\], "
                        r"\[joint\]; Fix: rename it \[strengths\]"),
    "top-level key": (T, "seed = 7\n", r"key 'seed' is at the top level, outside any section; known keys in \[run\]: seed; "
                                       r"Fix: put the seed line under a \[run\] header"),
    "unknown top-level key": (T, "verbose = true\n", r"unknown top-level key 'verbose'; known sections: \[split\]"),
    "section given as a value": (F, "joint = 0.45\n", r"'joint' must be a section, got joint = 0.45; known keys in \[joint\]"),
    "nested table in a section": (F, "[strengths.industry]\nx = 1\n", r"\[strengths\] unknown setting 'industry'"),
    # types, one per kind
    "bare string for a column list": (F, '[strengths]\naccount_attributes = "industry"\n',
                                      r"\[strengths\] account_attributes 'industry' must be \"auto\" or a list of strings; "
                                      r"Fix: write a list: account_attributes = \[\"industry\"\]"),
    "number for a column list": (F, "[strengths]\nshared_attributes = 5\n",
                                 r"\[strengths\] shared_attributes 5 must be \"auto\" or a list of strings"),
    "numbers in a column list": (F, "[strengths]\nnumeric_bands = [1, 2]\n", r"\[strengths\] numeric_bands \[1, 2\] must be"),
    "bare string for a tuple": (F, '[strengths]\nexclude = "name"\n', r"\[strengths\] exclude 'name' must be a list of strings; "
                                                                       r"Fix: write a list: exclude = \[\"name\"\]"),
    "float for an int": (F, "[strengths]\nn_bands = 4.0\n", r"\[strengths\] n_bands 4.0 must be a whole number; Fix: n_bands = 4\."),
    "bool for an int": (T, "[lightgbm]\nnum_leaves = true\n", r"\[lightgbm\] num_leaves true must be a whole number; Fix: e.g. num_leaves = 15"),
    "string for a float": (T, '[lightgbm]\nlearning_rate = "0.1"\n', r"\[lightgbm\] learning_rate '0.1' must be a number"),
    "bool for a float": (F, "[shrinkage]\nprior_deals = false\n", r"\[shrinkage\] prior_deals false must be a number"),
    "int for a bool": (T, "[lightgbm]\nmonotone = 1\n", r"\[lightgbm\] monotone 1 must be true or false; Fix: e.g. monotone = true"),
    "number for a string": (T, "[lightgbm]\nboost_from = 0\n", r"\[lightgbm\] boost_from 0 must be a string"),
    "not one of (band_edges)": (F, '[strengths]\nband_edges = "deciles"\n',
                                r"\[strengths\] band_edges 'deciles' is not one of learned, quantile; Fix: e.g. band_edges = \"learned\""),
    "not one of (calibration)": (T, '[calibration]\ncalibration = "sigmoid"\n',
                                 r"\[calibration\] calibration 'sigmoid' is not one of auto, isotonic, platt, none"),
    # values
    "nan": (F, "[shrinkage]\nprior_deals = nan\n", r"\[shrinkage\] prior_deals nan must be a finite number"),
    "inf": (T, "[lightgbm]\nlambda_l2 = inf\n", r"\[lightgbm\] lambda_l2 inf must be a finite number"),
    "fraction out of range": (T, "[split]\nvalidation_fraction = 1.5\n",
                              r"\[split\] validation_fraction 1.5 must be in \(0, 1\); Fix: use a value in \(0, 1\)"),
    "zero fraction": (T, "[lightgbm]\nfeature_fraction = 0\n", r"\[lightgbm\] feature_fraction 0 must be in \(0, 1\]"),
    "count below 1": (T, "[lightgbm]\nmax_rounds = 0\n", r"\[lightgbm\] max_rounds 0 must be >= 1"),
    "negative prior": (F, "[joint]\njoint_prior_sd = -1.0\n", r"\[joint\] joint_prior_sd -1.0 must be >= 0"),
    "zero prior deals": (F, "[shrinkage]\nprior_deals = 0\n", r"\[shrinkage\] prior_deals 0 must be > 0"),
    "months out of range": (F, "[joint]\njoint_refit_months = 13\n", r"\[joint\] joint_refit_months 13 must be in \[1, 12\]"),
    "split leaves no training rows": (T, "[split]\nvalidation_fraction = 0.45\ntest_fraction = 0.45\n",
                                      r"\[split\] validation_fraction 0.45 \+ test_fraction 0.45 = 0.90 leaves under 10%"),
    "not TOML": (T, "[split\n", r"not valid TOML"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_config_file_gives_one_line_naming_file_key_and_fix(tmp_path, case):
    load, text, pattern = BAD[case]
    path = tmp_path / "bad_config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(str(path)) + ": " + pattern) as err:
        load(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert "Fix" in message


@pytest.mark.parametrize(("load", "path"), [(F, ROOT / "features" / "default.toml"), (T, ROOT / "training" / "default.toml")])
def test_default_files_spell_out_every_default_in_its_section(load, path):
    cls = type(load())
    assert load(path) == cls()
    spelled = {(section, key) for section, body in tomllib.loads(path.read_text()).items() for key in body}
    assert spelled == {(section, key) for section, keys in sections(cls).items() for key in keys}


def test_every_field_declares_a_section():
    for cls in (FeatureConfig, TrainConfig):
        assert all(f.metadata.get("section") for f in fields(cls)), cls


def test_valid_values_load_with_declared_types(tmp_path):
    path = tmp_path / "ok.toml"
    path.write_text('[strengths]\naccount_attributes = ["industry"]\nnumeric_bands = []\nexclude = ["name"]\n'
                    'band_edges = "quantile"\n[shrinkage]\nprior_deals = 4\n')
    cfg = load_feature_config(path)
    assert cfg.account_attributes == ("industry",) and cfg.numeric_bands == () and cfg.exclude == ("name",)
    assert cfg.shared_attributes == AUTO and cfg.band_edges == "quantile"
    assert cfg.prior_deals == 4.0 and isinstance(cfg.prior_deals, float)
    path.write_text('[lightgbm]\nlearning_rate = 1\nboost_from = ""\nrefit = false\n[calibration]\ncalibration = "none"\n')
    cfg = load_train_config(path)
    assert (cfg.learning_rate, cfg.boost_from, cfg.refit, cfg.calibration) == (1.0, "", False, "none")


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.toml: config file not found"):
        load_train_config(tmp_path / "nope.toml")


@pytest.mark.parametrize(("flag", "text", "pattern"), [
    ("--features", '[strengths]\naccount_attributes = "industry"\n', r"\[strengths\] account_attributes 'industry'"),
    ("--config", "[lightgbm]\nseed = 1\n", r"\[lightgbm\] key 'seed' belongs in \[run\]"),
])
def test_cli_train_rejects_bad_config_before_any_work(small_org, tmp_path, monkeypatch, flag, text, pattern):
    import repfit.jobs
    import repfit.training.train

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the config was checked")

    monkeypatch.setattr(repfit.jobs, "load_dataset", no_work)
    monkeypatch.setattr(repfit.training.train, "train", no_work)
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    store = tmp_path / "mlflow.db"
    res = run("train", "--data", small_org, flag, bad, "--tracking-uri", f"sqlite:///{store}",
              "--models-dir", tmp_path / "models")
    assert res.exit_code == 2, res.output
    assert res.output.startswith(f"error: {bad}: ") and res.output.count("\n") == 1, res.output
    assert re.search(pattern, res.output) and "Traceback" not in res.output
    assert not store.exists() and not (tmp_path / "models").exists()
