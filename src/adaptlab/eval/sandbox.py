"""Run untrusted Python (model-written code and its tests) where the operating system, not Python, holds the policy.

The program runs under bubblewrap (`bwrap`, Debian package `bubblewrap`) in new user, mount, pid, network, IPC
and UTS namespaces:

- the filesystem is `/usr` (and the interpreter's prefix) read-only, a fresh `/proc` and `/dev`, and one writable
  throw-away directory; no home, no `/etc`, no `/tmp`, no `/run`, so no file or UNIX socket outside is reachable;
- the network namespace is empty (only its own loopback): no TCP, UDP, DNS or abstract UNIX sockets outside;
- the pid namespace hides the evaluator (no `/proc/<ppid>/environ`) and dies as a whole when its first process
  does, so a grandchild that calls `setsid` cannot outlive the timeout;
- the environment is cleared and rebuilt from five variables;
- rlimits set inside the namespace bound CPU seconds, address space per process, file size, open files and the
  number of processes (counted per user namespace, so the evaluator's own threads do not count); when the
  evaluator is root the sandbox runs as `nobody`, since the kernel exempts root from the process limit.

The verdict cannot be faked by the exit status: after the program (prompt + completion + tests) has run to its
end, the launcher reads a per-run random token from a pipe and prints it; a pass needs that token on stdout and
exit status 0, so `raise SystemExit(0)` before the tests or an `atexit` hook that exits 0 after a failed assert
fail. Output is read up to `Limits.output_bytes`; more kills the program.

Where bubblewrap cannot start a sandbox (not installed, user namespaces disabled as on Ubuntu 24.04 by default
or in many containers) `run_program` refuses with `SandboxUnavailable`, unless the caller allows unsandboxed
runs (`allow_unsandboxed=True` or the environment variable `ADAPTLAB_ALLOW_UNSANDBOXED=1`, which the CLI's
`--allow-unsandboxed` sets): the program then runs as the evaluator's user with rlimits and a timeout only.
"""

from __future__ import annotations

import functools
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

NOBODY = 65534
BWRAP = "bwrap"
ALLOW_ENV = "ADAPTLAB_ALLOW_UNSANDBOXED"
_INSIDE = "/sandbox"

# Runs in the sandboxed interpreter: limits first, then the program, then (only if it ran to its end) the token.
_LAUNCHER = r'''
import os, resource, sys
for name, value in {limits!r}:
    resource.setrlimit(getattr(resource, name), (value, value))
exec(compile(open("program.py").read(), "program.py", "exec"), {{"__name__": "__main__"}})
sys.stdout.flush()
print("\n" + os.read({token_fd}, 64).decode(), flush=True)
'''


class SandboxUnavailable(RuntimeError):
    """The machine cannot give OS isolation and unsandboxed runs were not allowed."""


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0
    cpu_s: int = 10
    memory_bytes: int = 1 << 30     # address space per process
    file_bytes: int = 16 << 20
    nproc: int = 32                 # processes and threads inside the sandbox
    open_files: int = 64
    output_bytes: int = 1 << 20     # stdout + stderr read; more kills the program


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
    bwrap: str
    python: str          # an interpreter the sandbox user can run
    drop_uid: bool       # the evaluator is root: the sandbox runs as nobody


def _prefix(python: str) -> str:
    return os.path.dirname(os.path.dirname(os.path.realpath(python)))


def _bwrap_args(setup: _Setup, workdir: str) -> list[str]:
    """A read-only /usr (plus the interpreter's prefix), fresh /proc and /dev, one writable directory."""
    args = [setup.bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr"]
    for top in ("bin", "lib", "lib32", "lib64", "sbin"):
        path = f"/{top}"
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    prefix = _prefix(setup.python)
    if not (prefix + "/").startswith("/usr/"):
        args += ["--ro-bind", prefix, prefix]
    args += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache", "--proc", "/proc", "--dev", "/dev",
             "--bind", workdir, _INSIDE, "--remount-ro", "/", "--chdir", _INSIDE, "--clearenv"]
    for key, value in _env(_INSIDE).items():
        args += ["--setenv", key, value]
    return [*args, "--", setup.python, "-I", "-S", "-c"]


def _env(home: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}


def _user(drop: bool) -> dict:
    return {"user": NOBODY, "group": NOBODY, "extra_groups": []} if drop else {}


@functools.cache
def _probe(bwrap: str | None) -> _Setup | str:
    """The sandbox this machine gives (probed once per bwrap path), or why it gives none."""
    if bwrap is None:
        return "bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    drop = os.geteuid() == 0
    # a system interpreter first: it lives under /usr, which the sandbox already shows, while the evaluator's own
    # (pyenv, conda) would add its prefix, often under a home folder, to the sandbox's view
    pythons = ["/usr/bin/python3", "/usr/local/bin/python3", os.path.realpath(sys.executable)]
    why = ""
    for python in filter(os.path.exists, dict.fromkeys(pythons)):
        setup = _Setup(bwrap, python, drop)
        workdir = _workdir(drop)
        try:
            done = subprocess.run([*_bwrap_args(setup, workdir), "pass"], capture_output=True, timeout=30,
                                  check=False, **_user(drop))
            if done.returncode == 0:
                return setup
            why = done.stderr.decode(errors="replace").strip()
        except (OSError, subprocess.SubprocessError) as e:
            why = str(e)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return (f"bubblewrap cannot start a sandbox here ({why or 'no usable Python'}); user namespaces may be "
            "disabled (Ubuntu 24.04: kernel.apparmor_restrict_unprivileged_userns=1; containers: seccomp)")


def sandbox_status() -> str | None:
    """None when OS isolation works on this machine, else the reason it does not."""
    found = _probe(shutil.which(BWRAP))
    return None if isinstance(found, _Setup) else found


def _workdir(drop: bool) -> str:
    workdir = tempfile.mkdtemp(prefix="adaptlab-sandbox-")
    if drop:
        os.chown(workdir, NOBODY, NOBODY)
    return workdir


def _resolve(allow_unsandboxed: bool | None) -> _Setup | None:
    """The sandbox to use; None for an allowed unsandboxed run; raises when neither."""
    found = _probe(shutil.which(BWRAP))
    if isinstance(found, _Setup):
        return found
    if allow_unsandboxed is None:
        allow_unsandboxed = os.environ.get(ALLOW_ENV, "") not in ("", "0")
    if allow_unsandboxed:
        return None
    raise SandboxUnavailable(f"code tasks run model-written programs only inside an OS sandbox, and {found}. "
                             "Fix that, or pass --allow-unsandboxed (library: allow_unsandboxed=True or "
                             f"{ALLOW_ENV}=1) to run them as your own user with only a timeout and rlimits.")


def _launcher(limits: Limits, token_fd: int, sandboxed: bool) -> str:
    rlimits = [("RLIMIT_CPU", limits.cpu_s), ("RLIMIT_AS", limits.memory_bytes), ("RLIMIT_FSIZE", limits.file_bytes),
               ("RLIMIT_CORE", 0), ("RLIMIT_NOFILE", limits.open_files)]
    if sandboxed:   # counted per user namespace there; outside it would count every thread of the user
        rlimits.append(("RLIMIT_NPROC", limits.nproc))
    return _LAUNCHER.format(limits=rlimits, token_fd=token_fd)


def run_program(program: str, limits: Limits = Limits(), allow_unsandboxed: bool | None = None) -> RunResult:
    """Run `program` (Python source) in the sandbox. Passed = it ran to its end (the per-run token was printed
    after its last statement) and exited 0 within the limits. `allow_unsandboxed` None reads ADAPTLAB_ALLOW_UNSANDBOXED.
    Raises SandboxUnavailable when the machine gives no OS isolation and unsandboxed runs are not allowed."""
    setup = _resolve(allow_unsandboxed)
    workdir = _workdir(setup is not None and setup.drop_uid)
    token = secrets.token_hex(16)
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, token.encode())
        os.close(write_end)
        with open(os.path.join(workdir, "program.py"), "w", encoding="utf-8") as f:
            f.write(program)
        launcher = _launcher(limits, read_end, setup is not None)
        if setup is None:
            cmd, cwd, env, user = [sys.executable, "-I", "-S", "-c", launcher], workdir, _env(workdir), {}
        else:
            cmd, cwd, env, user = [*_bwrap_args(setup, workdir), launcher], None, {}, _user(setup.drop_uid)
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True, pass_fds=(read_end,), **user)
        os.close(read_end)
        read_end = -1
        out, err, timed_out, flooded = _collect(proc, limits)
        lines = out.decode(errors="replace").splitlines()
        finished = token in lines
        stderr = err.decode(errors="replace")
        if flooded:
            stderr += f"\nsandbox: output over {limits.output_bytes} bytes; program killed"
        stdout = "\n".join(line for line in lines if line != token)
        return RunResult(passed=finished and proc.returncode == 0 and not timed_out and not flooded,
                         returncode=proc.returncode, timed_out=timed_out, stdout=stdout[-2000:],
                         stderr=stderr[-2000:], isolation=_layers(setup))
    finally:
        if read_end >= 0:
            os.close(read_end)
        shutil.rmtree(workdir, ignore_errors=True)


def _collect(proc: subprocess.Popen, limits: Limits) -> tuple[bytes, bytes, bool, bool]:
    """Read stdout and stderr up to the output cap until exit or timeout; kill the whole sandbox after."""
    deadline = time.monotonic() + limits.timeout_s
    bufs = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    timed_out = flooded = False
    with selectors.DefaultSelector() as sel:
        for stream in bufs:
            sel.register(stream, selectors.EVENT_READ)
        while sel.get_map() and not flooded:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            for key, _ in sel.select(left):
                chunk = os.read(key.fileobj.fileno(), 1 << 16)
                if not chunk:
                    sel.unregister(key.fileobj)
                bufs[key.fileobj] += chunk
                flooded = flooded or sum(map(len, bufs.values())) > limits.output_bytes
    if not (timed_out or flooded):
        try:
            proc.wait(max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            timed_out = True
    _kill_group(proc.pid)   # bwrap's namespace init dies with it, and every process of the sandbox with that
    proc.wait()
    for stream in bufs:
        stream.close()
    return bytes(bufs[proc.stdout]), bytes(bufs[proc.stderr]), timed_out, flooded


def _layers(setup: _Setup | None) -> tuple[str, ...]:
    """Recorded with code scores."""
    if setup is None:
        return ("unsandboxed", "process+timeout", "rlimits", "tempdir")
    return ("bubblewrap", "userns", "mountns-ro", "pidns", "netns", "clearenv", "rlimits", "verdict-token",
            *(("uid-nobody",) if setup.drop_uid else ()))


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
