"""Simulated LDCTIQAC-format data: phantoms and anatomy, projection-domain noise, FBP, labels.

Layer: the lowest of ``convert``; imports only the runtime (``deltaiqa_lite``).
"""
