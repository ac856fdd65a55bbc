"""Reproduction artifact for claim R-2: Swallow's vocabulary expansion and Japanese generation speed."""

__version__ = "0.1.0"
