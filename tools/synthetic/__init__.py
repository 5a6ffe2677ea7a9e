"""Procedural screenshot / diagram scenes with questions (training data and the evaluation set)."""
