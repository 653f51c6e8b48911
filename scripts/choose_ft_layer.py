"""Measure FT across layers on the built-in coverage cases, to choose a model's default FT layer.

For each candidate layer, every case's e2 = (s, r, o2 -> o3) is applied alone to the original model
(the Single edit) and the probe over the relation's 11 prompts gives the success p(o3) > p(o2), the
mean p(o3) after the edit, and the seconds per edit.

    python scripts/choose_ft_layer.py --model smollm2-135m --layers 2,8,14,20,26 --cases 6
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pytest_kedit.datasets import load_suite
from pytest_kedit.editors.ft import FTEditor
from pytest_kedit.hparams import load_hparams
from pytest_kedit.models import load_model
from pytest_kedit.probe import Encoder, probe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--layers", default="2,8,14,20,26")
    parser.add_argument("--cases", type=int, default=6)
    args = parser.parse_args()
    loaded = load_model(args.model)
    encoder = Encoder(loaded.tokenizer)
    base = load_hparams("ft", FTEditor.hparams_class, loaded.name, loaded.family)
    cases = load_suite(None, ["coverage"], limit=args.cases).splits["coverage"]
    print(f"{args.model} FT on {len(cases)} coverage cases (Single edit e2)")
    print("layer  success  mean p(o3)  s/edit")
    for layer in (int(x) for x in args.layers.split(",")):
        base.layers = [layer]
        editor = FTEditor(base, loaded)
        wins, p_new, seconds = [], [], 0.0
        for case in cases:
            e1, e2 = case.edits
            pairs = lambda obj: [(p.format(e2.subject.label), obj) for p in e2.relation.prompts]  # noqa: E731
            start = time.perf_counter()
            delta = editor.apply(loaded.model, loaded.tokenizer, [e2.request()])
            seconds += time.perf_counter() - start
            new, old = probe(loaded.model, encoder, pairs(e2.new.label)).mean(), probe(loaded.model, encoder, pairs(e1.new.label)).mean()
            delta.restore(loaded.model)
            wins.append(new > old)
            p_new.append(new)
        print(f"{layer:5d}  {np.mean(wins):7.2f}  {np.mean(p_new):10.4f}  {seconds / len(cases):6.2f}")


if __name__ == "__main__":
    main()
