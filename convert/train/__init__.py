"""The faithful Delta-IQA Keras model, its training, fine-tuning and site data.

Layer: above :mod:`convert.sim` and :mod:`convert.checks`; never imports the
card, quantisation or the pipeline.
"""
