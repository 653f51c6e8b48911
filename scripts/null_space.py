"""Measure the null space AlphaEdit writes into, to choose ``nullspace_threshold`` (τ) and ``L2`` (α).

τ is an absolute threshold on the eigenvalues of C = E[k kᵀ], the mean second moment of a
projection's keys over the statistics corpus, so it depends on the model and on the corpus. For
each rewritten projection this prints C's spectrum (its dimension d, the mean eigenvalue
trace(C)/d and quantiles), then for each candidate τ:

- m: the dimension of the null space (eigenvalues below τ); 0 is an error in AlphaEdit;
- corpus: the share of the corpus keys' energy E‖k‖² that falls in it (Σ of the eigenvalues
  below τ over trace(C)), which edits can disturb;
- keys: the share ‖U₀ᵀk‖²/‖k‖² of each edit key k (the first edit of the built-in cases, averaged
  over the context templates) that falls in it: the part of a key an edit can write through
  (median, and the 10th percentile);
- written: for one edit with nothing kept, the share of the residual the solve writes at its own
  key, ‖Pk‖²/(‖Pk‖² + α) (median over the keys), for the α of the hyper-parameters.

    python scripts/null_space.py --model smollm2-135m
    python scripts/null_space.py --model smollm2-135m --set '{"mom2_n_samples": 2000}' --thresholds 1e-1,1e-2
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import torch

from pytest_kedit.benchmark.cases import ConflictCase
from pytest_kedit.benchmark.registry import SPLITS
from pytest_kedit.dataset.sources import load_suite
from pytest_kedit.editors import create_editor
from pytest_kedit.editors.alphaedit import AlphaEditEditor, null_space
from pytest_kedit.editors.key_value import read_at_subject
from pytest_kedit.model.loading import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--method", default="alphaedit")
    parser.add_argument("--hparams", default=None, help="a YAML file instead of the packaged defaults")
    parser.add_argument("--set", default="{}", help='hyper-parameter overrides as JSON, e.g. {"mom2_n_samples": 2000}')
    parser.add_argument("--thresholds", default="1e-1,5e-2,2e-2,1e-2,5e-3,2e-3,1e-3", help="candidate τ")
    parser.add_argument("--cases", type=int, default=None, help="built-in cases per split (default: all)")
    args = parser.parse_args()

    loaded = load_model(args.model)
    editor = create_editor(args.method, loaded, args.hparams)
    if not isinstance(editor, AlphaEditEditor):
        parser.error(f"--method {args.method} is not AlphaEdit")
    editor.hparams = dataclasses.replace(editor.hparams, **json.loads(args.set))
    suite = load_suite(None, tuple(SPLITS), args.cases)
    requests = [(case.edits[0] if isinstance(case, ConflictCase) else case.edit).request()
                for cases in suite.splits.values() for case in cases]
    inputs, _ = read_at_subject(loaded.model, editor.key_prompts(requests), editor.module_names, editor.encoder.pad_id)
    thresholds = [float(t) for t in args.thresholds.split(",")]
    hp = editor.hparams
    editor.second_moment(editor.module_names[0])  # every projection's statistics, and where they come from
    print(f"{args.model} {args.method}: {hp.mom2_n_samples} windows of {editor.statistics_info['corpus']}; "
          f"{len(requests)} edit keys; L2 {hp.L2:g}")
    for name in editor.module_names:
        mom2 = editor.second_moment(name).double()
        values = torch.linalg.eigvalsh(mom2)
        quantiles = np.quantile(values.numpy(), [0, 0.01, 0.1, 0.5, 0.9, 0.99, 1])
        print(f"\n{name}: d {len(values)}, mean eigenvalue {float(values.mean()):.3g}, "
              f"quantiles 0/1/10/50/90/99/100 %: {' '.join(f'{q:.2e}' for q in quantiles)}")
        keys = editor.keys(inputs[name], len(requests))  # (requests, in)
        print("  τ          m   corpus    keys (median, p10)   written")
        for threshold in thresholds:
            _, basis = null_space(mom2, threshold)
            inside = (keys @ basis).square().sum(dim=1)  # ‖U₀ᵀk‖²
            share = (inside / keys.square().sum(dim=1)).numpy()
            written = (inside / (inside + hp.L2)).numpy()
            energy = float(values[values < threshold].clamp(min=0).sum() / values.clamp(min=0).sum())
            print(f"  {threshold:<9.1e} {basis.shape[1]:>5}  {energy:7.2%}   {np.median(share):7.2%} {np.quantile(share, 0.1):7.2%}"
                  f"     {np.median(written):7.2%}")


if __name__ == "__main__":
    main()
