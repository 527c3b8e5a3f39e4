/* TinyTrail tracker (served by trackgate at /js/tracker.js). Cookie-less: no ids, no storage.
 *
 *   <script defer data-id="YOUR_WEBSITE_UUID" src="https://your-api.com/js/tracker.js"></script>
 *   window.analytics.track("signup_complete", { plan: "pro" });
 *
 * Sends page_view (DOMContentLoaded), close_tab (visibilitychange -> hidden), scroll_25/50/75,
 * outbound_link (click on a link to another host) and custom events to POST <base>/api/v1/collect,
 * where <base> is where this script was loaded from (its src without /js/tracker.js).
 */
(function () {
  "use strict";
  var script = document.currentScript || document.querySelector("script[data-id][src*='tracker.js']");
  if (!script) return;
  var websiteId = script.getAttribute("data-id");
  if (!websiteId) return;
  var src = script.src;
  var base = src.replace(/\/js\/tracker\.js(?:[?#].*)?$/, "");
  if (base === src) base = new URL(src).origin;
  var endpoint = base + "/api/v1/collect";

  function body(eventType, properties) {
    var loc = window.location;
    var data = {
      website_id: websiteId,
      event_type: eventType,
      url: loc.href,
      path: loc.pathname,
      screen_width: window.innerWidth,
      screen_height: window.innerHeight
    };
    if (document.referrer) data.referrer = document.referrer;
    if (loc.search && window.URLSearchParams) {
      var params = new URLSearchParams(loc.search);
      ["utm_source", "utm_medium", "utm_campaign"].forEach(function (key) {
        var value = params.get(key);
        if (value) data[key] = value;
      });
    }
    if (properties) data.properties = properties;
    return JSON.stringify(data);
  }

  function send(eventType, properties) {
    var payload = body(eventType, properties);
    if (window.fetch) {
      // keepalive: the request survives the page going away (close_tab, outbound_link)
      window
        .fetch(endpoint, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: payload,
          keepalive: true,
          credentials: "omit"
        })
        ["catch"](function () {});
      return;
    }
    var xhr = new XMLHttpRequest();
    xhr.open("POST", endpoint, true);
    xhr.setRequestHeader("Content-Type", "application/json");
    xhr.send(payload);
  }

  // page_view: on DOMContentLoaded (or now, if this script runs after it)
  var viewed = false;
  function pageView() {
    if (viewed) return;
    viewed = true;
    send("page_view");
  }
  if (document.readyState === "complete") pageView();
  else {
    document.addEventListener("DOMContentLoaded", pageView);
    window.addEventListener("load", pageView);
  }

  // close_tab: whenever the page is hidden (tab closed, switched away, app backgrounded)
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") send("close_tab");
  });

  // scroll_25 / scroll_50 / scroll_75: the share of the scrollable height scrolled, once each
  var depths = [25, 50, 75];
  var reached = {};
  window.addEventListener(
    "scroll",
    function () {
      var doc = document.documentElement;
      var scrollable = Math.max(doc.scrollHeight, document.body ? document.body.scrollHeight : 0) - window.innerHeight;
      if (scrollable <= 0) return;
      var percent = ((window.scrollY || doc.scrollTop) / scrollable) * 100;
      for (var i = 0; i < depths.length; i++) {
        if (percent >= depths[i] && !reached[depths[i]]) {
          reached[depths[i]] = true;
          send("scroll_" + depths[i]);
        }
      }
    },
    { passive: true }
  );

  // outbound_link: a click on a link to another host
  document.addEventListener(
    "click",
    function (event) {
      var node = event.target;
      while (node && !(node.tagName === "A" && node.href)) node = node.parentNode;
      if (!node) return;
      if (!/^https?:$/.test(node.protocol) || node.host === window.location.host) return;
      send("outbound_link", { href: node.href, text: (node.textContent || "").trim().slice(0, 200) });
    },
    true
  );

  // custom events: window.analytics.track(name, props)
  var analytics = (window.analytics = window.analytics || {});
  analytics.track = function (name, properties) {
    var data = {};
    if (properties && typeof properties === "object") {
      for (var key in properties) {
        if (Object.prototype.hasOwnProperty.call(properties, key)) data[key] = properties[key];
      }
    }
    data.name = String(name);
    send("custom", data);
  };
})();
