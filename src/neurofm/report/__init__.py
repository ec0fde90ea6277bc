"""Static HTML report of a model comparison: leaderboards, plots and a 3D case viewer (niivue).

``build_report(results_dir, out)`` turns a results folder (see :mod:`neurofm.report.inputs`)
into a self-contained folder that opens offline from file://.
"""

from neurofm.report.build import build_report

__all__ = ["build_report"]
