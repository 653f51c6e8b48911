"""Measure edit success and locality of a locate-and-edit method (or FT) across layers, to choose a
model's default layers.

For each candidate (``--window`` consecutive layers ending at it: by default as many as the
method's packaged defaults have, so one for FT, ROME, r-ROME and EMMET, five for MEMIT), every
case's first edit e1 = (s, r, o → o*) is applied alone to the original model and measured with
the probe over the relation's prompts:

- success: p(o*) > p(o) after the edit (the paper's Single Succ on e1), and the mean p(o*);
- locality: the other cases' facts (s', r', o'), which the edit should leave alone: the mean
  |log p_after − log p_before| of their true objects (0 = untouched), and the share of them that
  lost more than 10 % of their probability.

    python scripts/choose_layers.py --model smollm2-135m --method rome --layers 0-29:2 --cases 20
    python scripts/choose_layers.py --model gemma3-270m --method ft --layers 0-17:3 --cases 12
    python scripts/choose_layers.py --model smollm2-135m --method alphaedit --layers 6 --set '{"L2": 1}'
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np

from pytest_kedit.benchmark.cases import ConflictCase
from pytest_kedit.dataset.sources import load_suite
from pytest_kedit.editors import BUILTIN, editor_class
from pytest_kedit.editors.hparams import load_hparams
from pytest_kedit.editors.second_moment import second_moments
from pytest_kedit.model.loading import load_model
from pytest_kedit.model.probe import Encoder, probe


def layer_range(spec: str) -> list[int]:
    """``3,5,7`` or ``0-29`` or ``0-29:2``."""
    if "-" not in spec:
        return [int(x) for x in spec.split(",")]
    span, _, step = spec.partition(":")
    first, last = (int(x) for x in span.split("-"))
    return list(range(first, last + 1, int(step or 1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--method", default="rome", choices=sorted(set(BUILTIN) - {"mend"}))
    parser.add_argument("--layers", default="0-29:2", help="candidate (last) layers: 3,5,7 | 0-29 | 0-29:2")
    parser.add_argument("--window", type=int, default=None, help="consecutive layers (default: as many as the packaged defaults)")
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--data", default=None, help="suite folder (default: the built-in suites)")
    parser.add_argument("--hparams", default=None, help="a YAML file instead of the packaged defaults")
    parser.add_argument("--set", default="{}", help='hyper-parameter overrides as JSON, e.g. {"v_num_grad_steps": 10}')
    args = parser.parse_args()

    loaded = load_model(args.model)
    cls = editor_class(args.method)
    base = load_hparams(cls.hparams_folder or cls.name, cls.hparams_class, loaded.name, loaded.family, args.hparams)
    base = dataclasses.replace(base, **json.loads(args.set))
    window = args.window or len(base.layers)
    candidates = [list(range(last - window + 1, last + 1)) for last in layer_range(args.layers) if last - window + 1 >= 0]
    if getattr(base, "mom2_adjustment", False):  # every candidate layer's statistics in one pass over the corpus
        names = sorted({loaded.modules.mlp_out.format(layer) for layers in candidates for layer in layers})
        second_moments(loaded, names, base.mom2_dataset, base.mom2_n_samples, base.mom2_dtype)

    cases = [c for c in load_suite(args.data, ["coverage"], args.cases).splits["coverage"] if isinstance(c, ConflictCase)]
    encoder = Encoder(loaded.tokenizer)
    facts = [(c.edits[0].relation, c.edits[0].subject.label, c.edits[0].old.label) for c in cases]

    def p(relation, subject: str, obj: str) -> float:
        return float(probe(loaded.model, encoder, [(q.format(subject), obj) for q in relation.prompts]).mean())

    before = [p(*fact) for fact in facts]
    print(f"{args.model} {args.method} on {len(cases)} coverage cases; overrides {args.set}")
    print("layers        succ   p(o*)   drift  lost>10%  s/edit")
    for layers in candidates:
        editor = cls(dataclasses.replace(base, layers=layers), loaded)
        success, p_new, drift, lost, seconds = [], [], [], [], 0.0
        for case in cases:
            e1 = case.edits[0]
            start = time.perf_counter()
            delta = editor.apply(loaded.model, loaded.tokenizer, [e1.request()])
            seconds += time.perf_counter() - start
            new, old = p(e1.relation, e1.subject.label, e1.new.label), p(e1.relation, e1.subject.label, e1.old.label)
            success.append(new > old)
            p_new.append(new)
            others = [j for j in range(len(facts)) if facts[j][1] != e1.subject.label]
            after = np.array([p(*facts[j]) for j in others])
            ratio = after / np.array([before[j] for j in others])
            drift.append(np.abs(np.log(ratio)).mean())
            lost.append((ratio < 0.9).mean())
            delta.restore(loaded.model)
        label = f"{layers[0]}" if len(layers) == 1 else f"{layers[0]}-{layers[-1]}"
        print(
            f"{label:<12} {np.mean(success):5.2f}  {np.mean(p_new):6.3f}  {np.mean(drift):6.3f}  {np.mean(lost):7.2f}"
            f"  {seconds / len(cases):6.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
