"""Subcommands of ``deltaiqa-lite``: one module each, imported only when invoked.

Each exposes ``HELP`` (str), ``add_arguments(parser)`` and ``run(args) -> int``.
"""
