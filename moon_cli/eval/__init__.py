"""Evaluation: retrieval and zero-shot classification metrics on the MBE-style bench."""
