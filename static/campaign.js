// The campaign page: a link into a folded section opens it; the gallery's filters apply as soon as they change.
(function () {
  function reveal() {
    const id = decodeURIComponent(location.hash.slice(1));
    const target = id && document.getElementById(id);
    if (!target) return;
    let folded = false;
    for (let node = target; node; node = node.parentElement) {
      if (node.tagName === "DETAILS" && !node.open) { node.open = true; folded = true; }
    }
    if (folded) target.scrollIntoView();
  }
  reveal();
  window.addEventListener("hashchange", reveal);
  // A second click on the same #link changes no hash, yet its section may have been folded since.
  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[href^='#']");
    if (link && link.hash === location.hash) reveal();
  });

  const filters = document.getElementById("gallery-filters");
  if (!filters) return;
  // "Any" sends nothing, so the address shows only the filters in use.
  filters.addEventListener("submit", () => {
    filters.querySelectorAll("select").forEach((select) => { select.disabled = !select.value; });
  });
  filters.addEventListener("change", () => filters.requestSubmit());
  // Coming back to the page (the back button) shows the selects as they were, enabled.
  window.addEventListener("pageshow", () => filters.querySelectorAll("select").forEach((s) => { s.disabled = false; }));
})();
