// Progressive enhancement only: every page works without this file.
// Auto-refresh of pages that ask for it (data-refresh="seconds"), unless the reader turned
// it off (remembered), or is typing in a form, or has text selected.
(function () {
  var seconds = parseInt(document.body.dataset.refresh || "0", 10);
  var box = document.getElementById("auto-refresh");
  if (!seconds || !box) return;
  box.parentElement.hidden = false;
  box.checked = localStorage.getItem("durable-auto-refresh") !== "off";
  box.addEventListener("change", function () {
    localStorage.setItem("durable-auto-refresh", box.checked ? "on" : "off");
  });
  setInterval(function () {
    var busy = document.activeElement && /INPUT|SELECT|TEXTAREA/.test(document.activeElement.tagName);
    var selecting = String(window.getSelection ? window.getSelection() : "").length > 0;
    var reading = document.querySelector("details[open]");
    if (box.checked && !busy && !selecting && !reading) window.location.reload();
  }, seconds * 1000);
})();
