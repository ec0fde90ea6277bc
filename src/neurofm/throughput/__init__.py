"""Benchmarks behind `neurofm bench`: each writes JSON with side-by-side ratios."""
