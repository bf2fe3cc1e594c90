// HemiCare's progressive enhancement. Every form works without it; the server checks everything again.
"use strict";

// Sign-off: a status changed from the plan's asks for a reason before the form is sent (the server refuses a change
// without one, and the clinician would lose the other edits on the error page).
function enhanceSignOff(form) {
  for (const select of form.querySelectorAll('select[name^="status."]')) {
    const id = select.name.slice("status.".length);
    const reason = form.querySelector(`input[name="reason.${CSS.escape(id)}"]`);
    if (!reason) continue;
    const original = [...select.options].find((option) => option.defaultSelected)?.value;
    const update = () => {
      const changed = select.value !== original;
      reason.required = changed;
      reason.minLength = changed ? 3 : 0;
      reason.placeholder = changed ? "say why (required)" : "";
      select.closest("tr")?.classList.toggle("changed", changed);
    };
    select.addEventListener("change", update);
    update();
  }
}

// Toxin session: the running total of the units typed, and the face map tied to the dose boxes (a click on a site
// goes to its box; the box being filled lights its site).
function enhanceToxinForm(form) {
  const inputs = [...form.querySelectorAll('input[name^="units."]')];
  const total = document.createElement("output");
  total.id = "toxin-total";
  total.setAttribute("aria-live", "polite");
  inputs.at(-1)?.closest("table")?.after(total);
  const recount = () => {
    let units = 0;
    let sites = 0;
    for (const input of inputs) {
      const value = Number.parseFloat(input.value);
      if (Number.isFinite(value) && value > 0) {
        units += value;
        sites += 1;
      }
    }
    total.textContent = `Total: ${Math.round(units * 100) / 100} U at ${sites} site${sites === 1 ? "" : "s"}`;
  };
  const inputFor = (site, side) => form.querySelector(`input[name="units.${CSS.escape(site)}.${CSS.escape(side)}"]`);
  const markers = [...document.querySelectorAll(".facemap g.site[data-site][data-side]")];
  for (const marker of markers) {
    const input = inputFor(marker.dataset.site, marker.dataset.side);
    if (!input) continue;
    marker.classList.add("linked");
    marker.addEventListener("click", () => input.focus());
    input.addEventListener("focus", () => marker.classList.add("active"));
    input.addEventListener("blur", () => marker.classList.remove("active"));
  }
  form.addEventListener("input", recount);
  recount();
}

// Prescription: of the rows where herbs are written, those filled in and one empty row show; typing in the last one
// shows the next. Without this every row shows.
function enhanceHerbRows(table) {
  const rows = [...table.querySelectorAll("tr")];
  const empty = (row) => [...row.querySelectorAll("input")].every((field) => field.value === "");
  const firstEmpty = rows.findIndex(empty);
  if (firstEmpty < 0) return;
  for (const row of rows.slice(firstEmpty + 1)) row.hidden = empty(row);
  table.addEventListener("input", () => {
    if (rows.some((row) => !row.hidden && empty(row))) return;
    const next = rows.find((row) => row.hidden);
    if (next) next.hidden = false;
  });
}

// Typing counts as use: a signed-in page that is being filled in tells the server so, at most every few minutes,
// so that a long form (an assessment, HFS-30) is not lost to the sign-out after 30 minutes without a request.
function keepAliveWhileTyping() {
  let told = Date.now();
  const tell = () => {
    if (Date.now() - told < Number(document.body.dataset.aliveEvery)) return;
    told = Date.now();
    fetch("/session/alive", { credentials: "same-origin", cache: "no-store" });
  };
  document.addEventListener("input", tell, true);
  document.addEventListener("keydown", tell, true);
}

document.addEventListener("DOMContentLoaded", () => {
  if (document.body.dataset.aliveEvery) keepAliveWhileTyping();
  const signOff = document.querySelector("form#sign-form");
  if (signOff) enhanceSignOff(signOff);
  const toxin = document.querySelector("form#toxin-form");
  if (toxin) enhanceToxinForm(toxin);
  const herbRows = document.querySelector("table#herbal-rows");
  if (herbRows) enhanceHerbRows(herbRows);
});
