"""The ``kedit`` command: one module per group of subcommands, each only parsing arguments and
calling the layers below.
"""
