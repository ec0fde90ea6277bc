"""neurofm: foundation models of brain MRI, from raw scans to a packaged, explained model."""

__version__ = "0.1.0"
