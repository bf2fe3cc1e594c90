"""Server-rendered pages: plain HTML forms that work without JavaScript.

Clinicians: patient list, patient page (plan, decision aid, face map, history, outcome chart), assessment form,
sign-off, recording sessions. Patients: their diary, the HFS-7, their plan in plain language, what is next.
Every view of a patient record is written to the audit trail.
"""

from __future__ import annotations

from fastapi import APIRouter

from hemicare.web.pages import clinic, portal, record, site

# In this order: /patients/new (clinic) must be matched before /patients/{code} (record).
ROUTERS = [module.router for module in (site, clinic, record, portal)]
router = APIRouter(include_in_schema=False)
for part in ROUTERS:
    router.include_router(part)
