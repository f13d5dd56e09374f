"""Keras -> ONNX export, static INT8 quantisation, equalisation, saturation proof and emulation.

Layer: above :mod:`convert.card`; never imports the pipeline.
"""
