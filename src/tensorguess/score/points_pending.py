"""The jobs a points model cannot do yet: each refuses in one line, which the command prints.

Placeholders in kinds.KINDS["points"]; each is replaced there by the real function when it is
written (sort: guessDir for points is issue 24; export: the TFLite and Core ML formats of a points
model; serve: the camera page for points is issue 24).
"""

from __future__ import annotations

from tensorguess.errors import TensorGuessError


class NotForPoints(TensorGuessError):
    """A job this tensor-guess does for classes models only, so far."""


def serve_app(*_args, **_kwargs):
    raise NotForPoints("serve is not available for points models yet; score photos with guess.sh DIR "
                       "PHOTO... --json, or run the SavedModel in DIR/saved_model")


def export(*_args, **_kwargs):
    raise NotForPoints("export is not available for points models yet: train.sh already wrote "
                       "the graph and the SavedModel into DIR")
