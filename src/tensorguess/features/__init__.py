"""Features: the pretrained module, the bottleneck pass and its cache, neighbours."""
