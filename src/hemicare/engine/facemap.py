"""Draw the toxin dose plan on a face diagram (SVG), seen from the front as the injector faces the patient.

The patient's right side is on the viewer's left. Labels say so, so the drawing is never read mirror-wise.
"""

from __future__ import annotations

from html import escape

from hemicare.engine.toxin import UNVERIFIED_DOSE, ToxinPlan

_HEIGHT = 540


def _face() -> list[str]:
    return [
        '<ellipse cx="200" cy="250" rx="140" ry="185" fill="#fdf1e6" stroke="#8a6d5a" stroke-width="2"/>',
        '<path d="M150 430 L145 520 M250 430 L255 520" stroke="#8a6d5a" stroke-width="2" fill="none"/>',
        '<path d="M105 168 Q140 150 175 166" stroke="#6b4f3a" stroke-width="4" fill="none"/>',
        '<path d="M225 166 Q260 150 295 168" stroke="#6b4f3a" stroke-width="4" fill="none"/>',
        '<ellipse cx="140" cy="200" rx="30" ry="12" fill="#ffffff" stroke="#6b4f3a" stroke-width="1.5"/>',
        '<ellipse cx="260" cy="200" rx="30" ry="12" fill="#ffffff" stroke="#6b4f3a" stroke-width="1.5"/>',
        '<circle cx="140" cy="200" r="6" fill="#4a6b8a"/><circle cx="260" cy="200" r="6" fill="#4a6b8a"/>',
        '<path d="M200 210 L186 292 Q200 302 214 292" stroke="#8a6d5a" stroke-width="1.5" fill="none"/>',
        '<path d="M158 345 Q200 368 242 345" stroke="#a0524d" stroke-width="3" fill="none"/>',
    ]


def face_map_svg(plan: ToxinPlan, *, patient_id: str) -> str:
    """The SVG document: one marker per injection site with its units, crosses where not to inject."""
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 400 {_HEIGHT}" width="400" height="{_HEIGHT}" '
        f'role="img" aria-label="Botulinum toxin dose map for {escape(patient_id)}" font-family="sans-serif">',
        f"<title>Toxin dose map, {escape(patient_id)}: {escape(plan.brand)} ({escape(plan.product)}), "
        f"{plan.total_units:g} U in total</title>",
        f'<rect width="400" height="{_HEIGHT}" fill="#ffffff"/>',
        *_face(),
        '<text x="12" y="24" font-size="13" font-weight="bold" fill="#333">Patient\'s RIGHT</text>',
        '<text x="388" y="24" font-size="13" font-weight="bold" fill="#333" text-anchor="end">Patient\'s LEFT</text>',
        f'<text x="200" y="44" font-size="12" fill="#333" text-anchor="middle">{escape(plan.brand)} '
        f"({escape(plan.product)}), total {plan.total_units:g} U</text>",
    ]
    for zone in plan.avoid:
        x, y = zone.x, zone.y
        parts.append(
            f'<g class="avoid" data-zone="{escape(zone.id)}" data-side="{zone.side}">'
            f"<title>Avoid: {escape(zone.label)}. {escape(zone.reason)}</title>"
            f'<path d="M{x - 5} {y - 5} L{x + 5} {y + 5} M{x - 5} {y + 5} L{x + 5} {y - 5}" '
            f'stroke="#c0392b" stroke-width="2"/></g>'
        )
    for site in plan.sites:
        leftwards = (site.x < 200) == (site.label_side == "outer")
        anchor = "end" if leftwards else "start"
        tx = site.x - 10 if leftwards else site.x + 10
        mark, said = ("*", f" ({UNVERIFIED_DOSE})") if site.unverified else ("", "")
        parts.append(
            f'<g class="site" data-site="{escape(site.site)}" data-side="{site.side}" data-units="{site.units:g}">'
            f"<title>{escape(site.label)} ({site.side}): {site.units:g} U{said}</title>"
            f'<circle cx="{site.x}" cy="{site.y}" r="6" fill="#2e86c1" stroke="#1b4f72" stroke-width="1.5"/>'
            f'<text x="{tx}" y="{site.y + 4}" font-size="11" fill="#1b4f72" text-anchor="{anchor}">'
            f"{site.units:g} U{mark}</text></g>"
        )
    legend = "Blue: injection site with units. Red cross: do not inject."
    if any(site.unverified for site in plan.sites):
        legend = f"Blue: site with units (*: {UNVERIFIED_DOSE}). Red cross: do not inject."
    parts.append(f'<text x="200" y="{_HEIGHT - 8}" font-size="10" fill="#666" text-anchor="middle">{legend}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
