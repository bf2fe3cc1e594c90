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
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets

from markupsafe import Markup
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hemicare.db.base import utcnow
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


def fingerprint(username: str, path: str, form: FormData) -> str:
    """Who sent the form, to which address, with what in it (its key included; the CSRF token left out, which the
    key already ties to one drawing of the page)."""
    fields = sorted((name, value) for name, values in form.multi.items() if name != "csrf_token" for value in values)
    text = json.dumps([username, path, fields], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def claim(session: Session, *, username: str, path: str, form: FormData, location: str) -> None:
    """Claim the form for this transaction, or raise `SentAlready` with ``location`` if it was carried out already.

    Call it inside the route's write transaction, after the form's checks and just before it writes, so that the
    claim and the write are kept or dropped together. Fingerprints older than `KEPT` are removed on the way.
    """
    if not form.get(FIELD):
        return
    now = utcnow()
    session.execute(delete(SentForm).where(SentForm.sent_at < now - KEPT))
    try:
        with session.begin_nested():
            session.add(SentForm(fingerprint=fingerprint(username, path, form), sent_at=now))
    except IntegrityError:
        raise SentAlready(location) from None
