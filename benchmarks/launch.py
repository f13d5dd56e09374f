"""Run one command and report its timings and peak RSS; run as ``python -S -I launch.py STDOUT_FILE -- CMD...``.

Why a launcher: on Linux a child's ``ru_maxrss`` starts from the resident size
of the process it was forked from (the high-water mark survives ``exec``), so
a command forked directly from the benchmark suite (hundreds of MB: sessions,
arenas, decoded series) would report at least the suite's size. Forked from
this small interpreter instead, the command's own peak is what is measured.

Prints one JSON line: returncode, first_output_s (start -> first stdout line),
wall_s (start -> exit), peak_rss_kb. The command's stdout goes to STDOUT_FILE,
its stderr is inherited.
"""

import json
import os
import subprocess
import sys
import time


def main() -> int:
    out_path, separator, command = sys.argv[1], sys.argv[2], sys.argv[3:]
    if separator != "--" or not command:
        print("usage: launch.py STDOUT_FILE -- COMMAND...", file=sys.stderr)
        return 2
    with open(out_path, "wb") as sink:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.PIPE)
        first = None
        for line in child.stdout:
            if first is None:
                first = time.perf_counter() - start
            sink.write(line)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
    print(json.dumps({"returncode": os.waitstatus_to_exitcode(status), "first_output_s": first, "wall_s": wall,
                      "peak_rss_kb": usage.ru_maxrss}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
