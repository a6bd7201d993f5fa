"""Stage 4, export: the trained classifier written as files other programs run."""
