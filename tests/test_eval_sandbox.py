"""Hostile programs against the code sandbox: each is stopped, learns nothing, reaches nothing, and cannot fake a pass."""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from adaptlab.eval import sandbox
from adaptlab.eval.sandbox import Limits, SandboxUnavailable, run_program

FAST = Limits(timeout_s=5, cpu_s=3, memory_bytes=512 << 20)
SHORT = Limits(timeout_s=2, cpu_s=3, memory_bytes=512 << 20)   # for programs that run until killed
SANDBOX_FILE = Path(sandbox.__file__)


@pytest.fixture
def outside(tmp_path):
    """A world-writable directory outside the sandbox with a file the hostile programs try to change."""
    (tmp_path / "keep.txt").write_text("original")
    os.chmod(tmp_path, 0o777)
    os.chmod(tmp_path / "keep.txt", 0o666)
    return tmp_path


def _unchanged(outside):
    return sorted(os.listdir(outside)) == ["keep.txt"] and (outside / "keep.txt").read_text() == "original"


def _processes_with(marker: str) -> list[int]:
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(int(pid))
        except OSError:
            pass
    return pids


def test_good_program_passes_inside_bubblewrap():
    r = run_program("import threading, subprocess\ndef f(x):\n    return x + 1\nassert f(1) == 2\n"
                    "ts = [threading.Thread(target=f, args=(1,)) for _ in range(4)]\n[t.start() for t in ts]\n"
                    "[t.join() for t in ts]\nsubprocess.run(['true'], check=True)\n"
                    "open('scratch.txt', 'w').write('ok')\nprint('done')\n", FAST)
    assert r.passed, r.stderr
    assert r.isolation[0] == "bubblewrap" and r.stdout.strip() == "done"


def test_failing_assert_fails():
    r = run_program("assert 1 == 2\n", FAST)
    assert not r.passed and "AssertionError" in r.stderr


@pytest.mark.parametrize("forgery", [
    "raise SystemExit(0)\nassert False\n",
    "import os\nos._exit(0)\nassert False\n",
    "import atexit, os\natexit.register(lambda: os._exit(0))\nassert False\n",
    ("import sys\nsys.excepthook = lambda *a: None\nimport atexit, os\natexit.register(lambda: os._exit(0))\n"
     "assert False\n"),
])
def test_exit_status_zero_alone_is_not_a_pass(forgery):
    r = run_program(forgery, FAST)
    assert r.returncode == 0 and not r.passed


def test_python_cannot_switch_the_policy_off(outside):
    """Whatever the program does to Python-level guards, the OS keeps the outside unreachable."""
    program = ("import gc, subprocess\n"
               "for o in gc.get_objects():\n"
               "    if isinstance(o, set) and 'os.system' in o:\n        o.clear()\n"
               f"subprocess.run(['sh', '-c', 'echo pwned > {outside}/new.txt; echo pwned > {outside}/keep.txt'])\n"
               f"open({str(outside / 'keep.txt')!r}, 'w').write('pwned')\n")
    r = run_program(program, FAST)
    assert not r.passed
    assert _unchanged(outside)


def test_read_only_everywhere_but_the_workdir():
    r = run_program("import os\nfor p in ('/usr/pwned', '/pwned', '/proc/sys/kernel/hostname'):\n"
                    "    try:\n        open(p, 'w').write('x')\n        print('wrote', p)\n"
                    "    except OSError:\n        pass\n", FAST)
    assert r.passed and "wrote" not in r.stdout
    assert not os.path.exists("/usr/pwned")


def test_no_secrets(monkeypatch, tmp_path):
    secret = uuid.uuid4().hex
    monkeypatch.setenv("ADAPTLAB_TEST_SECRET", secret)
    (tmp_path / "secret.txt").write_text(secret)
    os.chmod(tmp_path, 0o755)
    os.chmod(tmp_path / "secret.txt", 0o644)
    program = ("import os, glob\nfound = [str(dict(os.environ))]\n"
               "for p in glob.glob('/proc/*/environ') + [os.path.expanduser('~/.bashrc'), '/root/.bashrc', "
               f"{str(tmp_path / 'secret.txt')!r}]:\n"
               "    try:\n        found.append(open(p, 'rb').read().decode(errors='replace'))\n"
               "    except OSError:\n        pass\n"
               "print(sorted(os.environ), os.listdir('/'))\nprint('\\n'.join(found))\n")
    r = run_program(program, FAST)
    assert r.passed, r.stderr
    assert secret not in r.stdout
    assert "ADAPTLAB_TEST_SECRET" not in r.stdout and "home" not in r.stdout and "root" not in r.stdout


def _listen(family, kind, address):
    s = socket.socket(family, kind)
    s.bind(address)
    if kind == socket.SOCK_STREAM:
        s.listen(4)
    s.settimeout(3)
    return s


def _receive(server, got):
    try:
        if server.type == socket.SOCK_STREAM:
            conn, _ = server.accept()
            got.append(conn.recv(16))
        else:
            got.append(server.recv(16))
    except OSError:
        pass


def test_no_network_of_any_kind(tmp_path):
    servers = [_listen(socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 0)),
               _listen(socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", 0)),
               _listen(socket.AF_UNIX, socket.SOCK_STREAM, "\0adaptlab-test-" + uuid.uuid4().hex),
               _listen(socket.AF_UNIX, socket.SOCK_STREAM, str(tmp_path / "agent.sock"))]
    os.chmod(tmp_path, 0o777)
    os.chmod(tmp_path / "agent.sock", 0o777)
    got: list[bytes] = []
    threads = [threading.Thread(target=_receive, args=(s, got)) for s in servers]
    [t.start() for t in threads]
    targets = [(s.family, s.type, s.getsockname()) for s in servers]
    program = ("import socket\nreached = []\n"
               f"for family, kind, address in {[(int(f), int(k), a) for f, k, a in targets]!r}:\n"
               "    try:\n        s = socket.socket(family, kind)\n        s.settimeout(1)\n"
               "        s.connect(address)\n"
               "        s.send(b'leak')\n        reached.append(address)\n    except OSError:\n        pass\n"
               "try:\n    socket.getaddrinfo('pypi.org', 443)\n    reached.append('dns')\nexcept OSError:\n    pass\n"
               "print(reached)\n")
    r = run_program(program, FAST)
    [t.join() for t in threads]
    [s.close() for s in servers]
    assert r.passed, r.stderr
    assert got == [], "a sandboxed program reached a socket outside"


def test_output_flood_is_capped():
    start = time.monotonic()
    r = run_program("import sys\nfor _ in range(10 ** 5):\n    sys.stdout.write('x' * 65536)\n", FAST)
    assert not r.passed and "output over" in r.stderr
    assert len(r.stdout) <= 2000 and time.monotonic() - start < 3


@pytest.mark.parametrize("program", ["while True:\n    pass\n", "import time\ntime.sleep(60)\n"])
def test_timeout(program):
    start = time.monotonic()
    r = run_program(program, SHORT)
    assert not r.passed and r.timed_out and time.monotonic() - start < SHORT.timeout_s + 3


def test_setsid_grandchild_dies_with_the_sandbox():
    marker = f"adaptlab-marker-{uuid.uuid4().hex}"
    program = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
               f"        os.execv('/usr/bin/python3', ['python3', '-c', 'import time; time.sleep(60)', {marker!r}])\n"
               "    os._exit(0)\ntime.sleep(60)\n")
    r = run_program(program, SHORT)
    assert r.timed_out
    time.sleep(0.5)
    assert _processes_with(marker) == []


def test_fork_bomb_is_bounded(outside):
    marker = f"adaptlab-marker-{uuid.uuid4().hex}"
    program = (f"import os, time\nmarker = {marker!r}\nn = 0\nwhile True:\n    try:\n        os.fork()\n"
               "        n += 1\n    except OSError:\n        time.sleep(0.01)\n")
    start = time.monotonic()
    r = run_program(program, SHORT)
    assert not r.passed and time.monotonic() - start < SHORT.timeout_s + 3
    time.sleep(0.5)
    assert _processes_with(marker) == []
    assert _unchanged(outside)


def test_process_limit_holds_inside():
    r = run_program("import os\nkids = 0\nfor _ in range(200):\n    try:\n        pid = os.fork()\n"
                    "    except OSError:\n        break\n    if pid == 0:\n        import time; time.sleep(3); os._exit(0)\n"
                    "    kids += 1\nprint(kids)\n", FAST)
    assert r.passed, r.stderr
    assert 0 < int(r.stdout.strip()) < FAST.nproc


def test_huge_allocation_is_stopped():
    r = run_program("x = bytearray(8 * 1024 ** 3)\nprint('allocated')\n", FAST)
    assert not r.passed and "allocated" not in r.stdout and "MemoryError" in r.stderr


def test_huge_file_is_stopped():
    r = run_program("f = open('big', 'wb')\nfor _ in range(100):\n    f.write(b'x' * (1 << 20))\n", FAST)
    assert not r.passed


@pytest.mark.parametrize("bwrap", ["no-such-bwrap", "/bin/false"])
def test_refuses_without_os_isolation(monkeypatch, bwrap):
    monkeypatch.setattr(sandbox, "BWRAP", bwrap)
    monkeypatch.delenv(sandbox.ALLOW_ENV, raising=False)
    with pytest.raises(SandboxUnavailable, match="--allow-unsandboxed"):
        run_program("print('ran')\n", FAST)
    assert sandbox.sandbox_status() is not None


def test_eval_command_refuses_code_tasks_before_loading_a_model(monkeypatch):
    from typer.testing import CliRunner

    from adaptlab.cli import app

    monkeypatch.setattr(sandbox, "BWRAP", "no-such-bwrap")
    monkeypatch.delenv(sandbox.ALLOW_ENV, raising=False)
    result = CliRunner().invoke(app, ["eval", "--model", "no-such-model", "--tasks", "humaneval"])
    assert result.exit_code == 2 and "--allow-unsandboxed" in result.output and "bubblewrap" in result.output


def test_unsandboxed_only_when_allowed(monkeypatch):
    monkeypatch.setattr(sandbox, "BWRAP", "no-such-bwrap")
    r = run_program("print('ran')\n", FAST, allow_unsandboxed=True)
    assert r.passed and r.isolation[0] == "unsandboxed"
    monkeypatch.setenv(sandbox.ALLOW_ENV, "1")
    assert run_program("raise SystemExit(0)\n", FAST).passed is False


_AS_USER = r'''
import importlib.util, json, sys, threading, time
spec = importlib.util.spec_from_file_location("sandbox", sys.argv[1])
sandbox = sys.modules["sandbox"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sandbox)
stop = threading.Event()
busy = [threading.Thread(target=stop.wait) for _ in range(48)]   # an evaluator with many threads
[t.start() for t in busy]
limits = sandbox.Limits(timeout_s=5, cpu_s=3, memory_bytes=512 << 20)
out = {}
normal = "import subprocess, threading\nsubprocess.run(['true'], check=True)\nt = threading.Thread(target=print)\nt.start(); t.join()\n"
r = sandbox.run_program(normal, limits)
out["normal"] = [r.passed, r.isolation, r.stderr[-300:]]
r = sandbox.run_program("open(%r, 'w').write('pwned')\n" % sys.argv[2], limits)
out["write"] = r.passed
sandbox.BWRAP = "no-such-bwrap"
try:
    sandbox.run_program("print(1)\n", limits)
    out["refused"] = False
except sandbox.SandboxUnavailable:
    out["refused"] = True
stop.set()
print(json.dumps(out))
'''


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to a normal user needs root; as a normal user the "
                    "other tests already run as one")
def test_as_a_normal_user_with_many_threads():
    """The sandbox as a non-root evaluator: the process limit counts only the sandbox's processes."""
    # pytest's and the checkout's folders may be private to root: the other user gets its own copies in /tmp
    outside, lib = (Path(tempfile.mkdtemp(prefix="adaptlab-outside-", dir="/tmp")),
                    Path(tempfile.mkdtemp(prefix="adaptlab-lib-", dir="/tmp")))
    try:
        _as_user_in(outside, lib)
    finally:
        shutil.rmtree(outside, ignore_errors=True)
        shutil.rmtree(lib, ignore_errors=True)


def _as_user_in(outside: Path, lib: Path) -> None:
    os.chmod(outside, 0o777)
    (outside / "keep.txt").write_text("original")
    os.chmod(outside / "keep.txt", 0o666)
    os.chmod(lib, 0o755)
    module = lib / "sandbox.py"
    shutil.copyfile(SANDBOX_FILE, module)
    os.chmod(module, 0o644)
    done = subprocess.run(["/usr/bin/python3", "-I", "-c", _AS_USER, str(module), str(outside / "keep.txt")],
                          capture_output=True, text=True, timeout=120, user=4242, group=4242, extra_groups=[],
                          env={"PATH": "/usr/bin:/bin", "TMPDIR": "/tmp"}, cwd="/", check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["normal"][0], out["normal"]
    assert "uid-nobody" not in out["normal"][1]
    assert out["write"] is False and out["refused"] is True
    assert _unchanged(outside)

