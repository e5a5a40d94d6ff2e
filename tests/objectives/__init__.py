"""Tests of t5lit.objectives: golden arrays, properties, lengths and errors."""
