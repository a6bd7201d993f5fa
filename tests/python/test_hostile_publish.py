"""publish.py: a model's files published together, whenever a kill comes, as every reader sees them.

Cheap stand-ins for the model's files here (bytes that name their model); the real train.sh and
export.sh, killed by strace at each rename, are in tests/bats/kill_publish.bats.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tensorguess import publish

REPO = Path(__file__).resolve().parents[2]
FILES = ("retrained_graph.pb", "retrained_labels.txt", "train_log.json")

# A child that publishes model B over DIR and SIGKILLs itself at its Nth rename (0: never),
# printing how many renames it made.
PUBLISH_B = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from tensorguess import publish

    folder, kill_at = Path(sys.argv[1]), int(sys.argv[2])
    calls = 0

    def counted(real):
        def rename(*args, **kwargs):
            global calls
            calls += 1
            if calls == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)
        return rename

    os.rename, os.replace = counted(os.rename), counted(os.replace)
    with publish.writing(folder, print), publish.Publication(folder) as publication:
        for name in {files!r}:
            publication.write(folder / name, b"B " + name.encode())
        model = publication.new_folder(folder / "saved_model")
        (model / "saved_model.pb").write_bytes(b"B saved_model")
    print(calls)
""").replace("{files!r}", repr(FILES))


def old_model(folder: Path) -> None:
    for name in FILES:
        (folder / name).write_bytes(b"A " + name.encode())
    (folder / "saved_model").mkdir()
    (folder / "saved_model" / "saved_model.pb").write_bytes(b"A saved_model")


def publish_b(folder: Path, kill_at: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, "-c", PUBLISH_B, str(folder), str(kill_at)], env=env,
                          capture_output=True, text=True, timeout=60)


def models_read(folder: Path) -> set[str]:
    """Which model each file a reader opens belongs to, read as readers do (inside steady)."""
    with publish.steady(folder) as where:
        read = [where(folder / name).read_bytes() for name in FILES]
        read.append(where(folder / "saved_model").joinpath("saved_model.pb").read_bytes())
    return {data[:1].decode() for data in read}


def test_a_kill_at_each_rename_leaves_the_whole_old_model_or_the_whole_new_one(tmp_path):
    whole = tmp_path / "whole"
    whole.mkdir()
    old_model(whole)
    done = publish_b(whole, 0)
    assert done.returncode == 0, done.stderr
    renames = int(done.stdout.split()[-1])
    # The journal; the three files; the SavedModel moved aside, then swapped in.
    assert renames == 6
    assert models_read(whole) == {"B"}
    for kill_at in range(1, renames + 1):
        folder = tmp_path / f"killed-{kill_at}"
        folder.mkdir()
        old_model(folder)
        killed = publish_b(folder, kill_at)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        # Before the journal is in place nothing has changed; after it, readers finish the rest.
        assert models_read(folder) == ({"A"} if kill_at == 1 else {"B"}), kill_at
        assert not (folder / publish.JOURNAL).exists()
        # A SavedModel set aside by the killed run is left to the next writer, which removes it.
        with publish.writing(folder, print):
            assert not list(folder.glob(".*.old"))


def test_a_reader_of_a_folder_it_cannot_write_reads_the_files_the_journal_names(tmp_path, monkeypatch):
    old_model(tmp_path)
    assert publish_b(tmp_path, 4).returncode == -signal.SIGKILL  # the graph and labels renamed, not the rest
    before = sorted(os.listdir(tmp_path))

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(os, "rename", read_only)
    assert models_read(tmp_path) == {"B"}
    assert sorted(os.listdir(tmp_path)) == before  # nothing was changed, the journal is still there
    monkeypatch.undo()
    assert models_read(tmp_path) == {"B"}
    assert not (tmp_path / publish.JOURNAL).exists()


def test_leftovers_of_killed_runs_are_removed_by_the_next_writer_and_only_ours(tmp_path):
    old_model(tmp_path)
    assert publish_b(tmp_path, 1).returncode == -signal.SIGKILL  # killed before its journal
    staged = sorted(path.name for path in tmp_path.iterdir() if path.name.startswith("."))
    assert len(staged) == 6  # the lock, three files, the SavedModel's folder, the journal's temp
    victim = tmp_path.parent / "victim"
    victim.mkdir()
    (victim / "file").write_text("keep")
    (tmp_path / ".saved_model.linkedxx").symlink_to(victim)  # our pattern, but a link
    (tmp_path / ".saved_model.legacy12").mkdir()  # the name the old write_saved_model left
    os.mkfifo(tmp_path / ".retrained_labels.txt.fifo1234.tmp")  # our pattern, not a file or folder
    (tmp_path / ".photos.zip.abcdefgh.tmp").write_text("not ours: no output of ours is called that")
    (tmp_path / "retrained_graph.pb.abcdefgh.tmp").write_text("no leading dot")
    lines: list[str] = []
    with publish.writing(tmp_path, lines.append):
        pass
    assert len(lines) == 1
    assert lines[0].startswith(f"Removed 6 partial outputs that killed runs left in {tmp_path}: ")
    left = sorted(path.name for path in tmp_path.iterdir() if path.name.startswith("."))
    assert left == [".photos.zip.abcdefgh.tmp", ".retrained_labels.txt.fifo1234.tmp", ".saved_model.linkedxx",
                    publish.LOCK]
    assert (victim / "file").read_text() == "keep"
    assert models_read(tmp_path) == {"A"}


def test_a_forged_journal_renames_nothing_outside_our_pattern_and_never_blocks(tmp_path):
    old_model(tmp_path)
    outside = tmp_path.parent / "outside"
    outside.write_bytes(b"X outside")
    (tmp_path / ".elsewhere.abcdefgh.tmp").write_bytes(b"X elsewhere")
    journal = tmp_path / publish.JOURNAL
    journal.write_text('{"renames": [["../outside", "retrained_graph.pb"], '
                       '[".elsewhere.abcdefgh.tmp", "../elsewhere"], '
                       '[".elsewhere.abcdefgh.tmp", "retrained_labels.txt"], "junk", [1, 2]]}')
    assert models_read(tmp_path) == {"A"}
    assert outside.read_bytes() == b"X outside" and (tmp_path / ".elsewhere.abcdefgh.tmp").exists()
    journal.unlink()
    os.mkfifo(journal)  # opened without blocking, then ignored
    assert models_read(tmp_path) == {"A"}
    journal.unlink()
    staged = tmp_path / ".retrained_graph.pb.abcdefgh.tmp"
    staged.write_bytes(b"B graph")
    real = tmp_path.parent / "real-journal.json"
    real.write_text('{"renames": [[".retrained_graph.pb.abcdefgh.tmp", "retrained_graph.pb"]]}')
    journal.symlink_to(real)  # a journal is never read through a link
    assert models_read(tmp_path) == {"A"}


def test_a_second_writer_is_refused_naming_the_first_and_the_kernel_frees_the_lock_on_kill(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pathlib import Path\nfrom tensorguess import publish\n"
         "with publish.writing(Path(sys.argv[1]), print):\n    print('holding', flush=True)\n"
         "    time.sleep(600)\n", str(tmp_path)],
        env={**os.environ, "PYTHONPATH": str(REPO / "src")}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(publish.PublishError) as refused:
            with publish.writing(tmp_path, print):
                pass
        assert str(refused.value) == (f"another train.sh or export.sh (pid {holder.pid}) is writing into "
                                      f"{tmp_path}; wait for it to end, or stop it, then run again")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with publish.writing(tmp_path, print):
        assert (tmp_path / publish.LOCK).read_text() == f"{os.getpid()}\n"


def test_a_lock_file_planted_as_a_link_is_refused_in_one_line(tmp_path):
    victim = tmp_path.parent / "victim-lock"
    victim.write_text("keep")
    (tmp_path / publish.LOCK).symlink_to(victim)
    with pytest.raises(publish.PublishError, match=r"cannot lock .*\.tensor-guess\.lock"):
        with publish.writing(tmp_path, print):
            pass
    assert victim.read_text() == "keep"
