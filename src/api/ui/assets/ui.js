// Copy buttons for the registry's web UI: a button with data-copy="ID" copies the value
// (or text) of the element with that id. Everything else works without this script.
"use strict";
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source) return;
  const text = source.value !== undefined ? source.value : source.textContent;
  const status = button.parentElement.querySelector(".copied");
  try {
    await navigator.clipboard.writeText(text);
  } catch (_) {
    // Without the clipboard API (plain HTTP on another host), select it for Ctrl+C.
    source.focus();
    if (source.select) source.select();
    if (status) status.textContent = "Press Ctrl+C to copy";
    return;
  }
  if (status) status.textContent = "Copied";
});
