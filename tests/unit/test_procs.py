"""The stack's process table: a recorded process is recognised by its start time in clock ticks, so a
stepped wall clock does not make the stack disown (and then refuse the ports of) its own servers."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time

from attestly_dev.stack import procs


def _sleeper(tmp_path):
    return procs.spawn(
        "sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], log=tmp_path / "s.log"
    )


def test_alive_survives_a_stepped_wall_clock(tmp_path):
    proc = _sleeper(tmp_path)
    try:
        assert proc.ticks is not None and proc.alive()
        # psutil's create_time moves when the clock steps (boot time is derived from it): the
        # recorded value is then off by seconds, yet the process is still the same one.
        stepped = dataclasses.replace(proc, create_time=proc.create_time - 12)
        assert stepped.alive()
        # A different start (a recycled pid) is not ours.
        assert not dataclasses.replace(proc, ticks=proc.ticks + 1).alive()
    finally:
        procs.stop(proc)
    assert not proc.alive()


def test_find_by_argv_adopts_exactly_our_command_line(tmp_path):
    argv = [sys.executable, "-c", "import time; time.sleep(60)", "attestly-test-marker"]
    child = subprocess.Popen(argv)
    try:
        deadline = time.monotonic() + 10
        while procs.find_by_argv(argv) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert procs.find_by_argv(argv) == child.pid
        assert procs.find_by_argv([*argv[:-1], "someone-else"]) is None
    finally:
        child.kill()
        child.wait()


def test_table_updates_from_many_processes_keep_every_entry(tmp_path):
    table = procs.ProcTable(tmp_path / "procs.json")
    script = (
        "import sys; sys.path.insert(0, 'include');"
        "from attestly_dev.stack import procs;"
        f"t = procs.ProcTable(__import__('pathlib').Path({str(tmp_path / 'procs.json')!r}));"
        "[t.add(procs.Proc(name=f'{sys.argv[1]}-{i}', pid=1, create_time=0.0, log='')) for i in range(20)]"
    )
    children = [subprocess.Popen([sys.executable, "-c", script, f"w{n}"]) for n in range(4)]
    assert [c.wait() for c in children] == [0, 0, 0, 0]
    assert len(table.load()) == 80
