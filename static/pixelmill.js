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

  // A problem with the whole upload (too large, out-of-date page, broken connection) is shown beside the form.
  const problem = document.createElement("p");
  problem.className = "upload-problem error-text";
  problem.setAttribute("role", "alert");
  problem.hidden = true;
  form.append(problem);
  function fail(message) {
    bar.hidden = true;
    problem.textContent = message;
    problem.hidden = false;
  }

  function send() {
    if (!input.files.length) { input.click(); return; }
    const request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.setRequestHeader("Accept", "application/json");
    problem.hidden = true;
    bar.hidden = false;
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) bar.firstElementChild.style.width = `${(100 * event.loaded) / event.total}%`;
    });
    request.addEventListener("load", () => {
      let answer = null;
      try { answer = JSON.parse(request.responseText); } catch (error) { answer = null; }
      // Every file's result is kept by the server and shown by the page until dismissed; the reload also
      // brings the new images into the gallery.
      if (answer && answer.counts) { window.location.reload(); return; }
      if (answer && answer.error) { fail(answer.error); return; }
      if (request.responseURL.includes("/login/")) { fail("You were logged out. Log in again, then upload."); return; }
      fail(`The upload failed (HTTP ${request.status} ${request.statusText}). Reload the page to see what arrived, then try again.`);
    });
    request.addEventListener("error", () =>
      fail("The connection broke before the server answered. Reload the page to see what arrived, then try again."));
    request.send(new FormData(form));
  }
})();
