// Recipe preview: send the change form as it is now (unsaved) to the preview view and show what comes back.
(function () {
  const button = document.getElementById("preview-button");
  if (!button) return;
  const form = button.closest("form");
  const results = document.getElementById("preview-results");
  button.addEventListener("click", async () => {
    const data = new FormData(form);
    data.set("_preview_recipe", button.dataset.recipe);
    button.disabled = true;
    results.innerHTML = '<p class="preview-busy">Rendering every output…</p>';
    try {
      const response = await fetch(button.dataset.url, { method: "POST", body: data, credentials: "same-origin" });
      results.innerHTML = await response.text();
    } catch (error) {
      results.textContent = `The preview could not be made: ${error}`;
    } finally {
      button.disabled = false;
    }
  });
})();
