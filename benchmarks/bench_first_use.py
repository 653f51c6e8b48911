"""What the first use of a locate-and-edit method costs on a model: context templates, the sampled
corpus and the second-moment statistics, each from an empty cache.

    python benchmarks/bench_first_use.py --model smollm2-135m --method rome
    python benchmarks/bench_first_use.py --model gemma3-270m --method memit --samples 200,2000

The cache is a new temporary folder holding only the converted model (copied from the current
cache, which must have it: run anything on the model once), so the model's own conversion is not
counted. For each sample count, the corpus is sampled and the statistics of the method's packaged
layers computed from it; the windows per second are those of the sampling alone. All three are
built on model/threads.BUILD_THREADS threads, as in every run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def copy_models(source: Path, target: Path, model: str) -> None:
    """The converted ``model`` of the cache ``source`` (its folder and digest) into ``target``."""
    found = sorted((source / "models").glob(f"{model}-*"))
    if not found:
        raise SystemExit(f"{source / 'models'}: no converted {model}; run it once first (e.g. pytest suites --kedit-limit=1)")
    (target / "models").mkdir(parents=True)
    for path in found:
        if path.is_dir():
            shutil.copytree(path, target / "models" / path.name)
        elif path.suffix != ".lock":
            shutil.copy2(path, target / "models" / path.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--method", default="rome")
    parser.add_argument("--samples", default="", help="sample counts (default: the packaged mom2_n_samples)")
    args = parser.parse_args()

    from pytest_kedit.storage.cache import cache_dir

    source = cache_dir()
    with tempfile.TemporaryDirectory(prefix="kedit-first-use-") as folder:
        copy_models(source, Path(folder), args.model)
        os.environ["KEDIT_CACHE_DIR"] = folder

        from pytest_kedit.editors import create_editor
        from pytest_kedit.editors.context_templates import context_templates
        from pytest_kedit.editors.corpus import sampled_windows
        from pytest_kedit.editors.second_moment import second_moments
        from pytest_kedit.model.loading import load_model
        from pytest_kedit.model.threads import BUILD_THREADS

        loaded = load_model(args.model)
        editor = create_editor(args.method, loaded)
        hp = editor.hparams
        modules = getattr(editor, "module_names", None) or [editor.module_name]
        print(f"{args.method} on {loaded.name} ({loaded.device}, built on {BUILD_THREADS} threads, load average "
              f"{os.getloadavg()[0]:.1f}); layers {hp.layers}")

        start = time.perf_counter()
        context_templates(loaded, hp.context_template_length_params)
        templates = time.perf_counter() - start
        print(f"context templates {hp.context_template_length_params}: {templates:.1f} s")
        counts = [int(n) for n in args.samples.split(",") if n] or [hp.mom2_n_samples]
        for n in counts:
            start = time.perf_counter()
            sampled_windows(loaded, n)
            sampling = time.perf_counter() - start
            start = time.perf_counter()
            _, info = second_moments(loaded, modules, hp.mom2_dataset, n, hp.mom2_dtype)
            statistics = time.perf_counter() - start
            print(
                f"{n} windows: sampling {sampling:.1f} s ({n / sampling:.1f} windows/s), statistics of "
                f"{len(modules)} module(s) {statistics:.1f} s ({info['tokens']} tokens); first use "
                f"{templates + sampling + statistics:.1f} s with the templates"
            )


if __name__ == "__main__":
    main()
