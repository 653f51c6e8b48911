"""Package the MEND network trained for an embedded model, so that ``--kedit-method=mend`` runs on it
without ``kedit train-mend``.

The network is built with the model's packaged hyper-parameters, filled from the cache entry that
``kedit train-mend`` wrote (verified against its digest), and written into the repository's
``pytest_kedit/editors/mend/networks/`` as ``<model>.safetensors`` (matrices in float16, the rest
in float32) with ``<model>.json`` (the training manifest, the network's layout and the sha256 of
the ``.safetensors`` file), which the wheel installs.

    kedit train-mend --model smollm2-135m --from ../shared/datasets/pitfalls/GPT2-XL --out runs/mend-smollm2
    python scripts/package_mend.py --model smollm2-135m
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pytest_kedit.editors.hparams import load_hparams
from pytest_kedit.editors.mend.checkpoint import load_cached, manifest_path, package_network, trained_path
from pytest_kedit.editors.mend.editor import MENDEditor, build_network
from pytest_kedit.model.embedded_models import EMBEDDED_MODELS
from pytest_kedit.model.loading import load_model

#: The repository's folder of packaged networks, which the wheel installs as ``pytest_kedit.editors.mend.networks``.
NETWORKS = Path(__file__).resolve().parents[1] / "pytest_kedit" / "editors" / "mend" / "networks"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m", choices=sorted(EMBEDDED_MODELS))
    args = parser.parse_args()

    loaded = load_model(args.model)
    hparams = load_hparams("mend", MENDEditor.hparams_class, loaded.name, loaded.family)
    network = build_network(loaded, hparams)
    manifest = load_cached(network, loaded)
    if manifest is None:
        sys.exit(f"no trained network in the cache ({trained_path(loaded, network)}): "
                 f"run kedit train-mend --model {args.model} --from DATA --out DIR first")
    path = package_network(network, manifest, NETWORKS)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB) and {manifest_path(path).name}")


if __name__ == "__main__":
    main()
