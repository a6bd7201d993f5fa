"""Photos: finding and decoding them, their labels and the split."""
