"""Property-based fuzzing of the `osmotic` command line (Hypothesis): see harness.py."""
