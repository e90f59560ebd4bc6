"""Runs untrusted, model-written Python (HumanEval, MBPP) where it cannot hurt the machine.

Each program runs in its own process tree, started fresh (see `_sandbox_launcher.py` for the
child side), with:

- resource limits: CPU seconds, address space (RLIMIT_AS), processes (RLIMIT_NPROC), file size,
  open files, no core dumps;
- when the harness runs as root (the usual case in containers, where RLIMIT_NPROC alone would not
  apply): a throw-away uid/gid of its own, so the process limit counts only this program's
  processes, files of the harness (0700 directories) are unreadable, and every leftover process
  can be found and killed by uid; plus, where the kernel allows, new network, mount and PID
  namespaces: no network interface but a down loopback, a size-capped tmpfs working directory,
  private tmpfs over /tmp, /var/tmp, /dev/shm, /run/lock, the harness's directories hidden, and
  the whole tree killed by the kernel when its PID 1 ends;
- otherwise (not root): rlimits, and socket creation refused inside the interpreter by an audit
  hook. This fallback does not stop writes to world-writable directories; docs/eval.md says so;
- a wall-clock timeout after which the whole process group (and, as root, everything running
  under the sandbox uid) is killed with SIGKILL.

A program passes when it exits 0 and prints the completion token the bootstrap writes after it
ran to the end; anything else (exception, limit, timeout, early exit) is a failure.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..errors import GemmaForgeError

LAUNCHER = Path(__file__).with_name("_sandbox_launcher.py")
_UID_BASE = 0x5A000000  # throw-away uids live far above any real account's
_counter = itertools.count()


class SandboxError(GemmaForgeError):
    """The sandbox itself could not run a program (not the program failing)."""


@dataclass(frozen=True)
class SandboxConfig:
    """Limits for one program. Defaults suit HumanEval/MBPP tests (milliseconds of work)."""

    timeout_s: float = 10.0  # wall clock, then the process tree is killed
    cpu_seconds: int = 10
    memory_bytes: int = 1 << 30  # RLIMIT_AS per process
    max_processes: int = 4  # RLIMIT_NPROC for the sandbox uid (threads count too)
    file_bytes: int = 16 << 20  # RLIMIT_FSIZE, also caps captured stdout/stderr
    max_open_files: int = 64
    disk_bytes: int = 32 << 20  # size of each private tmpfs
    namespaces: bool = True  # try network/mount/PID namespaces when root
    python: str | None = None  # interpreter for the programs; default: see `interpreter()`
    scratch_dirs: tuple[str, ...] = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
    # Directories hidden from programs (under a mount namespace); None = home and cwd.
    hide_paths: tuple[str, ...] | None = None
    workers: int = 2  # programs run in parallel


@dataclass
class RunResult:
    passed: bool
    status: str  # "passed", "failed", "timeout"
    returncode: int | None
    duration_s: float
    stdout: str  # tails, for the per-sample log
    stderr: str
    isolation: list[str] = field(default_factory=list)


def _world_usable(path: Path) -> bool:
    """Whether a process of another uid can reach and execute `path` (o+x on every ancestor)."""
    path = path.resolve()
    for p in [path, *path.parents]:
        if not os.stat(p).st_mode & stat.S_IXOTH:
            return False
    return True


def interpreter(config: SandboxConfig) -> str:
    """The Python that runs candidate programs.

    As root the program runs under another uid, which must be able to execute the interpreter
    and read its standard library: this harness's own interpreter when it can (not under a
    0700 home, as pyenv puts it), else the system python3.
    """
    if config.python:
        return config.python
    if os.geteuid() != 0:
        return sys.executable
    base = Path(sys.base_prefix)
    if _world_usable(Path(sys.executable)) and _world_usable(base):
        return sys.executable
    for candidate in ("/usr/local/bin/python3", "/usr/bin/python3"):
        if Path(candidate).exists() and _world_usable(Path(candidate)):
            return candidate
    raise SandboxError("no Python interpreter that an unprivileged uid can execute was found; "
                       "install python3 (apt-get install -y python3) or set SandboxConfig.python")


class Sandbox:
    """Runs programs under `config`; `run_many` runs a batch in parallel with a progress bar."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.python = interpreter(self.config)
        self.root = os.geteuid() == 0

    def _hidden(self) -> list[str]:
        paths = self.config.hide_paths
        if paths is None:
            paths = (str(Path.home()), os.getcwd())
        keep = [Path(self.python).resolve(), Path(tempfile.gettempdir()).resolve()]
        out = []
        for p in paths:
            rp = Path(p).resolve()
            # Never hide the interpreter, the sandbox's own base directory, or the whole tree.
            if rp != Path("/") and not any(k == rp or rp in k.parents for k in keep):
                out.append(str(rp))
        return out

    def run(self, program: str) -> RunResult:
        cfg = self.config
        uid = _UID_BASE + ((os.getpid() & 0xFFF) << 12) + (next(_counter) & 0xFFF)
        base = Path(tempfile.mkdtemp(prefix="gf-sandbox-"))
        try:
            # Traversable, not listable: the sandbox uid reaches only its own 0700 `work`;
            # the harness's files next to it are 0600.
            base.chmod(0o711)
            workdir = base / "work"
            workdir.mkdir(mode=0o700)
            if self.root:
                os.chown(workdir, uid, uid)
            _write_private(base / "program.py", program.encode("utf-8"))
            _write_private(base / "stdout", b"")
            _write_private(base / "stderr", b"")
            token = secrets.token_hex(16)
            read_fd, write_fd = os.pipe()
            launcher_cfg = {
                "report_fd": write_fd, "program_path": str(base / "program.py"), "workdir": str(workdir),
                "uid": uid, "gid": uid, "namespaces": cfg.namespaces, "python": self.python,
                "token": token, "disk_bytes": cfg.disk_bytes, "scratch_dirs": list(cfg.scratch_dirs),
                "hide_paths": self._hidden(),
                "limits": {"cpu_seconds": cfg.cpu_seconds, "memory_bytes": cfg.memory_bytes,
                           "max_processes": cfg.max_processes, "file_bytes": cfg.file_bytes,
                           "max_open_files": cfg.max_open_files},
            }
            with open(base / "stdout", "wb") as out, open(base / "stderr", "wb") as err:
                start = time.monotonic()
                try:
                    proc = subprocess.Popen(
                        [sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(launcher_cfg)],
                        stdin=subprocess.DEVNULL, stdout=out, stderr=err, pass_fds=(write_fd,),
                        start_new_session=True, close_fds=True)
                finally:
                    os.close(write_fd)
                try:
                    returncode: int | None = proc.wait(timeout=cfg.timeout_s)
                    timed_out = False
                except subprocess.TimeoutExpired:
                    timed_out, returncode = True, None
                finally:
                    self._kill_tree(proc.pid, uid)
                    proc.wait()
                duration = time.monotonic() - start
            with os.fdopen(read_fd) as r:
                report_text = r.read()
            stdout = _tail(base / "stdout")
            stderr = _tail(base / "stderr")
            if not report_text and not timed_out:
                raise SandboxError(f"the sandbox launcher failed before running the program: {stderr}")
            report = json.loads(report_text) if report_text else {"isolation": []}
            passed = (not timed_out and returncode == 0
                      and stdout.rstrip("\n").rsplit("\n", 1)[-1] == token)
            status = "timeout" if timed_out else ("passed" if passed else "failed")
            return RunResult(passed, status, returncode, round(duration, 3),
                             stdout.replace(token, "").rstrip("\n"), stderr, report["isolation"])
        finally:
            shutil.rmtree(base, ignore_errors=True)

    def run_many(self, programs: Sequence[str], desc: str = "sandbox") -> list[RunResult]:
        with ThreadPoolExecutor(max_workers=max(1, self.config.workers)) as pool:
            return list(tqdm(pool.map(self.run, programs), total=len(programs), desc=desc, leave=False))

    def _kill_tree(self, pgid: int, uid: int) -> None:
        """SIGKILL the launcher's process group and, as root, every process of the sandbox uid
        (which catches children that left the group with setsid). Repeats until none is left."""
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if not self.root:
            return
        for _ in range(200):
            pids = _pids_of_uid(uid)
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)
        raise SandboxError(f"could not kill the processes of sandbox uid {uid}")


def _pids_of_uid(uid: int) -> list[int]:
    """Live (non-zombie) processes whose real uid is `uid`."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if int(fields["Uid"].split()[0]) == uid and fields["State"].split()[0] not in ("Z", "X"):
            pids.append(int(entry.name))
    return pids


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _tail(path: Path, limit: int = 2000) -> str:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - limit))
        return f.read().decode("utf-8", errors="replace")
