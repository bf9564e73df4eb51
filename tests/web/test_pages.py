"""The dashboard's HTML routes through the ASGI app: login, every page, role checks, escaping."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from web_scenario import CULPRIT, HOSTILE, HOSTILE_HOST, THROTTLED, client_for

from sentinel.db.engine import unit_of_work
from sentinel.db.models import AlertGroup, AuditEntry, Decision, Incident, Silence
from sentinel.web.routes import CSRF_COOKIE, TOKEN_COOKIE

PAGES = [
    "/fleet",
    "/fleet?state=unhealthy",
    "/approvals",
    "/incidents",
    "/jobs",
    "/root-causes",
    "/alerts",
    "/silences",
]


async def _incident(app: FastAPI) -> Incident:
    async with unit_of_work(app.state.ctx.sessions) as session:
        incident = await session.scalar(select(Incident).where(Incident.culprit_host == CULPRIT))
    assert incident is not None, "the scenario's XID 79 opened no incident"
    return incident


async def _pages(app: FastAPI) -> list[str]:
    incident = await _incident(app)
    return [*PAGES, f"/hosts/{CULPRIT}", f"/hosts/{THROTTLED}", f"/incidents/{incident.id}"]


async def test_root_redirects_to_the_fleet(web_app: FastAPI, tokens: dict[str, str]) -> None:
    async with client_for(web_app, tokens["viewer"]) as client:
        r = await client.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/fleet"


async def test_every_page_renders_for_a_viewer(web_app: FastAPI, tokens: dict[str, str]) -> None:
    async with client_for(web_app, tokens["viewer"]) as client:
        for path in await _pages(web_app):
            r = await client.get(path)
            assert r.status_code == 200, (path, r.text[:500])
            assert r.headers["content-type"].startswith("text/html")
            assert "script-src" not in r.headers["content-security-policy"]  # 'self' only
            assert "default-src 'self'" in r.headers["content-security-policy"]


async def test_without_a_token_pages_send_you_to_login(web_app: FastAPI) -> None:
    async with client_for(web_app, None) as client:
        for path in await _pages(web_app):
            r = await client.get(path)
            assert r.status_code == 303, path
            assert r.headers["location"].startswith("/login?next=%2F"), path
    async with client_for(web_app, "not-a-token") as client:
        assert (await client.get("/fleet")).status_code == 303


async def test_login_sets_an_httponly_strict_cookie(
    web_app: FastAPI, tokens: dict[str, str]
) -> None:
    async with client_for(web_app, None) as client:
        r = await client.post(
            "/login",
            data={"token": tokens["operator"], "next": "/incidents"},
            headers={"Origin": "http://sentinel"},
        )
        assert r.status_code == 303 and r.headers["location"] == "/incidents"
        cookies = r.headers.get_list("set-cookie")
        token_cookie = next(c for c in cookies if c.startswith(f"{TOKEN_COOKIE}="))
        assert "HttpOnly" in token_cookie and "SameSite=strict" in token_cookie
        assert any(c.startswith(f"{CSRF_COOKIE}=") for c in cookies)
        assert (await client.get("/incidents")).status_code == 200


@pytest.mark.parametrize(
    ("token", "message"), [("wrong", "Unknown token"), ("agent", "Agent tokens cannot")]
)
async def test_login_refuses_unknown_and_agent_tokens(
    web_app: FastAPI, tokens: dict[str, str], token: str, message: str
) -> None:
    async with client_for(web_app, None) as client:
        r = await client.post("/login", data={"token": tokens.get(token, token)})
    assert r.status_code == 401 and message in r.text
    assert TOKEN_COOKIE not in r.headers.get("set-cookie", "")


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil"])
async def test_login_never_redirects_off_site(
    web_app: FastAPI, tokens: dict[str, str], target: str
) -> None:
    async with client_for(web_app, None) as client:
        r = await client.post("/login", data={"token": tokens["viewer"], "next": target})
    assert r.headers["location"] == "/fleet"


async def test_fleet_shows_every_host_and_its_state(
    web_app: FastAPI, tokens: dict[str, str]
) -> None:
    async with client_for(web_app, tokens["viewer"]) as client:
        page = (await client.get("/fleet")).text
        data = (await client.get("/fleet.json")).json()
        drained = (await client.get("/fleet?state=drained")).text
    assert page.count('class="hb') == 25  # 24 hosts of the fleet and the hostile one
    cells, state, _reason, culprit = data["hosts"][CULPRIT]
    # Remediation drained the culprit; its lost GPU still stands out.
    assert (cells, state, culprit) == ("xxxuxxxx", "drained", True), data["hosts"][CULPRIT]
    assert data["hosts"]["node-0001"] == ["hhhhhhhh", "healthy", "", False]
    assert data["counts"] == {
        "healthy": 22,
        "degraded": 0,
        "unhealthy": 1,
        "silent": 0,
        "drained": 2,
    }
    assert f'data-h="{CULPRIT}"' in drained and 'data-h="node-0001"' not in drained


async def test_incident_page_shows_verdict_culprit_symptoms_and_decision(
    web_app: FastAPI, tokens: dict[str, str]
) -> None:
    incident = await _incident(web_app)
    async with client_for(web_app, tokens["viewer"]) as client:
        page = (await client.get(f"/incidents/{incident.id}")).text
    assert incident.category == "faulty_gpu"
    assert "faulty_gpu" in page and CULPRIT in page and incident.rule in page
    assert "Watchdog caught collective" in page  # the symptoms, counted
    assert re.search(r"<td><b>\d+</b></td>", page)
    async with unit_of_work(web_app.state.ctx.sessions) as session:
        decision = await session.scalar(select(Decision).where(Decision.incident_id == incident.id))
    if decision is not None:
        assert decision.action in page and decision.rule in page


async def test_each_evidence_line_is_shown_as_printed_with_its_time_host_and_source(
    web_app: FastAPI, tokens: dict[str, str]
) -> None:
    incident = await _incident(web_app)
    async with client_for(web_app, tokens["viewer"]) as client:
        page = (await client.get(f"/incidents/{incident.id}")).text
    rows = re.findall(r'<tr class="role-(\w+)">(.*?)</tr>', page, re.S)
    cause = next(row for role, row in rows if role == "cause" and "Xid" in row)
    # The XID's line from the kernel log: its time, host, collector and the raw line, escaped
    # by the template's autoescape (the line holds <script> and &).
    assert re.search(r'<time datetime="[^"]+" title="[^"]+ UTC">\d\d:\d\d:\d\d</time>', cause)
    assert f">{CULPRIT}</a>" in cause and "kernel_log" in cause
    assert (
        '<pre class="raw">NVRM: Xid (PCI:0000:5d:00): 79, pid=2711, name=python, GPU has fallen '
        "off the bus. &lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt; &amp;c</pre>"
    ) in cause
    # A peer's timeout, read from the training log it was printed to.
    symptom = next(row for role, row in rows if "Watchdog caught collective" in row)
    assert re.search(r">/var/log/train/rank\d+\.log<", symptom), symptom


async def test_hostile_strings_are_escaped(web_app: FastAPI, tokens: dict[str, str]) -> None:
    incident = await _incident(web_app)
    async with client_for(web_app, tokens["viewer"]) as client:
        pages = [
            (await client.get(p)).text
            for p in ("/fleet", f"/incidents/{incident.id}", f"/hosts/{CULPRIT}")
        ]
        pages.append((await client.get(f"/hosts/{HOSTILE_HOST}")).text)
    for page in pages:
        assert HOSTILE not in page
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in pages[1]  # evidence text
    assert "&lt;script&gt;" in pages[0] and "&lt;script&gt;" in pages[3]


async def test_viewers_see_no_operator_forms_and_are_refused(
    web_app: FastAPI, tokens: dict[str, str]
) -> None:
    incident = await _incident(web_app)
    async with client_for(web_app, tokens["viewer"]) as client:
        client.cookies.set(CSRF_COOKIE, "c" * 20)
        for path in ("/silences", f"/incidents/{incident.id}", "/alerts"):
            assert 'method="post" action="/silences"' not in (await client.get(path)).text
            assert "Resolve incident" not in (await client.get(path)).text
        for path, data in [
            ("/silences", {"matchers": 'host="x"', "comment": "no", "duration": "1h"}),
            (f"/incidents/{incident.id}/resolve", {"reason": "not mine to resolve"}),
            (f"/hosts/{CULPRIT}/repaired", {"comment": "no"}),
        ]:
            r = await client.post(path, data={**data, "csrf": "c" * 20})
            assert r.status_code == 403, (path, r.text)
    async with unit_of_work(web_app.state.ctx.sessions) as session:
        assert (await session.scalars(select(Silence))).all() == []
        assert (await session.get(Incident, incident.id)).state != "resolved"  # type: ignore[union-attr]


async def _operator(app: FastAPI, tokens: dict[str, str]):  # type: ignore[no-untyped-def]
    client = client_for(app, tokens["operator"])
    client.cookies.set(CSRF_COOKIE, "k" * 32)
    return client


async def test_operator_creates_and_expires_a_silence(
    web_app: FastAPI, tokens: dict[str, str]
) -> None:
    async with await _operator(web_app, tokens) as client:
        page = (await client.get("/silences")).text
        assert 'name="csrf" value="' + "k" * 32 in page
        r = await client.post(
            "/silences",
            data={
                "csrf": "k" * 32,
                "matchers": f'host="{CULPRIT}"\nseverity="critical"',
                "comment": "GPU swap under way",
                "duration": "4h",
            },
            headers={"Origin": "http://sentinel"},
        )
        assert r.status_code == 303 and r.headers["location"] == "/silences?ok=silence.create"
        page = (await client.get(r.headers["location"])).text
        assert "Silence created." in page and "GPU swap under way" in page and "active" in page
        async with unit_of_work(web_app.state.ctx.sessions) as session:
            silence = (await session.scalars(select(Silence))).one()
            audit = (await session.scalars(select(AuditEntry))).all()
        assert silence.author == "operator" and len(silence.matchers) == 2
        assert [a.action for a in audit if a.actor == "operator"] == ["silence.create"]
        r = await client.post(f"/silences/{silence.id}/expire", data={"csrf": "k" * 32})
        assert r.status_code == 303
        assert "expired" in (await client.get("/silences")).text


async def test_operator_forms_need_the_csrf_value_and_this_origin(
    web_app: FastAPI, tokens: dict[str, str]
) -> None:
    form = {"matchers": 'host="x"', "comment": "c", "duration": "1h"}
    async with await _operator(web_app, tokens) as client:
        assert (await client.post("/silences", data=form)).status_code == 403
        assert (await client.post("/silences", data={**form, "csrf": "wrong"})).status_code == 403
        r = await client.post(
            "/silences", data={**form, "csrf": "k" * 32}, headers={"Origin": "https://evil.example"}
        )
        assert r.status_code == 403
    async with unit_of_work(web_app.state.ctx.sessions) as session:
        assert (await session.scalars(select(Silence))).all() == []


async def test_a_refused_operation_is_shown_not_raised(
    web_app: FastAPI, tokens: dict[str, str]
) -> None:
    async with await _operator(web_app, tokens) as client:
        r = await client.post(
            "/silences", data={"csrf": "k" * 32, "matchers": "not a matcher", "comment": "x"}
        )
        assert r.status_code == 422 and "Not done" in r.text
        # A note PostgreSQL cannot store is refused by name, as a page, not a 500.
        r = await client.post(
            f"/hosts/{CULPRIT}/repaired", data={"csrf": "k" * 32, "comment": "new board\x00"}
        )
        assert r.status_code == 422 and "comment" in r.text
        incident = await _incident(web_app)
        r = await client.post(
            f"/incidents/{incident.id}/resolve",
            data={"csrf": "k" * 32, "reason": "fixed: GPU replaced"},
        )
        assert r.status_code == 303
        r = await client.post(
            f"/incidents/{incident.id}/resolve", data={"csrf": "k" * 32, "reason": "again"}
        )
        assert r.status_code == 409 and "already resolved" in r.text


async def test_static_assets_are_served_and_nothing_else(web_app: FastAPI) -> None:
    async with client_for(web_app, None) as client:
        assert (await client.get("/static/app.css")).headers["content-type"].startswith("text/css")
        assert (await client.get("/static/app.js")).status_code == 200
        for name in ("..%2F__init__.py", "missing.css", "views.py"):
            assert (await client.get(f"/static/{name}")).status_code == 404


async def test_html_routes_are_not_in_the_api_schema(web_app: FastAPI) -> None:
    paths = web_app.openapi()["paths"]
    assert not [
        p
        for p in paths
        if not p.startswith("/api/") and p not in ("/healthz", "/readyz", "/metrics")
    ]


async def test_operator_acknowledges_an_alert_group_and_sees_refusals(
    web_app: FastAPI, tokens: dict[str, str]
) -> None:
    async with unit_of_work(web_app.state.ctx.sessions) as session:
        group = await session.scalar(select(AlertGroup).where(AlertGroup.state == "firing"))
        decision = await session.scalar(select(Decision))
    assert group is not None and decision is not None
    async with await _operator(web_app, tokens) as client:
        assert f"/alert-groups/{group.id}/ack" in (await client.get("/alerts")).text
        r = await client.post(f"/alert-groups/{group.id}/ack", data={"csrf": "k" * 32})
        assert r.status_code == 303 and r.headers["location"] == "/alerts?ok=group.ack"
        page = (await client.get("/alerts?ok=group.ack")).text
        assert "Alert group acknowledged." in page and f"/alert-groups/{group.id}/ack" not in page
        # The decision was carried out already: the API's 409 comes back as a page.
        r = await client.post(f"/decisions/{decision.id}/cancel", data={"csrf": "k" * 32})
        assert r.status_code == 409 and "cannot cancel" in r.text
    async with unit_of_work(web_app.state.ctx.sessions) as session:
        acked = await session.get(AlertGroup, group.id)
    assert acked is not None and acked.acked_by == "operator"


async def test_the_fleet_page_shows_triage_lag_and_unaccounted_hard_faults(
    web_app: FastAPI, tokens: dict[str, str]
) -> None:
    from datetime import timedelta

    from sentinel.db.models import Event, EventDisposition

    ctx = web_app.state.ctx
    now = ctx.clock.now()
    async with unit_of_work(ctx.sessions) as session:
        event = await session.scalar(select(Event).limit(1))
        assert event is not None
        session.add(
            EventDisposition(
                event_id=event.id,
                host_id=event.host_id,
                kind="xid",
                summary="NVRM: Xid 79 <b>never answered</b>",
                observed_at=now - timedelta(minutes=5),
                seen_at=now - timedelta(minutes=5),
                role="pending",
            )
        )
    async with client_for(web_app, tokens["viewer"]) as client:
        page = (await client.get("/fleet")).text
        polled = (await client.get("/fleet.json")).json()
    assert re.search(r'data-triage="unaccounted">1<', page), "the count of unanswered hard faults"
    assert "&lt;b&gt;never answered&lt;/b&gt;" in page  # the line as printed, escaped
    assert 'class="triage behind"' in page
    assert polled["triage"] == {"lag_s": 0.0, "waiting": 0, "unaccounted": 1}


async def test_the_incident_list_names_the_category_it_is_filtered_by(
    web_app: FastAPI, tokens: dict[str, str]
) -> None:
    async with client_for(web_app, tokens["viewer"]) as client:
        everything = (await client.get("/incidents")).text
        filtered = (await client.get("/incidents?category=faulty_gpu")).text
    # A macro named like the page's variable once printed "category <Macro 'category'>".
    for page in (everything, filtered):
        assert "Macro" not in page
    assert " · category <b>" not in everything
    assert " · category <b>faulty_gpu</b>" in filtered
    assert 'class="cat cat-' in filtered and "faulty_gpu</span>" in filtered


def _gpu_rows(page: str) -> dict[int, str]:
    table = page.split("<h2>GPUs</h2>", 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr[^>]*>\s*<td>(\d+)</td>(.*?)</tr>", table, re.S)
    return {int(i): re.sub(r"<[^>]+>", "", row) for i, row in rows}


async def test_a_gpu_with_a_hard_fault_is_not_ok_until_its_host_is_repaired(
    web_app: FastAPI, tokens: dict[str, str]
) -> None:
    import uuid
    from datetime import timedelta

    from sentinel.db.models import Event, EventDisposition

    ctx = web_app.state.ctx
    now = ctx.clock.now()
    async with client_for(web_app, tokens["viewer"]) as client:
        culprit = _gpu_rows((await client.get(f"/hosts/{CULPRIT}")).text)
    assert "lost" in culprit[3] and "XID 79" in culprit[3], culprit[3]
    # A double-bit error on a GPU whose samples still read fine: the table said "ok".
    event_id = uuid.uuid4()
    at = now - timedelta(minutes=3)
    async with unit_of_work(ctx.sessions) as session:
        session.add(
            Event(
                id=event_id,
                host_id=THROTTLED,
                seq=1,
                kind="xid",
                observed_at=at,
                received_at=at,
                gpu_index=2,
                critical=True,
                payload={"xid": 48, "message": "NVRM: Xid (PCI:0000:3b:00): 48, DBE"},
            )
        )
        await session.flush()
        session.add(
            EventDisposition(
                event_id=event_id,
                host_id=THROTTLED,
                kind="xid",
                summary="NVRM: Xid (PCI:0000:3b:00): 48, DBE",
                observed_at=at,
                seen_at=at,
                role="cause",
            )
        )
    async with client_for(web_app, tokens["viewer"]) as client:
        page = (await client.get(f"/hosts/{THROTTLED}")).text
    gpus = _gpu_rows(page)
    assert "XID 48" in gpus[2] and "ok" not in gpus[2], gpus[2]
    assert gpus[0].count("ok") == 1
    assert 'title="NVRM: Xid (PCI:0000:3b:00): 48, DBE"' in page
    # Once the host is repaired, what came before is history.
    async with unit_of_work(ctx.sessions) as session:
        session.add(
            AuditEntry(
                actor="operator",
                role="operator",
                action="host.repaired",
                target=f"host:{THROTTLED}",
                detail={},
                at=now - timedelta(minutes=1),
            )
        )
    async with client_for(web_app, tokens["viewer"]) as client:
        gpus = _gpu_rows((await client.get(f"/hosts/{THROTTLED}")).text)
    assert "XID 48" not in gpus[2] and "ok" in gpus[2]


async def _escalate(app: FastAPI) -> Decision:
    """The scenario's decision, as if the policy had handed it to a human."""
    incident = await _incident(app)
    async with unit_of_work(app.state.ctx.sessions) as session:
        decision = await session.scalar(select(Decision).where(Decision.incident_id == incident.id))
        assert decision is not None
        decision.status = "escalated"
    return decision


async def test_an_escalated_decision_can_be_overridden_from_its_incident(
    web_app: FastAPI, tokens: dict[str, str]
) -> None:
    decision = await _escalate(web_app)
    async with await _operator(web_app, tokens) as client:
        page = (await client.get(f"/incidents/{decision.incident_id}")).text
        form = page.split('id="override"', 1)[1].split("</form>", 1)[0]
        # The job's hosts to pick from, the culprit picked; three ways to decide.
        assert f'<option value="{CULPRIT}" selected>' in form
        assert '<option value="node-0006">' in form
        for action in ("exclude_and_restart", "restart", "hold"):
            assert f'name="action" value="{action}"' in form
        r = await client.post(
            f"/decisions/{decision.id}/override",
            content=f"csrf={'k' * 32}&action=exclude_and_restart&exclude_hosts={CULPRIT}"
            "&exclude_hosts=node-0006&reason=the+NVSwitch+tray+is+shared",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 303
        assert r.headers["location"] == f"/incidents/{decision.incident_id}?ok=decision.override"
        assert "Decision overridden." in (await client.get(r.headers["location"])).text
    async with unit_of_work(web_app.state.ctx.sessions) as session:
        after = await session.get(Decision, decision.id)
        audit = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == "decision.override")
            )
        ).all()
    assert after is not None and after.action == "exclude_and_restart"
    assert after.exclude_hosts == [CULPRIT, "node-0006"] and after.rule == "OperatorOverride"
    assert after.status in ("approved", "pending")
    [entry] = audit
    assert entry.actor == "operator" and entry.target == f"decision:{decision.id}"
    assert entry.detail["before"]["action"] == decision.action


async def test_holding_a_decision_and_the_refusals(
    web_app: FastAPI, tokens: dict[str, str]
) -> None:
    decision = await _escalate(web_app)
    url = f"/decisions/{decision.id}/override"
    async with await _operator(web_app, tokens) as client:
        r = await client.post(url, data={"csrf": "k" * 32, "action": "hold", "reason": "x"})
        assert r.status_code == 422 and "reason" in r.text  # the API's refusal, as a page
        r = await client.post(url, data={"csrf": "wrong", "action": "hold", "reason": "wait"})
        assert r.status_code == 403
        r = await client.post(
            url, data={"csrf": "k" * 32, "action": "hold", "reason": "fabric flapping"}
        )
        assert r.status_code == 303
    async with client_for(web_app, tokens["viewer"]) as client:
        client.cookies.set(CSRF_COOKIE, "c" * 20)
        assert 'id="override"' not in (await client.get(f"/incidents/{decision.incident_id}")).text
        r = await client.post(url, data={"csrf": "c" * 20, "action": "restart", "reason": "mine"})
        assert r.status_code == 403
    async with unit_of_work(web_app.state.ctx.sessions) as session:
        after = await session.get(Decision, decision.id)
    assert after is not None and (after.action, after.status) == ("hold", "held")


async def test_a_cause_pattern_the_verdict_lists_as_a_symptom_is_shown_as_one(
    web_app: FastAPI, tokens: dict[str, str]
) -> None:
    # The culprit's rank crashing with a CUDA error after its GPU fell off the bus: a
    # software-bug pattern (a cause where it stands alone) that this verdict explains.
    traceback = (
        'Traceback (most recent call last):\n  File "train.py", line 88, in step\n'
        "RuntimeError: CUDA error: unspecified launch failure"
    )
    incident = await _incident(web_app)
    async with unit_of_work(web_app.state.ctx.sessions) as session:
        row = await session.get(Incident, incident.id)
        assert row is not None
        verdict = dict(row.verdict)
        crash = {
            "text": traceback,
            "pattern": "cuda_runtime_error",
            "family": "software_bug",
            "role": "cause",
            "host": CULPRIT,
            "event_id": None,
            "rank": 43,
        }
        verdict["symptoms"] = [crash, *verdict.get("symptoms", [])]
        row.verdict = verdict
    async with client_for(web_app, tokens["viewer"]) as client:
        page = (await client.get(f"/incidents/{incident.id}")).text
    rows = re.findall(r'<tr class="role-(\w+)">(.*?)</tr>', page, re.S)
    [(role, shown)] = [(role, r) for role, r in rows if "unspecified launch failure" in r]
    assert role == "symptom" and "<td>symptom</td>" in shown
    assert any(role == "cause" and "Xid" in r for role, r in rows)  # the XID stays the cause


async def test_the_search_box_finds_a_host_by_name_or_part_of_it(
    web_app: FastAPI, tokens: dict[str, str]
) -> None:
    async with client_for(web_app, tokens["viewer"]) as client:
        page = (await client.get("/fleet")).text
        exact = await client.get(f"/fleet?host=+{CULPRIT}+")
        part = (await client.get("/fleet?host=NODE-001")).text
        none = (await client.get("/fleet?host=gpu-rack-9")).text
    assert 'action="/fleet"' in page and 'name="host"' in page  # in the header of every page
    assert exact.status_code == 303 and exact.headers["location"] == f"/hosts/{CULPRIT}"
    shown = re.findall(r'class="hb[^"]*" href="[^"]+" data-h="([^"]+)"', part)
    assert shown == [f"node-{n:04d}" for n in range(10, 20)], shown
    assert "node-0005" not in re.findall(r'data-h="([^"]+)"', part)
    assert "No hosts named like gpu-rack-9." in none


async def _many_incidents(app: FastAPI, n: int) -> Incident:
    """The scenario's incident and `n` older copies of it on node-0009, a minute apart."""
    from datetime import timedelta

    incident = await _incident(app)
    async with unit_of_work(app.state.ctx.sessions) as session:
        for k in range(n):
            at = incident.opened_at - timedelta(days=1, minutes=k)
            session.add(
                Incident(
                    job_id=incident.job_id,
                    state="resolved",
                    category="nic",
                    confidence=0.8,
                    culprit_host="node-0009",
                    rule="Copied",
                    reason=f"copy {k}",
                    verdict={},
                    opened_at=at,
                    detected_at=at,
                    updated_at=at,
                    resolved_at=at,
                )
            )
    return incident


async def test_the_incident_list_is_paged_and_filtered_by_host_and_time(
    web_app: FastAPI, tokens: dict[str, str]
) -> None:
    from sqlalchemy import func

    incident = await _many_incidents(web_app, 120)
    async with unit_of_work(web_app.state.ctx.sessions) as session:
        total = await session.scalar(select(func.count()).select_from(Incident))
    assert total is not None and 120 < total <= 150
    rows = re.compile(r'<tr class="(?:row-open)?">')
    async with client_for(web_app, tokens["viewer"]) as client:
        first = (await client.get("/incidents")).text
        assert len(rows.findall(first)) == 50
        assert f"{total} incidents · page 1 of 3" in first
        assert 'href="/incidents?page=2" rel="next"' in first
        last = (await client.get("/incidents?page=3")).text
        assert len(rows.findall(last)) == total - 100
        assert "page 3 of 3" in (await client.get("/incidents?page=99")).text
        # The host's incidents only, the filters kept in the page links.
        mine = (await client.get("/incidents?state=resolved&host=node-0009")).text
        assert "copy 0<" in mine and str(incident.id) not in mine
        assert "120 incidents · page 1 of 3" in mine
        assert 'href="/incidents?state=resolved&amp;host=node-0009&amp;page=2" rel="next"' in mine
        assert 'href="/incidents?host=node-0009&amp;state=open"' in mine
        culprit = (await client.get(f"/incidents?host={CULPRIT}")).text
        assert str(incident.id) in culprit and "copy 0<" not in culprit and "pager" not in culprit
        # A time range in UTC: the day before the scenario's incident holds only copies.
        day = incident.opened_at.date().isoformat()
        today = (await client.get(f"/incidents?since={day}&host=")).text
        assert str(incident.id) in today and "copy 0<" not in today
        before = (await client.get(f"/incidents?until={day}")).text
        assert str(incident.id) not in before and "copy 0<" in before
        assert "No incidents match." in (await client.get("/incidents?since=2999-01-01")).text
        wrong = await client.get("/incidents?since=yesterday")
        assert wrong.status_code == 200 and "is not a time" in wrong.text


async def test_a_gpu_is_shown_by_its_index_pci_bus_id_uuid_and_serial(
    web_app: FastAPI, tokens: dict[str, str]
) -> None:
    from sentinel.db.models import Gpu

    incident = await _incident(web_app)
    async with unit_of_work(web_app.state.ctx.sessions) as session:
        gpu = await session.get(Gpu, (CULPRIT, 3))
    assert gpu is not None and gpu.pci_bus_id and gpu.uuid and gpu.serial
    async with client_for(web_app, tokens["viewer"]) as client:
        host = (await client.get(f"/hosts/{CULPRIT}")).text
        page = (await client.get(f"/incidents/{incident.id}")).text
    row = _gpu_rows(host)[3]
    assert gpu.uuid in row and gpu.pci_bus_id in row and gpu.serial in row
    assert "serial (for RMA)" in host  # the column says what the serial is for
    # The kernel names it "PCI:0000:5d:00"; the page names it every way NVML does.
    rows = re.findall(r'<tr class="role-(\w+)">(.*?)</tr>', page, re.S)
    cause = next(row for role, row in rows if role == "cause" and "Xid" in row)
    assert f'GPU 3 <span class="small">{gpu.pci_bus_id}</span>' in cause and gpu.uuid in cause
    assert f"serial (RMA) {gpu.serial}" in cause
    headline = page.split('class="verdict', 1)[1].split("</h1>", 1)[0]
    assert gpu.uuid in headline and "GPU 3" in headline and gpu.serial in headline


class _Elector:
    def __init__(self, leads: bool) -> None:
        self.is_leader, self.identity = leads, "sentinel-a:4242"


@pytest.mark.parametrize(
    ("elector", "shown"),
    [
        (None, "loops off"),
        (_Elector(False), "follower (sentinel-a:4242) · triage on the leader"),
        (_Elector(True), 'leader here</span> · triage lag <b data-triage="lag_s">0.0</b> s'),
    ],
)
async def test_the_header_says_who_leads_and_how_far_triage_is_behind(
    web_app: FastAPI, tokens: dict[str, str], elector: _Elector | None, shown: str
) -> None:
    web_app.state.elector = elector
    async with client_for(web_app, tokens["viewer"]) as client:
        for path in ("/incidents", "/jobs", f"/hosts/{CULPRIT}"):
            page = (await client.get(path)).text
            header = page.split("<header", 1)[1].split("</header>", 1)[0]
            assert shown in header, header
    async with client_for(web_app, None) as client:
        assert "loops" not in (await client.get("/login")).text  # nobody signed in: no header


async def test_a_lagging_leader_is_shown_in_red(web_app: FastAPI, tokens: dict[str, str]) -> None:
    from datetime import timedelta

    ctx = web_app.state.ctx
    web_app.state.elector = _Elector(True)
    # The oldest event not yet weighed arrived ten minutes ago.
    ctx.triage_worker._arrived = (3, ctx.clock.now() - timedelta(minutes=10))
    async with client_for(web_app, tokens["viewer"]) as client:
        page = (await client.get("/jobs")).text
    assert 'class="loops loops-leader behind"' in page
    assert 'data-triage="lag_s">600.0</b>' in page


async def test_the_approvals_page_lists_what_waits_for_a_person_and_approves_it(
    web_app: FastAPI, tokens: dict[str, str]
) -> None:
    incident = await _incident(web_app)
    async with unit_of_work(web_app.state.ctx.sessions) as session:
        decision = await session.scalar(select(Decision).where(Decision.incident_id == incident.id))
        assert decision is not None
        decision.status = "proposed"
    async with client_for(web_app, tokens["viewer"]) as client:
        page = (await client.get("/approvals")).text
        assert f'href="/incidents/{incident.id}"' in page and decision.rule in page
        assert "/approve" not in page  # a viewer sees, never acts
    async with await _operator(web_app, tokens) as client:
        page = (await client.get("/approvals")).text
        assert f'action="/decisions/{decision.id}/approve"' in page
        r = await client.post(
            f"/decisions/{decision.id}/approve", data={"csrf": "k" * 32, "back": "/approvals"}
        )
        assert r.status_code == 303 and r.headers["location"] == "/approvals?ok=decision.approve"
        page = (await client.get(r.headers["location"])).text
        assert "Decision approved." in page and "Nothing is waiting for a person." in page
        # Only this page is a place to go back to.
        async with unit_of_work(web_app.state.ctx.sessions) as session:
            again = await session.get(Decision, decision.id)
            assert again is not None
            again.status = "held"
        r = await client.post(
            f"/decisions/{decision.id}/cancel", data={"csrf": "k" * 32, "back": "https://evil/"}
        )
        assert r.headers["location"] == f"/incidents/{incident.id}?ok=decision.cancel"
    async with unit_of_work(web_app.state.ctx.sessions) as session:
        audit = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.target == f"decision:{decision.id}")
            )
        ).all()
    assert [a.action for a in audit] == ["decision.approve", "decision.cancel"]


async def test_an_alert_group_is_named_by_its_incident_not_its_uuid(
    web_app: FastAPI, tokens: dict[str, str]
) -> None:
    incident = await _incident(web_app)
    async with client_for(web_app, tokens["viewer"]) as client:
        page = (await client.get("/alerts")).text
    groups = page.split('id="groups"', 1)[1].split("<h2>Recent alerts</h2>", 1)[0]
    cells = re.findall(r'<td class="wrap" title="([^"]*)">(.*?)</td>', groups, re.S)
    name = next(n for k, n in cells if str(incident.id) in k)
    assert f'href="/incidents/{incident.id}"' in name and "faulty_gpu" in name
    assert f">{CULPRIT}</a>" in name and f"GPU {incident.culprit_gpu}" in name
    assert str(incident.id) not in re.sub(r'href="[^"]*"', "", name)  # no UUID to read


async def test_acknowledging_an_incident_at_one_receiver_acknowledges_it_at_all(
    web_app: FastAPI, tokens: dict[str, str]
) -> None:
    incident = await _incident(web_app)
    async with unit_of_work(web_app.state.ctx.sessions) as session:
        groups = [
            g
            for g in (await session.scalars(select(AlertGroup))).all()
            if g.labels.get("incident") == str(incident.id) and g.state == "firing"
        ]
    assert len({g.receiver for g in groups}) == 2, [g.receiver for g in groups]
    async with await _operator(web_app, tokens) as client:
        r = await client.post(f"/alert-groups/{groups[0].id}/ack", data={"csrf": "k" * 32})
        assert r.status_code == 303
        page = (await client.get("/alerts")).text
    for g in groups:
        assert f"/alert-groups/{g.id}/ack" not in page
    async with unit_of_work(web_app.state.ctx.sessions) as session:
        acked = [await session.get(AlertGroup, g.id) for g in groups]
        [entry] = (
            await session.scalars(select(AuditEntry).where(AuditEntry.action == "alert_group.ack"))
        ).all()
    assert all(g is not None and g.acked_by == "operator" for g in acked)
    assert [a["receiver"] for a in entry.detail["also"]] == [groups[1].receiver]
