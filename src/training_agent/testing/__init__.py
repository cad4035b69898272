"""Helpers shipped for tests, the demo and benchmarks: synthetic image datasets."""
