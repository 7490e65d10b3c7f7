// storeops inbox: small progressive touches; every page works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // Times: show ISO instants in the browser's own time zone.
  document.querySelectorAll("time[datetime]").forEach(function (el) {
    var moment = new Date(el.getAttribute("datetime"));
    if (!isNaN(moment)) {
      el.title = el.textContent;
      el.textContent = moment.toLocaleString(document.documentElement.lang || undefined, {
        year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit"
      });
    }
  });
  // Date-times typed in a form are local: tell the server the zone they are in.
  document.querySelectorAll("input[data-tz]").forEach(function (el) {
    el.value = String(new Date().getTimezoneOffset());
  });
  // One submission per form: a double click sends once (the ledger keeps one winner anyway).
  document.querySelectorAll("form[data-once]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (form.dataset.sent) { event.preventDefault(); return; }
      form.dataset.sent = "1";
      window.setTimeout(function () {
        form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; });
      }, 0);
    });
  });
});
