"""Local validation: reference label files, agreement metrics, ``evaluate`` and ``compare``.

- :mod:`.labels`    LDCTIQAC JSON and CSV label files, matched to scored slices
- :mod:`.metrics`   PLCC, SROCC, KROCC, confusion matrices, bootstrap intervals
- :mod:`.evaluate`  a model's scores against reference labels
- :mod:`.compare`   two models' scores on the same slices

Layer: imports results and helpers from below (errors, explain.draw); never
the engines, the QA node or the command line.
"""
