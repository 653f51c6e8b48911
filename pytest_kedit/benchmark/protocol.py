"""``--kedit-protocol``: the choices a run makes where the paper and its published code differ.

``paper`` (the default) measures what the paper defines; ``upstream`` does what the published
scripts did, so that its tables compare with the published Table 1 and Table 2. A
:class:`Protocol` is the resolved set of choices; docs/fidelity.md lists every difference and how
each protocol handles it. Pure: no torch, no model.

- ``keep_trailing_space``: a prompt that ends in a space is scored as ``prompt + " " + object``
  (the object follows a space token), as the published code concatenated them; otherwise the
  prompt's trailing space is stripped first (:class:`pytest_kedit.model.probe.Encoder`).
- ``remove_first_o1_only``: RoundEdit's Others are the true objects with only the first copy of
  o1 removed (the published code's ``list.remove``); otherwise every copy is removed.
- ``distortion``: D's scaling (:data:`pytest_kedit.benchmark.metrics.DISTORTION_SCALINGS`), unless
  ``--kedit-distortion`` names one.
- ``hparams``: hyper-parameters the protocol sets over a method's packaged defaults, for the
  methods whose hyper-parameters have that key; a ``--kedit-hparams`` file that sets the key wins.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pytest_kedit.benchmark.metrics import DISTORTION_SCALINGS
from pytest_kedit.errors import ConfigError

#: The published code's editor choices, as hyper-parameters (EasyEdit-style keys; the editors
#: document them): FT's objective at the prompt's last position, ROME's update exact for the
#: plain prompt's key (r-ROME has no ``update_key``: it stays r-ROME), the keys of MEMIT and of
#: the methods built on it averaged per group of context templates.
UPSTREAM_HPARAMS: tuple[tuple[str, Any], ...] = (
    ("objective_optimization", "prompt_last"),
    ("update_key", "prompt"),
    ("key_averaging", "grouped"),
)


@dataclass(frozen=True)
class Protocol:
    """The resolved choices of one run (see the module docstring)."""

    name: str
    keep_trailing_space: bool = False
    remove_first_o1_only: bool = False
    distortion: str = "paper"
    hparams: tuple[tuple[str, Any], ...] = ()

    def hparams_defaults(self) -> dict[str, Any]:
        """The hyper-parameters this protocol sets over the packaged defaults."""
        return dict(self.hparams)


PAPER = Protocol("paper")
UPSTREAM = Protocol("upstream", keep_trailing_space=True, remove_first_o1_only=True, distortion="upstream",
                    hparams=UPSTREAM_HPARAMS)
PROTOCOLS: Mapping[str, Protocol] = {protocol.name: protocol for protocol in (PAPER, UPSTREAM)}


def resolve_protocol(name: str, distortion: str | None = None) -> Protocol:
    """The protocol ``name`` with D's scaling ``distortion`` when one is given (an explicit
    ``--kedit-distortion`` wins over the protocol's). ConfigError naming the option for an
    unknown protocol or scaling."""
    if name not in PROTOCOLS:
        raise ConfigError(f"--kedit-protocol: {name!r}; choose from {', '.join(PROTOCOLS)}")
    if distortion is not None and distortion not in DISTORTION_SCALINGS:
        raise ConfigError(f"--kedit-distortion: {distortion!r}; choose from {', '.join(DISTORTION_SCALINGS)}")
    protocol = PROTOCOLS[name]
    return protocol if distortion is None else dataclasses.replace(protocol, distortion=distortion)
