"""Stage 2, features: the pretrained module, the bottleneck pass and its cache, neighbours."""
