"""Experiment tracking: runs, metrics, params, artifacts, task events, tracked predictions."""

from omops.tracking.experiment import CURRENT, PROVIDERS, Experiment

__all__ = ["CURRENT", "PROVIDERS", "Experiment"]
