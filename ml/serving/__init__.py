"""Serving the active model: predictions in micro-batches, explanations in their own pool."""
