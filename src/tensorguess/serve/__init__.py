"""Using a trained classifier: which graphs may run, scoring photos, sorting them."""
