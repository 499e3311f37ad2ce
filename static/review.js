// Reviewing pictures: the before/after wipe, a full-size lightbox, and copy-to-clipboard for share links.
// Pages stay usable without it: the comparison then shows both halves and pictures open as plain links.
(function () {
  function setSplit(stage, value) {
    stage.style.setProperty("--split", `${value}%`);
  }

  document.querySelectorAll(".compare-stage").forEach((stage) => {
    const range = stage.querySelector(".compare-range");
    range.addEventListener("input", () => setSplit(stage, range.value));
  });

  document.querySelectorAll(".compare").forEach((box) => {
    box.querySelectorAll("[data-compare-mode]").forEach((button) => {
      button.addEventListener("click", () => {
        box.dataset.mode = button.dataset.compareMode;
        box.querySelectorAll("[data-compare-mode]").forEach((other) =>
          other.setAttribute("aria-pressed", String(other === button)));
      });
    });
  });

  // Full size: the picture at its own pixels in a dialog that scrolls; Esc or a click outside closes it.
  let lightbox = null;
  function openLightbox(src, caption) {
    if (!lightbox) {
      lightbox = document.createElement("dialog");
      lightbox.id = "lightbox";
      lightbox.innerHTML =
        '<div class="lightbox-bar"><span class="lightbox-caption"></span>' +
        '<a class="lightbox-open" target="_blank" rel="noopener">Open in a new tab</a>' +
        '<button type="button" class="lightbox-close" aria-label="Close">✕</button></div>' +
        '<div class="lightbox-body"><img alt=""></div>';
      document.body.appendChild(lightbox);
      lightbox.querySelector(".lightbox-close").addEventListener("click", () => lightbox.close());
      lightbox.addEventListener("click", (event) => { if (event.target === lightbox) lightbox.close(); });
    }
    lightbox.querySelector("img").src = src;
    lightbox.querySelector("img").alt = caption || "";
    lightbox.querySelector(".lightbox-caption").textContent = caption || "";
    const open = lightbox.querySelector(".lightbox-open");
    open.hidden = src.startsWith("data:");  // browsers refuse to open data: URLs in a tab
    open.href = src;
    lightbox.showModal();
  }
  document.addEventListener("click", (event) => {
    const picture = event.target.closest("[data-full]");
    if (!picture) return;
    event.preventDefault();
    openLightbox(picture.dataset.full, picture.dataset.caption);
  });

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const field = document.getElementById(button.dataset.copy);
    field.select();
    try {
      await navigator.clipboard.writeText(field.value);
    } catch (error) {
      document.execCommand("copy");  // http:// origins other than localhost have no clipboard API
    }
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = "Copy"; }, 2000);
  });
})();
