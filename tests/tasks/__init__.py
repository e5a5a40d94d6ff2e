"""Tests of t5lit.data.tasks, t5lit.metrics and t5lit.data.mixtures: formats, loaders, scores, rates."""
