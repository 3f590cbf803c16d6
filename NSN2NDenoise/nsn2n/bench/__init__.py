"""Benchmark: data recipes with clean references, classical baselines, and the runner."""
