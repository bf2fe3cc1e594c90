"""The web application: clinicians' and patients' pages and the JSON API."""

from __future__ import annotations

from hemicare.web.app import create_app

__all__ = ["create_app"]
