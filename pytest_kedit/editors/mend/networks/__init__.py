"""The MEND networks packaged with pytest-kedit, installed as ``pytest_kedit.editors.mend.networks``:
``<model>.safetensors`` and its manifest ``<model>.json`` per embedded model, written by
``scripts/package_mend.py`` (:func:`pytest_kedit.editors.mend.checkpoint.package_network`)."""
