// The live event debugger (served at /debugger). No dependencies, nothing from a CDN.
// The admin key is asked once and kept in this tab's sessionStorage; it is traded for a short-lived
// token (POST debugger/token, X-API-KEY) because EventSource cannot send headers.
(function () {
  "use strict";
  var KEY = "trackgate.debugger.apiKey";
  var KEEP = 1000; // lines kept in memory; the newest are shown first
  var $ = function (id) { return document.getElementById(id); };
  var seen = []; // {id, line}
  var waiting = []; // received while paused
  var paused = false;
  var source = null;
  var lastId = null;
  var sources = {}; // id -> "name (dialect)", from the token's answer and the lines seen

  function setStatus(text, error) {
    $("status").textContent = text;
    $("status").className = error ? "error" : "";
  }

  function filters() {
    return {
      source: $("f-source").value.trim(),
      type: $("f-type").value.trim(),
      name: $("f-name").value.trim(),
      user: $("f-user").value.trim(),
    };
  }

  function glob(pattern) {
    var re = pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
    return new RegExp("^" + re + "$");
  }

  function matches(line, f) {
    if (f.source && line.source_id !== f.source) return false;
    if (f.type && line.type !== f.type) return false;
    if (f.name && !(line.name && glob(f.name).test(line.name))) return false;
    if (f.user && line.user_id !== f.user && line.anonymous_id !== f.user) return false;
    return true;
  }

  function pretty(text) {
    if (text === undefined || text === null) return "(none)";
    try { return JSON.stringify(JSON.parse(text), null, 2); } catch (e) { return String(text); }
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function column(title, text) {
    var box = el("div");
    box.appendChild(el("h3", "", title));
    box.appendChild(el("pre", "", text));
    return box;
  }

  function render(entry) {
    var line = entry.line;
    var item = el("article", "item " + line.kind);
    item.dataset.id = entry.id;
    item.dataset.kind = line.kind;
    var head = el("div", "head");
    head.appendChild(el("span", "kind", line.kind));
    head.appendChild(el("span", "meta", (line.at || "").replace("T", " ").slice(0, 23)));
    head.appendChild(el("span", "meta", line.source_id ? sources[line.source_id] || line.source_id : "(no source)"));
    head.appendChild(el("span", "meta", line.dialect || ""));
    if (line.type) head.appendChild(el("span", "", line.type));
    if (line.name) head.appendChild(el("span", "name", line.name));
    var who = line.user_id || line.anonymous_id;
    if (who) head.appendChild(el("span", "meta", (line.user_id ? "user " : "anon ") + who));
    if (line.status) head.appendChild(el("span", "meta", line.status + " " + (line.path || "")));
    if (line.reason) head.appendChild(el("span", "reason", (line.code ? line.code + ": " : "") + line.reason));
    item.appendChild(head);
    var cols = el("div", "cols");
    var raw = pretty(line.raw) + (line.raw_truncated ? "\n… (cut)" : "");
    cols.appendChild(column("raw payload", raw));
    var event = line.event ? Object.assign({}, line.event) : null;
    var enrichment = event ? event.enrichment : null;
    if (event) { delete event.enrichment; delete event.raw; }
    cols.appendChild(column("canonical event", event ? JSON.stringify(event, null, 2) : "(not stored)"));
    cols.appendChild(column("enrichment", enrichment ? JSON.stringify(enrichment, null, 2) : "(none)"));
    item.appendChild(cols);
    return item;
  }

  function redraw() {
    var box = $("events");
    box.textContent = "";
    var f = filters();
    for (var i = seen.length - 1; i >= 0; i--) {
      if (matches(seen[i].line, f)) box.appendChild(render(seen[i]));
    }
    counts();
  }

  function counts() {
    var shown = $("events").children.length;
    $("counts").textContent = shown + " shown of " + seen.length + (paused ? " · paused, " + waiting.length + " waiting" : "");
    $("empty").hidden = seen.length > 0;
  }

  function knowSource(id, label) {
    if (sources[id]) return;
    sources[id] = label;
    var option = document.createElement("option");
    option.value = id;
    option.textContent = label;
    $("f-source").appendChild(option);
  }

  function add(entry) {
    seen.push(entry);
    if (entry.line.source_id) knowSource(entry.line.source_id, entry.line.source_id);
    if (seen.length > KEEP) {
      seen.shift();
      var box = $("events");
      if (box.lastChild && box.children.length > KEEP) box.removeChild(box.lastChild);
    }
    if (matches(entry.line, filters())) $("events").insertBefore(render(entry), $("events").firstChild);
    counts();
  }

  function onSeen(message) {
    lastId = message.lastEventId || lastId;
    var entry = { id: message.lastEventId, line: JSON.parse(message.data) };
    if (paused) { waiting.push(entry); counts(); return; }
    add(entry);
  }

  function connect() {
    var key = sessionStorage.getItem(KEY);
    if (!key) { $("key-form").hidden = false; $("filters").hidden = true; return; }
    setStatus("connecting…");
    fetch("debugger/token", { method: "POST", headers: { "X-API-KEY": key } })
      .then(function (response) {
        return response.json().then(function (body) { return { ok: response.ok, status: response.status, body: body }; });
      })
      .then(function (answer) {
        if (!answer.ok) {
          if (answer.status === 401 || answer.status === 403) sessionStorage.removeItem(KEY);
          $("key-form").hidden = answer.status !== 401 && answer.status !== 403;
          setStatus((answer.body.error && answer.body.error.message) || "refused (" + answer.status + ")", true);
          if (answer.status >= 500) setTimeout(connect, 3000);
          return;
        }
        $("key-form").hidden = true;
        $("filters").hidden = false;
        (answer.body.data.sources || []).forEach(function (s) { knowSource(s.id, s.name + " (" + s.dialect + ", " + s.id + ")"); });
        open(answer.body.data.token);
      })
      .catch(function () { setStatus("the gateway did not answer; retrying", true); setTimeout(connect, 3000); });
  }

  function open(token) {
    if (source) source.close();
    var url = "debugger/stream?token=" + encodeURIComponent(token) + (lastId ? "&after=" + encodeURIComponent(lastId) : "");
    source = new EventSource(url);
    source.addEventListener("seen", onSeen);
    source.onopen = function () { setStatus("live"); };
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) { // refused (an expired token): a new one
        setStatus("reconnecting…", true);
        source = null;
        setTimeout(connect, 1000);
      } else {
        setStatus("reconnecting…", true);
      }
    };
  }

  $("key-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var key = $("api-key").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY, key);
    $("api-key").value = "";
    connect();
  });
  $("filters").addEventListener("submit", function (event) { event.preventDefault(); });
  ["f-source", "f-type", "f-name", "f-user"].forEach(function (id) { $(id).addEventListener("input", redraw); });
  $("f-source").addEventListener("change", redraw);
  $("pause").addEventListener("click", function () {
    paused = !paused;
    $("pause").textContent = paused ? "Resume" : "Pause";
    $("pause").className = paused ? "on" : "";
    if (!paused) { var held = waiting; waiting = []; held.forEach(add); }
    counts();
  });
  $("clear").addEventListener("click", function () { seen = []; waiting = []; redraw(); });
  $("forget").addEventListener("click", function () {
    sessionStorage.removeItem(KEY);
    if (source) { source.close(); source = null; }
    setStatus("not connected");
    $("key-form").hidden = false;
    $("filters").hidden = true;
  });
  connect();
})();
