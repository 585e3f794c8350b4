/* The dashboard's blocks panel: lists active blocks from the API and lifts them through it
 * (POST api/tracking/blocks/<id>/lift/ with {"reason"}: the same endpoint, permission and audit
 * trail as any API client). No inline code: the page's CSP allows only same-origin files. */
(function () {
  "use strict";

  var panel = document.getElementById("blocks");
  var body = document.getElementById("blocks-body");
  if (!panel || !body) return;
  var labels = document.getElementById("blocks-labels");
  var apiBase = document.body.getAttribute("data-api-base") || "";
  var canLift = document.body.getAttribute("data-can-review") === "true";

  function label(name, fallback) {
    return (labels && labels.getAttribute("data-" + name)) || fallback;
  }

  // dashboard.js (loaded first, on every dashboard page) shares its DOM and CSRF helpers.
  var el = window.trackingDashboard.el;
  var csrfToken = window.trackingDashboard.csrfToken;

  function when(iso) {
    if (!iso) return label("never", "until lifted");
    var d = new Date(iso);
    return isNaN(d.getTime()) ? iso : d.toISOString().replace("T", " ").slice(0, 19);
  }

  function lift(row, id, reason) {
    var result = row.querySelector(".result");
    return fetch(apiBase + "blocks/" + id + "/lift/", {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json",
        "X-CSRFToken": csrfToken(),
        "X-Requested-With": "XMLHttpRequest",
      },
      body: JSON.stringify({ reason: reason }),
    })
      .then(function (response) {
        return response
          .json()
          .catch(function () {
            return {};
          })
          .then(function (payload) {
            if (!response.ok) {
              var detail = payload && (payload.detail || payload.reason || JSON.stringify(payload));
              throw new Error("HTTP " + response.status + (detail ? ": " + detail : ""));
            }
            row.classList.add("lifted");
            row.querySelectorAll("button, input").forEach(function (node) {
              node.disabled = true;
            });
            result.textContent = label("lifted", "Lifted");
          });
      })
      .catch(function (err) {
        result.textContent = err.message;
      });
  }

  function buildRow(block) {
    var tr = el("tr", "block-row");
    tr.setAttribute("data-id", block.id);
    tr.appendChild(el("td", "when", when(block.created_at)));
    tr.appendChild(el("td", "scope", block.scope));
    tr.appendChild(el("td", "address", block.address || "—"));
    tr.appendChild(el("td", "account", block.username || "—"));
    tr.appendChild(el("td", "why", block.reason));
    tr.appendChild(el("td", "until", when(block.expires_at)));
    var actions = el("td", "lift");
    var reason = el("input", "reason");
    reason.type = "text";
    reason.maxLength = 2000;
    reason.placeholder = label("reason", "Why lift it?");
    reason.setAttribute("aria-label", label("reason", "Why lift it?"));
    var button = el("button", "lift-button", label("lift", "Lift"));
    button.type = "button";
    if (!canLift) {
      reason.disabled = true;
      button.disabled = true;
    }
    var result = el("span", "result");
    result.setAttribute("role", "status");
    button.addEventListener("click", function () {
      if (!reason.value.trim()) {
        result.textContent = label("needs-reason", "Write why the block is lifted.");
        reason.focus();
        return;
      }
      button.disabled = true;
      lift(tr, block.id, reason.value.trim()).then(function () {
        if (!tr.classList.contains("lifted")) button.disabled = false;
      });
    });
    actions.appendChild(reason);
    actions.appendChild(button);
    actions.appendChild(result);
    tr.appendChild(actions);
    return tr;
  }

  function load() {
    fetch(panel.getAttribute("data-blocks-url"), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
      cache: "no-store",
    })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (payload) {
        var items = payload.results || [];
        body.textContent = "";
        items.forEach(function (block) {
          body.appendChild(buildRow(block));
        });
        document.getElementById("blocks-count").textContent = String(payload.count || 0);
        document.getElementById("blocks-empty").hidden = items.length > 0;
      })
      .catch(function (err) {
        document.getElementById("blocks-count").textContent = err.message;
      });
  }

  load();
})();
