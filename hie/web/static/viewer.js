// Progressive enhancement only: every page works without this file.
// The timeline's facility filter applies at once when changed (without script: the form's button).
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("timeline-filter");
  if (!form) return;
  var select = form.querySelector("select");
  var button = form.querySelector("button");
  if (button) button.hidden = true;
  select.addEventListener("change", function () { form.submit(); });
});
