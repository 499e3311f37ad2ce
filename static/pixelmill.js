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

  // One request may carry at most data-max-request-bytes and data-max-files; a larger upload goes in batches
  // (sent one after another, their results added up by the server under one upload id). A file over the
  // limit on its own is not sent: its name goes with the first batch, so its refusal is listed too.
  const maxBytes = Number(form.dataset.maxRequestBytes) || Infinity;
  const maxFiles = Number(form.dataset.maxFiles) || 1000;
  const PART_OVERHEAD = 1024; // multipart headers of one file, generously
  function batches(files) {
    const budget = maxBytes * 0.95 - 65536;
    const groups = [];
    const oversized = [];
    let current = [];
    let size = 0;
    for (const file of files) {
      const cost = file.size + PART_OVERHEAD;
      if (cost > budget) { oversized.push(file.name); continue; }
      if (current.length && (size + cost > budget || current.length >= maxFiles)) {
        groups.push(current);
        current = [];
        size = 0;
      }
      current.push(file);
      size += cost;
    }
    if (current.length || !groups.length) groups.push(current);
    return { groups, oversized };
  }

  function post(data, onProgress) {
    return new Promise((resolve) => {
      const request = new XMLHttpRequest();
      request.open("POST", form.action);
      request.setRequestHeader("Accept", "application/json");
      request.upload.addEventListener("progress", (event) => { if (event.lengthComputable) onProgress(event.loaded); });
      request.addEventListener("load", () => {
        let answer = null;
        try { answer = JSON.parse(request.responseText); } catch (error) { answer = null; }
        if (answer && answer.counts) { resolve({ ok: true }); return; }
        if (answer && answer.error) { resolve({ ok: false, message: answer.error }); return; }
        if (request.responseURL.includes("/login/")) { resolve({ ok: false, message: "You were logged out. Log in again, then upload." }); return; }
        resolve({ ok: false, message: `The upload failed (HTTP ${request.status} ${request.statusText}).` });
      });
      request.addEventListener("error", () =>
        resolve({ ok: false, message: "The connection broke before the server answered." }));
      request.send(data);
    });
  }

  async function send() {
    if (!input.files.length) { input.click(); return; }
    const files = Array.from(input.files);
    const { groups, oversized } = batches(files);
    const total = files.reduce((sum, file) => sum + file.size, 0) || 1;
    const upload = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
    const token = form.querySelector("input[name=csrfmiddlewaretoken]").value;
    problem.hidden = true;
    bar.hidden = false;
    let done = 0;
    for (const [index, group] of groups.entries()) {
      const data = new FormData();
      data.append("csrfmiddlewaretoken", token);
      data.append("upload", upload);
      if (index === 0) oversized.forEach((name) => data.append("oversized", name));
      group.forEach((file) => data.append("files", file, file.name));
      const result = await post(data, (loaded) => {
        bar.firstElementChild.style.width = `${(100 * Math.min(total, done + loaded)) / total}%`;
      });
      if (!result.ok) {
        const arrived = index ? ` ${groups.slice(0, index).reduce((n, g) => n + g.length, 0)} of ${files.length} files arrived.` : "";
        fail(`${result.message}${arrived} Reload the page to see what arrived, then try again.`);
        return;
      }
      done += group.reduce((sum, file) => sum + file.size, 0);
    }
    // Every file's result is kept by the server and shown by the page until dismissed; the reload also
    // brings the new images into the gallery.
    window.location.reload();
  }
})();
