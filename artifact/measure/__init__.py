"""Measurements: tokenizer efficiency, timed trials, environment capture and noise guards."""
