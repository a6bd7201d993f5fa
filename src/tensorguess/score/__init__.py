"""Batch scoring: the classifier a model folder holds (frozen graph, SavedModel, TFLite), run over photos."""
