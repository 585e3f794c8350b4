/* Security dashboard: review actions, keyboard shortcuts, live feed and SVG charts.
 *
 * Plain ES2017, no dependencies, loaded with `defer` under a CSP without 'unsafe-inline'.
 * Data is only ever put into the page with textContent / setAttribute, never parsed as markup, so
 * audited values (user names, endpoints, reasons) stay inert whatever they contain.
 */
(function () {
  "use strict";

  var body = document.body;
  var data = body.dataset;
  var SVG_NS = "http://www.w3.org/2000/svg";

  // Shared with the page's other scripts (blocks.js), which run after this one (defer order).
  window.trackingDashboard = { el: el, csrfToken: csrfToken };

  /* Texts in the page's language: the server renders its translations as a JSON block
   * (id "tracking-messages", keyed by the English text); t() falls back to the English text
   * and fills "%(name)s" placeholders from `values`. */
  var MESSAGES = (function () {
    var node = document.getElementById("tracking-messages");
    try {
      return node ? JSON.parse(node.textContent) : {};
    } catch (e) {
      return {};
    }
  })();

  function t(text, values) {
    var out = Object.prototype.hasOwnProperty.call(MESSAGES, text) ? MESSAGES[text] : text;
    return out.replace(/%\((\w+)\)s/g, function (whole, name) {
      return values && values[name] !== undefined ? String(values[name]) : whole;
    });
  }

  // ---------------------------------------------------------------- helpers
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (k) {
      node.setAttribute(k, String(attrs[k]));
    });
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta && meta.getAttribute("content")) return meta.getAttribute("content");
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function filterParams() {
    return new URLSearchParams(data.filterQuery || "");
  }

  function withQuery(url, params) {
    var text = params.toString();
    return text ? url + (url.indexOf("?") >= 0 ? "&" : "?") + text : url;
  }

  function notice(message, isError) {
    var box = document.getElementById("notice");
    if (!box) return;
    box.textContent = message;
    box.className = isError ? "notice error" : "notice";
    box.hidden = false;
    clearTimeout(notice.timer);
    notice.timer = setTimeout(function () {
      box.hidden = true;
    }, 5000);
  }

  function fmtTime(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) return iso;
    return d.toISOString().replace("T", " ").slice(0, 19);
  }

  function fmtNumber(n) {
    if (n === null || n === undefined || isNaN(n)) return "–";
    return Number(n).toLocaleString("en-US", { maximumFractionDigits: 1 });
  }

  function getJSON(url) {
    return fetch(url, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
      cache: "no-store",
    }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    });
  }

  // ---------------------------------------------------------------- review (the API)
  /* PATCH api/tracking/activities/<id>/flag/ with {"review_status", "note"}: the same endpoint,
   * permissions and audit trail as any API client. */
  function review(flagUrl, status, note) {
    return fetch(flagUrl, {
      method: "PATCH",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json",
        "X-CSRFToken": csrfToken(),
        "X-Requested-With": "XMLHttpRequest",
      },
      body: JSON.stringify({ review_status: status, note: note || "" }),
    }).then(function (response) {
      return response
        .json()
        .catch(function () {
          return {};
        })
        .then(function (payload) {
          if (!response.ok) {
            var detail = payload && (payload.detail || JSON.stringify(payload));
            throw new Error("HTTP " + response.status + (detail ? ": " + detail : ""));
          }
          return payload;
        });
    });
  }

  var LABELS = { confirmed: t("Confirmed"), dismissed: t("Dismissed"), open: t("Reopened") };

  // ---------------------------------------------------------------- flagged queue
  var queueBody = document.getElementById("queue-body");
  var queueTable = document.getElementById("queue-table");
  var selected = -1;

  function queueRows() {
    return queueBody ? Array.prototype.slice.call(queueBody.querySelectorAll("tr.queue-row")) : [];
  }

  /* The badge is the server's count of the whole queue; the page keeps it current as items
   * leave (reviewed here) or arrive (live feed). A capped count ("10000+") is left alone. */
  function refreshQueueCount(delta) {
    var count = document.getElementById("queue-count");
    if (count && /^\d+$/.test(count.textContent)) {
      count.textContent = String(Math.max(0, parseInt(count.textContent, 10) + delta));
    }
    var empty = document.getElementById("queue-empty");
    if (empty) empty.hidden = queueRows().length > 0;
  }

  function select(index) {
    var rows = queueRows();
    if (!rows.length) {
      selected = -1;
      return;
    }
    index = Math.max(0, Math.min(index, rows.length - 1));
    rows.forEach(function (row, i) {
      row.classList.toggle("selected", i === index);
      row.setAttribute("aria-selected", i === index ? "true" : "false");
    });
    selected = index;
    rows[index].scrollIntoView({ block: "nearest" });
  }

  function selectedRow() {
    var rows = queueRows();
    return selected >= 0 && selected < rows.length ? rows[selected] : null;
  }

  function statusFilter() {
    return (queueTable && queueTable.getAttribute("data-status-filter")) || "open";
  }

  function actOnRow(row, status) {
    if (!row || row.classList.contains("busy")) return;
    var note = row.querySelector("input.note");
    var result = row.querySelector(".result");
    row.classList.add("busy");
    result.textContent = "…";
    review(row.getAttribute("data-flag-url"), status, note ? note.value : "")
      .then(function () {
        var who = row.querySelector(".user");
        notice(LABELS[status] + ": " + (who ? who.textContent : t("activity")));
        var filter = statusFilter();
        if (filter !== "any" && filter !== status) {
          // It no longer belongs to this view of the queue: the next item takes its place.
          var rows = queueRows();
          var index = rows.indexOf(row);
          row.remove();
          refreshQueueCount(-1);
          if (index === selected || selected >= queueRows().length) select(index);
        } else {
          row.classList.remove("busy");
          result.textContent = LABELS[status];
        }
      })
      .catch(function (err) {
        row.classList.remove("busy");
        result.textContent = t("Failed");
        notice(t("Review failed: %(error)s", { error: err.message }), true);
      });
  }

  function buildQueueRow(item) {
    var tr = el("tr", "queue-row new sev-" + (item.severity || "none"));
    tr.setAttribute("data-id", item.id);
    tr.setAttribute("data-flag-url", data.apiBase + "activities/" + item.id + "/flag/");
    tr.setAttribute("data-detail-url", item.url);
    tr.tabIndex = -1;

    var when = el("td", "when");
    var time = el("time", "", fmtTime(item.timestamp));
    time.setAttribute("datetime", item.timestamp);
    when.appendChild(time);

    var who = el("td", "who");
    who.appendChild(el("span", "user", item.username || t("anonymous")));
    who.appendChild(el("span", "type", item.type_display));
    who.appendChild(el("span", "endpoint", (item.method + " " + item.endpoint).trim()));
    if (item.outcome) who.appendChild(el("span", "outcome outcome-" + item.outcome, t(item.outcome)));

    var where = el("td", "where");
    where.appendChild(el("span", "place", (item.city || "—") + (item.country ? ", " + item.country : "")));
    where.appendChild(el("span", "network", item.network || t("unknown network")));
    where.appendChild(el("span", "ip", item.ip_address || ""));

    var device = el("td", "device", item.device || t("unknown device"));

    var why = el("td", "why");
    var list = el("ul", "reasons");
    var reasons = item.reasons.length ? item.reasons : item.tags.length ? item.tags : [t("flagged")];
    reasons.slice(0, 3).forEach(function (reason) {
      list.appendChild(el("li", "", reason));
    });
    why.appendChild(list);
    if (reasons.length > 3) {
      var more = el("a", "more", t("+%(n)s more", { n: reasons.length - 3 }));
      more.href = item.url + "#findings";
      why.appendChild(more);
    }

    var risk = el("td", "risk");
    risk.appendChild(el("span", "score", Number(item.risk_score).toFixed(2)));
    if (item.severity) risk.appendChild(el("span", "severity", item.severity_display || item.severity));

    var actions = el("td", "review");
    var note = el("input", "note");
    note.type = "text";
    note.name = "note";
    note.placeholder = t("note");
    note.maxLength = 2000;
    note.setAttribute("aria-label", t("Review note"));
    actions.appendChild(note);
    var buttons = el("span", "buttons");
    [
      ["confirm", "confirmed", t("Confirm")],
      ["dismiss", "dismissed", t("Dismiss")],
    ].forEach(function (b) {
      var button = el("button", b[0], b[2]);
      button.type = "button";
      button.setAttribute("data-status", b[1]);
      button.disabled = data.canReview !== "true";
      buttons.appendChild(button);
    });
    var open = el("a", "open", t("Open"));
    open.href = item.url;
    buttons.appendChild(open);
    actions.appendChild(buttons);
    var result = el("span", "result");
    result.setAttribute("role", "status");
    actions.appendChild(result);

    [when, who, where, device, why, risk, actions].forEach(function (td) {
      tr.appendChild(td);
    });
    return tr;
  }

  /* `arrived`: new since the page was rendered (counted in the badge); the first poll only
   * fills in what the server-rendered page already counted. */
  function addToQueue(item, arrived) {
    if (!queueBody || queueBody.querySelector('tr[data-id="' + item.id + '"]')) return;
    if (arrived) refreshQueueCount(1);
    // Newest first (a row committed late lands in its place); the selection stays on its item.
    var current = selectedRow();
    var when = new Date(item.timestamp).getTime();
    var before = queueRows().find(function (row) {
      var time = row.querySelector("time");
      return time && new Date(time.getAttribute("datetime")).getTime() < when;
    });
    // On a page of older items, newer arrivals belong to the first page; past the last row,
    // to a later page.
    if (before && before === queueRows()[0] && queueTable.getAttribute("data-paged") === "true") return;
    if (!before && queueTable.getAttribute("data-older") === "true") return;
    queueBody.insertBefore(buildQueueRow(item), before || null);
    refreshQueueCount(0);
    if (current) select(queueRows().indexOf(current));
  }

  if (queueBody) {
    queueBody.addEventListener("click", function (event) {
      var row = event.target.closest("tr.queue-row");
      if (!row) return;
      select(queueRows().indexOf(row));
      var button = event.target.closest("button[data-status]");
      if (button && !button.disabled) actOnRow(row, button.getAttribute("data-status"));
    });
    queueBody.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && event.target.matches("input.note")) {
        event.preventDefault();
        event.target.blur();
      }
    });
    if (queueRows().length) select(0);
  }

  // ---------------------------------------------------------------- detail page review
  var reviewBox = document.getElementById("review-box");

  function actOnDetail(status) {
    if (!reviewBox || reviewBox.classList.contains("busy")) return;
    var note = reviewBox.querySelector("input.note");
    var result = reviewBox.querySelector(".result");
    reviewBox.classList.add("busy");
    result.textContent = "…";
    review(reviewBox.getAttribute("data-flag-url"), status, note.value)
      .then(function (payload) {
        reviewBox.classList.remove("busy");
        result.textContent = LABELS[status];
        var statusCell = document.getElementById("detail-status");
        if (statusCell) statusCell.textContent = (payload && payload.review_status) || status;
        var history = document.getElementById("history-list");
        if (history) {
          var li = el("li", "", fmtTime(new Date().toISOString()) + " " + t("%(action)s by you", { action: LABELS[status] }));
          if (note.value) li.appendChild(el("q", "", note.value));
          history.insertBefore(li, history.firstChild);
          var empty = document.getElementById("history-empty");
          if (empty) empty.hidden = true;
        }
        note.value = "";
      })
      .catch(function (err) {
        reviewBox.classList.remove("busy");
        result.textContent = t("Failed");
        notice(t("Review failed: %(error)s", { error: err.message }), true);
      });
  }

  if (reviewBox) {
    reviewBox.addEventListener("click", function (event) {
      var button = event.target.closest("button[data-status]");
      if (button && !button.disabled) actOnDetail(button.getAttribute("data-status"));
    });
  }

  // ---------------------------------------------------------------- keyboard
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    var typing = target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT");
    if (typing) {
      if (event.key === "Escape") target.blur();
      return;
    }
    var key = event.key;
    if (key === "/") {
      var field = document.getElementById("filter-tags");
      if (field) {
        event.preventDefault();
        field.focus();
        field.select();
      }
      return;
    }
    if (reviewBox) {
      if (key === "c") actOnDetail("confirmed");
      else if (key === "d") actOnDetail("dismissed");
      return;
    }
    if (!queueBody) return;
    if (key === "j") select(selected + 1);
    else if (key === "k") select(selected - 1);
    else if (key === "c" && data.canReview === "true") actOnRow(selectedRow(), "confirmed");
    else if (key === "d" && data.canReview === "true") actOnRow(selectedRow(), "dismissed");
    else if (key === "o" && selectedRow()) window.location.assign(selectedRow().getAttribute("data-detail-url"));
    else if (key === "n" && selectedRow()) {
      event.preventDefault();
      selectedRow().querySelector("input.note").focus();
    } else return;
    event.preventDefault();
  });

  // ---------------------------------------------------------------- live feed
  var feedList = document.getElementById("feed-list");
  var feedStatus = document.getElementById("feed-status");
  var FEED_MAX = 100;
  var seen = new Set();
  var seenOrder = [];
  var held = new Map(); // activity id -> timestamp (fixed-precision ISO text)
  var cursor = "";
  var windowStart = "";
  var polled = false;

  function remember(key, item) {
    seen.add(key);
    seenOrder.push(key);
    held.set(item.id, item.timestamp);
    if (seenOrder.length > 2000) {
      var old = seenOrder.shift();
      seen.delete(old);
      held.delete(old.split(":")[0]);
    }
  }

  /* How many rows of the server's look-back window this page already holds: when the server
   * counts the same, nothing new arrived and the poll returns nothing. */
  function knownInWindow() {
    var n = 0;
    held.forEach(function (ts) {
      if (ts > windowStart) n += 1;
    });
    return n;
  }

  function feedItem(item) {
    var li = el("li", "feed-item" + (item.flagged ? " flagged" : ""));
    li.setAttribute("data-id", item.id);
    var head = el("div", "head");
    var time = el("time", "", fmtTime(item.timestamp));
    time.setAttribute("datetime", item.timestamp);
    head.appendChild(time);
    var link = el("a", "what", item.type_display + " · " + (item.username || t("anonymous")));
    link.href = item.url;
    head.appendChild(link);
    if (item.flagged) head.appendChild(el("span", "badge", item.flagged_by ? t("flagged by %(who)s", { who: item.flagged_by }) : t("flagged")));
    li.appendChild(head);
    var where = [item.city, item.country].filter(Boolean).join(", ");
    li.appendChild(
      el("div", "meta", [where || t("unknown place"), item.network, item.ip_address, (item.method + " " + item.endpoint).trim(), item.status, item.outcome ? t(item.outcome) : ""]
        .filter(function (x) {
          return x !== null && x !== undefined && x !== "";
        })
        .join(" · "))
    );
    if (item.flagged && item.reasons.length) {
      var reasons = el("ul", "reasons");
      item.reasons.slice(0, 2).forEach(function (reason) {
        reasons.appendChild(el("li", "", reason));
      });
      li.appendChild(reasons);
    }
    return li;
  }

  function showFeed(items, initial) {
    // Items come oldest first; each goes on top so the newest ends up first.
    items.forEach(function (item) {
      var key = item.id + (item.flagged_by ? ":flag" : "");
      held.set(item.id, item.timestamp);
      if (seen.has(key)) return;
      remember(key, item);
      var old = feedList.querySelector('li[data-id="' + item.id + '"]');
      if (old) old.remove();
      feedList.insertBefore(feedItem(item), feedList.firstChild);
      if (item.queue) addToQueue(item, !initial);
    });
    while (feedList.children.length > FEED_MAX) feedList.removeChild(feedList.lastChild);
  }

  function poll() {
    var params = filterParams();
    if (cursor) {
      params.set("after", cursor);
      params.set("known", String(knownInWindow()));
    }
    getJSON(withQuery(data.feedUrl, params))
      .then(function (payload) {
        var initial = !polled;
        polled = true;
        cursor = payload.cursor;
        windowStart = payload.window_start;
        showFeed(payload.activities, initial);
        feedStatus.textContent = t("Live · checked %(time)s", { time: new Date().toLocaleTimeString() });
        feedStatus.className = "feed-status live";
      })
      .catch(function (err) {
        feedStatus.textContent = t("Feed paused (%(error)s), retrying…", { error: err.message });
        feedStatus.className = "feed-status error";
      })
      .then(function () {
        setTimeout(poll, Math.max(250, parseInt(data.pollMs, 10) || 1000));
      });
  }

  if (feedList && data.feedUrl) poll();

  // ---------------------------------------------------------------- charts (inline SVG)
  /* Drawn at the figure's own pixel width, so text keeps its size on any screen. */
  function widthOf(figure) {
    return Math.max(280, Math.round(figure.clientWidth - 24));
  }

  function emptyChart(figure) {
    figure.appendChild(el("p", "empty", t("No data for these filters yet.")));
    figure.setAttribute("data-rendered", "empty");
  }

  function finish(figure, node, points) {
    figure.appendChild(node);
    figure.setAttribute("data-rendered", "true");
    figure.setAttribute("data-points", String(points));
  }

  function timeChart(figure, series, hourly) {
    var total = series.reduce(function (s, p) {
      return s + p.count;
    }, 0);
    if (!series.length || !total) return emptyChart(figure);
    var W = widthOf(figure);
    var H = 180, left = 40, bottom = 24, top = 16;
    var max = Math.max.apply(null, series.map(function (p) { return p.count; })) || 1;
    var slot = (W - left - 4) / series.length;
    var root = svg("svg", { viewBox: "0 0 " + W + " " + H, class: "chart-svg", role: "img" });
    root.appendChild(svg("title", {}, figure.querySelector("figcaption").textContent));
    var plot = H - bottom - top;
    root.appendChild(svg("line", { x1: left, y1: H - bottom, x2: W, y2: H - bottom, class: "axis" }));
    root.appendChild(svg("text", { x: left - 6, y: top + 8, class: "tick end" }, fmtNumber(max)));
    root.appendChild(svg("text", { x: left - 6, y: H - bottom, class: "tick end" }, "0"));
    series.forEach(function (p, i) {
      var x = left + i * slot + 1;
      var w = Math.max(1, slot - 2);
      var h = (p.count / max) * plot;
      var fh = (p.flagged / max) * plot;
      var label = hourly ? p.bucket.slice(0, 13).replace("T", " ") + ":00" : p.bucket.slice(0, 10);
      var g = svg("g", { class: "bucket" });
      g.appendChild(svg("title", {}, t("%(label)s: %(count)s activities, %(flagged)s flagged", { label: label, count: p.count, flagged: p.flagged })));
      g.appendChild(svg("rect", { x: x, y: H - bottom - h, width: w, height: h, class: "bar total" }));
      if (p.flagged) g.appendChild(svg("rect", { x: x, y: H - bottom - fh, width: w, height: Math.max(1, fh), class: "bar flagged" }));
      root.appendChild(g);
      var step = Math.ceil(series.length / Math.max(2, Math.floor(W / 110)));
      if (i % step === 0) {
        root.appendChild(svg("text", { x: x, y: H - 8, class: "tick" }, hourly ? label.slice(5, 16) : label.slice(5)));
      }
    });
    var legend = svg("g", { class: "legend" });
    legend.appendChild(svg("rect", { x: W - 170, y: 2, width: 10, height: 10, class: "bar total" }));
    legend.appendChild(svg("text", { x: W - 156, y: 11, class: "tick" }, t("activity")));
    legend.appendChild(svg("rect", { x: W - 90, y: 2, width: 10, height: 10, class: "bar flagged" }));
    legend.appendChild(svg("text", { x: W - 76, y: 11, class: "tick" }, t("flagged")));
    root.appendChild(legend);
    finish(figure, root, series.length);
  }

  function barChart(figure, items, unit) {
    items = items.filter(function (d) {
      return d.value !== null && d.value !== undefined;
    });
    if (!items.length) return emptyChart(figure);
    var W = widthOf(figure);
    var row = 22, labelW = Math.min(200, Math.round(W * 0.38)), H = items.length * row + 8;
    var max = Math.max.apply(null, items.map(function (d) { return d.value; })) || 1;
    var root = svg("svg", { viewBox: "0 0 " + W + " " + H, class: "chart-svg", role: "img" });
    root.appendChild(svg("title", {}, figure.querySelector("figcaption").textContent));
    items.forEach(function (d, i) {
      var y = 4 + i * row;
      var w = Math.max(1, (d.value / max) * (W - labelW - 90));
      var g = svg("g", { class: "item" });
      g.appendChild(svg("title", {}, d.label + ": " + fmtNumber(d.value) + (unit || "") + (d.extra ? " (" + d.extra + ")" : "")));
      var room = Math.floor(labelW / 7.5);
      g.appendChild(svg("text", { x: labelW - 6, y: y + 14, class: "label end" }, d.label.length > room ? d.label.slice(0, room - 1) + "…" : d.label));
      g.appendChild(svg("rect", { x: labelW, y: y + 2, width: w, height: row - 6, class: "bar total" }));
      if (d.flagged) {
        g.appendChild(svg("rect", { x: labelW, y: y + 2, width: Math.max(1, (d.flagged / max) * (W - labelW - 90)), height: row - 6, class: "bar flagged" }));
      }
      g.appendChild(svg("text", { x: labelW + w + 6, y: y + 14, class: "value" }, fmtNumber(d.value) + (unit || "")));
      root.appendChild(g);
    });
    finish(figure, root, items.length);
  }

  function drawCharts(chart, stats) {
    var figures = {};
    Array.prototype.forEach.call(document.querySelectorAll("figure[data-chart]"), function (f) {
      Array.prototype.slice.call(f.children).forEach(function (c) {
        if (c.tagName.toLowerCase() !== "figcaption") c.remove();
      });
      figures[f.getAttribute("data-chart")] = f;
    });
    if (!figures.per_hour) return;
    var windowLabel = document.getElementById("charts-window");
    if (windowLabel && chart.window) {
      windowLabel.textContent = t("(newest activity %(time)s UTC)", { time: chart.window.latest.slice(0, 16).replace("T", " ") });
    }
    timeChart(figures.per_hour, chart.per_hour, true);
    // The stats API is the source where it has the figure; the dashboard's own endpoint adds
    // what it lacks (hourly series, networks, percentiles) and stands in if it is unreachable.
    var api = stats || {};
    var days = Array.isArray(api.per_day) ? lastDays(api.per_day, 30) : chart.per_day;
    timeChart(figures.per_day, trimLeadingEmpty(days, 7), false);
    var types = Array.isArray(api.types) ? api.types : chart.types;
    barChart(figures.types, types.slice(0, 10).map(function (t) { return { label: t.type_display || t.type, value: t.count }; }));
    var countries = Array.isArray(api.top_countries) ? api.top_countries : chart.countries;
    barChart(figures.countries, countries.map(function (c) { return { label: c.country, value: c.count, flagged: c.flagged }; }));
    barChart(figures.networks, chart.networks.map(function (n) { return { label: n.label, value: n.count, flagged: n.flagged, extra: t("%(count)s flagged", { count: n.flagged }) }; }));
    var detectors = Array.isArray(api.detectors) ? api.detectors : chart.detectors;
    barChart(figures.detectors, detectors.slice(0, 10).map(function (d) { return { label: d.detector, value: d.count }; }));
    var rt = chart.response_times || {};
    barChart(figures.response_times, ["p50", "p95", "p99"].map(function (p) { return { label: p, value: rt[p] }; }), " ms");
  }

  /* A young installation has a few days of data: start at the first busy day (keeping at
   * least `keep` buckets) instead of drawing weeks of nothing. */
  function trimLeadingEmpty(series, keep) {
    var first = series.findIndex(function (p) {
      return p.count > 0;
    });
    if (first < 0) return series;
    return series.slice(Math.min(first, Math.max(0, series.length - keep)));
  }

  /* The stats API lists only days that have activity; the chart wants the last `n` calendar
   * days up to the newest one, gaps included. */
  function lastDays(perDay, n) {
    if (!perDay.length) return [];
    var byDate = {};
    perDay.forEach(function (d) {
      byDate[d.date] = d;
    });
    var last = new Date(perDay[perDay.length - 1].date + "T00:00:00Z");
    var out = [];
    for (var i = n - 1; i >= 0; i--) {
      var day = new Date(last.getTime() - i * 86400000).toISOString().slice(0, 10);
      var hit = byDate[day];
      out.push({ bucket: day, count: hit ? hit.total : 0, flagged: hit ? hit.flagged : 0 });
    }
    return out;
  }

  function fillTiles(chart, stats) {
    function set(id, value) {
      var node = document.getElementById(id);
      if (node) node.textContent = value;
    }
    var counts = (stats && stats.counts) || {};
    var times = (stats && stats.response_times) || {};
    set("tile-total", fmtNumber(counts.total !== undefined ? counts.total : chart.counts.total));
    set("tile-flagged", fmtNumber(counts.flagged !== undefined ? counts.flagged : chart.counts.flagged));
    set("tile-recent", counts.last_30_days !== undefined ? fmtNumber(counts.last_30_days) : "–");
    set("tile-avg", times.avg !== undefined && times.avg !== null ? t("%(value)s ms", { value: fmtNumber(times.avg) }) : "–");
  }

  function loadCharts() {
    var params = filterParams();
    // A status the API does not know ("any") is the dashboard's own; everything else passes on.
    if (params.get("review_status") === "any") params.delete("review_status");
    var stats = getJSON(withQuery(data.statsUrl, params)).catch(function () {
      return null;
    });
    var chart = getJSON(withQuery(data.chartsUrl, params));
    Promise.all([chart, stats])
      .then(function (results) {
        fillTiles(results[0], results[1]);
        drawCharts(results[0], results[1]);
      })
      .catch(function (err) {
        notice(t("Charts unavailable: %(error)s", { error: err.message }), true);
      });
  }

  if (document.getElementById("charts") && data.chartsUrl) {
    loadCharts();
    // Totals and charts follow the live data, at a gentler pace than the feed.
    setInterval(loadCharts, 30000);
  }
})();
