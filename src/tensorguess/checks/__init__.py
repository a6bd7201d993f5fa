"""Checks of a photo set before training: duplicates, near-duplicate groups, label errors."""
