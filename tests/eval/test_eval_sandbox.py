"""The code sandbox contains hostile programs, scores them as failed, and the run carries on.

Every program here is bounded: 2 s wall clock, 2 CPU seconds, 512 MiB address space and 4
processes per sandbox uid, so even the fork bomb cannot load the machine.
"""

from __future__ import annotations

import os
import secrets
import socket
import textwrap

import pytest

from gemmaforge.eval.sandbox import Sandbox, SandboxConfig, _pids_of_uid

ROOT = os.geteuid() == 0
LIMITS = {"timeout_s": 2.0, "cpu_seconds": 2, "memory_bytes": 512 << 20, "max_processes": 4}


@pytest.fixture(scope="module", params=[True, False], ids=["namespaces", "fallback"])
def sandbox(request) -> Sandbox:
    return Sandbox(SandboxConfig(namespaces=request.param, **LIMITS))


def _uid(result) -> int | None:
    return next((int(x[4:]) for x in result.isolation if x.startswith("uid=")), None)


def _assert_no_leftovers(result) -> None:
    uid = _uid(result)
    if uid is not None:
        assert _pids_of_uid(uid) == []


def test_correct_program_passes_and_wrong_one_fails(sandbox):
    ok = sandbox.run("def f(x):\n    return x + 1\n\nassert f(1) == 2\nprint('done')")
    assert ok.passed and ok.status == "passed" and ok.stdout == "done"
    bad = sandbox.run("def f(x):\n    return x\n\nassert f(1) == 2")
    assert not bad.passed and "AssertionError" in bad.stderr


def test_exiting_early_with_status_zero_does_not_pass(sandbox):
    for exit_call in ("import sys; sys.exit(0)", "import os; os._exit(0)", "quit()"):
        r = sandbox.run(f"{exit_call}\nassert False")
        assert not r.passed, exit_call


def test_infinite_loop_is_killed_at_the_wall_clock_limit(sandbox):
    r = sandbox.run("while True:\n    pass")
    assert r.status == "timeout" and not r.passed
    assert r.duration_s < LIMITS["timeout_s"] + 1.5
    _assert_no_leftovers(r)


def test_allocating_10_gb_fails_fast(sandbox):
    r = sandbox.run("x = bytearray(10 * 1024 ** 3)\nprint(len(x))")
    assert not r.passed and "MemoryError" in r.stderr and r.duration_s < 2


@pytest.mark.skipif(not ROOT, reason="per-program process limits need the throw-away uid (root)")
def test_process_count_is_capped(sandbox):
    r = sandbox.run(textwrap.dedent("""
        import os, time
        n = 0
        for _ in range(50):
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:
                time.sleep(30)
                os._exit(0)
            n += 1
        print(n)
    """))
    assert r.passed
    assert int(r.stdout) < LIMITS["max_processes"]  # the program itself is one of them
    _assert_no_leftovers(r)  # the sleeping children were killed with the run


@pytest.mark.skipif(not ROOT, reason="the fork-bomb bound relies on the throw-away uid (root)")
def test_fork_bomb_is_contained_and_the_run_carries_on(sandbox):
    bomb = textwrap.dedent("""
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """)
    results = sandbox.run_many([bomb, "assert sum(range(4)) == 6"])
    assert not results[0].passed and results[0].status == "timeout"
    _assert_no_leftovers(results[0])
    assert results[1].passed


@pytest.mark.skipif(not ROOT, reason="file isolation comes from the throw-away uid (root)")
def test_harness_files_are_neither_readable_nor_writable(sandbox, tmp_path):
    tmp_path.chmod(0o700)
    secret = tmp_path / "secret.txt"
    secret.write_text("the answers")
    read = sandbox.run(f"print(open({str(secret)!r}).read())")
    assert not read.passed and "the answers" not in read.stdout
    write = sandbox.run(f"open({str(tmp_path / 'planted.py')!r}, 'w').write('x')")
    assert not write.passed and not (tmp_path / "planted.py").exists()


def test_writes_to_world_writable_dirs_do_not_escape(sandbox):
    if "private-tmpfs" not in sandbox.run("pass").isolation:
        pytest.skip("without a mount namespace /tmp is shared (documented fallback)")
    target = f"/tmp/gf-escape-{secrets.token_hex(6)}"
    r = sandbox.run(f"open({target!r}, 'w').write('x')\nimport os\nassert os.path.exists({target!r})")
    assert r.passed  # the program saw its write ...
    assert not os.path.exists(target)  # ... in a private /tmp that vanished with it
    hidden = sandbox.run(f"print(open({os.path.abspath(__file__)!r}).read()[:10])")
    assert not hidden.passed  # the harness's working tree is hidden too


def test_network_is_unreachable(sandbox):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    try:
        r = sandbox.run(textwrap.dedent(f"""
            import socket
            s = socket.create_connection(("127.0.0.1", {port}), timeout=1)
            s.sendall(b"leak")
        """))
        assert not r.passed
        with pytest.raises(socket.timeout):
            server.accept()
    finally:
        server.close()
