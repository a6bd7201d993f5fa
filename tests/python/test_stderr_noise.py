"""stderr_noise: known noise dropped from file descriptor 2, every other line passed through."""
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

CHILD = r"""
import os, sys
from tensorguess import stderr_noise
with stderr_noise.filtered():
    os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
    os.write(2, b"I0000 00:00:1796570152.295968       7 cpu_feature_guard.cc:227] "
             b"This TensorFlow binary is optimized to use available CPU instructions.\n")
    os.write(2, b"fully_quantize: 1, inference_type: 6, input_inference_type: UINT8, "
             b"output_inference_type: FLOAT32\n")
    os.write(2, b"one of ours\n")
    with stderr_noise.filtered():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        print("from Python", file=sys.stderr)
    os.write(2, b"E0000 00:00:1.0 7 something.cc:1] a real error\nno newline at the end")
os.write(2, b"\nafter\n")
"""


def test_only_known_noise_is_dropped():
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.decode().splitlines() == [
        "one of ours", "from Python", "E0000 00:00:1.0 7 something.cc:1] a real error",
        "no newline at the end", "after"]


def test_quiet_keeps_a_level_the_user_set(monkeypatch):
    from tensorguess import stderr_noise

    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    stderr_noise.quiet()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
