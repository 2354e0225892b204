"""Benchmarks of what chargeapp exists for (issue 6): ``python -m bench``; ``python -m bench --smoke`` for CI.

Every figure is measured next to a baseline in the same run on the same
machine (shared machines are noisy: ratios hold, absolute times do not). See
docs/performance.md for the figures, the commands and the machine.
"""
