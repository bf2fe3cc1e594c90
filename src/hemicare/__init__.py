"""HemiCare: evidence-graded, safety-checked care planning for hemifacial spasm."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
