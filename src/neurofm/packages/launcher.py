"""In-sandbox launcher: run a command, then record the peak memory and CPU time of its tree.

Why it exists: inside bubblewrap's PID namespace the package is a grandchild of a namespace init
whose resource usage never reaches the runner's ``wait4``, so the peak RSS has to be read by a
parent inside the sandbox. Usage: ``python -m neurofm.packages.launcher REPORT.json -- CMD...``;
exits with the command's exit status (128 + signal number if it was killed).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m neurofm.packages.launcher REPORT.json -- CMD...", file=sys.stderr)
        return 2
    report, cmd = Path(argv[0]), argv[2:]
    try:
        proc = subprocess.Popen(cmd)
    except OSError as exc:
        print(f"cannot start {cmd[0]}: {exc}", file=sys.stderr)
        return 127
    signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signum))
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    cpu_s = usage.ru_utime + usage.ru_stime
    report.write_text(json.dumps({"peak_rss_mb": usage.ru_maxrss / 1024.0, "cpu_s": cpu_s}))
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
