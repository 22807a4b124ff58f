// hearth status page. The page is complete without this file; with it, the figures follow
// /api/v1/status every 10 s, and <main> is fetched again (words, warnings, chart) when the
// server's state changes and once a minute. No inline script: the page's CSP forbids it.
(function () {
  "use strict";
  var root = document.documentElement;
  var lang = root.lang || "en";
  var ticks = 0;

  function num(v, digits) {
    return new Intl.NumberFormat(lang, {
      minimumFractionDigits: digits, maximumFractionDigits: digits, useGrouping: false
    }).format(v);
  }

  function set(name, text) {
    var els = document.querySelectorAll('[data-field="' + name + '"]');
    for (var i = 0; i < els.length; i++) els[i].textContent = text;
  }

  function stamp() {
    set("updated", new Date().toLocaleTimeString(lang, { hourCycle: "h23" }));
  }

  function update(s) {
    set("watts", s.power.watts == null ? "\u2013" : num(s.power.watts, 2));
    if (s.power.volts != null) set("volts", num(s.power.volts, 2));
    set("today", num(s.energy.today_wh / 1000, 3));
    set("month", num(s.energy.month_wh / 1000, 3));
    var cost = document.querySelector('[data-field="cost"]');
    if (cost) {
      var kwh = s.energy.month_wh / 1000;
      cost.textContent = new Intl.NumberFormat(lang, {
        style: "currency", currency: cost.dataset.currency, useGrouping: false
      }).format(kwh * Number(cost.dataset.tariff));
    }
  }

  function reloadMain() {
    return fetch(location.pathname, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("main");
        var old = document.getElementById("main");
        if (fresh && old) old.replaceWith(document.adoptNode(fresh));
      });
  }

  function live(ok) {
    root.dataset.live = ok ? "on" : "offline";
    var banner = document.getElementById("offline");
    if (banner) banner.hidden = ok;
  }

  function tick() {
    if (document.hidden) return;
    ticks += 1;
    fetch("/api/v1/status", { cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (s) {
        var main = document.getElementById("main");
        var sig = [s.health.state, s.health.reason, s.power.sensor, s.led].join("|");
        // Only pages that carry the state's signature follow it; others stay as they are.
        if (main && main.dataset.sig && (main.dataset.sig !== sig || ticks % 6 === 0)) {
          return reloadMain().then(function () { stamp(); live(true); });
        }
        update(s);
        stamp();
        live(true);
      })
      .catch(function () { live(false); });
  }

  tick();
  setInterval(tick, 10000);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) tick(); });
})();

// The audit log's seal (/audit): this browser remembers the newest seal it saw here and, on the
// next visit, asks the box whether its log still holds that seal at that place. A log rewritten
// or cut off since (by whoever can write the box's database) no longer does: the page says so.
(function () {
  "use strict";
  var head = document.querySelector("[data-audit-head]");
  if (!head || !window.localStorage) return;
  var KEY = "hearth.audit.seen";
  function parse(s) {
    var m = /^(\d+):([0-9a-f]{64})$/.exec(s || "");
    return m ? { seq: Number(m[1]), hash: m[2], text: s } : null;
  }
  var now = parse(head.getAttribute("data-audit-head"));
  var seen = parse(localStorage.getItem(KEY));
  function warn() {
    document.getElementById("head-seen").textContent = seen.text;
    document.getElementById("head-warning").hidden = false;
  }
  function remember() { localStorage.setItem(KEY, now.text); }
  if (!now) return;
  if (!seen) { remember(); return; }
  if (seen.seq > now.seq || (seen.seq === now.seq && seen.hash !== now.hash)) { warn(); return; }
  if (seen.seq === now.seq) return;
  fetch("/api/v1/audit/hash?seq=" + seen.seq, { credentials: "same-origin" })
    .then(function (r) {
      if (r.status === 404) return null;
      return r.ok ? r.json() : Promise.reject(r.status);
    })
    .then(function (j) {
      if (j && j.hash === seen.hash) remember(); else warn();
    })
    .catch(function () { /* not answered: check again on the next visit */ });
})();

// The recovery key's page (/backup/key): its Print button (no inline script under the CSP).
(function () {
  "use strict";
  var b = document.getElementById("print-key");
  if (b) b.addEventListener("click", function () { window.print(); });
})();
