"""avfuse.stream.cli.tree_cpu: the CPU a process tree took in a block, children included, ended or not
(what bench ray's cores are)."""

from __future__ import annotations

import subprocess
import sys

from avfuse.stream.cli.tree_cpu import TreeCpuMeter

BUSY = ("import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\n"
        "print('done', flush=True)\ntime.sleep(0.5)")


def test_a_child_that_worked_and_ended_counts_and_a_sleeping_one_does_not():
    idle = subprocess.Popen([sys.executable, "-c", "import time; print('asleep', flush=True); time.sleep(30)"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert idle.stdout is not None and idle.stdout.readline() == "asleep\n"
        with TreeCpuMeter(idle.pid) as asleep, TreeCpuMeter() as mine:
            busy = subprocess.run([sys.executable, "-c", BUSY], capture_output=True, text=True, check=True)
        assert busy.stdout == "done\n"
        assert mine.seconds is not None and asleep.seconds is not None
        assert mine.seconds >= 0.55  # the busy child's 0.6 s, though it had ended before the block did
        assert asleep.seconds < 0.1
    finally:
        idle.kill()
        idle.wait()
