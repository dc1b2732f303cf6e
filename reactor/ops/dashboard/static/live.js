// reactor dashboard: live regions and confirmations, htmx-style, with no build step.
// An element with data-live="URL" is refreshed every data-every ms with the HTML at URL.
// A form with data-confirm="question" is submitted only once the question is confirmed.
(function () {
  "use strict";
  function refresh(el) {
    if (document.hidden) return;
    fetch(el.dataset.live, { headers: { "X-Live": "1" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html !== null && html !== el.dataset.last) {
          el.innerHTML = html;
          el.dataset.last = html;
        }
        el.dataset.refreshed = String(Date.now());
      })
      .catch(function () { /* the server may be restarting: try again next time */ });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(function (el) {
      setInterval(function () { refresh(el); }, Number(el.dataset.every || 2000));
    });
  });
  document.addEventListener("submit", function (event) {
    var question = event.target.dataset && event.target.dataset.confirm;
    if (question && !window.confirm(question)) event.preventDefault();
  });
})();
