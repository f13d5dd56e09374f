"""Build time (the only place TensorFlow appears): simulate, train, export, quantise, check, card.

- :mod:`convert.sim`     simulators (v1, v2, v3), phantoms and anatomy, LDCTIQAC-format data sets
- :mod:`convert.checks`  evaluation metrics, the real-anatomy check, the example slices
- :mod:`convert.train`   the Delta-IQA Keras model, training, fine-tuning, site data
- :mod:`convert.card`    the model card, its markdown, the training domain
- :mod:`convert.quant`   export to ONNX, INT8 quantisation, saturation proof and emulation, equalisation
- :mod:`convert.pipeline`  ``convert all`` and ``convert finetune``: the chained steps
- :mod:`convert.adapt`   ``convert adapt``: site self-calibration on unlabelled CT (pipeline layer)

Layers, lowest first: sim, checks, train, card, quant, then pipeline (with
adapt) and ``__main__``. A package imports only from those before it (and from the
runtime ``deltaiqa_lite``, which never imports ``convert``).
"""
