"""Benchmarks and quality checks: bench, soak, field bench, profile, parity, pointing game."""
