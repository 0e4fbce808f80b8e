"""Learning from features: pipelines, heads, training, evaluation, calibration, novelty."""
