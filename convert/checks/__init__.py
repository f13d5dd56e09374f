"""Checks of a built model: quality metrics, the real-anatomy check, the example slices.

Layer: above :mod:`convert.sim`; never imports training, cards or quantisation.
"""
