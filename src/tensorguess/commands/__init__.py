"""The commands, one module each: `add_arguments(parser)` (its arguments, help and choices) and
`run(args)` (its work, through the library; returns the exit status).

A command module imports only what parsing needs at its top; the library it runs with
(TensorFlow, uvicorn...) is imported inside `run`, so a command loads only its own.
"""

from __future__ import annotations

# name on the command line -> (module, help shown in the list of commands, wrapper script)
COMMANDS = {
    "train": ("train", "retrain the final layer on DIR/data/<category>/ images", "train.sh"),
    "guess": ("guess", "print the scores of every label for images", "guess.sh"),
    "sort": ("sort", "copy each image of SRC to DEST/<label>--<score>.<ext>", "guessDir.sh"),
    "evaluate": ("evaluate", "score a folder-per-class set and write an evaluation report", "evaluate.sh"),
    "export": ("export", "write the classifier in DIR as TFLite (float, int8) and Core ML", "export.sh"),
    "serve": ("serve", "serve the classifier over HTTP: an API and a page with a live camera", "serve.sh"),
    "fetch-module": ("fetch_module", "download a TF Hub module into the cache", None),
}
