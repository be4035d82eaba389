#!/usr/bin/env python3
"""Stand-in for the training program in the real-Slurm test: records what one rank sees, as JSON.

Writes $AIINFRA_STANDIN_OUT/rank-<RANK>-<restart>.json with the environment, the host name and the
arguments. With AIINFRA_STANDIN_SLEEP=N it then waits N seconds (the first run of a job only) and
records a SIGTERM, as Megatron's --exit-signal-handler would save a checkpoint on it.
"""

import json
import os
import signal
import socket
import sys
import time

out_dir = os.environ["AIINFRA_STANDIN_OUT"]
rank = os.environ.get("RANK", "none")
restart = os.environ.get("SLURM_RESTART_COUNT", "0")
record = {"host": socket.gethostname(), "argv": sys.argv[1:], "env": dict(os.environ)}
path = os.path.join(out_dir, f"rank-{rank}-{restart}.json")
with open(path, "w") as f:
    json.dump(record, f)


def on_term(signum, frame):
    with open(os.path.join(out_dir, f"term-{rank}-{restart}"), "w") as f:
        f.write("SIGTERM\n")
    sys.exit(0)


signal.signal(signal.SIGTERM, on_term)
if restart == "0":
    time.sleep(float(os.environ.get("AIINFRA_STANDIN_SLEEP", "0")))
