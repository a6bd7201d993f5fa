"""Stage 3, the head: the final layer, its calibration and class balance."""
