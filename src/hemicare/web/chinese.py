"""Chinese in HemiCare's pages and PDFs: the names of TCM patterns, points, formulas and herbs."""

from __future__ import annotations

import re

from markupsafe import Markup, escape

HAN = "[\u2e80-\u9fff\uf900-\ufaff]+"  # a run of Chinese characters
# Names side by side ("肝阳上亢 / 肝风内动") are one run.
_RUN = re.compile(rf"{HAN}(?:[ /]+{HAN})*")


def mark_chinese(text: object) -> Markup:
    """``text`` escaped, with each run of Chinese characters in a span that says it is Chinese (the knowledge base's
    simplified characters): a screen reader then reads it as Chinese instead of spelling it out in English, and the
    browser takes Chinese glyphs for it (WCAG 2.1, 3.1.2 Language of Parts)."""
    escaped = str(escape(text))  # Chinese characters are left as they are; the span goes round them only
    return Markup(_RUN.sub(lambda run: f'<span lang="zh-Hans">{run.group(0)}</span>', escaped))
