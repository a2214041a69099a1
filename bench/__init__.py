"""Benchmarks (not tests): cold start, warm overhead and consumer throughput.

Each benchmark measures its own floor in the same run and prints ratios against it, so a
number means the same thing on a laptop and in CI. `python -m bench --help` lists them.
"""
