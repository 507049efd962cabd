"""Run untrusted Python (model-written code) in a sandbox, in layers, each enough on its own for most attacks:

1. a separate process in its own session, killed as a group at the timeout;
2. rlimits: CPU seconds, address space, file size, open files, no core dumps, and process count
   (when we are root, the child first drops to `nobody`, since the kernel ignores RLIMIT_NPROC for
   root and `nobody` cannot write files that root owns);
3. a new user + network (+ pid) namespace via `unshare` where the kernel allows it: no network at all,
   and every process left over dies with the sandbox's pid 1;
4. a throw-away working directory, a clean environment, and `python -I -S`;
5. inside Python, an audit hook (PEP 578, cannot be removed once added) that refuses writes outside
   the working directory, sockets, new processes and ctypes.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

NOBODY = 65534

# Runs before the program: the audit hook is the Python-level policy.
_GUARD = r'''
import os, sys
_root = os.path.realpath(os.getcwd())
_deny_events = {"socket.connect", "socket.bind", "socket.sendto", "os.system", "os.fork", "os.forkpty",
                "os.posix_spawn", "os.exec", "os.spawn", "subprocess.Popen", "ctypes.dlopen", "ctypes.cdata",
                "os.kill", "os.killpg", "shutil.rmtree" }
_path_events = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.symlink",
                "os.link", "os.truncate", "os.utime", "shutil.copyfile", "shutil.move"}
def _inside(p):
    if isinstance(p, int):
        return True
    p = os.path.realpath(os.fsdecode(p))
    return p == _root or p.startswith(_root + os.sep)
def _hook(event, args):
    if event in _deny_events:
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "open":
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC))
        if path is not None and writing and not _inside(path):
            raise PermissionError(f"sandbox: writing {path!r} is outside the sandbox")
    if event in _path_events and not all(_inside(a) for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))):
        raise PermissionError(f"sandbox: {event} outside the sandbox")
sys.addaudithook(_hook)
del _hook
exec(compile(open("program.py").read(), "program.py", "exec"), {"__name__": "__main__"})
'''


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0
    cpu_s: int = 10
    memory_bytes: int = 1 << 30
    file_bytes: int = 16 << 20
    nproc: int = 32
    open_files: int = 64


@dataclass
class RunResult:
    passed: bool
    returncode: int | None
    timed_out: bool
    stdout: str
    stderr: str
    isolation: tuple[str, ...]


@dataclass(frozen=True)
class _Setup:
    python: str                 # an interpreter the sandbox user can execute
    drop_uid: bool              # we are root: run as nobody
    namespace: tuple[str, ...]  # `unshare ...` prefix, or ()


def _drop_privileges() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def _works(cmd: list[str], drop: bool) -> bool:
    try:
        return subprocess.run([*cmd, "-c", "pass"], capture_output=True, timeout=20, check=False,
                              preexec_fn=_drop_privileges if drop else None).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@functools.cache
def _setup() -> _Setup:
    """The strongest setup that works on this machine, probed once: as root, drop to nobody with an
    interpreter nobody can run (ours may sit in root's home); prefer pid + network namespaces."""
    exe = shutil.which("unshare")
    prefixes = [(exe, *f) for f in (("-r", "-n", "-p", "-f", "--kill-child"), ("-r", "-n"), ("-n",))] if exe else []
    pythons = [p for p in dict.fromkeys([sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"]) if os.path.exists(p)]
    drops = [True, False] if os.geteuid() == 0 else [False]
    for drop in drops:
        for python in pythons:
            for ns in [*prefixes, ()]:
                if _works([*ns, python], drop):
                    return _Setup(python, drop, tuple(ns))
    return _Setup(sys.executable, False, ())


def _limit(limits: Limits, drop: bool):
    import resource

    def apply() -> None:
        for res, value in ((resource.RLIMIT_CPU, limits.cpu_s), (resource.RLIMIT_AS, limits.memory_bytes),
                           (resource.RLIMIT_FSIZE, limits.file_bytes), (resource.RLIMIT_CORE, 0),
                           (resource.RLIMIT_NOFILE, limits.open_files), (resource.RLIMIT_NPROC, limits.nproc)):
            resource.setrlimit(res, (value, value))
        if drop:
            _drop_privileges()
    return apply


def isolation_layers() -> tuple[str, ...]:
    """Which layers this machine gives (recorded with code scores)."""
    setup = _setup()
    layers = ["process+timeout", "rlimits", "audit-hook", "tempdir"]
    if setup.drop_uid:
        layers.append("uid-nobody")
    if "-n" in setup.namespace:
        layers.append("netns" + ("+pidns" if "-p" in setup.namespace else ""))
    return tuple(layers)


def run_program(program: str, limits: Limits = Limits(), audit_hook: bool = True) -> RunResult:
    """Run `program` (Python source) in the sandbox; passed means exit status 0 within the limits.

    `audit_hook=False` leaves only the OS layers (tests use it to show those hold on their own)."""
    workdir = tempfile.mkdtemp(prefix="adaptlab-sandbox-")
    try:
        with open(os.path.join(workdir, "program.py"), "w", encoding="utf-8") as f:
            f.write(program)
        setup = _setup()
        if setup.drop_uid:
            os.chown(workdir, NOBODY, NOBODY)
        entry = _GUARD if audit_hook else _GUARD[_GUARD.index("exec(compile"):]
        cmd = [*setup.namespace, setup.python, "-I", "-S", "-c", entry]
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
               "PYTHONDONTWRITEBYTECODE": "1"}
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True,
                                # rlimits and the uid drop must happen in the child before exec
                                preexec_fn=_limit(limits, setup.drop_uid))  # noqa: PLW1509
        timed_out = False
        try:
            out, err = proc.communicate(timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc.pid)
            out, err = proc.communicate()
        _kill_group(proc.pid)   # anything the program left behind in its session
        return RunResult(passed=proc.returncode == 0 and not timed_out, returncode=proc.returncode,
                         timed_out=timed_out, stdout=out.decode(errors="replace")[-2000:],
                         stderr=err.decode(errors="replace")[-2000:], isolation=isolation_layers())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
