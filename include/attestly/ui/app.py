"""The FastAPI app behind the Evidence view, mounted by the plugin at ``/attestly`` in the api-server.

Routes (every one behind ``auth``, an app-wide dependency; the plugin passes
:func:`attestly.ui.auth.require_airflow_user`):

- ``GET  /attestly/``                 the HTML page;
- ``GET  /attestly/api/overview``     the same data as JSON (:meth:`Overview.to_dict`);
- ``POST /attestly/api/verify``       run ``verify`` now and cache the result; needs the header
  ``X-Attestly-Action: verify`` (a cross-site form cannot set it), 409 while another check runs;
- ``GET  /attestly/evidence/add``     the form that uploads manual evidence for controls (see
  :mod:`attestly.ui.upload`); ``POST /attestly/api/evidence`` records it, needs the header
  ``X-Attestly-Action: add-evidence`` and the ``writer`` dependency (the plugin passes
  :func:`attestly.ui.auth.require_evidence_writer`: permission to create ``evidence_collection`` runs);
- ``POST /attestly/api/exceptions/<EXC-id>/accept``  accept an exception response as the logged-in user
  (recorded as ``ui:<user>``; :func:`attestly.deviations.accept` refuses the person who responded, whether
  they responded from the CLI or here): header ``X-Attestly-Action: accept-exception`` and the ``writer``
  dependency; 404 for an unknown exception, 409 when refused;
- ``POST /attestly/api/erasure/<erase-id>/approve``  approve an erasure request as the logged-in user
  (``ui:<user>``), refused (409) when that person requested it (``cli:``/``ui:`` prefixes and ``@host``
  ignored); header ``X-Attestly-Action: approve-erasure`` and the ``writer`` dependency;
- ``POST /attestly/api/holds/<hold-id>/release``  release a legal hold as the logged-in user
  (``ui:<user>``), with a reason (JSON ``{"reason": "..."}``, required); refused (409) when that person
  placed the hold (:func:`attestly.holds.release_hold`, and the database on its own); header
  ``X-Attestly-Action: release-hold`` and the ``writer`` dependency; 404 for an unknown hold;
- ``GET  /attestly/reports/file?key=reports/...``  a report object from the bucket — the version the
  ledger recorded, checked against its SHA-256 — served with
  ``Content-Security-Policy: sandbox`` so stored HTML cannot run script on Airflow's origin.

Data comes from ``attestly_db`` (the ledger), ``aws_default`` and ``ATTESTLY_EVIDENCE_BUCKET``, read per
request; blocking work runs in FastAPI's thread pool (the route functions are synchronous).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import date
from typing import Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

APP_PREFIX = "/attestly"
VERIFY_HEADER = "X-Attestly-Action"
#: ``X-Attestly-Action`` values for accepting an exception response and approving an erasure request.
ACCEPT_EXCEPTION = "accept-exception"
APPROVE_ERASURE = "approve-erasure"
#: ``X-Attestly-Action`` value for releasing a legal hold.
RELEASE_HOLD = "release-hold"


def _user_name(user: Any) -> str:
    name = user.get_name() if hasattr(user, "get_name") else str(user)
    return str(name)


def _overview(base_url: str | None, today: date | None = None) -> Any:
    from attestly import config
    from attestly.connections import aws_client
    from attestly.ledger import Ledger
    from attestly.policy import load_policy
    from attestly.ui.overview import build_overview
    from attestly.ui.verify_cache import last_verify

    with Ledger.connect() as ledger:
        return build_overview(
            ledger=ledger,
            policy=load_policy(),
            s3=aws_client("s3"),
            bucket=config.evidence_bucket(),
            today=today,
            base_url=base_url,
            verify=last_verify(),
        )


def _release_hold(hold_id: str, reason: str, released_by: str) -> dict[str, Any]:
    """Release a hold as ``released_by`` through the same path as ``attestly hold release`` (both
    databases, S3 legal holds, ledger); HTTP 404/409 for an unknown hold or a refused release."""
    from attestly.holds import HoldError, get_hold, release_hold
    from attestly.runcontext import RunContext

    with RunContext.open(run_id=f"ui:hold-release:{hold_id}") as ctx:
        try:
            get_hold(ctx.db, hold_id)
        except HoldError as exc:
            raise HTTPException(404, str(exc)) from exc
        try:
            hold = release_hold(ctx, hold_id, reason=reason, released_by=released_by)
        except HoldError as exc:
            raise HTTPException(409, str(exc)) from exc
        return {**hold.to_dict(), "criteria": hold.criteria(hash_subject=True)}


def _deny_writes() -> None:
    raise HTTPException(403, "uploading evidence is not enabled in this app")


def create_app(
    *,
    auth: Callable[..., Any],
    writer: Callable[..., Any] = _deny_writes,
    base_url: Callable[[], str | None] = lambda: None,
) -> FastAPI:
    """The app; ``auth`` is a FastAPI dependency applied to every route, ``writer`` one that returns the
    user allowed to record manual evidence (default: nobody), ``base_url`` gives the Airflow base URL used
    in run links (read per request)."""
    app = FastAPI(
        title="Attestly evidence",
        description="The Evidence view of Attestly (control status, seals, verification, reports).",
        dependencies=[Depends(auth)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    def app_root(request: Request) -> str:
        return str(request.scope.get("root_path") or APP_PREFIX).rstrip("/")

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request) -> HTMLResponse:
        from attestly.ui.page import render_page

        html = render_page(_overview(base_url()), app_root=app_root(request))
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @app.get("", include_in_schema=False)
    def page_without_slash(request: Request) -> RedirectResponse:
        return RedirectResponse(app_root(request) + "/")

    @app.get("/api/overview")
    def overview_json() -> JSONResponse:
        return JSONResponse(_overview(base_url()).to_dict(), headers={"Cache-Control": "no-store"})

    @app.post("/api/verify")
    def verify(action: str | None = Header(default=None, alias=VERIFY_HEADER)) -> JSONResponse:
        from attestly.ui.verify_cache import VerifyBusy, run_verify

        if action != "verify":
            raise HTTPException(400, f"send the header {VERIFY_HEADER}: verify")
        try:
            return JSONResponse(run_verify())
        except VerifyBusy as exc:
            raise HTTPException(409, str(exc)) from exc

    @app.get("/evidence/add", response_class=HTMLResponse)
    def evidence_form(
        request: Request,
        user: Any = Depends(writer),  # noqa: B008 - FastAPI idiom
        control: list[str] = Query(default=[]),  # noqa: B008
    ) -> HTMLResponse:
        from attestly.policy import load_policy
        from attestly.ui.upload import render_form

        html = render_form(load_policy(), user=_user_name(user), app_root=app_root(request), selected=control)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @app.post("/api/evidence")
    async def evidence_add(
        request: Request,
        user: Any = Depends(writer),  # noqa: B008 - FastAPI idiom
        action: str | None = Header(default=None, alias=VERIFY_HEADER),
    ) -> JSONResponse:
        from starlette.concurrency import run_in_threadpool

        from attestly.policy import load_policy
        from attestly.ui.upload import ACTION_HEADER_VALUE, UploadRefused, read_form, record_upload

        if action != ACTION_HEADER_VALUE:
            raise HTTPException(400, f"send the header {VERIFY_HEADER}: {ACTION_HEADER_VALUE}")
        policy = await run_in_threadpool(load_policy)
        try:
            fields = await read_form(request, policy)
            recorded = await run_in_threadpool(
                record_upload, fields, user_name=_user_name(user), policy=policy
            )
        except UploadRefused as exc:
            raise HTTPException(exc.status, str(exc)) from exc
        return JSONResponse(recorded, status_code=201 if recorded.get("created") else 200)

    @app.post("/api/exceptions/{exception_id}/accept")
    def exception_accept(
        exception_id: str,
        user: Any = Depends(writer),  # noqa: B008 - FastAPI idiom
        action: str | None = Header(default=None, alias=VERIFY_HEADER),
    ) -> JSONResponse:
        from attestly.clock import trusted_now
        from attestly.deviations import ExceptionInputError, accept
        from attestly.ledger import Ledger

        if action != ACCEPT_EXCEPTION:
            raise HTTPException(400, f"send the header {VERIFY_HEADER}: {ACCEPT_EXCEPTION}")
        if not re.fullmatch(r"EXC-[0-9a-f]{16}", exception_id):
            raise HTTPException(404, "not an exception id (EXC-<16 hex digits>)")
        with Ledger.connect() as ledger:
            try:
                state, created = accept(ledger=ledger, eid=exception_id, accepted_by=f"ui:{_user_name(user)}")
            except ExceptionInputError as exc:
                status = 404 if "no such exception" in str(exc) else 409
                raise HTTPException(status, str(exc)) from exc
            out = state.to_dict(trusted_now(ledger.conn).date())
        return JSONResponse({**out, "created": created}, status_code=201 if created else 200)

    @app.post("/api/erasure/{request_id}/approve")
    def erasure_approve(
        request_id: str,
        user: Any = Depends(writer),  # noqa: B008 - FastAPI idiom
        action: str | None = Header(default=None, alias=VERIFY_HEADER),
    ) -> JSONResponse:
        from attestly.disposal.erasure import ErasureError, approve_erasure, get_request
        from attestly.identity import same_person
        from attestly.ledger import Ledger

        if action != APPROVE_ERASURE:
            raise HTTPException(400, f"send the header {VERIFY_HEADER}: {APPROVE_ERASURE}")
        if not re.fullmatch(r"erase-[0-9a-f]{12}", request_id):
            raise HTTPException(404, "not an erasure request id (erase-<12 hex digits>)")
        approver = f"ui:{_user_name(user)}"
        with Ledger.connect() as ledger:
            try:
                req = get_request(ledger.conn, request_id)
            except ErasureError as exc:
                raise HTTPException(404, str(exc)) from exc
            if same_person(approver, req.requested_by):
                raise HTTPException(
                    409,
                    f"erasure request {request_id} was requested by {req.requested_by}; "
                    f"{approver} may not approve it: a different person must",
                )
            try:
                req = approve_erasure(ledger.conn, ledger, request_id, approved_by=approver)
            except ErasureError as exc:
                raise HTTPException(409, str(exc)) from exc
        return JSONResponse(req.to_dict(hash_subject=True), status_code=201)

    @app.post("/api/holds/{hold_id}/release")
    async def hold_release(
        hold_id: str,
        request: Request,
        user: Any = Depends(writer),  # noqa: B008 - FastAPI idiom
        action: str | None = Header(default=None, alias=VERIFY_HEADER),
    ) -> JSONResponse:
        from starlette.concurrency import run_in_threadpool

        if action != RELEASE_HOLD:
            raise HTTPException(400, f"send the header {VERIFY_HEADER}: {RELEASE_HOLD}")
        if not re.fullmatch(r"hold-[0-9a-f]{12}", hold_id):
            raise HTTPException(404, "not a hold id (hold-<12 hex digits>)")
        try:
            body = await request.json()
        except ValueError:
            body = None
        reason = body.get("reason") if isinstance(body, dict) else None
        if not isinstance(reason, str) or not reason.strip():
            raise HTTPException(400, 'a release needs a reason: send JSON {"reason": "why the hold ends"}')
        released = await run_in_threadpool(_release_hold, hold_id, reason, f"ui:{_user_name(user)}")
        return JSONResponse(released, status_code=201)

    @app.get("/reports/file")
    def report_file(key: str = Query(..., max_length=1024)) -> Response:
        from attestly import config
        from attestly.connections import aws_client
        from attestly.ledger import Ledger
        from attestly.reports.bundle import content_type

        if not key.startswith("reports/") or ".." in key.split("/") or "\\" in key:
            raise HTTPException(404, "not a report object")
        # Serve the version the ledger recorded, checked against its hash: a newer version written over a
        # stored report (anyone with write access to the bucket) is never what a person is shown.
        with Ledger.connect() as ledger:
            recorded = ledger.report_object(key)
        if recorded is None:
            raise HTTPException(404, "no such report object in the ledger")
        s3 = aws_client("s3")
        try:
            obj = s3.get_object(Bucket=config.evidence_bucket(), Key=key, VersionId=recorded["version_id"])
        except s3.exceptions.ClientError as exc:
            raise HTTPException(404, "the recorded version of this report object is gone") from exc
        body = obj["Body"].read()
        if hashlib.sha256(body).hexdigest() != recorded["sha256"]:
            raise HTTPException(409, "this report object does not match the hash the ledger recorded")
        name = key.rsplit("/", 1)[-1]
        headers = {
            "Content-Security-Policy": "sandbox",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        }
        if not name.endswith((".html", ".pdf", ".json", ".csv", ".md", ".pem")):
            headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return Response(body, media_type=content_type(name), headers=headers)

    return app
