// Drag-and-drop upload with a progress bar; the plain form still works without JavaScript.
(function () {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const zone = document.getElementById("dropzone");
  const input = document.getElementById("file-input");
  const list = document.getElementById("dz-files");
  const bar = form.querySelector(".upload-bar");

  function describe(files) {
    const total = Array.from(files).reduce((sum, f) => sum + f.size, 0);
    list.textContent = files.length ? `${files.length} file(s), ${(total / 1048576).toFixed(1)} MB ready to upload` : "";
  }
  input.addEventListener("change", () => describe(input.files));
  ["dragenter", "dragover"].forEach((type) =>
    zone.addEventListener(type, (event) => { event.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach((type) =>
    zone.addEventListener(type, (event) => { event.preventDefault(); zone.classList.remove("over"); }));
  zone.addEventListener("drop", (event) => {
    input.files = event.dataTransfer.files;
    describe(input.files);
    send();
  });
  form.addEventListener("submit", (event) => { event.preventDefault(); send(); });

  function send() {
    if (!input.files.length) { input.click(); return; }
    const request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.setRequestHeader("Accept", "application/json");
    bar.hidden = false;
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) bar.firstElementChild.style.width = `${(100 * event.loaded) / event.total}%`;
    });
    // Messages for accepted and refused files are rendered by the page after the reload.
    request.addEventListener("loadend", () => window.location.reload());
    request.send(new FormData(form));
  }
})();
