"""Continuous QA at the scanner: QA log, watch folder, DICOM receiver, trend reports.

The data's way through this subpackage:

``header`` (acquisition fields of a DICOM file, no pixels) ->
``log`` (SQLite QA log, versioned schema) <- ``ingest`` (score files, record them)
<- ``watch`` (polled folder) / ``serve`` (DICOM Storage SCP) ; ``log`` ->
``report`` (series statistics, control charts, drift flags) -> ``chart`` (PNG)
and ``html`` (self-contained page); ``log`` -> ``exams`` (the per-exam CMS1074
measure: category, noise, size, DLP from the dose reports ``ingest`` stores).
``log_postgres`` puts the same log into a PostgreSQL database that several
nodes share; ``log_copy`` moves a node's log into it.

Nothing here is imported by ``deltaiqa_lite`` itself, and pynetdicom is only
imported inside ``serve``, so the scorer keeps its four dependencies.

Layer: above the scorer, the writers and the engines; takes plain values, never
imports the command line (its options live in :mod:`deltaiqa_lite.commands`).
"""
