"""The embedded synthetic benchmark: MNI152-based subjects, lesions and sites.

``build_benchmark(out, preset, seed, shift=...)`` writes the whole benchmark; the modules
below it are usable on their own (templates, anatomy, lesions, contrast, sites, session).
"""

from neurofm.synth.benchmark import PRESETS, SynthPreset, build_benchmark, get_preset
from neurofm.synth.sites import SHIFTS

__all__ = ["PRESETS", "SHIFTS", "SynthPreset", "build_benchmark", "get_preset"]
