"""The dashboard's HTML pages and form handlers; state changes call the domains' services.

Authentication: the login form takes a token and keeps it in an HttpOnly, SameSite=Strict cookie,
checked against the TokenStore on every request as a bearer header is. Every form that changes
state also carries a per-session CSRF value (double-submitted: cookie and form field) and must
come from this origin.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib.resources import files
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from sentinel import auth
from sentinel.alerting import repository as alerting_reads
from sentinel.alerting import service as alerting
from sentinel.alerting.schemas import AckIn, SilenceIn, silence_out
from sentinel.api.body import read_body
from sentinel.api.deps import Ctx, Session
from sentinel.api.errors import describe_validation_error, refusal
from sentinel.auth import Principal
from sentinel.db.models import Decision, Host, Incident
from sentinel.incidents.schemas import ResolveIn
from sentinel.ingest.jobs import incident_counts, job_cadence, job_summaries
from sentinel.inputs import NO_NUL
from sentinel.remediation.decisions import DecisionOperations, mark_repaired
from sentinel.remediation.policy import Action
from sentinel.remediation.schemas import Note, OverrideIn, RestartInPlaceIn
from sentinel.remediation.swap import active_swaps, host_findings
from sentinel.triage.taxonomy import LLAMA3_UNEXPECTED_INTERRUPTIONS
from sentinel.web import views
from sentinel.web.goodput import goodput as goodput_view
from sentinel.web.render import render

router = APIRouter(include_in_schema=False)

TOKEN_COOKIE = "sentinel_token"  # noqa: S105 (a cookie name, not a secret)
CSRF_COOKIE = "sentinel_csrf"
FORM_LIMIT = 64 * 1024
SECURITY_HEADERS = {
    # Nothing inline runs: a <script> smuggled in through a log line is inert twice over.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
# What a redirect after a successful form says; a code, so that a link cannot put words there.
DONE = {
    "silence.create": "Silence created.",
    "silence.expire": "Silence expired.",
    "incident.resolve": "Incident resolved.",
    "decision.approve": "Decision approved.",
    "decision.cancel": "Decision cancelled.",
    "decision.override": "Decision overridden.",
    "host.repaired": "Host marked repaired.",
    "job.restart_in_place": "Restart in place asked: this planned incident's decision goes "
    "to the job's launchers in its advice (at the next checkpoint, if asked: held until the "
    "job saved one); the incident resolves once the ranks train again.",
    "group.ack": "Alert group acknowledged.",
}
NAV = [
    ("fleet", "/fleet", "Fleet"),
    ("incidents", "/incidents", "Incidents"),
    ("approvals", "/approvals", "Approvals"),
    ("jobs", "/jobs", "Jobs"),
    ("root-causes", "/root-causes", "Root causes"),
    ("goodput", "/goodput", "Goodput"),
    ("alerts", "/alerts", "Alerts"),
    ("silences", "/silences", "Silences"),
]


@dataclass(frozen=True)
class LoopStatus:
    """What the header says of the loops: whether this replica leads, and triage's lag there."""

    role: str  # leader | follower | off (this replica runs no loops: run_loops is false)
    identity: str | None
    lag_s: float | None  # measured where triage runs: known on the leader only
    lagging: bool


def _loop_status(request: Request) -> LoopStatus:
    ctx = request.app.state.ctx
    elector = getattr(request.app.state, "elector", None)
    if elector is None:
        return LoopStatus("off", None, None, False)
    if not elector.is_leader:
        return LoopStatus("follower", elector.identity, None, False)
    lag = ctx.triage_worker.lag_seconds()
    return LoopStatus("leader", elector.identity, lag, lag > ctx.settings.triage.lag_alert_s)


def _page(
    request: Request, template: str, who: Principal | None, code: int = 200, **context: Any
) -> HTMLResponse:
    ctx = request.app.state.ctx
    body = render(
        template,
        request=request,
        who=who,
        loops=_loop_status(request) if who else None,
        csrf=request.cookies.get(CSRF_COOKIE, ""),
        now=ctx.clock.now(),
        nav=NAV,
        done=DONE.get(request.query_params.get("ok", "")),
        **context,
    )
    return HTMLResponse(body, status_code=code, headers=SECURITY_HEADERS)


def _login_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/login?next=" + quote(target, safe="")


async def web_user(request: Request, ctx: Ctx) -> Principal:
    token = request.cookies.get(TOKEN_COOKIE)
    principal = ctx.tokens.authenticate(token) if token else None
    if principal is None:
        raise HTTPException(
            status.HTTP_303_SEE_OTHER, "log in first", headers={"Location": _login_url(request)}
        )
    if principal.role not in auth.READ:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"role {principal.role!r} may not read")
    return principal


WebUser = Annotated[Principal, Depends(web_user)]


def _same_origin(request: Request) -> bool:
    # Browsers send Origin on every POST; Referer is the fallback of older ones.
    source = request.headers.get("origin") or request.headers.get("referer")
    if source is None:
        return True
    return urlsplit(source).netloc == request.headers.get("host", "")


@dataclass
class OperatorForm:
    who: Principal
    fields: dict[str, str]  # the last value of each field
    lists: dict[str, list[str]]  # every value of each field (a multiple select)


async def operator_form(request: Request, who: WebUser) -> OperatorForm:
    if who.role not in auth.OPERATE:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"role {who.role!r} may not do this; needs one of {sorted(auth.OPERATE)}",
        )
    lists = await _form_lists(request)
    fields = {k: v[-1] for k, v in lists.items()}
    expected = request.cookies.get(CSRF_COOKIE, "")
    if (
        not _same_origin(request)
        or not expected
        or not hmac.compare_digest(expected, fields.get("csrf", ""))
    ):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-site request refused (CSRF check)")
    return OperatorForm(who, fields, lists)


Form = Annotated[OperatorForm, Depends(operator_form)]


async def _form_lists(request: Request) -> dict[str, list[str]]:
    body = await read_body(request, FORM_LIMIT)
    try:
        # A host picker may send a job's every host: up to the override API's 1,000.
        return parse_qs(body.decode(), keep_blank_values=True, max_num_fields=1100)
    except (UnicodeDecodeError, ValueError) as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"malformed form: {exc}") from None


async def _form(request: Request) -> dict[str, str]:
    return {k: v[-1] for k, v in (await _form_lists(request)).items()}


async def _act(
    request: Request,
    session: Session,
    who: Principal,
    back: str,
    code: str,
    call: Callable[[], Awaitable[Any]],
) -> Response:
    """Run a form's operation; show its refusal as a page, with the JSON API's status."""
    try:
        await call()
    except Exception as exc:
        refused = refusal(exc)
        if refused is None and not isinstance(exc, (HTTPException, ValueError)):
            raise
        # The page is an answer, not an error, so the unit of work would commit: a refused
        # operation must leave nothing behind.
        await session.rollback()
        if refused is not None:
            code_, message = refused
        elif isinstance(exc, HTTPException):
            code_, message = exc.status_code, str(exc.detail)
        elif isinstance(exc, ValidationError):
            code_, message = describe_validation_error(exc)
        else:
            code_, message = status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)
        return _page(request, "error.html", who, code_, message=message, back=back)
    return RedirectResponse(f"{back}?ok={code}", status.HTTP_303_SEE_OTHER)


# ---------------------------------------------------------------------------- login


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/fleet", status.HTTP_303_SEE_OTHER)


def _safe_next(value: str | None) -> str:
    # Only a path on this site: an open redirect would make the login page a phishing aid.
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/fleet"
    return value


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return _page(request, "login.html", None, next=_safe_next(next), error=None)


@router.post("/login")
async def login(request: Request, ctx: Ctx) -> Response:
    fields = await _form(request)
    target = _safe_next(fields.get("next"))
    if not _same_origin(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-site login refused")
    principal = ctx.tokens.authenticate(fields.get("token", "").strip())
    if principal is None or principal.role not in auth.READ:
        error = "Unknown token." if principal is None else "Agent tokens cannot open the dashboard."
        return _page(request, "login.html", None, 401, next=target, error=error)
    response = RedirectResponse(target, status.HTTP_303_SEE_OTHER)
    # Behind a TLS-terminating proxy the request itself looks like plain http.
    secure = request.url.scheme == "https" or ctx.settings.alerting.public_url.startswith("https:")
    for name, value in (
        (TOKEN_COOKIE, fields["token"].strip()),
        (CSRF_COOKIE, secrets.token_urlsafe(32)),
    ):
        response.set_cookie(
            name, value, httponly=True, samesite="strict", secure=secure, max_age=12 * 3600
        )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    if not _same_origin(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-site logout refused")
    response = RedirectResponse("/login", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(TOKEN_COOKIE)
    response.delete_cookie(CSRF_COOKIE)
    return response


# ---------------------------------------------------------------------------- fleet and hosts

StateFilter = Annotated[str | None, Query(pattern="^(healthy|degraded|unhealthy|silent|drained)$")]


@router.get("/fleet", response_model=None)
async def fleet_page(
    request: Request,
    ctx: Ctx,
    session: Session,
    who: WebUser,
    state: StateFilter = None,
    host: Annotated[str | None, Query(max_length=128, pattern=NO_NUL)] = None,
) -> HTMLResponse | RedirectResponse:
    host = (host or "").strip() or None
    # The search box: a host's exact name goes to its page, part of one filters the grid.
    if host is not None and await session.get(Host, host) is not None:
        return RedirectResponse(f"/hosts/{quote(host, safe='')}", status.HTTP_303_SEE_OTHER)
    fleet = await views.fleet(session, ctx.clock.now(), ctx.settings.health, state, host)
    return _page(
        request,
        "fleet.html",
        who,
        fleet=fleet,
        state=state,
        host=host,
        states=views.STATES,
        active=await views.active_incidents(session),
        triage=await _triage_health(ctx, session),
    )


async def _triage_health(ctx: Ctx, session: Session) -> views.TriageHealth:
    worker, settings = ctx.triage_worker, ctx.settings.triage
    return await views.triage_health(
        session,
        ctx.clock.now(),
        lag_s=worker.lag_seconds(),
        waiting=worker.waiting,
        lag_alert_s=settings.lag_alert_s,
        accountable_s=settings.accountable_s,
    )


@router.get("/fleet.json")
async def fleet_json(
    ctx: Ctx, session: Session, _: WebUser, state: StateFilter = None
) -> JSONResponse:
    """What the fleet page polls: every host's cells, a few bytes each."""
    fleet = await views.fleet(session, ctx.clock.now(), ctx.settings.health, state)
    active = await views.active_incidents(session)
    triage = await _triage_health(ctx, session)
    return JSONResponse(
        {
            # The page reloads when this changes: a new incident is worth the full repaint.
            "incidents": [str(i.id) for i in active],
            "triage": {
                "lag_s": round(triage.lag_s, 1),
                "waiting": triage.waiting,
                "unaccounted": triage.unaccounted_total,
            },
            "counts": fleet.counts,
            "gpu_counts": fleet.gpu_counts,
            "hosts": {h.id: [h.cells, h.state, h.reason, h.culprit] for h in fleet.hosts},
        },
        headers={"Cache-Control": "no-store"},
    )


async def _host(session: Session, host_id: str) -> Host:
    host = await session.get(Host, host_id)
    if host is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no host {host_id!r}")
    return host


@router.get("/hosts/{host_id:path}")
async def host_page(
    request: Request, ctx: Ctx, session: Session, who: WebUser, host_id: str
) -> HTMLResponse:
    page = await views.host_page(
        session, await _host(session, host_id), ctx.clock.now(), ctx.settings.health
    )
    findings, swaps_by_finding = await host_findings(session, page.host.id)
    return _page(
        request,
        "host.html",
        who,
        page=page,
        findings=findings,
        swaps_by_finding=swaps_by_finding,
    )


@router.post("/hosts/{host_id:path}/repaired")
async def host_repaired(
    request: Request, ctx: Ctx, session: Session, form: Form, host_id: str
) -> Response:
    # The note is validated inside the action, so that a refused one is a page, not a 500.
    async def call() -> None:
        note = Note(comment=form.fields.get("comment", ""))
        scheduler = ctx.remediation.scheduler
        await mark_repaired(ctx.sessions, scheduler, ctx.clock, form.who, host_id, note.comment)

    return await _act(
        request, session, form.who, f"/hosts/{quote(host_id, safe='')}", "host.repaired", call
    )


# ---------------------------------------------------------------------------- incidents


def _time(name: str, value: str | None, wrong: list[str]) -> datetime | None:
    """A time bound from the filter form: ISO 8601, a date or a minute, in UTC unless it says."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        wrong.append(f"{name}: {value!r} is not a time (2026-12-05 or 2026-12-05T03:00)")
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


Text = Annotated[str | None, Query(max_length=128, pattern=NO_NUL)]


@router.get("/incidents")
async def incidents_page(
    request: Request,
    session: Session,
    who: WebUser,
    state: Annotated[str | None, Query(pattern="^(|open|mitigating|resolved)$")] = None,
    category: Text = None,
    job_id: Text = None,
    host: Text = None,
    since: Annotated[str | None, Query(max_length=40)] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> HTMLResponse:
    wrong: list[str] = []
    listing = await views.incident_list(
        session,
        state=state,
        category=category,
        job_id=job_id,
        host=host.strip() if host else None,
        since=_time("since", since, wrong),
        until=_time("until", until, wrong),
        page=page,
    )
    given = {"state": state, "category": category, "job_id": job_id, "host": host}
    filters = {k: v for k, v in {**given, "since": since, "until": until}.items() if v}
    return _page(
        request,
        "incidents.html",
        who,
        listing=listing,
        filters=filters,
        wrong=wrong,
        state=state,
        category=category,
        job_id=job_id,
    )


async def _incident(session: Session, incident_id: uuid.UUID) -> Incident:
    incident = await session.get(Incident, incident_id)
    if incident is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no incident {incident_id}")
    return incident


@router.get("/incidents/{incident_id}")
async def incident_page(
    request: Request, session: Session, who: WebUser, incident_id: uuid.UUID
) -> HTMLResponse:
    page = await views.incident_page(session, await _incident(session, incident_id))
    return _page(request, "incident.html", who, page=page)


@router.post("/incidents/{incident_id}/resolve")
async def incident_resolve(
    request: Request, ctx: Ctx, session: Session, form: Form, incident_id: uuid.UUID
) -> Response:
    async def call() -> None:
        body = ResolveIn(reason=form.fields.get("reason", ""))
        change = await ctx.triage.resolve_by_hand(ctx.sessions, form.who, incident_id, body.reason)
        await ctx.stages.run([change])

    return await _act(
        request, session, form.who, f"/incidents/{incident_id}", "incident.resolve", call
    )


def _approve(
    ops: DecisionOperations, session: AsyncSession, d: Decision, form: OperatorForm
) -> None:
    ops.approve(session, d, form.who, Note(comment=form.fields.get("comment", "")).comment)


def _cancel(
    ops: DecisionOperations, session: AsyncSession, d: Decision, form: OperatorForm
) -> None:
    ops.cancel(session, d, form.who, Note(comment=form.fields.get("comment", "")).comment)


def _override(
    ops: DecisionOperations, session: AsyncSession, d: Decision, form: OperatorForm
) -> None:
    body = OverrideIn.model_validate(
        {
            "action": form.fields.get("action", ""),
            "exclude_hosts": form.lists.get("exclude_hosts", []),
            "reason": form.fields.get("reason", ""),
        }
    )
    ops.override(session, d, form.who, Action(body.action), body.exclude_hosts, body.reason)


# Each verb: the operation, its body read from the form.
DECISION_VERBS: dict[
    str, Callable[[DecisionOperations, AsyncSession, Decision, OperatorForm], None]
] = {
    "approve": _approve,
    "cancel": _cancel,
    "override": _override,
}


@router.post("/decisions/{decision_id}/{verb}")
async def decision_action(
    request: Request, ctx: Ctx, session: Session, form: Form, decision_id: uuid.UUID, verb: str
) -> Response:
    if verb not in DECISION_VERBS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no decision action {verb!r}")
    decision = await session.get(Decision, decision_id)
    if decision is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no decision {decision_id}")
    ops = DecisionOperations(ctx.clock, ctx.remediation.approved_status())

    async def call() -> None:
        DECISION_VERBS[verb](ops, session, decision, form)

    # The approvals page sends its operator back to it; anything else goes to the incident.
    back = (
        APPROVALS if form.fields.get("back") == APPROVALS else f"/incidents/{decision.incident_id}"
    )
    return await _act(request, session, form.who, back, f"decision.{verb}", call)


APPROVALS = "/approvals"


@router.get(APPROVALS)
async def approvals_page(request: Request, session: Session, who: WebUser) -> HTMLResponse:
    waiting = await views.awaiting_approval(session)
    return _page(request, "approvals.html", who, waiting=waiting)


# ---------------------------------------------------------------------------- jobs, root causes


@router.get("/jobs")
async def jobs_page(request: Request, ctx: Ctx, session: Session, who: WebUser) -> HTMLResponse:
    jobs = await job_summaries(session)
    counts = await incident_counts(session)
    now = ctx.clock.now()
    return _page(
        request,
        "jobs.html",
        who,
        jobs=jobs,
        cadences={j["id"]: job_cadence(j, counts.get(j["id"], 0), now) for j in jobs},
        restarts=await views.job_restarts(session),
        swaps=await active_swaps(session),
        spares=await ctx.remediation.swaps.pool.state(ctx.sessions),
        reservation=ctx.settings.remediation.swap.reservation,
        checkpoint_wait_s=ctx.settings.remediation.planned_checkpoint_wait_s,
    )


@router.post("/jobs/restart-in-place")
async def job_restart_in_place(
    request: Request, ctx: Ctx, session: Session, form: Form
) -> Response:
    """The jobs page's form for POST /api/v1/jobs/{id}/restart-in-place (planned work). The
    operator lands on the planned incident, where its decision's progress shows."""
    incident: list[uuid.UUID] = []

    async def call() -> None:
        body = RestartInPlaceIn(
            reason=form.fields.get("reason", ""),
            code_version=form.fields.get("code_version") or None,
            # A checkbox: sent only when checked (as it is by default).
            at_checkpoint="at_checkpoint" in form.fields,
        )
        done = await ctx.remediation.restart_in_place(
            ctx.sessions,
            form.who,
            form.fields.get("job_id", ""),
            body.reason,
            body.code_version,
            body.at_checkpoint,
        )
        incident.append(done.decision.incident_id)
        await ctx.stages.run(done.changes)

    answer = await _act(request, session, form.who, "/jobs", "job.restart_in_place", call)
    if not incident:
        return answer  # refused: the page saying why
    return RedirectResponse(
        f"/incidents/{incident[0]}?ok=job.restart_in_place", status.HTTP_303_SEE_OTHER
    )


@router.get("/root-causes")
async def root_causes_page(
    request: Request,
    ctx: Ctx,
    session: Session,
    who: WebUser,
    days: Annotated[float, Query(gt=0, le=3660)] = 54,
) -> HTMLResponse:
    now = ctx.clock.now()
    table = await views.root_causes(session, now - timedelta(days=days), now)
    return _page(
        request,
        "root_causes.html",
        who,
        table=table,
        days=days,
        llama3_total=LLAMA3_UNEXPECTED_INTERRUPTIONS,
    )


@router.get("/goodput")
async def goodput_page(
    request: Request,
    ctx: Ctx,
    session: Session,
    who: WebUser,
    days: Annotated[float, Query(gt=0, le=3660)] = 54,
) -> HTMLResponse:
    now = ctx.clock.now()
    table = await goodput_view(session, now - timedelta(days=days), now)
    return _page(request, "goodput.html", who, table=table, days=days)


# ---------------------------------------------------------------------------- alerts, silences


@router.get("/alerts")
async def alerts_page(request: Request, session: Session, who: WebUser) -> HTMLResponse:
    groups = await alerting_reads.list_groups(session)
    alerts = await alerting_reads.list_alerts(session, limit=300)
    incidents = await views.group_incidents(session, groups)
    return _page(request, "alerts.html", who, groups=groups, alerts=alerts, incidents=incidents)


@router.post("/alert-groups/{group_id}/ack")
async def group_ack(
    request: Request, ctx: Ctx, session: Session, form: Form, group_id: uuid.UUID
) -> Response:
    async def call() -> None:
        body = AckIn(comment=form.fields.get("comment") or None)
        await alerting.ack_group(session, group_id, form.who, body.comment, ctx.clock.now())

    return await _act(request, session, form.who, "/alerts", "group.ack", call)


@router.get("/silences")
async def silences_page(request: Request, ctx: Ctx, session: Session, who: WebUser) -> HTMLResponse:
    now = ctx.clock.now()
    silences = [silence_out(s, now) for s in await alerting_reads.list_silences(session)]
    return _page(request, "silences.html", who, silences=silences)


@router.post("/silences")
async def silence_create(request: Request, ctx: Ctx, session: Session, form: Form) -> Response:
    async def call() -> None:
        body = SilenceIn.model_validate(
            {
                "matchers": [
                    line.strip()
                    for line in form.fields.get("matchers", "").splitlines()
                    if line.strip()
                ],
                "comment": form.fields.get("comment", ""),
                "duration": form.fields.get("duration", "") or "2h",
            }
        )
        await alerting.add_silence(session, body, form.who, ctx.clock.now())

    return await _act(request, session, form.who, "/silences", "silence.create", call)


@router.post("/silences/{silence_id}/expire")
async def silence_expire(
    request: Request, ctx: Ctx, session: Session, form: Form, silence_id: uuid.UUID
) -> Response:
    return await _act(
        request,
        session,
        form.who,
        "/silences",
        "silence.expire",
        lambda: alerting.end_silence(session, silence_id, form.who, ctx.clock.now()),
    )


# ---------------------------------------------------------------------------- static assets

STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


@cache
def _assets() -> dict[str, bytes]:
    # The files shipped in sentinel/web/static, looked up by plain name: no path reaches disk.
    folder = files("sentinel.web").joinpath("static")
    return {
        f.name: f.read_bytes()
        for f in folder.iterdir()
        if f.is_file() and f.name.endswith(tuple(STATIC_TYPES))
    }


@router.get("/static/{name}")
async def static(name: str) -> Response:
    data = _assets().get(name)
    if data is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no static file {name!r}")
    return Response(
        data,
        media_type=STATIC_TYPES["." + name.rsplit(".", 1)[1]],
        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
    )
