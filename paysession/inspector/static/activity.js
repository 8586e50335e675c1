// The activity page follows the store's feed: every two seconds it asks the API for the
// moves committed after the newest one shown and puts them on top. Rows are built with
// textContent, never as HTML, and control characters are shown as escapes, as the
// server does.
"use strict";
(function () {
  var table = document.getElementById("activity");
  var live = document.getElementById("live");
  if (!table) { return; }
  var body = table.tBodies[0];
  var controls = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
  function shown(value) {
    if (value === null || value === undefined) { return ""; }
    return String(value).replace(controls, function (c) {
      var code = c.charCodeAt(0).toString(16);
      return code.length <= 2 ? "\\x" + ("0" + code).slice(-2) : "\\u" + ("000" + code).slice(-4);
    });
  }
  function cell(row, text, className) {
    var td = row.insertCell(-1);
    td.textContent = text;
    if (className) { td.className = className; }
    return td;
  }
  function add(record) {
    var row = body.insertRow(0);
    row.className = "fresh";
    cell(row, record.at);
    var link = document.createElement("a");
    link.href = "/sessions/" + encodeURIComponent(record.session_id);
    link.textContent = shown(record.session_id);
    row.insertCell(-1).appendChild(link);
    cell(row, String(record.seq), "num");
    cell(row, shown(record.trigger));
    cell(row, (record.source || "\u2205") + " \u2192 " + record.dest);
    cell(row, shown(record.actor));
    cell(row, shown(record.reason));
    while (body.rows.length > 500) { body.deleteRow(-1); }
  }
  function poll() {
    var cursor = table.getAttribute("data-cursor") || "";
    var url = "/api/activity" + (cursor ? "?after=" + encodeURIComponent(cursor) : "");
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error(String(response.status)); }
        return response.json();
      })
      .then(function (page) {
        page.records.forEach(add);
        if (page.cursor) { table.setAttribute("data-cursor", page.cursor); }
        live.textContent = "live";
        live.className = "";
      })
      .catch(function () {
        live.textContent = "paused: the inspector did not answer";
        live.className = "error";
      })
      .then(function () { window.setTimeout(poll, 2000); });
  }
  window.setTimeout(poll, 2000);
})();
