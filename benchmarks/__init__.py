"""Benchmarks with targets: the real bot process against the fake Discord and the hub emulator.

Run one with `.venv/bin/python -m benchmarks.<name>` (response, lag, capacity, quotas, restart) or all
of them with `.venv/bin/python -m benchmarks.run_all`. See the Benchmarks section of README.md.
"""
