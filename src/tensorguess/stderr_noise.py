"""What TensorFlow, its TFLite converter, LiteRT and coremltools print on stderr that says
nothing about the user's run, kept off it; everything else passes through.

Two kinds of noise, two means:
- Python's own (warnings, loggers), TensorFlow's C++ logging below ERROR and coremltools'
  progress bars: `quiet()`, once, before TensorFlow and tqdm are imported (TF_CPP_MIN_LOG_LEVEL
  and TQDM_DISABLE are read when they load).
- Lines the converter and LiteRT write on file descriptor 2 themselves, whatever the log
  level ("fully_quantize: ...", "INFO: Created TensorFlow Lite XNNPACK delegate..."):
  `filtered()` around those calls drops the lines in NOISE, and only those.

TF_ENABLE_ONEDNN_OPTS is left as it is: turning oneDNN off would hide its notice by changing
the float results (TensorFlow's own notice says so), and the notice is INFO, below the level set.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import warnings

# Whole lines, as TensorFlow 2.21, ai-edge-litert and coremltools 8 print them.
NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:.]+ +\d+ (?:"
    r"cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized"
    r"|port\.cc:\d+\] oneDNN custom operations are on"
    r"|tf_tfl_flatbuffer_helpers\.cc:\d+\] Ignored "
    r"|flatbuffer_export\.cc:\d+\] Skipping runtime version metadata"
    r"|single_machine\.cc:\d+\] Starting new session"
    r"|devices\.cc:\d+\] Number of eligible GPUs"
    r").*"
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\."
    r"|fully_quantize: \d+, inference_type: \d+, input_inference_type: \w+, output_inference_type: \w+"
    r"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\."
    r"|INFO: Initialized TensorFlow Lite runtime\."
)

# Python warnings that describe the libraries' choices, not the user's data.
WARNINGS = (
    # The converter: our int8 input's statistics are set by the model's first op, on purpose.
    r"Statistics for quantized inputs were expected",
    # LiteRT: bias_correction reads every tensor of the int8 model, on calibration photos only.
    r"Warning: Enabling `experimental_preserve_all_tensors`",
)
# coremltools' import-time notices on Linux, where Core ML cannot run (export says so itself).
COREMLTOOLS = re.compile(r"Failed to load _\w+Proxy|TensorFlow version [\d.]+ has not been tested"
                         r"|scikit-learn version [\d.]+ is not supported")


class _CoremltoolsNotices(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not COREMLTOOLS.match(record.getMessage())


def quiet() -> None:
    """Once, at the start of a command, before TensorFlow is imported. A TF_CPP_MIN_LOG_LEVEL
    the user set stays theirs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # coremltools draws a progress bar for each of its passes ("Running MIL ... pipeline"),
    # which says nothing a user acts on. tqdm reads TQDM_* as its defaults when it is first
    # imported; our own bars (features/pipeline.progress) pass `disable` themselves, so they stay.
    os.environ.setdefault("TQDM_DISABLE", "1")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("coremltools").addFilter(_CoremltoolsNotices())
    for message in WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=UserWarning)


def is_noise(line: str) -> bool:
    return NOISE.fullmatch(line.rstrip("\r\n")) is not None


_lock = threading.Lock()
_depth = 0
_state: tuple[int, int, threading.Thread] | None = None
PIPE_SIZE = 1 << 20  # what the C++ side may write in one go while holding the GIL


def _pass_through(read_fd: int, out_fd: int) -> None:
    pending = b""
    while chunk := os.read(read_fd, 65536):
        *lines, pending = (pending + chunk).split(b"\n")
        kept = b"".join(line + b"\n" for line in lines
                        if not is_noise(line.decode("utf-8", "replace")))
        if kept:
            os.write(out_fd, kept)
    if pending and not is_noise(pending.decode("utf-8", "replace")):
        os.write(out_fd, pending)
    os.close(read_fd)


@contextlib.contextmanager
def filtered():
    """File descriptor 2 through NOISE while the block runs (C++ included); nestable. Every
    line that is not known noise reaches stderr, in order, as it is written."""
    global _depth, _state
    with _lock:
        _depth += 1
        if _depth == 1:
            try:
                sys.stderr.flush()
                read_fd, write_fd = os.pipe()
                with contextlib.suppress(OSError, AttributeError):
                    import fcntl

                    fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
                saved = os.dup(2)
                os.dup2(write_fd, 2)
                os.close(write_fd)
                reader = threading.Thread(target=_pass_through, args=(read_fd, saved),
                                          name="stderr-noise", daemon=True)
                reader.start()
                _state = (saved, read_fd, reader)
            except OSError:
                _state = None  # no spare descriptor: stderr stays as it is, noise included
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _state is not None:
                saved, _, reader = _state
                _state = None
                with contextlib.suppress(ValueError, OSError):
                    sys.stderr.flush()
                os.dup2(saved, 2)  # the pipe's last writer closed: the reader sees its end
                reader.join(timeout=5)  # a child that inherited fd 2 may hold it open longer
                if not reader.is_alive():
                    os.close(saved)
