"""Export: the trained classifier written as files other programs run."""
