"""Stage 1, photos: finding and decoding them, their labels and the split."""
