"""The grid worker's phone page (掌上应用, served at /m/): exactly-once reports and actions
with photos from its offline outbox, my tasks, profile, photos and broadcasts.

Patrol points go to ``/api/v1/patrols/points`` (batches are idempotent there already); the
"page hidden" gap is a ``hidden`` marker in those batches.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Response, UploadFile
from pydantic import BaseModel

from api.deps import AuditContextDep, CryptoDep, CurrentUser, SessionDep, require
from api.routes.events import EventSettingsDep, PhotoStoreDep, form_json, read_photos
from geoserver.domain.principal import Principal
from geoserver.services import broadcasts, mobile, mobile_photos
from geoserver.services.broadcasts import BroadcastIn, BroadcastPublic
from geoserver.services.events import EventDetail
from geoserver.services.mobile import MyTasks, PhoneResult, PhoneWrite
from geoserver.services.photos import PhotoStore

router = APIRouter(prefix="/api/v1/mobile", tags=["mobile"])

Reader = Annotated[Principal, Depends(require("event.read"))]
Reporter = Annotated[Principal, Depends(require("event.report"))]
Sender = Annotated[Principal, Depends(require("broadcast.send"))]


Photos = Annotated[list[UploadFile], File(description="JPEG, PNG or WebP, at most 6")]


class PhoneOut(BaseModel):
    """The event a phone write made or acted on; ``duplicate`` when the key was seen before."""

    event: EventDetail
    duplicate: bool
    photos: list[dict[str, Any]]


def _write(client_key: str, body: str, photos: list[UploadFile],
           store: PhotoStore) -> PhoneWrite:
    return PhoneWrite(client_key=client_key, body=form_json(body),
                      photos=read_photos(photos, store))


def _out(result: PhoneResult, response: Response, session: SessionDep,
         user: Principal) -> PhoneOut:
    response.status_code = 200 if result.duplicate else 201
    response.headers["ETag"] = f'"{result.event.version}"'
    photos = mobile_photos.event_photos(session, actor=user, event_id=result.event.id)
    return PhoneOut(event=result.event, duplicate=result.duplicate,
                    photos=[p.model_dump(mode="json") for p in photos])


@router.post("/reports", response_model=PhoneOut, status_code=201,
             responses={200: {"description": "this client_key was reported before"},
                        409: {}, 413: {}, 422: {}})
def report(client_key: Annotated[str, Form(max_length=64)],
           body: Annotated[str, Form(max_length=20_000, description="the report (JSON)")],
           user: Reporter, session: SessionDep, response: Response, crypto: CryptoDep,
           store: PhotoStoreDep, settings: EventSettingsDep, context: AuditContextDep,
           photos: Photos = []) -> PhoneOut:  # noqa: B006 (FastAPI copies defaults)
    """Report an event with photos once per client key (a repeat answers 200, writes nothing)."""
    result = mobile.report(session, actor=user, write=_write(client_key, body, photos, store),
                           store=store, crypto=crypto, settings=settings, context=context)
    return _out(result, response, session, user)


@router.post("/events/{event_id}/actions/{action}", response_model=PhoneOut, status_code=201,
             responses={200: {}, 404: {}, 409: {}, 413: {}, 422: {}})
def act(event_id: int, action: str, client_key: Annotated[str, Form(max_length=64)],
        body: Annotated[str, Form(max_length=20_000, description="the action (JSON)")],
        user: Reader, session: SessionDep, response: Response, store: PhotoStoreDep,
        settings: EventSettingsDep, context: AuditContextDep,
        photos: Photos = []) -> PhoneOut:  # noqa: B006
    """Sign, handle (result + photos) or verify (position + photos) once per client key."""
    result = mobile.act(session, actor=user, event_id=event_id, action=action,
                        write=_write(client_key, body, photos, store), store=store,
                        settings=settings, context=context)
    return _out(result, response, session, user)


@router.get("/tasks", response_model=MyTasks)
def tasks(user: Reader, session: SessionDep) -> MyTasks:
    """Return 我的任务: to sign, to handle, to verify, reminded/supervised, broadcasts."""
    return mobile.my_tasks(session, actor=user)


@router.get("/profile")
def profile(user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    """Return 我的: name, positions, grids, what the worker may do, today's figures."""
    return mobile.profile(session, actor=user)


@router.get("/events/{event_id}/photos", responses={404: {}})
def event_photos(event_id: int, user: Reader, session: SessionDep) -> list[dict[str, Any]]:
    """List an event's photos (report, handling, verification)."""
    return [p.model_dump(mode="json") for p in mobile_photos.event_photos(
        session, actor=user, event_id=event_id)]


@router.get("/photos/{photo_id}", responses={404: {}, 200: {"content": {"image/jpeg": {}}}})
def photo(photo_id: int, user: Reader, session: SessionDep, store: PhotoStoreDep) -> Response:
    """Return a photo's bytes (content-addressed: cacheable for good, privately)."""
    data, content_type = mobile_photos.photo_content(session, actor=user, photo_id=photo_id,
                                                     store=store)
    return Response(data, media_type=content_type,
                    headers={"Cache-Control": "private, max-age=31536000, immutable",
                             "X-Content-Type-Options": "nosniff"})


@router.get("/broadcasts", response_model=list[BroadcastPublic])
def list_broadcasts(user: CurrentUser, session: SessionDep,
                    unread: bool = False) -> list[BroadcastPublic]:
    """Return the live broadcasts (通知公告) for your jurisdiction, newest first."""
    return broadcasts.list_broadcasts(session, actor=user, unread_only=unread)


@router.post("/broadcasts", response_model=BroadcastPublic, status_code=201)
def send_broadcast(body: BroadcastIn, user: Sender, session: SessionDep,
                   context: AuditContextDep) -> BroadcastPublic:
    """Send a broadcast to every worker at or under a region of your jurisdiction."""
    return broadcasts.send_broadcast(session, actor=user, data=body, context=context)


@router.post("/broadcasts/{broadcast_id}/read", status_code=204, responses={404: {}})
def read_broadcast(broadcast_id: int, user: CurrentUser, session: SessionDep) -> Response:
    """Mark a broadcast as read."""
    broadcasts.mark_read(session, actor=user, broadcast_id=broadcast_id)
    return Response(status_code=204)
