// trackgate's dashboard (GET /dashboard): TinyTrail's reports for one website and period, over
// /api/v1/websites and /api/v1/reports/* with the API key typed once (localStorage; "Sign out" forgets it).
// Plain JS, no build step; the chart is uPlot (static/uplot/, MIT). Every value from the API is written
// with textContent, never as HTML.
(() => {
  "use strict";

  const KEY_STORE = "trackgate.dashboard.apiKey";
  const API = "api/v1/"; // relative to /dashboard: the gateway that served the page
  const REALTIME_MS = 15000;
  const PER_PAGE = 10;
  const PERIODS = ["today", "yesterday", "7d", "30d", "90d", "12m", "ytd", "all", "custom"];
  const DAY = /^\d{4}-\d{2}-\d{2}$/;
  const METRICS = {
    visits: { label: "Visits", kind: "count" },
    pageviews: { label: "Pageviews", kind: "count" },
    unique_pageviews: { label: "Unique pageviews", kind: "count" },
    bounce_rate: { label: "Bounce rate", kind: "percent" },
    avg_session_duration: { label: "Visit duration", kind: "duration" },
    landing_page_entries: { label: "Landing page entries", kind: "count" },
    exit_page_exits: { label: "Exit page exits", kind: "count" },
  };
  // summary metric -> [label, kind, the timeseries metric its tile charts, lower is better]
  const TILES = [
    ["visits", "Visits", "count", "visits", false],
    ["unique_visitors", "Unique visitors", "count", null, false],
    ["pageviews", "Pageviews", "count", "pageviews", false],
    ["bounce_rate", "Bounce rate", "percent", "bounce_rate", true],
    ["avg_session_duration_sec", "Visit duration", "duration", "avg_session_duration", false],
  ];
  const SOURCES = {
    channel: { column: "Channel", name: (r) => r.channel },
    domain: { column: "Referrer", name: (r) => r.referrer },
    utm: {
      column: "Campaign (source / medium / campaign)",
      name: (r) => [r.utmSource, r.utmMedium, r.utmCampaign].map((v) => v || "(none)").join(" / "),
    },
  };
  // the pages panel's three lists: top pages (reports/pages), entry and exit pages (reports/flow)
  const PAGES = {
    pages: { columns: ["Page", "Pageviews", "Unique"], csv: "pages" },
    landing: { columns: ["Entry page", "Entries"], csv: "flow" },
    exit: { columns: ["Exit page", "Exits"], csv: null }, // the API's flow CSV holds the entry pages only
  };
  const DEVICES = {
    device_types: { column: "Device type", name: (r) => r.deviceType },
    browsers: { column: "Browser", name: (r) => r.browserFamily },
    os_families: { column: "Operating system", name: (r) => r.osFamily },
    screen_resolutions: { column: "Screen width", name: (r) => r.bucket },
  };

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  };

  // --- numbers -----------------------------------------------------------------------------------------
  const whole = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  const twoDecimals = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 });
  const count = (v) => (Number.isInteger(v) ? whole : twoDecimals).format(v);
  const percent = (v) => twoDecimals.format(v) + "%";
  function duration(seconds) {
    const s = Math.round(seconds);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), rest = s % 60;
    if (h) return `${h}h ${m}m`;
    if (m) return `${m}m ${rest}s`;
    return `${rest}s`;
  }
  const format = (kind, v) => {
    if (v === null || v === undefined) return "–";
    return kind === "percent" ? percent(v) : kind === "duration" ? duration(v) : count(v);
  };

  // --- state -------------------------------------------------------------------------------------------
  const state = {
    key: localStorage.getItem(KEY_STORE),
    websites: [],
    website: null,
    period: "7d",
    start: "", // a custom range (period "custom"): start_date and end_date, YYYY-MM-DD
    end: "",
    metric: "pageviews",
    sources: "channel",
    pages: "pages",
    contentGroup: "",
    bots: false, // include_bots=true on every report but the realtime count
    devices: "device_types",
    devicesData: null,
    pagesPage: 1,
    sourcesPage: 1,
    eventsPage: 1,
    generation: 0, // a newer load makes the answers of an older one stale
    realtimeTimer: null,
    retryTimer: null,
  };

  function readHash() {
    const h = new URLSearchParams(location.hash.slice(1));
    if (PERIODS.includes(h.get("period"))) state.period = h.get("period");
    if (DAY.test(h.get("from") || "") && DAY.test(h.get("to") || "")) {
      state.start = h.get("from");
      state.end = h.get("to");
    } else if (state.period === "custom") state.period = "7d";
    if (h.get("metric") in METRICS) state.metric = h.get("metric");
    if (h.get("sources") in SOURCES) state.sources = h.get("sources");
    if (h.get("devices") in DEVICES) state.devices = h.get("devices");
    if (h.get("pages") in PAGES) state.pages = h.get("pages");
    state.contentGroup = h.get("group") || "";
    state.bots = h.get("bots") === "1";
    return h.get("website");
  }
  function writeHash() {
    const h = new URLSearchParams({
      website: state.website || "", period: state.period, metric: state.metric,
      sources: state.sources, devices: state.devices, pages: state.pages,
    });
    if (state.contentGroup) h.set("group", state.contentGroup);
    if (state.bots) h.set("bots", "1");
    if (state.period === "custom") {
      h.set("from", state.start);
      h.set("to", state.end);
    }
    history.replaceState(null, "", "#" + h);
  }

  // --- the API -----------------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, code, message, retryAfter) {
      super(message);
      this.status = status;
      this.code = code;
      this.retryAfter = retryAfter;
    }
  }

  async function call(path, params) {
    const query = params ? "?" + new URLSearchParams(params) : "";
    let response;
    try {
      response = await fetch(API + path + query, { headers: { "X-API-KEY": state.key }, cache: "no-store" });
    } catch (err) {
      throw new ApiError(0, "NETWORK", `the gateway cannot be reached (${err.message})`);
    }
    if (!response.ok) {
      let code = `HTTP_${response.status}`, message = response.statusText || "request failed";
      try {
        const body = await response.json();
        if (body && body.error) ({ code, message } = body.error);
      } catch { /* not the API's envelope: keep the status line */ }
      const retry = parseInt(response.headers.get("Retry-After") || "", 10);
      throw new ApiError(response.status, code, message, Number.isFinite(retry) ? retry : null);
    }
    return response;
  }
  const data = async (path, params) => (await (await call(path, params)).json()).data;
  const reportParams = (extra) => ({
    website_id: state.website,
    ...(state.period === "custom" ? { start_date: state.start, end_date: state.end } : { period: state.period }),
    ...(state.contentGroup ? { content_group: state.contentGroup } : {}),
    ...(state.bots ? { include_bots: "true" } : {}),
    ...extra,
  });

  // --- errors, shown plainly ---------------------------------------------------------------------------
  function clearError() {
    $("error").hidden = true;
    $("error").textContent = "";
    clearInterval(state.retryTimer);
    state.retryTimer = null;
  }
  function showError(err) {
    const box = $("error");
    const what = err instanceof ApiError ? err : new ApiError(0, "ERROR", String(err && err.message || err));
    const status = what.status ? `${what.status} ${what.code}` : what.code;
    if (what.status === 401) {
      signOut(`The API key was refused (${status}: ${what.message}). Paste a valid key.`);
      return;
    }
    clearError();
    box.hidden = false;
    if (what.status === 429) {
      let left = what.retryAfter || 60;
      const say = () => {
        box.textContent = `Too many requests (${status}: ${what.message}). The API allows a limited number of ` +
          `requests a minute per key; trying again in ${left} s.`;
      };
      say();
      state.retryTimer = setInterval(() => {
        left -= 1;
        if (left > 0) return say();
        clearError();
        if (state.website) load();
        else signIn(); // the list of websites was what the limit refused
      }, 1000);
      return;
    }
    if (what.status === 403) box.textContent = `This key may not see that (${status}: ${what.message}).`;
    else if (what.status === 404) box.textContent = `Not found (${status}: ${what.message}).`;
    else box.textContent = `The request failed (${status}: ${what.message}).`;
  }

  // --- signing in and out ------------------------------------------------------------------------------
  function signOut(message) {
    localStorage.removeItem(KEY_STORE);
    state.key = null;
    state.website = null;
    state.websites = [];
    state.generation += 1;
    stopRealtime();
    clearError();
    for (const id of ["board", "website-picker", "period-picker", "custom-range", "sign-out", "realtime", "no-websites"]) {
      $(id).hidden = true;
    }
    $("key-form").hidden = false;
    $("api-key").value = "";
    $("api-key").focus();
    if (message) {
      $("error").hidden = false;
      $("error").textContent = message;
    }
  }

  // TinyTrail's websites first (the reports' own dialect), then the others as the API lists them
  const orderWebsites = (list) =>
    [...list.filter((w) => w.dialect === "tinytrail"), ...list.filter((w) => w.dialect !== "tinytrail")];
  // "name (dialect)": `trackgate up` makes a "demo" source of every dialect; a label still shared by two
  // websites gets the start of their ids
  function websiteLabels(list) {
    const labels = list.map((w) => (w.dialect ? `${w.domain || w.id} (${w.dialect})` : w.domain || w.id));
    const count = new Map();
    for (const label of labels) count.set(label, (count.get(label) || 0) + 1);
    return labels.map((label, i) => (count.get(label) > 1 ? `${label} ${list[i].id.slice(0, 8)}` : label));
  }

  async function signIn() {
    $("key-form").hidden = true;
    $("sign-out").hidden = false;
    const wanted = readHash();
    let websites;
    try {
      websites = await data("websites", { include: "dialect" });
    } catch (err) {
      showError(err);
      return;
    }
    clearError();
    state.websites = orderWebsites(Array.isArray(websites) ? websites : []);
    const picker = $("website");
    const labels = websiteLabels(state.websites);
    picker.replaceChildren(
      ...state.websites.map((w, i) => {
        const option = el("option", null, labels[i]);
        option.value = w.id;
        return option;
      }),
    );
    if (!state.websites.length) {
      $("no-websites").hidden = false;
      return;
    }
    const known = state.websites.some((w) => w.id === wanted);
    state.website = known ? wanted : state.websites[0].id;
    picker.value = state.website;
    $("period").value = state.period;
    showCustomRange();
    $("metric").value = state.metric;
    $("include-bots").checked = state.bots;
    for (const id of ["website-picker", "period-picker", "board", "realtime"]) $(id).hidden = false;
    selectTab("sources-tabs", state.sources);
    selectTab("devices-tabs", state.devices);
    selectTab("pages-tabs", state.pages);
    showGroups(false);
    load();
    startRealtime();
  }

  // the content groups of the website (its settings, from the websites list) as a filter
  function showGroups(reset) {
    const website = state.websites.find((w) => w.id === state.website) || {};
    const names = (website.contentGroups || []).map((g) => g.name).filter(Boolean);
    if (reset || !names.includes(state.contentGroup)) state.contentGroup = "";
    const all = el("option", null, "All content");
    all.value = "";
    $("content-group").replaceChildren(
      all,
      ...names.map((name) => {
        const option = el("option", null, name);
        option.value = name;
        return option;
      }),
    );
    $("content-group").value = state.contentGroup;
    $("group-picker").hidden = !names.length;
  }

  // --- loading a website and period --------------------------------------------------------------------
  function load() {
    writeHash();
    state.generation += 1;
    const generation = state.generation;
    const board = $("board");
    board.classList.add("loading");
    const started = performance.now();
    const settle = (promise, render) =>
      promise.then((value) => generation === state.generation && render(value));
    Promise.all([
      settle(data("reports/summary", reportParams({ compare: "previous_period" })), renderSummary),
      loadChart(generation),
      loadPages(generation),
      loadSources(generation),
      loadEvents(generation),
      settle(data("reports/devices", reportParams()), (d) => {
        state.devicesData = d;
        renderDevices();
      }),
    ])
      .then(() => {
        if (generation !== state.generation) return;
        clearError();
        // how long the board took to fill (devtools' Performance panel; the browser test prints it)
        performance.measure("trackgate:board", { start: started, end: performance.now() });
      })
      .catch((err) => generation === state.generation && showError(err))
      .finally(() => generation === state.generation && board.classList.remove("loading"));
  }

  function renderSummary(summary) {
    const period = summary.period || {};
    $("range").textContent = period.start
      ? `${period.start} to ${period.end}` + (summary.comparison ? `, compared with ${summary.comparison}` : "")
      : "";
    const tiles = TILES.map(([name, label, kind, chartMetric, lowerIsBetter]) => {
      const metric = (summary.metrics || {})[name] || {};
      const tile = el(chartMetric ? "button" : "div", "tile"); // a tile with a daily series charts it
      tile.dataset.metric = name;
      if (chartMetric) {
        tile.type = "button";
        tile.dataset.chart = chartMetric;
        tile.setAttribute("aria-pressed", String(chartMetric === state.metric));
        tile.title = `Chart ${METRICS[chartMetric].label.toLowerCase()}`;
        tile.addEventListener("click", () => setMetric(chartMetric));
      }
      tile.append(el("span", "label", label), el("span", "value", format(kind, metric.value)));
      const compare = el("span", "compare");
      if ("previous" in metric) {
        const pct = metric.change_pct;
        let cls = "flat", text = "–";
        if (pct !== null && pct !== undefined) {
          const better = lowerIsBetter ? pct < 0 : pct > 0;
          cls = pct === 0 ? "flat" : better ? "good" : "bad";
          text = (pct > 0 ? "↑ " : pct < 0 ? "↓ " : "") + percent(Math.abs(pct));
        }
        compare.append(el("span", "change " + cls, text), el("span", "previous", "from " + format(kind, metric.previous)));
      }
      tile.append(compare);
      return tile;
    });
    $("tiles").replaceChildren(...tiles);
  }

  // --- the chart ---------------------------------------------------------------------------------------
  let chart = null;
  let chartSeries = [];
  function setMetric(metric) {
    state.metric = metric;
    $("metric").value = metric;
    for (const tile of document.querySelectorAll(".tile[data-chart]")) {
      tile.setAttribute("aria-pressed", String(tile.dataset.chart === metric));
    }
    writeHash();
    const generation = state.generation;
    loadChart(generation).catch((err) => generation === state.generation && showError(err));
  }

  async function loadChart(generation) {
    const ts = await data("reports/timeseries", reportParams({ metric: state.metric }));
    if (generation !== state.generation) return;
    chartSeries = ts.series || [];
    drawChart(ts.metric || state.metric);
  }

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function chartTable(label, kind) {
    // the chart's numbers as a table, for screen readers (visually hidden)
    $("chart-table").querySelector("caption").textContent = `${label} per day`;
    $("chart-table").querySelector("tbody").replaceChildren(
      ...chartSeries.map((p) => {
        const tr = el("tr");
        tr.append(el("td", null, p.date), el("td", null, format(kind, p.value)));
        return tr;
      }),
    );
  }

  function drawChart(metric) {
    const box = $("chart");
    if (chart) {
      chart.destroy();
      chart = null;
    }
    box.replaceChildren();
    const { label, kind } = METRICS[metric] || { label: metric, kind: "count" };
    chartTable(label, kind);
    if (!chartSeries.length) {
      box.append(el("div", "chart-empty", "No data for this period."));
      return;
    }
    const xs = chartSeries.map((p) => Date.parse(p.date + "T00:00:00Z") / 1000);
    const ys = chartSeries.map((p) => p.value);
    const accent = cssVar("--accent") || "#4f46e5";
    const muted = cssVar("--muted") || "#6b7280";
    const grid = cssVar("--line") || "#e5e7eb";
    const axisValue = (u, values) => values.map((v) => (kind === "duration" ? duration(v) : kind === "percent" ? percent(v) : count(v)));
    // a series over more than one calendar year names the year too ("Dec 6, 25")
    const years = new Set(chartSeries.map((p) => p.date.slice(0, 4))).size;
    const dayFormat = new Intl.DateTimeFormat("en-US", {
      month: "short", day: "numeric", timeZone: "UTC", ...(years > 1 ? { year: "2-digit" } : {}),
    });
    const fullDay = new Intl.DateTimeFormat("en-US", { weekday: "short", year: "numeric", month: "short", day: "numeric", timeZone: "UTC" });
    const opts = {
      width: Math.max(box.clientWidth - 8, 200),
      height: 260,
      padding: [16, 28, 0, 4],
      scales: {
        x: { time: true },
        y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] },
      },
      axes: [
        {
          // one label a day at most (uPlot would split a short range into hours), fewer when they crowd
          stroke: muted, grid: { show: false }, ticks: { show: false },
          splits: (u) => {
            const fit = Math.max(1, Math.floor(u.bbox.width / uPlot.pxRatio / (years > 1 ? 96 : 72)));
            const step = Math.ceil(xs.length / fit);
            return xs.filter((_, i) => i % step === 0);
          },
          values: (u, splits) => splits.map((s) => dayFormat.format(new Date(s * 1000))),
        },
        { stroke: muted, grid: { stroke: grid, width: 1 }, ticks: { show: false }, size: 64, values: axisValue },
      ],
      series: [
        { value: (u, v) => (v == null ? "–" : fullDay.format(new Date(v * 1000))) },
        {
          label, stroke: accent, width: xs.length > 90 ? 1.5 : 2.5, fill: accent + "22",
          points: { show: xs.length <= 45, size: xs.length === 1 ? 10 : 6, fill: accent },
          value: (u, v) => format(kind, v),
        },
      ],
      cursor: { y: false, points: { size: 8 } },
      legend: { show: false },
      hooks: { setCursor: [(u) => showTip(u, label, kind, fullDay)] },
    };
    chart = new uPlot(opts, [xs, ys], box);
    // a single day (today, yesterday) is a point in the middle, not at the left edge
    if (xs.length === 1) chart.setScale("x", { min: xs[0] - 43200, max: xs[0] + 43200 });
    const tip = el("div", "tip");
    tip.hidden = true;
    chart.over.append(tip);
  }

  function showTip(u, label, kind, day) {
    const tip = u.over.querySelector(".tip");
    const i = u.cursor.idx;
    if (!tip) return;
    if (i === null || i === undefined || u.cursor.left < 0) {
      tip.hidden = true;
      return;
    }
    tip.replaceChildren(
      el("span", null, day.format(new Date(u.data[0][i] * 1000))),
      el("b", null, `${format(kind, u.data[1][i])} ${label.toLowerCase()}`),
    );
    tip.style.left = `${u.valToPos(u.data[0][i], "x")}px`;
    tip.style.top = `${u.valToPos(u.data[1][i] ?? 0, "y")}px`;
    tip.hidden = false;
  }

  new ResizeObserver(() => {
    if (chart) chart.setSize({ width: Math.max($("chart").clientWidth - 8, 200), height: 260 });
  }).observe($("chart"));

  // --- lists -------------------------------------------------------------------------------------------
  function renderRows(listId, rows, name, values, secondary) {
    const list = $(listId);
    if (!rows.length) {
      list.replaceChildren(el("li", "none", "Nothing in this period."));
      return;
    }
    const max = Math.max(1, ...rows.map((r) => values(r)[0] || 0));
    list.replaceChildren(
      ...rows.map((r) => {
        const row = el("li", "row");
        const bar = el("span", "bar");
        bar.style.width = `${Math.max(0.5, (100 * (values(r)[0] || 0)) / max)}%`;
        const label = el("span", "name");
        const [text, tag] = name(r);
        label.append(el("span", "label", text === null || text === undefined || text === "" ? "(none)" : text));
        if (tag) label.append(el("span", "tag", tag));
        label.title = label.textContent;
        row.append(bar, label, ...values(r).map((v, i) => el("span", i && secondary ? "num second" : "num", count(v))));
        return row;
      }),
    );
  }

  function renderPager(pagerId, data, onStep) {
    const pager = $(pagerId);
    const page = data.page || 1;
    const more = (data.rows || []).length >= (data.per_page || PER_PAGE);
    pager.hidden = page === 1 && !more;
    const [prev, label, next] = pager.children;
    prev.disabled = page <= 1;
    next.disabled = !more;
    label.textContent = `page ${page}`;
    prev.onclick = () => onStep(page - 1);
    next.onclick = () => onStep(page + 1);
  }

  async function loadPages(generation) {
    const view = state.pages;
    const params = reportParams({ page: state.pagesPage, per_page: PER_PAGE });
    const d = await data(view === "pages" ? "reports/pages" : "reports/flow", params);
    if (generation !== state.generation || view !== state.pages) return;
    const { columns, csv } = PAGES[view];
    $("pages-panel").dataset.view = view;
    $("pages-cols").replaceChildren(...columns.map((c, i) => el("span", i ? "num" : null, c)));
    $("pages-csv").hidden = !csv;
    if (csv) $("pages-csv").dataset.csv = csv;
    let rows;
    if (view === "pages") {
      rows = d.rows || [];
      renderRows("pages", rows, (r) => [r.path, r.contentGroup], (r) => [r.pageviews, r.uniquePageviews], true);
    } else if (view === "landing") {
      rows = d.landing_pages || [];
      renderRows("pages", rows, (r) => [r.path], (r) => [r.entries]);
    } else {
      rows = d.exit_pages || [];
      renderRows("pages", rows, (r) => [r.path], (r) => [r.exits]);
    }
    renderPager("pages-pager", { page: d.page || state.pagesPage, per_page: d.per_page, rows }, (page) => {
      state.pagesPage = page;
      loadPages(state.generation).catch(showError);
    });
  }

  async function loadSources(generation) {
    const by = state.sources;
    const d = await data("reports/sources", reportParams({ group_by: by, page: state.sourcesPage, per_page: PER_PAGE }));
    if (generation !== state.generation || by !== state.sources) return;
    $("sources-col").textContent = SOURCES[by].column;
    renderRows("sources", d.rows || [], (r) => [SOURCES[by].name(r)], (r) => [r.visits]);
    renderPager("sources-pager", d, (page) => {
      state.sourcesPage = page;
      loadSources(state.generation).catch(showError);
    });
  }

  async function loadEvents(generation) {
    const d = await data("reports/custom-events", reportParams({ page: state.eventsPage, per_page: PER_PAGE }));
    if (generation !== state.generation) return;
    renderRows("events", d.rows || [], (r) => [r.name], (r) => [r.count]);
    renderPager("events-pager", d, (page) => {
      state.eventsPage = page;
      loadEvents(state.generation).catch(showError);
    });
  }

  function renderDevices() {
    const d = state.devicesData || {};
    const which = DEVICES[state.devices];
    $("devices-col").textContent = which.column;
    renderRows("devices", d[state.devices] || [], (r) => [which.name(r)], (r) => [r.visits]);
  }

  function selectTab(tabsId, value) {
    for (const b of $(tabsId).querySelectorAll("button")) b.setAttribute("aria-selected", String(b.dataset.tab === value));
  }

  // --- realtime ----------------------------------------------------------------------------------------
  async function refreshRealtime() {
    if (!state.key || !state.website || document.hidden) return;
    const website = state.website;
    try {
      const d = await data("reports/realtime", { website_id: website });
      if (website !== state.website) return;
      const n = d.active_visitors || 0;
      $("realtime-count").textContent = count(n);
      $("realtime-label").textContent = n === 1 ? "current visitor" : "current visitors";
      $("realtime").dataset.updated = new Date().toISOString();
    } catch (err) {
      showError(err);
    }
  }
  function startRealtime() {
    stopRealtime();
    refreshRealtime();
    state.realtimeTimer = setInterval(refreshRealtime, REALTIME_MS);
  }
  function stopRealtime() {
    clearInterval(state.realtimeTimer);
    state.realtimeTimer = null;
  }
  document.addEventListener("visibilitychange", () => !document.hidden && state.realtimeTimer && refreshRealtime());

  // --- CSV: the key is a header, so the file is fetched and handed to the browser as a Blob -------------
  const CSV_PARAMS = {
    summary: () => reportParams({ compare: "previous_period" }),
    timeseries: () => reportParams({ metric: state.metric }),
    pages: () => reportParams({ per_page: 500 }),
    flow: () => reportParams({ per_page: 500 }),
    sources: () => reportParams({ group_by: state.sources, per_page: 500 }),
    devices: () => reportParams(),
    "custom-events": () => reportParams({ per_page: 500 }),
  };
  async function downloadCsv(button) {
    const report = button.dataset.csv;
    button.setAttribute("aria-busy", "true");
    try {
      const response = await call("reports/" + report, { ...CSV_PARAMS[report](), format: "csv" });
      const blob = await response.blob();
      const disposition = response.headers.get("Content-Disposition") || "";
      const named = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disposition);
      const link = el("a");
      link.href = URL.createObjectURL(blob);
      link.download = named ? decodeURIComponent(named[1]) : `${report}-${state.period}.csv`;
      document.body.append(link);
      link.click();
      setTimeout(() => {
        URL.revokeObjectURL(link.href);
        link.remove();
      }, 10000);
    } catch (err) {
      showError(err);
    } finally {
      button.removeAttribute("aria-busy");
    }
  }

  // --- wiring ------------------------------------------------------------------------------------------
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) return;
    localStorage.setItem(KEY_STORE, key);
    state.key = key;
    clearError();
    signIn();
  });
  $("sign-out").addEventListener("click", (event) => {
    event.preventDefault();
    signOut();
    history.replaceState(null, "", location.pathname);
  });
  $("website").addEventListener("change", (event) => {
    state.website = event.target.value;
    state.pagesPage = state.sourcesPage = state.eventsPage = 1;
    showGroups(true);
    load();
    refreshRealtime();
  });
  function showCustomRange() {
    $("custom-range").hidden = state.period !== "custom";
    $("start-date").value = state.start;
    $("end-date").value = state.end;
  }
  $("period").addEventListener("change", (event) => {
    if (event.target.value === "custom") {
      // a custom range starts as the last 7 days, to change and apply
      if (!state.start) {
        const day = (offset) => new Date(Date.now() - offset * 86400000).toISOString().slice(0, 10);
        state.start = day(6);
        state.end = day(0);
      }
      state.period = "custom";
      showCustomRange();
      return;
    }
    state.period = event.target.value;
    showCustomRange();
    state.pagesPage = state.sourcesPage = state.eventsPage = 1;
    load();
  });
  $("custom-range").addEventListener("submit", (event) => {
    event.preventDefault();
    const start = $("start-date").value, end = $("end-date").value;
    if (!DAY.test(start) || !DAY.test(end)) return;
    [state.start, state.end] = start <= end ? [start, end] : [end, start];
    showCustomRange();
    state.pagesPage = state.sourcesPage = state.eventsPage = 1;
    load();
  });
  $("metric").addEventListener("change", (event) => setMetric(event.target.value));
  $("sources-tabs").addEventListener("click", (event) => {
    const tab = event.target.closest("button[data-tab]");
    if (!tab || tab.dataset.tab === state.sources) return;
    state.sources = tab.dataset.tab;
    state.sourcesPage = 1;
    selectTab("sources-tabs", state.sources);
    writeHash();
    const generation = state.generation;
    loadSources(generation).catch((err) => generation === state.generation && showError(err));
  });
  $("pages-tabs").addEventListener("click", (event) => {
    const tab = event.target.closest("button[data-tab]");
    if (!tab || tab.dataset.tab === state.pages) return;
    state.pages = tab.dataset.tab;
    state.pagesPage = 1;
    selectTab("pages-tabs", state.pages);
    writeHash();
    const generation = state.generation;
    loadPages(generation).catch((err) => generation === state.generation && showError(err));
  });
  $("content-group").addEventListener("change", (event) => {
    state.contentGroup = event.target.value;
    state.pagesPage = state.sourcesPage = state.eventsPage = 1;
    load();
  });
  $("include-bots").addEventListener("change", (event) => {
    state.bots = event.target.checked;
    state.pagesPage = state.sourcesPage = state.eventsPage = 1;
    load();
  });
  $("devices-tabs").addEventListener("click", (event) => {
    const tab = event.target.closest("button[data-tab]");
    if (!tab) return;
    state.devices = tab.dataset.tab;
    selectTab("devices-tabs", state.devices);
    writeHash();
    renderDevices();
  });
  for (const button of document.querySelectorAll("button[data-csv]")) {
    button.addEventListener("click", () => downloadCsv(button));
  }

  if (state.key) signIn();
  else signOut();
})();
