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
  // Every control, format, separator and unassigned character but the plain space, as
  // the server's printable() escapes them.
  var controls = /(?! )[\p{C}\p{Z}]/gu;
  function shown(value) {
    if (value === null || value === undefined) { return ""; }
    return String(value).replace(controls, function (c) {
      var code = c.codePointAt(0);
      var hex = code.toString(16);
      if (code < 0x100) { return "\\x" + ("0" + hex).slice(-2); }
      if (code < 0x10000) { return "\\u" + ("000" + hex).slice(-4); }
      return "\\U" + ("0000000" + hex).slice(-8);
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
