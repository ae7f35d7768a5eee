"""Training: time split, LightGBM fit, calibration, evaluation against baselines."""
