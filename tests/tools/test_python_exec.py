"""python_exec: output, limits (time, CPU, memory), no network, no subprocesses, a clean temp dir."""

from __future__ import annotations

import time
from pathlib import Path

from tools.python_exec import python_exec, run_python


def test_runs_code_and_captures_output() -> None:
    result = run_python("import sys\nprint(6 * 7)\nprint('warn', file=sys.stderr)")
    assert result.ok and result.stdout == "42\n" and result.stderr == "warn\n"
    assert python_exec.invoke({"code": "print(sum(range(10)))"}).content == "45"


def test_infinite_loop_is_killed_within_the_time_limit() -> None:
    start = time.monotonic()
    result = run_python("while True:\n    pass", timeout_s=1.0)
    assert result.timed_out and not result.ok
    assert time.monotonic() - start < 3.0
    assert "time limit" in result.to_text()


def test_memory_bomb_is_stopped_by_the_memory_limit() -> None:
    start = time.monotonic()
    result = run_python(
        "chunks = []\nwhile True:\n    chunks.append(bytearray(50_000_000))", memory_mb=256, timeout_s=10.0
    )
    assert result.exit_code != 0 and "MemoryError" in result.stderr
    assert time.monotonic() - start < 5.0


def test_network_and_subprocesses_are_refused() -> None:
    net = run_python("import socket\nsocket.create_connection(('127.0.0.1', 9))")
    assert net.exit_code == 1 and "not allowed" in net.stderr
    proc = run_python("import os\nos.system('echo hi')")
    assert proc.exit_code == 1 and "not allowed" in proc.stderr and "hi" not in proc.stdout


def test_each_run_gets_a_fresh_empty_directory_that_is_removed() -> None:
    first = run_python("import os\nopen('f.txt', 'w').write('x')\nprint(os.getcwd())\nprint(os.listdir('.'))")
    workdir = first.stdout.splitlines()[0]
    assert first.stdout.splitlines()[1] == "['f.txt']"
    assert not Path(workdir).exists()
    second = run_python("import os\nprint(os.listdir('.'))")
    assert second.stdout == "[]\n"


def test_syntax_errors_and_output_limits_are_results() -> None:
    bad = run_python("def (")
    assert bad.exit_code == 1 and "SyntaxError" in bad.stderr
    big = run_python("print('x' * 100_000)", max_output_chars=1000)
    assert len(big.stdout) < 1100 and "more characters cut" in big.stdout
