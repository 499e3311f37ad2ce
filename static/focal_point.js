// The subject chooser: a click on the picture becomes x and y (0..1 of the picture) and submits the form,
// which carries the CSRF token; the server answers with the campaign page and a message.
(function () {
  "use strict";
  document.querySelectorAll("[data-focal-chooser]").forEach(function (form) {
    var picture = form.querySelector(".focal-picture img");
    var marker = form.querySelector(".focal-marker");
    picture.addEventListener("click", function (event) {
      var box = picture.getBoundingClientRect();
      var x = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
      var y = Math.min(1, Math.max(0, (event.clientY - box.top) / box.height));
      form.elements.x.value = x.toFixed(4);
      form.elements.y.value = y.toFixed(4);
      marker.style.left = x * 100 + "%";
      marker.style.top = y * 100 + "%";
      marker.hidden = false;
      form.querySelector("[data-focal-status]").textContent = "Saving…";
      form.submit();
    });
  });
})();
