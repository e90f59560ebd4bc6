"""Child side of the code sandbox: confine this process, then exec the candidate's interpreter.

Run by `sandbox.py` as `python -I -S _sandbox_launcher.py CONFIG_JSON` in a fresh interpreter
(never via fork of the harness: the harness has torch threads, and forking a threaded process
is unsafe). Standard library only; it must not import gemmaforge.

When root it (1) enters new network, mount and PID namespaces where the kernel allows,
(2) mounts private size-capped tmpfs over the world-writable directories, with the candidate's
working directory inside the first (/tmp), hides the harness's directories under empty read-only tmpfs, and
mounts a private /proc, (3) sets resource limits, and (4) drops to a throw-away uid/gid with no
supplementary groups. What it managed is reported as JSON on REPORT_FD before the exec.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import sys

CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 0x4000, 0x40000

# Runs inside the candidate's interpreter: optional socket ban, then the program, then the
# completion token (so a program that exits early, e.g. via sys.exit(0), does not "pass").
BOOTSTRAP = """\
import os, sys, runpy
_token = os.environ.pop("GF_SANDBOX_TOKEN", "")
if os.environ.pop("GF_BLOCK_SOCKETS", "") == "1":
    def _no_network(event, args):
        if event in ("socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo"):
            raise PermissionError("network access is disabled in the sandbox")
    sys.addaudithook(_no_network)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
sys.stdout.flush()
os.write(1, ("\\n" + _token + "\\n").encode())
"""

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                       data.encode() if data else None), f"mount {target}")


def _confine_filesystem(cfg: dict, isolation: list[str]) -> None:
    """Private mounts: size-capped tmpfs over the scratch directories (the first one also holds
    the working directory, so the harness's temporary files vanish from view), empty read-only
    tmpfs over hidden paths, a private /proc. Caller is root in a new mount namespace."""
    _mount("none", "/", None, MS_REC | MS_PRIVATE)
    for d in cfg["scratch_dirs"]:
        if os.path.isdir(d):
            _mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, f"size={cfg['disk_bytes']},mode=1777")
    for d in cfg["hide_paths"]:
        if os.path.isdir(d):
            _mount("tmpfs", d, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=0755")
    work = os.path.join(cfg["scratch_dirs"][0], "work")
    os.mkdir(work, 0o700)
    os.chown(work, cfg["uid"], cfg["gid"])
    os.chdir(work)
    isolation.append("private-tmpfs")
    if "pidns" in isolation:
        try:
            _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        except OSError:
            pass  # host /proc stays: the uid drop still hides other users' process details


def _set_limits(cfg: dict) -> None:
    lim = cfg["limits"]
    for res, value in ((resource.RLIMIT_CPU, lim["cpu_seconds"]), (resource.RLIMIT_AS, lim["memory_bytes"]),
                       (resource.RLIMIT_NPROC, lim["max_processes"]), (resource.RLIMIT_FSIZE, lim["file_bytes"]),
                       (resource.RLIMIT_NOFILE, lim["max_open_files"]), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(res, (value, value))


def main() -> None:
    cfg = json.loads(sys.argv[1])
    report = os.fdopen(cfg["report_fd"], "w")
    root = os.geteuid() == 0
    isolation: list[str] = []
    notes: list[str] = []
    with open(cfg["program_path"], encoding="utf-8") as f:
        program = f.read()

    if root and cfg["namespaces"]:
        try:
            _check(_libc.unshare(CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID), "unshare")
            isolation += ["netns", "mountns", "pidns"]
        except OSError as e:
            notes.append(f"namespaces unavailable ({e.strerror}); falling back")
    if "pidns" in isolation:
        # The next child is PID 1 of the new namespace: when it dies the kernel kills every
        # process left in it. This process only waits and relays the exit status.
        pid = os.fork()
        if pid:
            report.close()
            _, status = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(status)
            os._exit(code if code >= 0 else 128 - code)

    if "mountns" in isolation and cfg["scratch_dirs"]:
        try:
            _confine_filesystem(cfg, isolation)
        except OSError as e:
            notes.append(f"private mounts failed ({e.strerror})")
    if "private-tmpfs" not in isolation:  # else already inside the tmpfs (the harness's copy is hidden)
        os.chdir(cfg["workdir"])
    with open("program.py", "w", encoding="utf-8") as f:
        f.write(program)
    _set_limits(cfg)
    if root:
        os.chown("program.py", cfg["uid"], cfg["gid"])
        os.setgroups([])
        os.setgid(cfg["gid"])
        os.setuid(cfg["uid"])
        isolation.append(f"uid={cfg['uid']}")
    block_sockets = "netns" not in isolation
    if block_sockets:
        isolation.append("socket-audit-hook")
    isolation.append("rlimits")
    json.dump({"isolation": isolation, "notes": notes}, report)
    report.close()
    env = {"PATH": "/usr/bin:/bin", "HOME": os.getcwd(), "TMPDIR": os.getcwd(), "LANG": "C.UTF-8",
           "GF_SANDBOX_TOKEN": cfg["token"], "GF_BLOCK_SOCKETS": "1" if block_sockets else "0"}
    python = cfg["python"]
    os.execve(python, [python, "-I", "-B", "-c", BOOTSTRAP, "program.py"], env)


if __name__ == "__main__":
    main()
