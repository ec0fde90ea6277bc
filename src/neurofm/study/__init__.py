"""Studies: a frozen recipe run over arms x seeds, with baselines and seed-level statistics."""

from neurofm.study.recipe import Recipe, load_recipe

__all__ = ["Recipe", "load_recipe"]
