"""The model card: what travels in the ONNX file, its markdown, and the training domain.

Layer: above :mod:`convert.train` (architecture constants) and :mod:`convert.sim`
(the training domain is derived from the simulated data); below quantisation.
"""
