"""avfuse.stream.cli.tree_cpu: the CPU a process tree took, children included (what bench ray's cores are)."""

from __future__ import annotations

import subprocess
import sys
import time

from avfuse.stream.cli.tree_cpu import tree_cpu_seconds

BUSY = ("import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\n"
        "print('done', flush=True)\ntime.sleep(30)")


def test_a_busy_child_counts_even_once_ended_and_a_sleeping_one_does_not():
    before = tree_cpu_seconds()
    busy = subprocess.Popen([sys.executable, "-c", BUSY], stdout=subprocess.PIPE, text=True)
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert busy.stdout is not None and busy.stdout.readline() == "done\n"
        time.sleep(0.2)
        after, child, sleeper = tree_cpu_seconds(), tree_cpu_seconds(busy.pid), tree_cpu_seconds(idle.pid)
        assert before is not None and after is not None and child is not None and sleeper is not None
        assert child >= 0.55  # its 0.6 s of busy loop, in clock ticks
        assert sleeper < 0.3  # started Python, then slept
        assert after - before >= child  # the children are in this process's tree
        busy.kill()
        busy.wait()
        assert tree_cpu_seconds() >= after  # an ended child's time stays counted, in its parent
    finally:
        busy.kill()
        idle.kill()
        busy.wait()
        idle.wait()
