"""Load generators, samplers and the harness that compares runner with the reference (see README)."""
