"""Forms carried out once: a page's form sent twice (a double click, a second tap while the first was on its way) is
answered the second time as it was the first, without storing a second assessment, session or diary entry.

Every form that writes carries a key made when its page was drawn (`form_key()` in the templates). The route claims
the form inside its write transaction, just before it writes: the claim stores a fingerprint of who sent which form
from which page with what in it. The same form sent again finds the fingerprint and is sent on to where the first
went (`SentAlready`); sent while the first is still being carried out, it waits for it (the fingerprint is a primary
key: PostgreSQL holds the second insert until the first commits; SQLite's BEGIN IMMEDIATE holds the whole second
transaction). A form refused by a check writes nothing, its claim included, so sending it again is checked again; a
page drawn again draws a new key, and a form changed before it is sent again (after going back) has another
fingerprint: both are carried out as new. A form without a key (a client that is not one of the pages) is carried
out every time it is sent.

API clients do the same with an ``Idempotency-Key`` header on the requests that record something: a request sent
again with the same key (a retry after a lost answer or a timeout) is given the first one's answer, status and body,
with ``Idempotent-Replayed: true``, and writes nothing; sent while the first is being carried out, it waits for it.
The same key with another request (another address or body) is refused (422), and a request refused by a check
keeps no key, so that it can be corrected and sent again under it. Without the header a request is carried out
every time it is sent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Request
from fastapi.encoders import jsonable_encoder
from markupsafe import Markup
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hemicare.db.base import utcnow
from hemicare.errors import ConflictError, FieldProblem, InputError
from hemicare.users.models import SentForm
from hemicare.web.forms import FormData

FIELD = "form_key"
# Longer than a signed-in session lasts, so that every form still accepted (its CSRF token valid) is remembered.
KEPT = dt.timedelta(days=1)


class SentAlready(Exception):
    """This form was carried out already: answer with a redirect to ``location``, where the first one went."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


def form_key() -> Markup:
    """The hidden field that tells this form, as drawn now, from every other (a template global)."""
    return Markup(f'<input type="hidden" name="{FIELD}" value="{secrets.token_urlsafe(16)}">')


def _digest(value: Any) -> str:
    """A SHA-256 of the value as JSON (keys sorted): what the table keeps instead of the form or request."""
    return hashlib.sha256(json.dumps(value, ensure_ascii=False, sort_keys=True).encode("utf-8")).hexdigest()


def fingerprint(username: str, path: str, form: FormData) -> str:
    """Who sent the form, to which address, with what in it (its key included; the CSRF token left out, which the
    key already ties to one drawing of the page)."""
    fields = sorted((name, value) for name, values in form.multi.items() if name != "csrf_token" for value in values)
    return _digest([username, path, fields])


def _claimed(session: Session, row: SentForm) -> bool:
    """Store the row in this transaction; False if one with its fingerprint is there (waiting for a transaction that
    is storing it to end). Fingerprints older than `KEPT` are removed on the way."""
    session.execute(delete(SentForm).where(SentForm.sent_at < row.sent_at - KEPT))
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return False
    return True


def claim(session: Session, *, username: str, path: str, form: FormData, location: str) -> None:
    """Claim the form for this transaction, or raise `SentAlready` with ``location`` if it was carried out already.

    Call it inside the route's write transaction, after the form's checks and just before it writes, so that the
    claim and the write are kept or dropped together.
    """
    if not form.get(FIELD):
        return
    if not _claimed(session, SentForm(fingerprint=fingerprint(username, path, form), sent_at=utcnow())):
        raise SentAlready(location)


HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"  # the answer's header when it is the first request's answer given again
KEY_MAX = 255  # characters; a UUID is 36


def api_key(
    key: Annotated[
        str | None,
        Header(
            alias=HEADER,
            description="Any new value (a UUID, say) to have the request carried out once: sent again with the same "
            f"key within a day, it is given the first answer again (with `{REPLAYED}: true`) and writes nothing. "
            f"1-{KEY_MAX} printable ASCII characters.",
            json_schema_extra={"minLength": 1, "maxLength": KEY_MAX},  # checked below, to name the header alone
        ),
    ] = None,
) -> str | None:
    """The request's idempotency key, checked: a route parameter (`IdempotencyKey`)."""
    if key is not None and not (1 <= len(key) <= KEY_MAX and key.isascii() and key.isprintable()):
        raise InputError(
            [FieldProblem(HEADER, f"must be 1-{KEY_MAX} printable ASCII characters (got {len(key)} characters)")]
        )
    return key


IdempotencyKey = Annotated[str | None, Depends(api_key)]


class Replayed(Exception):
    """This request was carried out already: answer ``username`` with the first one's status and body (about
    ``patient``, if the address names one)."""

    def __init__(self, status: int, answer: Any, username: str, patient: str | None) -> None:
        super().__init__(status)
        self.status, self.answer, self.username, self.patient = status, answer, username, patient


def claim_request(
    session: Session,
    request: Request,
    *,
    username: str,
    key: str | None,
    body: Any = None,
    patient: str | None = None,
) -> None:
    """Claim an API request sent with an idempotency key for this transaction; raise `Replayed` if it was carried out
    already, an InputError if the key was used for another request. Call it inside the route's write transaction,
    and pass what the route returns through `answered`, in the same transaction. ``patient``: whose record the
    request is about, when the address does not say."""
    if key is None:
        return
    asked = _digest([request.method, request.url.path, request.url.query, body])
    row = SentForm(fingerprint=_digest(["api", username, key]), sent_at=utcnow(), request=asked)
    if _claimed(session, row):
        request.state.sent = row
        return
    first = session.get(SentForm, row.fingerprint)
    if first is None:  # a day old, and forgotten by another request in the moment between
        raise ConflictError(f"the request first sent with this {HEADER} was just forgotten: send it again")
    if first.request != asked:
        raise InputError([FieldProblem(HEADER, "was sent in the last day with another request; use a new key")])
    assert first.status is not None, "a route claimed a request without keeping its answer"
    raise Replayed(first.status, first.answer, username, patient or request.path_params.get("code"))


Answer = TypeVar("Answer")


def answered(request: Request, answer: Answer) -> Answer:
    """Keep the route's answer with its claim (if the request had a key), to be given again; returns it unchanged."""
    row: SentForm | None = getattr(request.state, "sent", None)
    if row is not None:
        row.status = request.scope["route"].status_code or 200
        row.answer = jsonable_encoder(answer)
    return answer
