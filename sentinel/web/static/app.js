// Live pages without a framework: the fleet grid repaints from /fleet.json; other pages swap
// their [data-live] regions for the same regions of a fresh render. Every 5 s, paused while the
// tab is hidden or the user is typing in a form.
(function () {
  "use strict";
  var PERIOD_MS = 5000;
  var mode = document.body.dataset.poll;
  if (!mode) return;
  var live = document.getElementById("live");

  function stamp(ok) {
    if (!live) return;
    live.classList.toggle("stale", !ok);
    live.textContent = (ok ? "live · " : "not updating · ") + new Date().toISOString().slice(11, 19) + " UTC";
  }

  function typing() {
    var a = document.activeElement;
    return a && (a.tagName === "INPUT" || a.tagName === "TEXTAREA");
  }

  function fleet() {
    return fetch("/fleet.json" + location.search, { credentials: "same-origin" })
      .then(function (r) { if (!r.ok || r.redirected) throw new Error(r.status); return r.json(); })
      .then(function (data) {
        var known = document.getElementById("active");
        if (known && known.dataset.incidents !== data.incidents.join(",")) {
          location.reload();
          return;
        }
        if (data.triage) {
          Object.keys(data.triage).forEach(function (k) {
            // The header shows the lag too, where this replica leads.
            document.querySelectorAll('[data-triage="' + k + '"]').forEach(function (b) {
              b.textContent = k === "lag_s" ? data.triage[k].toFixed(1) : data.triage[k];
            });
          });
        }
        Object.keys(data.counts).forEach(function (s) {
          var tile = document.querySelector('[data-count="' + s + '"] b');
          if (tile) tile.textContent = data.counts[s];
        });
        var blocks = document.querySelectorAll("#grid .hb");
        for (var i = 0; i < blocks.length; i++) {
          var el = blocks[i], h = data.hosts[el.dataset.h];
          if (!h) continue;
          var cells = el.children;
          for (var c = 0; c < cells.length && c < h[0].length; c++) {
            if (cells[c].className !== h[0][c]) cells[c].className = h[0][c];
          }
          el.classList.toggle("cul", h[3]);
          el.title = el.dataset.h + " · " + h[1] + (h[2] ? ": " + h[2] : "");
        }
      });
  }

  function page() {
    return fetch(location.href, { credentials: "same-origin" })
      .then(function (r) { if (!r.ok || r.redirected) throw new Error(r.status); return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        doc.querySelectorAll("[data-live]").forEach(function (fresh) {
          var old = document.getElementById(fresh.id);
          if (old) old.replaceWith(document.importNode(fresh, true));
        });
      });
  }

  function tick() {
    if (document.hidden || typing()) return;
    (mode === "fleet" ? fleet() : page()).then(function () { stamp(true); }, function () { stamp(false); });
  }

  setInterval(tick, PERIOD_MS);
})();
