"""Analysis of a run's records: unit values (units.py), paired ratios and their intervals (ratios.py), verdict
rules (verdicts.py), sample-size advice (power.py); analyse() in core.py puts them together."""

from artifact.analysis.core import PER_MODEL_METRICS, RESULTS_SCHEMA_VERSION, ReferenceCorpus, analyse
from artifact.analysis.units import cells, measured_records, unit_values

__all__ = ["PER_MODEL_METRICS", "RESULTS_SCHEMA_VERSION", "ReferenceCorpus", "analyse", "cells", "measured_records",
           "unit_values"]
