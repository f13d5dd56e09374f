"""Subcommands of ``deltaiqa-lite``: one module each, imported only when invoked.

Each exposes ``HELP`` (str), ``add_arguments(parser)`` and ``run(args) -> int``.

Layer: the top (with :mod:`deltaiqa_lite.cli`): may import anything below;
nothing below imports it.
"""
