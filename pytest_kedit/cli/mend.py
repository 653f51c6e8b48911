"""``kedit train-mend``: MEND's hypernetwork trained for a model, on data disjoint from the evaluated suite."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pytest_kedit.cli.arguments import int_at_least, positive_number
from pytest_kedit.dataset.sources import resolve_source


def add_train_mend(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train-mend",
        help="train MEND's hypernetwork for a model, on data disjoint from the evaluated suite",
        description="Train the MEND network of MODEL on edit requests made from the benchmark data at SOURCE, "
                    "leaving out every case and entity of the suite MEND will be evaluated on (see "
                    "kedit docs editors, MEND). The training state is checkpointed in OUT: run the same command "
                    "again to resume. The best network goes to the cache, where --kedit-method=mend finds it.",
    )
    parser.add_argument("--model", required=True, metavar="MODEL", help="embedded alias, local directory or Hugging Face id")
    parser.add_argument("--from", dest="source", required=True, metavar="SOURCE",
                        help="benchmark data: a folder in the upstream layout, or upstream:GPT2-XL / upstream:GPT-J")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="the folder of the training state and of the final checkpoint")
    parser.add_argument("--evaluated-data", default=None, metavar="DATA",
                        help="the suite MEND will be evaluated on, excluded from training (default: the built-in suites)")
    parser.add_argument("--hparams", default=None, metavar="PATH", help="MEND hyper-parameters (default: the packaged ones)")
    parser.add_argument("--max-steps", type=int_at_least(1), default=None, metavar="N",
                        help="steps of this run at most (resume later with the same command)")
    parser.add_argument("--max-minutes", type=positive_number, default=None, metavar="MINUTES",
                        help="wall-clock budget of this run (overrides max_minutes)")
    parser.add_argument("--device", default="auto", metavar="DEVICE", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--dtype", default="auto", metavar="DTYPE", help="auto (float32), float16 or bfloat16 (default: auto)")
    parser.set_defaults(handler=_train_mend)


def _train_mend(args: argparse.Namespace) -> int:
    # Imported here: torch and transformers take seconds to import, which the other commands do not need.
    import dataclasses

    from pytest_kedit.editors.hparams import load_hparams
    from pytest_kedit.editors.mend.editor import MENDEditor
    from pytest_kedit.editors.mend.training import MENDTrainer
    from pytest_kedit.editors.mend.training_data import training_data
    from pytest_kedit.model.loading import load_model

    for option, value in (("--from", args.source), ("--evaluated-data", args.evaluated_data)):
        if value is not None:
            resolve_source(value, option)
    data = training_data(args.source, args.evaluated_data)
    loaded = load_model(args.model, device=args.device, dtype=args.dtype)
    hparams = load_hparams("mend", MENDEditor.hparams_class, loaded.name, loaded.family, args.hparams)
    if args.max_minutes is not None:
        hparams = dataclasses.replace(hparams, max_minutes=args.max_minutes)
    split = data.split
    print(f"training data: {split['train_examples']} edits, {split['val_examples']} held out, {split['facts']} locality facts, "
          f"{split['val_facts']} held out; "
          f"dropped {sum(split['dropped_cases'].values())} of {split['source_cases']} source cases ({split['dropped_cases']})")
    try:
        manifest = MENDTrainer(loaded, hparams, data, args.out).run(args.max_steps)
    except KeyboardInterrupt:
        print(f"kedit: interrupted; the last checkpoint in {args.out} is kept: run the same command to resume",
              file=sys.stderr)
        return 130
    last = manifest["validation"][-1] if manifest["validation"] else {}
    print(f"steps {manifest['steps']} ({manifest['stopped'] or 'resumable'}), best at step {manifest['best_step']}; "
          f"last validation: edit success {last.get('edit_success', float('nan')):.3f}, "
          f"drawdown {last.get('drawdown', float('nan')):.3f}, argmax changed {last.get('argmax_changed', float('nan')):.3f}")
    print(f"wrote {args.out} and {manifest['cache_entry']}")
    return 0
