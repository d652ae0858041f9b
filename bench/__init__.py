"""Benchmarks: `make bench` runs them and writes bench/report.md and bench/report.json."""
