"""The probe's tokenizer, public for third-party editors that score targets the probe's way."""

from pytest_kedit.model.probe import Encoder

__all__ = ["Encoder"]
