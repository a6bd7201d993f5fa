"""Run inside .venv-mediapipe (never imported by the suite): MediaPipe Tasks' ImageClassifier opens each
.tflite given and classifies each photo; prints one JSON object: model -> photo -> the categories,
best first.

Usage: python mediapipe_classify.py MODEL.tflite... -- PHOTO...
"""

import json
import sys

from mediapipe.tasks.python import vision
from mediapipe.tasks.python.core.base_options import BaseOptions
from mediapipe.tasks.python.vision.core.image import Image

split = sys.argv.index("--")
models, photos = sys.argv[1:split], sys.argv[split + 1:]
images = {photo: Image.create_from_file(photo) for photo in photos}
found = {}
for model in models:
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=model), max_results=-1)
    found[model] = {}
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for photo, image in images.items():
            (head,) = classifier.classify(image).classifications
            found[model][photo] = [{"index": c.index, "name": c.category_name, "score": c.score}
                                   for c in head.categories]
print(json.dumps(found))
