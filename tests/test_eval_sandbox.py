"""Hostile programs against the code sandbox: each is stopped and nothing outside the sandbox changes."""

import os
import socket
import threading
import time

import pytest

from adaptlab.eval.sandbox import Limits, isolation_layers, run_program

FAST = Limits(timeout_s=5, cpu_s=3, memory_bytes=512 << 20)


@pytest.fixture
def outside(tmp_path):
    """A directory outside the sandbox with a file the hostile programs try to change."""
    (tmp_path / "keep.txt").write_text("original")
    os.chmod(tmp_path, 0o777)           # even world-writable: only the sandbox may stop the write
    os.chmod(tmp_path / "keep.txt", 0o666)
    return tmp_path


def _unchanged(outside):
    return sorted(os.listdir(outside)) == ["keep.txt"] and (outside / "keep.txt").read_text() == "original"


def test_good_program_passes():
    r = run_program("def f(x):\n    return x + 1\nassert f(1) == 2\nopen('scratch.txt', 'w').write('ok')\n", FAST)
    assert r.passed, r.stderr
    assert "audit-hook" in r.isolation


def test_failing_assert_fails():
    r = run_program("assert 1 == 2\n", FAST)
    assert not r.passed and "AssertionError" in r.stderr


@pytest.mark.parametrize("hook", [True, False])
def test_infinite_loop_is_stopped(hook):
    start = time.monotonic()
    r = run_program("while True:\n    pass\n", FAST, audit_hook=hook)
    assert not r.passed and time.monotonic() - start < FAST.timeout_s + 3


def _sandbox_processes() -> list[int]:
    """Processes still sitting in a sandbox working directory (readable as root; else none seen)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if "adaptlab-sandbox-" in os.readlink(f"/proc/{pid}/cwd"):
                pids.append(int(pid))
        except OSError:
            pass
    return pids


@pytest.mark.parametrize("hook", [True, False])
def test_fork_bomb_is_stopped(hook, outside):
    program = "import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.01)\n"
    start = time.monotonic()
    r = run_program(program, FAST, audit_hook=hook)
    assert not r.passed and time.monotonic() - start < FAST.timeout_s + 3
    time.sleep(0.5)
    assert _sandbox_processes() == [], "forked processes outlived the sandbox"
    assert _unchanged(outside)


@pytest.mark.parametrize("hook", [True, False])
def test_write_outside_is_refused(hook, outside):
    if not hook and "uid-nobody" not in isolation_layers():
        pytest.skip("without the audit hook only a different uid protects a world-writable directory")
    os.chmod(outside, 0o755)   # as nobody, the kernel refuses writes to root's directories
    program = (f"open({str(outside / 'keep.txt')!r}, 'w').write('pwned')\n"
               f"open({str(outside / 'new.txt')!r}, 'w').write('pwned')\n")
    r = run_program(program, FAST, audit_hook=hook)
    assert not r.passed
    assert _unchanged(outside)


def test_write_outside_world_writable_dir_is_refused(outside):
    r = run_program(f"open({str(outside / 'new.txt')!r}, 'w').write('pwned')\n"
                    f"import os\nos.remove({str(outside / 'keep.txt')!r})\n", FAST)
    assert not r.passed and "sandbox" in r.stderr
    assert _unchanged(outside)


@pytest.mark.parametrize("hook", [True, False])
def test_socket_connect_is_refused(hook):
    if not hook and not any(x.startswith("netns") for x in isolation_layers()):
        pytest.skip("no network namespace on this machine")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(4)
    port = server.getsockname()[1]
    got = []
    t = threading.Thread(target=lambda: got.append(_accept(server)))
    t.start()
    r = run_program(f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
                    "s.sendall(b'leak')\n", FAST, audit_hook=hook)
    t.join()
    server.close()
    assert not r.passed
    assert got == [None], "the sandboxed program reached a socket outside"


def _accept(server):
    try:
        conn, _ = server.accept()
        conn.close()
        return "connected"
    except OSError:
        return None


@pytest.mark.parametrize("hook", [True, False])
def test_huge_allocation_is_stopped(hook):
    r = run_program("x = bytearray(8 * 1024 ** 3)\nprint('allocated')\n", FAST, audit_hook=hook)
    assert not r.passed and "allocated" not in r.stdout and "MemoryError" in r.stderr


def test_huge_file_is_stopped():
    r = run_program("f = open('big', 'wb')\nfor _ in range(100):\n    f.write(b'x' * (1 << 20))\n", FAST)
    assert not r.passed
