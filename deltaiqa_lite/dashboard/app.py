"""The dashboard's web application (Starlette, Jinja2 templates with autoescape, SVG charts).

Pages: ``/`` overview per station, ``/trends`` control charts per station /
protocol / kernel, ``/series/{uid}`` one series (profile, worst slices with
Grad-CAM on demand, refusals, SR delivery), ``/alarms`` (acknowledge with a
comment). Every page takes the filters of :class:`~.views.Filters` and
``format=csv`` for a CSV of what it shows.

Read-only except ``POST /alarms/ack``. Every response carries a
Content-Security-Policy that allows no script at all and styles and images
from this server only, ``X-Content-Type-Options: nosniff``, no framing, no
referrer, and no caching. Templates are autoescaped: every string that came
from a scanner (station, description, kernel, reasons) is escaped where shown.
"""

from __future__ import annotations

import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode

from deltaiqa_lite.dashboard import svg, views
from deltaiqa_lite.dashboard.auth import SESSION_COOKIE, Auth
from deltaiqa_lite.qa.log import AlarmAck, QALog
from deltaiqa_lite.qa.report import ChartRules

HERE = Path(__file__).resolve().parent
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; style-src 'self'; img-src 'self'; "
                                 b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]
MAX_COMMENT = 2000


class SecurityHeaders:
    """ASGI middleware: the security headers on every HTTP response, errors and static files too."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in SECURITY_HEADERS}
                message["headers"] = [h for h in message.get("headers", []) if h[0] not in names] \
                    + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


@dataclass
class Settings:
    """What the application serves and how."""

    log: QALog
    auth: Auth = field(default_factory=Auth)
    store_dir: Path | None = None
    model: str = "fp32"
    rules: ChartRules = field(default_factory=ChartRules)


class GradCamCache:
    """Grad-CAM overlays of stored slices, computed on first request (one model, made once)."""

    def __init__(self, model: str, size: int = 64) -> None:
        self.model, self.size = model, size
        self._explainer = None
        self._png: OrderedDict[tuple, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def png(self, path: Path, frame: int) -> bytes | None:
        from deltaiqa_lite.explain import Explainer, write_explanation

        key = (str(path), frame)
        with self._lock:
            if key in self._png:
                self._png.move_to_end(key)
                return self._png[key]
            if self._explainer is None:
                self._explainer = Explainer(self.model, threads=1, batch_size=1)
            explanations = [e for e in self._explainer.iter_paths([path]) if e.status == "ok"]
            wanted = [e for e in explanations if (e.frame or 0) == frame] or explanations[:1]
            if not wanted:
                return None
            with tempfile.TemporaryDirectory() as folder:
                (written, *_) = write_explanation(wanted[0], folder)
                data = Path(written).read_bytes()
            self._png[key] = data
            while len(self._png) > self.size:
                self._png.popitem(last=False)
            return data


def stored_file(store_dir: Path | None, study_uid: str | None, series_uid: str | None,
                sop_uid: str | None) -> Path | None:
    """The copy ``serve --store`` kept of an object, or None (not kept, or UIDs unusable as names)."""
    from deltaiqa_lite.errors import InputError
    from deltaiqa_lite.qa.serve import safe_child

    if store_dir is None or not (study_uid and series_uid and sop_uid):
        return None
    try:
        path = safe_child(store_dir, study_uid, series_uid, sop_uid)
    except InputError:
        return None
    return path if path.is_file() else None


MAX_FORM_BYTES = 16_384


async def _form(request) -> dict[str, str]:
    """An urlencoded form body (the only kind our forms send; no multipart parser needed)."""
    from urllib.parse import parse_qsl

    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


def create_app(settings: Settings):
    """The ASGI application over one open QA log."""
    import jinja2
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["num"] = lambda v, digits=2: "–" if v is None else f"{v:.{digits}f}"
    env.filters["pct"] = lambda v: "–" if v is None else f"{100.0 * v:.1f} %"
    env.filters["uidpath"] = lambda v: quote(v or "", safe="")
    env.filters["or_none"] = lambda v: "(none)" if v in (None, "") else v
    log, auth = settings.log, settings.auth
    gradcam = GradCamCache(settings.model)
    reports = views.ReportCache()

    def page(request, template: str, user: str, **context) -> HTMLResponse:
        f = context.get("filters")
        csv_query = urlencode({**(f.query() if f else {}), "format": "csv"})
        body = env.get_template(template).render(
            request_path=request.url.path, user=user, auth_required=auth.required,
            csrf=auth.csrf(dict(request.cookies)), csv_href=f"{request.url.path}?{csv_query}",
            choices=views.filter_choices(log), log_name=log.path, **context)
        return HTMLResponse(body)

    def csv_response(text: str, name: str) -> Response:
        return Response(text, media_type="text/csv; charset=utf-8",
                        headers={"content-disposition": f'attachment; filename="{name}"'})

    def signed_in(request) -> str | None:
        return auth.user(dict(request.cookies), request.headers.get("authorization"))

    def guarded(handler):
        def endpoint(request):
            user = signed_in(request)
            if user is None:
                if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
                    return RedirectResponse("/login", status_code=303)
                return PlainTextResponse("sign in first", status_code=401,
                                         headers={"www-authenticate": 'Bearer realm="deltaiqa-lite"'})
            return handler(request, user)
        return endpoint

    def filters_of(request) -> views.Filters:
        return views.Filters.from_query(dict(request.query_params))

    @guarded
    def overview(request, user: str):
        f = filters_of(request)
        rows, chart_alarms = views.overview(log, f, reports)
        if request.query_params.get("format") == "csv":
            return csv_response(views.overview_csv(rows), "overview.csv")
        return page(request, "overview.html", user, filters=f, rows=rows,
                    open_alarms=sum(1 for a in chart_alarms if a.open))

    @guarded
    def trends(request, user: str):
        f = filters_of(request)
        qa_report = views.report(log, f, settings.rules, reports)
        if request.query_params.get("format") == "csv":
            return csv_response(views.trends_csv(qa_report), "trends.csv")
        charts = []
        for g in qa_report.groups:
            title = g.title
            item = {"group": g, "score": svg.control_chart(g.chart, f"{title}: series mean score",
                                                           threshold=settings.rules.threshold)}
            item["noise"] = (svg.control_chart(g.noise_chart, f"{title}: median noise (HU)", unit=" HU",
                                               clamp=None) if g.noise_chart is not None else None)
            item["ssde"] = (svg.trend([(p.series_uid, p.time, p.value) for p in g.ssde_trend],
                                      f"{title}: mean SSDE (mGy)", unit=" mGy") if g.ssde_trend else None)
            dw = views.dw_trend(log, g, f)
            item["dw"] = svg.trend(dw, f"{title}: water-equivalent diameter (mm)", unit=" mm") if dw else None
            charts.append(item)
        return page(request, "trends.html", user, filters=f, charts=charts, zoom=views.zoom_links(f))

    @guarded
    def series(request, user: str):
        uid = request.path_params["uid"]
        found = views.series_page(log, uid)
        if found is None:
            return HTMLResponse(env.get_template("missing.html").render(
                request_path=request.url.path, user=user, auth_required=auth.required, uid=uid,
                filters=None, choices={}, csv_href="", log_name=log.path, csrf=""), status_code=404)
        if request.query_params.get("format") == "csv":
            return csv_response(views.series_csv(found), "series.csv")
        s = found.series
        worst = [{"slice": w, "kept": stored_file(settings.store_dir, s.study_uid, s.series_uid,
                                                  w.sop_instance_uid) is not None} for w in found.worst]
        positions = [w.slice_location if w.slice_location is not None else float(k)
                     for k, w in enumerate(found.slices)]
        chart = svg.profile(positions, [w.score for w in found.slices], [w.noise_hu for w in found.slices],
                            "score (blue, 0..4) along the series") if found.slices else None
        return page(request, "series.html", user, filters=None, page_data=found, worst=worst,
                    chart=chart)

    @guarded
    def gradcam_png(request, user: str):
        uid, sop = request.path_params["uid"], request.path_params["sop"]
        frame = int(request.path_params["frame"])
        summary = views.series_page(log, uid, worst=0)
        path = stored_file(settings.store_dir, summary.series.study_uid if summary else None, uid, sop)
        if path is None:
            return PlainTextResponse("image not kept", status_code=404)
        data = gradcam.png(path, frame)
        if data is None:
            return PlainTextResponse("no Grad-CAM for this image", status_code=404)
        return Response(data, media_type="image/png")

    @guarded
    def alarms(request, user: str):
        f = filters_of(request)
        state = request.query_params.get("state", "open")
        found = views.alarms(log, f, cache=reports)
        if state == "open":
            found = [a for a in found if a.open]
        elif state == "acknowledged":
            found = [a for a in found if not a.open]
        if request.query_params.get("format") == "csv":
            return csv_response(views.alarms_csv(found), "alarms.csv")
        return page(request, "alarms.html", user, filters=f, alarms=found, state=state)

    async def acknowledge(request):
        user = signed_in(request)
        if user is None:
            return PlainTextResponse("sign in first", status_code=401)
        form = await _form(request)
        if not auth.check_csrf(dict(request.cookies), str(form.get("csrf", ""))):
            return PlainTextResponse("form expired or not from this dashboard; reload the page",
                                     status_code=403)
        key = str(form.get("key", ""))[:300]
        who = user or str(form.get("name", "")).strip()[:80]
        if not key or not who:
            return PlainTextResponse("an acknowledgement needs the alarm and your name", status_code=400)
        comment = str(form.get("comment", "")).strip()[:MAX_COMMENT] or None
        series_uid = key.partition(":")[2] or None
        from starlette.concurrency import run_in_threadpool

        await run_in_threadpool(log.acknowledge, AlarmAck(key, who, series_uid=series_uid,
                                                          comment=comment))
        back = str(form.get("back", "/alarms"))
        if not back.startswith("/") or back.startswith("//"):
            back = "/alarms"
        return RedirectResponse(back, status_code=303)

    async def login(request):
        error = None
        if request.method == "POST":
            form = await _form(request)
            from starlette.concurrency import run_in_threadpool

            # bcrypt is slow on purpose: off the event loop.
            session = await run_in_threadpool(auth.login, str(form.get("user", "")),
                                              str(form.get("password", "")))
            if session is not None:
                response = RedirectResponse("/", status_code=303)
                response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict",
                                    secure=request.url.scheme == "https", path="/")
                return response
            error = "wrong name, password or token"
        body = env.get_template("login.html").render(
            request_path="/login", user=None, auth_required=auth.required, error=error,
            users=bool(auth.users), filters=None, choices={}, csv_href="", log_name=log.path, csrf="")
        return HTMLResponse(body, status_code=401 if error else 200)

    def logout(request):
        auth.logout(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login" if auth.required else "/", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    routes = [
        Route("/", overview),
        Route("/trends", trends),
        Route("/series/{uid}", series),
        Route("/series/{uid}/gradcam/{sop}/{frame:int}.png", gradcam_png),
        Route("/alarms", alarms),
        Route("/alarms/ack", acknowledge, methods=["POST"]),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/favicon.ico", lambda r: RedirectResponse("/static/favicon.svg", status_code=301)),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    # Outside Starlette's own error handler, so a 500 carries the headers too.
    return SecurityHeaders(Starlette(routes=routes))
