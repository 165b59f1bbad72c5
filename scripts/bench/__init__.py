"""Benchmarks that start real processes; see failover.py."""
