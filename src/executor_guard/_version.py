"""The package version, in one place for hatch and for reports."""

__version__ = "0.1.0"
