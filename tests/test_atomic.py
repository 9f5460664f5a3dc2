"""Atomic writes: durable (file and folder fsync-ed), umask respected without touching it, symlinks replaced
not followed, orphaned temporary files of dead writers removed (a live writer's kept), one run per folder.

References are the operating system's own view: ``os.fstat`` / ``os.stat`` for inodes and modes, the
``Umask:`` line of ``/proc/self/status`` for the process umask, and real child processes for PIDs."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from slmtok.atomic import atomic_path, open_append, remove_orphans, remove_orphans_of, temp_name
from slmtok.errors import OutputError
from slmtok.runlock import RunLock, RunLockedError


def dead_pid() -> int:
    """The PID of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def with_pid(name: str, pid: int) -> str:
    return name.replace(f"-{os.getpid()}.", f"-{pid}.")


def test_file_and_folder_are_fsynced(tmp_path, monkeypatch):
    """The data is fsync-ed before the rename, and the folder after it (else a power cut can lose the
    rename or leave an empty file)."""
    synced = []
    real = os.fsync

    def recording(fd):
        info = os.fstat(fd)
        synced.append((stat.S_ISDIR(info.st_mode), info.st_ino, info.st_size))
        real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    with atomic_path(tmp_path / "out.bin") as tmp:
        tmp.write_bytes(b"x" * 1000)
    final = os.stat(tmp_path / "out.bin")
    assert (False, final.st_ino, 1000) in synced
    assert (True, os.stat(tmp_path).st_ino, os.stat(tmp_path).st_size) in synced
    assert [s[0] for s in synced].index(False) < [s[0] for s in synced].index(True)


def proc_umask() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    pytest.skip("no /proc/self/status")


def test_mode_follows_the_umask_which_is_never_touched(tmp_path, monkeypatch):
    """The file gets 0o666 less the process umask, and ``os.umask`` (process-wide, racy) is not called."""
    monkeypatch.setattr(os, "umask", lambda mask: pytest.fail("os.umask called"))
    with atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("a")
    assert stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode) == 0o666 & ~proc_umask()
    script = textwrap.dedent(f"""
        import os, stat
        os.umask(0o027)
        from slmtok.atomic import atomic_path
        with atomic_path({str(tmp_path / "b.txt")!r}) as tmp:
            tmp.write_text("b")
        print(oct(stat.S_IMODE(os.stat({str(tmp_path / "b.txt")!r}).st_mode)))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "0o640"


def test_symlink_at_target_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "out.json").symlink_to(victim)
    with atomic_path(tmp_path / "out.json") as tmp:
        tmp.write_text("new")
    assert victim.read_text() == "keep"
    assert not (tmp_path / "out.json").is_symlink() and (tmp_path / "out.json").read_text() == "new"
    (tmp_path / "log.jsonl").symlink_to(victim)
    with pytest.raises(OutputError, match="symlink"):
        open_append(tmp_path / "log.jsonl")
    assert victim.read_text() == "keep"


def test_failure_leaves_no_temporary_file(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "x.bin") as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("writer failed")
    assert list(tmp_path.iterdir()) == []


def test_orphans_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    """A SIGKILL-ed writer leaves its temporary file; the sweep removes it when its PID is gone, and keeps
    the file of a live writer, one from another host, one of another target, and unrelated files."""
    (tmp_path / "sub").mkdir()
    live = temp_name("a.safetensors")
    dead = with_pid(live, dead_pid())
    host = live.split(".")[3].split("-")[0]
    other_host = f".a.safetensors.{'0' * 8 if host != '0' * 8 else 'f' * 8}-{dead_pid()}.0123abcd.slmtok-tmp"
    other_target = with_pid(temp_name("b.safetensors"), dead_pid())
    nested = with_pid(temp_name("c.bin"), dead_pid())
    for name in (live, dead, other_host, other_target, "notes.tmp"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub" / nested).write_bytes(b"")
    assert remove_orphans_of([tmp_path / "a.safetensors"]) == [tmp_path / dead]
    assert remove_orphans(tmp_path) == [tmp_path / other_target]
    assert (tmp_path / "sub" / nested).exists()
    assert remove_orphans(tmp_path, recursive=True) == [tmp_path / "sub" / nested]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live, other_host, "notes.tmp", "sub"])


def test_sigkilled_writer_leaves_an_orphan_the_sweep_removes(tmp_path):
    """A real writer killed (SIGKILL) inside ``atomic_path`` leaves its temporary file; the target is
    untouched and the sweep removes the leftover."""
    (tmp_path / "out.bin").write_bytes(b"old")
    script = textwrap.dedent(f"""
        import time
        from slmtok.atomic import atomic_path
        with atomic_path({str(tmp_path / "out.bin")!r}) as tmp:
            tmp.write_bytes(b"new, half written")
            print("writing", flush=True)
            time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"
    child.send_signal(signal.SIGKILL)
    child.wait()
    left = [p for p in tmp_path.iterdir() if p.name != "out.bin"]
    assert len(left) == 1 and (tmp_path / "out.bin").read_bytes() == b"old"
    assert remove_orphans(tmp_path) == left
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_run_lock_refuses_a_second_holder_and_dies_with_its_process(tmp_path):
    """A lock held by another process refuses with its PID; SIGKILL of the holder frees it (the kernel
    drops ``flock`` locks of dead processes, so a stale lock file never blocks)."""
    script = textwrap.dedent(f"""
        import time
        from slmtok.runlock import RunLock
        with RunLock({str(tmp_path)!r}, "test"):
            print("locked", flush=True)
            time.sleep(60)
    """)
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError) as caught, RunLock(tmp_path, "encode-corpus"):
            pass
        assert str(caught.value) == (
            f"another encode-corpus run (pid {holder.pid}) is using {tmp_path}; wait for it to finish"
        )
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    deadline = time.time() + 10
    while True:
        try:
            with RunLock(tmp_path, "encode-corpus"):
                break
        except RunLockedError:
            assert time.time() < deadline
            time.sleep(0.05)
