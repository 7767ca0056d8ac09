"""Benchmarks (`make bench-*`): separate from the tests, they print figures."""
