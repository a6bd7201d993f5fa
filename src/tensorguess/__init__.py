"""tensor-guess: retrain an image classifier by transfer learning, then label and sort photos."""

__version__ = "0.1.0"
