"""Accessibility, checked in a real browser: every page of every role, and every form as the server gives it back
refused, run through axe-core (the WCAG 2 A/AA rules and its best practices) in Chromium against a real server with
the demo clinic. Clinicians work on shared screens and patients with HFS read with one eye often closing: text must
keep its contrast, and a screen reader must say what each field is and what is wrong with it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any

import pytest
import yaml

from .browser import add_user, hemicare, needs_chromium, served, sign_in
from .conftest import EXAMPLES

pytestmark = needs_chromium

PHONE = {"width": 390, "height": 844}
DESK = {"width": 1280, "height": 900}


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = f"sqlite:///{tmp_path_factory.mktemp('a11y') / 'a11y.db'}"
    hemicare("demo", "--patients", "0", db=db)
    for username, role in (
        ("dr.neuro", "neurologist"),
        ("dr.surg", "neurosurgeon"),
        ("tcm.li", "tcm_practitioner"),
        ("admin", "admin"),
    ):
        add_user(db, username, role)
    add_user(db, "pat", "patient", patient="demo-001")
    # A patient whose assessment came through the command line with what the assessment form has no field for.
    hemicare("patients", "add", "--code", "kept-001", "--name", "Kept History", "--sex", "female", db=db)
    assessment = yaml.safe_load((EXAMPLES / "demo-001.yaml").read_text()) | {"id": "kept-001", "hfs30": [1] * 30}
    assessment["history"]["botulinum_sessions"] = [
        {"date": "2025-03-01", "product": "onabotulinumtoxinA", "total_units": 20}
    ]
    written = tmp_path_factory.mktemp("kept") / "kept-001.yaml"
    written.write_text(yaml.safe_dump(assessment))
    hemicare("plan", str(written), "--save", db=db)
    # demo-001 takes a medicine and a herbal prescription now: the forms name them, the history rows can stop them and
    # the patient's own page lists them.
    today = dt.date.today().isoformat()
    for name, details in (
        ("medicine", {"kind": "medicine", "medicine": "baclofen", "dose": "5 mg at night", "override_reason": "a11y"}),
        ("herbal", {"kind": "herbal", "herbs": [{"latin": "Tian Ma", "dose_g": 9}], "duration_days": 14}),
    ):
        given = tmp_path_factory.mktemp(name) / f"{name}.yaml"
        given.write_text(yaml.safe_dump({"date": today, "clinician": "A11y", "details": details}))
        hemicare("sessions", "add", "demo-001", str(given), db=db)
    with served(db) as base:
        yield base


def _axe_source() -> str:
    return (resources.files("axe_playwright_python") / "axe.min.js").read_text(encoding="utf-8")


def _violations(page: Any) -> list[str]:
    """axe-core's violations on the page as it is now, a line each (rule, impact, first places)."""
    page.evaluate(_axe_source())  # through the debugging protocol: the page's CSP stays as served
    found = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[node['target'] for node in v['nodes'][:3]]}"
        + (f": {v['nodes'][0].get('failureSummary', '')}" if v["nodes"] else "")
        for v in found
    ]


def _refuse(form: str, fill: Callable[[Any], None], submit: str) -> Callable[[Any], None]:
    """Fill ``form`` wrongly and send it past the browser's own checks, so the server's answer is what is checked."""

    def act(page: Any) -> None:
        page.eval_on_selector(form, "form => { form.noValidate = true }")
        fill(page)
        page.click(submit)
        page.wait_for_load_state()

    return act


def _first_dose(page: Any) -> None:
    page.locator("input[name^='units.']").first.fill("999")


def _open_removal(section: str) -> Callable[[Any], None]:
    """Unfold ``section`` and its first record's removal form, and give a reason too short to keep."""

    def fill(page: Any) -> None:
        page.click(f"{section} > summary")
        page.locator(f"{section} details.why > summary").first.click()
        page.locator(f"{section} details.why input[name=reason]").first.fill("x")

    return fill


def _open_session_removal(page: Any) -> None:
    """Unfold the first treatment-history row's removal form, and give a reason too short to keep."""
    page.locator("table.history details.why > summary").first.click()
    page.locator("table.history details.why input[name=reason]").first.fill("x")


def _open_closing(page: Any) -> None:
    """Unfold the first due recall's closing form and give a reason too short to keep."""
    page.locator(".due-item details.why > summary").first.click()
    page.locator(".due-item details.why input[name=reason]").first.fill("x")


# (who, viewport, address, what is done there first)
PAGES: dict[str, tuple[str | None, dict[str, int], str, Callable[[Any], None] | None]] = {
    "sign-in": (None, DESK, "/login", None),
    "patient list": ("dr.neuro", DESK, "/patients", None),
    "patient list, nobody found": ("dr.neuro", DESK, "/patients?q=nobody-of-this-name", None),
    "due list": ("dr.neuro", DESK, "/due", None),
    "patient page (neurologist)": ("dr.neuro", DESK, "/patients/demo-001", None),
    "patient page (neurosurgeon)": ("dr.surg", DESK, "/patients/demo-001", None),
    "patient page (TCM practitioner)": ("tcm.li", DESK, "/patients/demo-001", None),
    "patient page on a tablet": ("dr.neuro", {"width": 768, "height": 1024}, "/patients/demo-002", None),
    "plan version": ("dr.neuro", DESK, "/patients/demo-001/plans/1", None),
    "assessment form": ("dr.neuro", DESK, "/patients/demo-001/assessment", None),
    "assessment form keeping history": ("dr.neuro", DESK, "/patients/kept-001/assessment", None),
    "new patient form": ("dr.neuro", DESK, "/patients/new", None),
    "patient edit form": ("dr.neuro", DESK, "/patients/demo-001/edit", None),
    "account": ("dr.neuro", DESK, "/account", None),
    "API reference": ("dr.neuro", DESK, "/api/v1/docs", None),
    "not found": ("dr.neuro", DESK, "/patients/nobody", None),
    "patient's own page on a phone": ("pat", PHONE, "/me", None),
    "HFS-7 on a phone": ("pat", PHONE, "/me/hfs7", None),
    "users (admin)": ("admin", DESK, "/admin", None),
    "audit trail (admin)": ("admin", DESK, "/admin/audit", None),
    "sign-in refused": (
        None, DESK, "/login", _refuse("form[action='/login']", lambda p: p.fill("#username", "nobody"), "#sign-in"),
    ),
    "new patient refused": ("dr.neuro", DESK, "/patients/new", _refuse("form.card", lambda p: None, "#add-patient")),
    "assessment refused": (
        "dr.neuro", DESK, "/patients/demo-001/assessment",
        _refuse("form[action$='/assessment']", lambda p: p.fill("#f-age", "250"), "#save-assessment"),
    ),
    "patient edit refused": (
        "dr.neuro", DESK, "/patients/demo-001/edit",
        _refuse("form.card", lambda p: p.fill("#name", ""), "#save-patient"),
    ),
    "toxin session refused": (
        "dr.neuro", DESK, "/patients/demo-001", _refuse("#toxin-form", _first_dose, "#record-toxin"),
    ),
    "operation refused": (
        "dr.surg", DESK, "/patients/demo-001",
        _refuse("#mvd-form", lambda p: p.fill("#mvd-date", "2999-01-01"), "#record-mvd"),
    ),
    "acupuncture session refused": (
        "tcm.li", DESK, "/patients/demo-001",
        _refuse(
            "form[action$='/sessions/acupuncture']",
            lambda p: [box.uncheck() for box in p.locator("input[name=points]").all()],
            "form[action$='/sessions/acupuncture'] button[type=submit]",
        ),
    ),
    "prescription refused": (
        "tcm.li", DESK, "/patients/demo-001",
        _refuse("#herbal-form", lambda p: p.fill("input[name='added.0.latin']", "Scorpio"), "#record-herbal"),
    ),
    "paper HFS-7 refused": (
        "dr.neuro", DESK, "/patients/demo-001",
        _refuse("#hfs7-form", lambda p: p.click("#hfs7-paper > summary"), "#record-hfs7"),
    ),
    "paper HFS-30 refused": (
        "dr.neuro", DESK, "/patients/demo-001",
        _refuse("#hfs30-form", lambda p: p.click("#hfs7-paper > summary"), "#record-hfs30"),
    ),
    "paper HFS-30 by subscale refused": (
        "dr.neuro", DESK, "/patients/demo-001",
        _refuse("#hfs30-subscales-form", lambda p: p.click("#hfs7-paper > summary"), "#record-hfs30-subscales"),
    ),
    "outcome refused": (
        "dr.neuro", DESK, "/patients/demo-001",
        _refuse(
            "form.outcome:has(input[name=stopped])",
            lambda p: p.fill("form.outcome input[name=stopped]", "2001-01-01"),
            "form.outcome:has(input[name=stopped]) button[type=submit]",
        ),
    ),
    "session removal refused": (
        "dr.neuro", DESK, "/patients/demo-001",
        _refuse(
            "table.history details.why form", _open_session_removal, "table.history details.why button[type=submit]"
        ),
    ),
    "grades refused": (
        "dr.surg", DESK, "/patients/demo-001",
        _refuse("#grades-form", lambda p: p.click("#grades > summary"), "#record-grades"),
    ),
    "grades removal refused": (
        "dr.neuro", DESK, "/patients/demo-001",
        _refuse("#grades details.why form", _open_removal("#grades"), "#grades details.why button[type=submit]"),
    ),
    "answers removal refused on a tablet": (
        "tcm.li", {"width": 768, "height": 1024}, "/patients/demo-001",
        _refuse(
            "#hfs7-paper details.why form", _open_removal("#hfs7-paper"),
            "#hfs7-paper details.why button[type=submit]",
        ),
    ),
    "recall closing refused": (
        "dr.neuro", DESK, "/patients/demo-001",
        _refuse(".due-item details.why form", _open_closing, ".due-item details.why button[type=submit]"),
    ),
    "diary entry refused on a phone": (
        "pat", PHONE, "/me", _refuse("#diary-form", lambda p: p.fill("#spasms", "-3"), "#save-diary"),
    ),
    "HFS-7 refused on a phone": (
        "pat", PHONE, "/me/hfs7", _refuse("form[action='/me/hfs7']", lambda p: None, "#save-hfs7"),
    ),
    "password change refused": (
        "dr.neuro", DESK, "/account",
        _refuse("#password-form", lambda p: p.fill("#current_password", "not it"), "#change-password"),
    ),
    "account refused (admin)": ("admin", DESK, "/admin", _refuse("#add-user", lambda p: None, "#add-account")),
}  # fmt: skip


# What must be on a page for its check to cover it: the notices of prescriptions still taken.
SHOWN = {
    "patient page (neurologist)": "#medicines-running",
    "patient page (TCM practitioner)": "#herbal-running",
    "patient's own page on a phone": "#taking",
}


@pytest.mark.parametrize("name", list(PAGES))
def test_every_page_passes_axe(clinic: str, browser: object, name: str) -> None:
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    user, viewport, address, act = PAGES[name]
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    try:
        if user:
            page.goto(f"{clinic}/login")
            sign_in(page, user)
            page.wait_for_load_state()
        page.goto(clinic + address)
        if act:
            act(page)
            # The server refused it: the page says so, and the check below runs on that answer.
            assert page.locator("[role=alert]").count() >= 1, page.content()[:2000]
        if name in SHOWN:
            assert page.locator(SHOWN[name]).count() == 1, SHOWN[name]
        assert _violations(page) == []
    finally:
        context.close()


def test_a_closed_recall_and_its_reopen_button_pass_axe(clinic: str, browser: object) -> None:
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    context = browser.new_context(viewport=DESK)
    page = context.new_page()
    try:
        page.goto(f"{clinic}/login")
        sign_in(page, "dr.neuro")
        page.goto(f"{clinic}/patients/demo-003")
        page.locator(".due-item details.why > summary").first.click()
        page.locator(".due-item details.why input[name=reason]").first.fill("followed up at another clinic")
        page.locator(".due-item details.why button[type=submit]").first.click()
        page.wait_for_load_state()
        assert page.locator("#closed-recalls").count() == 1 and page.get_by_text("The recall was closed").count() == 1
        assert _violations(page) == []
    finally:
        context.close()


def _described(page: Any) -> dict[str, str]:
    """Each input marked invalid, by name, with the text of what its aria-describedby points to."""
    described: dict[str, str] = page.eval_on_selector_all(
        "[aria-invalid=true]",
        """marked => Object.fromEntries(marked.map(field => [
            field.getAttribute('name') || field.id || field.getAttribute('aria-labelledby'),
            (field.getAttribute('aria-describedby') || '').split(' ').filter(Boolean)
                .map(id => document.getElementById(id)?.textContent.trim() || '').join(' ')]))""",
    )
    return described


def test_a_refused_field_says_what_is_wrong_to_a_screen_reader(clinic: str, browser: object) -> None:
    """A field in error is marked invalid and described by its message: a screen reader says the problem on reaching
    the field, not only in the alert at the top of the form."""
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    page = browser.new_page(viewport=DESK)
    page.goto(f"{clinic}/login")
    sign_in(page, "dr.neuro")
    page.goto(f"{clinic}/patients/new")
    page.fill("#code", "a11y-001")
    page.fill("#birth_year", "1800")
    page.click("#add-patient")
    marked = _described(page)
    assert set(marked) == {"name", "sex", "birth_year"}, marked
    assert "required" in marked["name"] and "required" in marked["sex"], marked
    expect(page.locator("#birth_year")).to_have_accessible_description(re.compile(r"\S"))
    assert "code" not in marked  # a field the server took is not marked

    page.goto(f"{clinic}/patients/demo-001/assessment")
    page.fill("#f-age", "250")
    page.click("#save-assessment")
    expect(page.locator("#f-age")).to_have_accessible_description(re.compile("less than or equal to 120"))
    assert _described(page)["age"] == page.locator("#error-age").text_content()
    # Groups of boxes are named by their heading, which is not a label of any one box.
    expect(page.get_by_role("group", name="Regions involved")).to_have_count(1)
    expect(page.get_by_role("group", name="Pulse")).to_have_count(1)

    page.goto(f"{clinic}/patients/demo-001")
    dose = page.locator("input[name^='units.']").first
    expect(dose).to_have_accessible_name(re.compile(r"^[A-Z][a-z].*, (left|right): units$"))
    page.eval_on_selector("#toxin-form", "form => { form.noValidate = true }")
    dose.fill("999")
    page.click("#record-toxin")
    expect(page.locator("#toxin-problems")).to_be_visible()
    problems = page.locator("#toxin-problems").text_content() or ""
    toxin = _described(page)
    assert toxin and all(text == problems.strip() for text in toxin.values()), toxin
    page.close()


def test_the_accessibility_check_finds_what_it_is_for(clinic: str, browser: object) -> None:
    """The axe check above can fail: a page made worse on purpose (a field without a label, pale text) is caught."""
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    page = browser.new_page(viewport=DESK)
    page.goto(f"{clinic}/login")
    assert _violations(page) == []
    page.eval_on_selector("#username", "box => { box.labels.forEach(label => label.remove()) }")
    page.eval_on_selector("h1", "h => { h.style.color = '#cccccc' }")
    found = " ".join(_violations(page))
    assert "label" in found and "color-contrast" in found, found
    page.close()


def test_the_keyboard_skips_the_header_and_shows_where_it_is(clinic: str, browser: object) -> None:
    """With the keyboard only: the first Tab offers to skip the header's links (shown while focused); taking it, the
    next Tab lands in the page's content; and a focused link or field is visibly marked."""
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    page = browser.new_page(viewport=DESK)
    page.goto(f"{clinic}/login")
    sign_in(page, "pat")
    expect(page.locator("h1")).to_contain_text("Hello")
    skip = page.locator("a.skip")
    assert (skip.bounding_box() or {"x": -1})["x"] < 0  # out of sight until the keyboard reaches it
    page.keyboard.press("Tab")
    expect(skip).to_be_focused()
    box = skip.bounding_box()
    assert box is not None and box["x"] >= 0 and box["y"] >= 0, box
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    inside = page.evaluate("document.querySelector('main').contains(document.activeElement)")
    assert inside, page.evaluate("document.activeElement.outerHTML")
    focused = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert focused not in ("", "none"), focused
    page.close()


REFLOW = {
    "dr.neuro": ["/patients", "/due", "/patients/demo-001", "/patients/demo-001/assessment", "/patients/new"],
    "pat": ["/me", "/me/hfs7"],
    "admin": ["/admin", "/admin/audit"],
}


@pytest.mark.parametrize("user", list(REFLOW))
def test_pages_fit_320_css_pixels_without_scrolling_sideways(clinic: str, browser: object, user: str) -> None:
    """Text enlarged to 400 % on a desktop screen leaves 320 CSS pixels: every page reflows into that width (wide
    tables and the chart scroll inside their own box, which is allowed), so nobody reads a line by scrolling
    sideways (WCAG 2.1, 1.4.10 Reflow)."""
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    context = browser.new_context(viewport={"width": 320, "height": 640})
    page = context.new_page()
    page.goto(f"{clinic}/login")
    assert page.evaluate("document.documentElement.scrollWidth") <= 320
    sign_in(page, user)
    page.wait_for_load_state()
    wide = {}
    for address in REFLOW[user]:
        page.goto(clinic + address)
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > 320:
            wide[address] = width
        # The patient's own lists fit whole: a Remove button scrolled out of sight is one they do not find.
        hidden = page.evaluate(
            "[...document.querySelectorAll('table.diary')].filter(t => t.scrollWidth > t.clientWidth).length"
        )
        if hidden:
            wide[f"{address} table.diary"] = hidden
    context.close()
    assert wide == {}


def test_the_options_side_by_side_read_question_by_question_on_a_phone(clinic: str, browser: object) -> None:
    """Five columns on a phone meant scrolling sideways through each question, losing the options' names. On a
    narrow screen each question is read down the page, every answer under its option's name; on a desk the names
    head the columns and are not repeated in the cells."""
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    seen = {}
    for name, viewport in (("phone", PHONE), ("desk", DESK)):
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        page.goto(f"{clinic}/login")
        sign_in(page, "pat")
        page.wait_for_load_state()
        page.goto(f"{clinic}/me#options")
        seen[name] = page.evaluate(
            """() => { const table = document.querySelector('#options ~ .scroll table.aid');
              const shown = el => el.getClientRects().length > 0;
              const names = [...table.querySelectorAll('tr:nth-child(2) td .aid-option')];
              return { head: shown(table.querySelector('tr.aid-head')),
                       names: names.filter(shown).map(el => el.textContent.trim()),
                       cells: names.length,
                       sideways: table.parentElement.scrollWidth > table.parentElement.clientWidth }; }"""
        )
        context.close()
    columns = seen["desk"]["cells"]
    assert columns >= 2 and seen["phone"]["cells"] == columns
    assert seen["desk"] == {"head": True, "names": [], "cells": columns, "sideways": False}
    assert seen["phone"]["head"] is False and seen["phone"]["sideways"] is False
    assert len(seen["phone"]["names"]) == columns and seen["phone"]["names"][0] == "No treatment (watchful waiting)"


@pytest.mark.parametrize("count", [0, 37, 100])
def test_an_icon_array_shows_as_many_squares_in_the_browser_as_it_says(browser: object, count: int) -> None:
    """The squares are dashes along each row: in Chromium, drawn ten times larger, each square's middle is filled or
    empty as the count says and the gaps between squares stay white."""
    import io

    from PIL import Image
    from playwright.sync_api import Browser

    from hemicare.web.charts import icon_array

    assert isinstance(browser, Browser)
    svg = str(icon_array({"per_100": f"about {count} in 100"})).replace(
        'width="49" height="49"', 'width="490" height="490"'
    )
    page = browser.new_page(viewport={"width": 500, "height": 500})
    page.set_content(f"<body style='margin:0;background:#fff'>{svg}</body>")
    shot = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    page.close()
    filled, wrong = 0, []
    for index in range(100):
        row, column = divmod(index, 10)
        middle = shot.getpixel((column * 50 + 20, row * 50 + 20))
        filled += middle[0] < 100  # the accent colour, not the pale grey of the rest
        if (middle[0] < 100) != (index < count) or middle == (255, 255, 255):
            wrong.append((index, middle))
        if column < 9 and shot.getpixel((column * 50 + 45, row * 50 + 20)) != (255, 255, 255):
            wrong.append((index, "no gap to the right"))
    assert filled == count and wrong == []


def _chinese_outside_chinese(page: Any) -> list[str]:
    """Each piece of text on the page holding Chinese characters that no element marks as Chinese."""
    found: list[str] = page.evaluate(
        """() => { const out = []; const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
          while (walk.nextNode()) { const text = walk.currentNode;
            const lang = text.parentElement.closest('[lang]')?.getAttribute('lang') || '';
            if (/[\\u2e80-\\u9fff\\uf900-\\ufaff]/.test(text.data) && !lang.startsWith('zh'))
              out.push(text.data.trim()); }
          return out; }"""
    )
    return found


def test_chinese_names_are_marked_as_chinese(clinic: str, browser: object) -> None:
    """The pages are in English; the TCM names in Chinese characters (patterns, points, formulas, herbs) are marked
    as Chinese, so a screen reader reads them in Chinese rather than spelling them out (WCAG 2.1, 3.1.2)."""
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    page = browser.new_page(viewport=DESK)
    page.goto(f"{clinic}/login")
    sign_in(page, "tcm.li")
    page.goto(f"{clinic}/patients/demo-001")
    marked = page.locator("[lang=zh-Hans]").count()
    assert marked >= 10, "the TCM practitioner's page names points and herbs in Chinese"
    assert _chinese_outside_chinese(page) == []
    page.goto(f"{clinic}/patients/demo-001/plans/1")
    assert _chinese_outside_chinese(page) == []
    page.evaluate("document.querySelector('[lang=zh-Hans]').removeAttribute('lang')")  # the check can fail
    assert _chinese_outside_chinese(page) != []
    page.close()
