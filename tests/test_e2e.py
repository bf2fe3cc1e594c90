"""End to end in a real browser: Debian's Chromium driven by Playwright against a real HemiCare server process.

Sign in, create a patient, enter an assessment with an error and fix it, see the plan, sign it, record a toxin
session on the face map, then, as the patient, add a diary entry and see it on the chart. Three of the forms are sent
with a double click, and stored once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from .browser import add_user, click_twice, hemicare, needs_chromium, served, sign_in
from .conftest import EXAMPLES

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    db = f"sqlite:///{tmp_path_factory.mktemp('e2e') / 'e2e.db'}"
    hemicare("db", "upgrade", db=db)
    add_user(db, "dr.neuro", "neurologist")
    with served(db) as base:
        yield base, db


def test_clinic_workflow_in_a_real_browser(server: tuple[str, str], browser: object, tmp_path: Path) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    base, db = server
    server_url = base
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    # Script errors, refused content (the CSP) and missing files show in the console; the workflow must make none.
    console_errors: list[str] = []
    page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: console_errors.append(str(error)))

    page.goto(f"{server_url}/login")
    sign_in(page, "dr.neuro")
    expect(page.locator("h1")).to_have_text("Patients")

    page.click("text=New patient")
    page.fill("#code", "e2e-001")
    page.fill("#name", "Lena Test")
    page.select_option("#sex", "female")
    page.fill("#birth_year", "1971")
    page.click("#add-patient")
    expect(page.locator("h1")).to_contain_text("Assessment")

    page.fill("#f-age", "250")
    page.fill("#f-duration_months", "30")
    page.check("input[name=regions][value=periocular]")
    page.check("input[name=regions][value=cheek]")
    for finding in ("tonic_spasm", "facial_weakness", "hearing_loss", "facial_numbness", "other_cranial_nerve_deficit"):
        page.select_option(f"#f-findings\\.{finding}", "no")
    page.select_option("#f-findings\\.babinski2_sign", "yes")
    page.select_option("#f-side", "left")
    page.select_option("#f-imaging\\.mri", "done")
    page.select_option("#f-imaging\\.neurovascular_compression", "yes")
    page.select_option("#f-imaging\\.structural_lesion", "no")
    page.select_option("#f-severity\\.smc_grade", "2")
    page.click("#save-assessment")
    expect(page.locator("#form-errors")).to_be_visible()
    expect(page.locator("#error-age")).to_contain_text("less than or equal to 120")
    page.screenshot(path=str(tmp_path / "assessment-error.png"))

    page.fill("#f-age", "55")
    sent = click_twice(page, "#save-assessment")  # an impatient double click stores one assessment, one plan
    expect(page.locator("#plan")).to_contain_text("version 1")
    page.wait_for_load_state("networkidle")
    assert sent() == 2
    expect(page.locator("#rec-botulinum_toxin")).to_contain_text("recommended")
    expect(page.locator("#decision-aid")).to_be_visible()

    expect(page.locator("select[name='status.mvd']")).not_to_have_value("deferred")
    page.select_option("select[name='status.mvd']", "deferred")
    page.click("#sign")  # a changed status without a reason: the browser holds the form back
    expect(page.locator("input[name='reason.mvd']:invalid")).to_have_count(1)
    expect(page.locator("#plan")).to_contain_text("version 1")
    page.fill("input[name='reason.mvd']", "prefers toxin first")
    page.click("#sign")
    expect(page.locator("#plan")).to_contain_text("version 2")
    expect(page.locator("text=conventional: signed by dr.neuro")).to_be_visible()

    # The face map and the dose boxes: the running total starts at the plan's own total, follows the boxes, and a
    # site on the map leads to its box.
    planned = re.search(r"total ([\d.]+) U", page.locator(".facemap svg > text").nth(2).text_content() or "")
    assert planned, "the face map states the planned total"
    expect(page.locator("#toxin-total")).to_contain_text(f"Total: {float(planned.group(1)):g} U")
    marker = page.locator(".facemap g.site").first
    site, side = marker.get_attribute("data-site"), marker.get_attribute("data-side")
    box = page.locator(f"input[name='units.{site}.{side}']")
    before = float(box.input_value() or 0)
    marker.click()
    expect(box).to_be_focused()
    expect(marker).to_have_class(re.compile(r"\bactive\b"))
    box.fill(f"{before + 1:g}")
    expect(page.locator("#toxin-total")).to_contain_text(f"Total: {float(planned.group(1)) + 1:g} U")
    # A slipped decimal point (ten times the dose) comes back with the box marked and the form as typed; put right,
    # the session is recorded.
    box.fill(f"{before * 10:g}")
    page.fill("#lot", "C9911")
    page.fill("#toxin-date", "2026-01-10")
    page.click("#record-toxin")
    expect(page.locator("#toxin-problems")).to_contain_text("is above the per-site ceiling")
    expect(box).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#lot")).to_have_value("C9911")
    page.locator(f"input[name='units.{site}.{side}']").fill(f"{before:g}")
    sent = click_twice(page, "#record-toxin")
    expect(page.locator("#history")).to_be_visible()
    expect(page.locator("table tr").filter(has_text="C9911")).to_have_count(1)
    page.wait_for_load_state("networkidle")
    assert sent() == 2
    page.screenshot(path=str(tmp_path / "patient.png"), full_page=True)
    # On a tablet the clinician's page fits the screen's width; wide tables scroll inside their own box.
    page.set_viewport_size({"width": 768, "height": 1024})
    page.reload()
    assert page.evaluate("document.documentElement.scrollWidth") <= 768
    page.set_viewport_size({"width": 1280, "height": 900})

    # A referral letter to neurosurgery with a question: the form opens the PDF beside the patient's page.
    page.click("#referral summary")
    page.select_option("#referral-to", "neurosurgery")
    page.fill("#referral-question", "Would you consider MVD?")
    letter = page.context.expect_event("response", lambda response: response.url.endswith("/referral.pdf"))
    with page.expect_popup() as opened, letter as answered:
        page.click("#make-referral")
    assert opened.value.url.endswith("/patients/e2e-001/referral.pdf")
    assert answered.value.status == 200 and answered.value.headers["content-type"] == "application/pdf"
    opened.value.close()

    page.click("text=API")  # the API reference: drawn by the server, no outside files (the console check below)
    expect(page.locator("h1")).to_contain_text("HemiCare API")
    expect(page.locator("#schema-Assessment")).to_be_visible()

    page.click("text=Sign out")
    expect(page.locator("h1")).to_have_text("Sign in")

    # The TCM practitioner: a session sent without a point comes back with the notes kept; then it is recorded, is in
    # the history and on the chart's time axis, and the practitioner signs the integrative part.
    add_user(db, "li.tcm", "tcm_practitioner")
    sign_in(page, "li.tcm")
    page.goto(f"{server_url}/patients/e2e-001")
    acupuncture = page.locator("form[action$='/sessions/acupuncture']")
    for box in acupuncture.locator("input[name=points]").all():
        box.uncheck()
    page.fill("#acu-notes", "tolerated well")
    page.fill("#acu-date", "2026-01-12")
    acupuncture.locator("button[type=submit]").click()
    expect(page.locator("#form-errors")).to_contain_text("The acupuncture session was not recorded")
    expect(page.locator("#acupuncture-problems")).to_contain_text("Points: needs at least 1 entry")
    expect(page.locator("#acu-notes")).to_have_value("tolerated well")
    page.check("input[name=points][value=LI4]")
    page.locator("form[action$='/sessions/acupuncture'] button[type=submit]").click()
    expect(page.locator("#history")).to_be_visible()
    expect(page.locator("table tr").filter(has_text="2026-01-12").filter(has_text="acupuncture")).to_contain_text("LI4")
    expect(page.locator("svg.chart g.marker.acupuncture")).to_have_count(1)
    expect(page.locator("svg.chart g.course.acupuncture title")).to_have_text(
        "Acupuncture course: 1 session, 2026-01-12 to 2026-01-12"
    )
    page.click("#sign")
    expect(page.locator("text=integrative: signed by li.tcm")).to_be_visible()
    page.click("text=Sign out")
    expect(page.locator("h1")).to_have_text("Sign in")

    add_user(db, "lena", "patient", patient="e2e-001")
    sign_in(page, "lena")
    expect(page.locator("h1")).to_contain_text("Hello Lena Test")
    expect(page.locator("text=Your plan in plain words")).to_be_visible()
    expect(page.locator("#part-conventional")).to_contain_text("Agreed by your neurologist")
    page.fill("#spasms", "23")
    page.fill("#intensity", "6")
    page.check("input[name=triggers][value=stress]")
    sent = click_twice(page, "#save-diary")
    expect(page.locator("text=Saved. Thank you.")).to_be_visible()
    point = page.locator("svg.chart circle.point.spasms")
    expect(point).to_have_count(1)
    page.wait_for_load_state("networkidle")
    assert sent() == 2
    expect(point.locator("title")).to_contain_text(": 23")
    page.screenshot(path=str(tmp_path / "patient-portal.png"), full_page=True)
    # On a phone the patient's page fits the screen's width: nothing to scroll sideways.
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    expect(page.locator("#save-diary")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    # The diary's Remove button is on screen, not hidden behind a sideways scroll of its table.
    remove = page.locator("table.diary button").first.bounding_box()
    assert remove is not None and remove["x"] + remove["width"] <= 390, remove
    # ... except the chart, which keeps a readable width and scrolls sideways inside its own box.
    chart = page.locator("svg.chart").bounding_box()
    assert chart is not None and chart["width"] >= 500, chart
    page.close()
    # The three errors are the assessment sent with an age of 250, the toxin dose ten times too high and the
    # acupuncture session without a point, on purpose, each answered 422.
    expected = "Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)"
    assert console_errors == [expected] * 3


def test_typing_in_a_long_form_keeps_the_session_alive(server: tuple[str, str], browser: object) -> None:
    """The sign-out after 30 minutes without a request would lose an assessment typed slowly: typing tells the server
    the session is in use, at most every few minutes (here the page is told to tell at once)."""
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    base, _ = server
    page = browser.new_page()
    page.goto(f"{base}/login")
    sign_in(page, "dr.neuro")
    page.goto(f"{base}/patients/new")
    assert page.evaluate("document.body.dataset.aliveEvery") == str(5 * 60 * 1000)
    with page.expect_request(lambda request: request.url == f"{base}/session/alive", timeout=1000) as told:
        page.evaluate("document.body.dataset.aliveEvery = '0'")
        page.fill("#name", "Someone typing slowly")
    answer = told.value.response()
    assert answer is not None and answer.status == 204
    page.close()


def test_a_prescription_shows_one_empty_herb_row_at_a_time(server: tuple[str, str], browser: object) -> None:
    """Where the plan gives no formula the prescription is written herb by herb: of its twelve rows the page shows
    one empty row, and choosing a herb there shows the next; what is chosen is what is stored."""
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    base, db = server
    hemicare("patients", "add", "--code", "demo-002", "--name", "Red Flag", "--sex", "male", db=db)
    hemicare("plan", str(EXAMPLES / "demo-002-red-flags.yaml"), "--save", db=db)  # defers TCM: red flags
    add_user(db, "tcm.rows", "tcm_practitioner")
    page = browser.new_page()
    page.goto(f"{base}/login")
    sign_in(page, "tcm.rows")
    page.goto(f"{base}/patients/demo-002")
    rows = page.locator("#herbal-rows tr")
    expect(rows).to_have_count(12)
    expect(page.locator("#herbal-rows tr:visible")).to_have_count(1)
    expect(page.locator("#herbal-held-back")).to_be_visible()
    page.fill("input[name='added.0.latin']", "Rhizoma Gastrodiae")
    page.fill("input[name='added.0.dose']", "9")
    expect(page.locator("#herbal-rows tr:visible")).to_have_count(2)
    page.fill("input[name='added.1.latin']", "Gou Teng")  # pinyin: kept by its Latin name
    page.fill("input[name='added.1.dose']", "12")
    expect(page.locator("#herbal-rows tr:visible")).to_have_count(3)
    page.fill("#herbal-override", "prescribed while the MRI is awaited, agreed with neurology")
    page.click("#record-herbal")
    page.wait_for_url(re.compile(r"/patients/demo-002#history$"))
    history = page.locator("#history + table")
    expect(history).to_contain_text("Rhizoma Gastrodiae 9 g, Ramulus Uncariae cum Uncis 12 g")
    page.close()
    # Without scripts every row shows, and the form works as plain HTML.
    plain = browser.new_context(java_script_enabled=False)
    page = plain.new_page()
    page.goto(f"{base}/login")
    sign_in(page, "tcm.rows")
    page.goto(f"{base}/patients/demo-002")
    expect(page.locator("#herbal-rows tr:visible")).to_have_count(12)
    plain.close()
