"""The head: the final layer, its calibration and class balance."""
