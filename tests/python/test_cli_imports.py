"""The command line imports only what the chosen command needs."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO

SERVER_MODULES = ("uvicorn", "starlette", "fastapi")


def test_train_imports_no_server(tmp_path):
    # train dispatched up to its first check (DIR missing: a usage error, exit 2), errors caught.
    code = ("import sys; from tensorguess import cli; "
            f"status = cli.main(['train', {str(tmp_path / 'missing')!r}]); "
            f"loaded = [name for name in {SERVER_MODULES!r} if name in sys.modules]; "
            "assert status == 2, status; assert not loaded, f'train imported {loaded}'")
    subprocess.run([sys.executable, "-c", code], check=True,
                   env=dict(os.environ, PYTHONPATH=str(REPO / "src")))
