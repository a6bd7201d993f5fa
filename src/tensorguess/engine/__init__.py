"""Where the expensive per-photo work runs: here (local) or on a Ray cluster (ray_engine)."""
