"""How ZeroTA's peak memory and time grow with the number of events: the measurement behind
`mmgpt2.apps.video.limits.MAX_EVENTS` (issue 16: `--events 100` was OOM-killed at 23 GB).

Each count runs in a fresh process (so the peak RSS is its own) on one embedded-world video,
with the features precomputed and `--steps` optimisation steps. Ratios are against the first
count, measured in the same run.

Usage:
    python benchmarks/zerota_events_memory.py                      # events 3 6 10, 4 steps
    python benchmarks/zerota_events_memory.py --events 3 6 10 --steps 16 --limit-gb 6
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, os, resource, sys, threading, time
import torch
torch.set_num_threads(1)
events, steps, video, cache, limit = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])

def watch():  # stop before the machine does: report the count as over the limit
    while True:
        with open("/proc/self/status") as f:
            rss = int(f.read().split("VmRSS:")[1].split()[0]) * 1024
        if rss > limit * 1e9:
            print(json.dumps({"over_limit": True}), flush=True)
            os._exit(0)
        time.sleep(0.2)

if __name__ == "__main__":
    threading.Thread(target=watch, daemon=True).start()
    from mmgpt2.apps.video.model import DenseVideoCaptioner
    model = DenseVideoCaptioner.from_pretrained("shapes-video-zerota")
    model.cache_dir = cache
    feats = model.features(video)
    start = time.perf_counter()
    found = model.caption_features(feats, events=events, steps=steps)
    print(json.dumps({
        "frames": len(feats.times), "events_out": len(found), "seconds": time.perf_counter() - start,
        "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    }), flush=True)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[3, 6, 10])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--limit-gb", type=float, default=6.0, help="stop a run whose RSS passes this")
    args = parser.parse_args()
    from mmgpt2.worlds import videos

    with tempfile.TemporaryDirectory() as tmp:
        videos.write(tmp, n=1, seed=1)
        video = str(next(Path(tmp).rglob("*.mp4")))
        child = Path(tmp) / "child.py"
        child.write_text(CHILD)
        rows = []
        for k in args.events:
            cmd = [sys.executable, str(child), str(k), str(args.steps), video, tmp, str(args.limit_gb)]
            out = subprocess.run(
                cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
            )
            lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
            rows.append((k, json.loads(lines[-1]) if lines else {"error": out.stderr.strip()[-200:]}))
    base = rows[0][1]
    print(f"{'events':>6} {'frames':>6} {'peak GB':>8} {'x mem':>6} {'seconds':>8} {'x time':>7}")
    for k, r in rows:
        if "peak_gb" not in r:
            print(f"{k:>6} {'':>6} {'> ' + str(args.limit_gb) if r.get('over_limit') else r.get('error'):>8}")
            continue
        print(
            f"{k:>6} {r['frames']:>6} {r['peak_gb']:>8.2f} {r['peak_gb'] / base['peak_gb']:>6.2f} "
            f"{r['seconds']:>8.1f} {r['seconds'] / base['seconds']:>7.2f}"
        )


if __name__ == "__main__":
    main()
