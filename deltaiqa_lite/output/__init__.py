"""Results out: the writers (:mod:`.write`: table, JSON, JSON lines, CSV) and DICOM SR (:mod:`.sr`).

Layer: imports the scorer's result records and physics field names; never the
engines, the QA node or the command line.
"""
