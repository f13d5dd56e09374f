"""The live web dashboard over the QA log (``deltaiqa-lite dashboard``; the ``dashboard`` extra).

The data's way through this subpackage:

:mod:`.views` (what each page shows, read from :class:`~deltaiqa_lite.qa.log.QALog`
and :func:`~deltaiqa_lite.qa.report.build_report`) -> :mod:`.svg` (charts drawn
on the server) -> :mod:`.app` (Starlette routes, Jinja2 templates in
``templates/``, CSS and icon in ``static/``, security headers) ; :mod:`.auth`
(who may look: this computer only, a token, or bcrypt password hashes).

Layer: above :mod:`deltaiqa_lite.qa` (and what it stands on), below the
command line; nothing below imports it. Starlette, Jinja2, uvicorn and bcrypt
are imported only inside functions, so the rest of the package never needs them.
"""
