"""Feature pipelines: pure functions from the validated tables to model-ready frames."""

from repfit.features.pipeline import (
    Dimension,
    FeatureSpace,
    HistorySnapshot,
    learn_joint,
    pair_features,
    point_in_time_features,
    resolve_dimensions,
    snapshot,
)

__all__ = [
    "Dimension", "FeatureSpace", "HistorySnapshot", "learn_joint", "pair_features", "point_in_time_features",
    "resolve_dimensions", "snapshot",
]
