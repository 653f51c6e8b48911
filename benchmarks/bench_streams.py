"""How long the sequential suite's stream takes per method: the built-in 100-edit stream on the
embedded model, run as a user runs it (``pytest suites -k sequential``), one method after another.

    python benchmarks/bench_streams.py                       # every built-in method, 2 threads
    python benchmarks/bench_streams.py --methods rome,memit --threads 1

Run it alone on the machine, with a cache that already holds what each method needs once (the
converted model, the statistics of locate-and-edit methods, MEND's trained network): the first
use of a method is bench_first_use.py's, not this. Each run writes its report into a temporary
folder; the table gives the wall time of the pytest command and the harness's own split of it
(edits, probes: the checkpoints' probabilities, the held-out text's perplexity, the update norms).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

SUITES = Path(__file__).resolve().parent.parent / "suites"
METHODS = "ft,rome,r-rome,memit,memit-mle,alphaedit,alphaedit-mle,emmet,mend"


def run_stream(model: str, method: str, threads: int, report: Path) -> tuple[float, dict[str, float], dict[str, float]]:
    """Run the stream of ``method`` into ``report``: wall seconds, the summary's timings, the record's metrics."""
    command = [sys.executable, "-m", "pytest", str(SUITES), "-k", "sequential", "-q", "-p", "no:randomly",
               "-p", "no:cacheprovider", f"--kedit-model={model}", f"--kedit-method={method}", f"--kedit-report={report}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    subprocess.run(command, env=env, capture_output=True, check=False)
    wall = time.perf_counter() - start
    summary_file = report / "summary.json"
    if not summary_file.is_file():
        raise SystemExit(f"{method}: the run wrote no {summary_file}; run the command above to see why")
    summary = json.loads(summary_file.read_text())
    (record,) = [json.loads(line) for line in (report / "cases.jsonl").read_text().splitlines()]
    return wall, summary["timings"], record["metrics"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="kedit-streams-") as folder:
        for method in args.methods.split(","):
            wall, timings, metrics = run_stream(args.model, method, args.threads, Path(folder) / method)
            rows.append([method, f"{wall / 60:.1f}", f"{timings['edit']:.0f}", f"{timings['probe']:.0f}",
                         f"{metrics['es'] * 100:.0f}", f"{metrics['ppl']:.2f}", f"{metrics['collapse_at']:.0f}"])
            print(f"{method}: {wall:.0f} s", flush=True)
    print(f"\n{args.model}, 100-edit built-in stream, {args.threads} thread(s), load average at the end "
          f"{os.getloadavg()[0]:.1f}")
    print(tabulate(rows, headers=["method", "minutes", "edits s", "probes s", "ES final", "PPL ratio", "collapse at"],
                   tablefmt="github"))


if __name__ == "__main__":
    main()
