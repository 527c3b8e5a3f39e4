// Runs Spectacle's official GTM server-side template (gtm_template.js, verbatim) in Node with the GTM
// sandbox APIs it requires shimmed after their documented behaviour
// (https://developers.google.com/tag-platform/tag-manager/server-side/api). Its sendHttpRequest is a
// real HTTP request (fetch), so the bytes on the wire are the template's own.
//
//   node run_gtm.mjs '<spec json>'
//   spec: {remoteAddress, requestHeaders: {...}, cookies: {...}, calls: [{data: {...}, eventData: {...}}]}
//
// Prints {results: ["success"|"failure", ...], cookies: {...}} as JSON. Cookies persist across calls,
// as the browser would keep them between hits.
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";

const spec = JSON.parse(process.argv[2]);
const code = readFileSync(new URL("./gtm_template.js", import.meta.url), "utf8");
const cookies = { ...(spec.cookies || {}) };

function getType(v) {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v;
}

function parseUrl(url) {
  let u;
  try {
    u = new URL(url);
  } catch {
    return undefined;
  }
  const searchParams = {};
  for (const [k, v] of u.searchParams) searchParams[k] = v;
  return {
    href: u.href, origin: u.origin, protocol: u.protocol, username: u.username, password: u.password,
    host: u.host, hostname: u.hostname, port: u.port, pathname: u.pathname, search: u.search,
    hash: u.hash, searchParams,
  };
}

function runOne(call) {
  return new Promise((resolve) => {
    const eventData = call.eventData || {};
    const apis = {
      sendHttpRequest: async (url, options, body) => {
        const r = await fetch(url, { method: options.method, headers: options.headers, body });
        const headers = {};
        r.headers.forEach((v, k) => (headers[k] = v));
        return { statusCode: r.status, headers, body: await r.text() };
      },
      JSON: { stringify: JSON.stringify, parse: JSON.parse },
      getEventData: (key) => key.split(".").reduce((o, k) => (o == null ? undefined : o[k]), eventData),
      getAllEventData: () => eventData,
      getCookieValues: (name) => (name in cookies ? [cookies[name]] : []),
      setCookie: (name, value) => {
        cookies[name] = value;
      },
      getRequestHeader: (name) => (spec.requestHeaders || {})[name.toLowerCase()],
      sha256Sync: (s) => createHash("sha256").update(s).digest("base64"),
      getTimestampMillis: () => Date.now(),
      logToConsole: (...args) => console.error(...args.map((a) => (typeof a === "string" ? a : JSON.stringify(a)))),
      generateRandom: (min, max) => Math.floor(Math.random() * (max - min + 1)) + min,
      parseUrl,
      getType,
      makeString: (v) => String(v),
      makeInteger: (v) => Math.trunc(Number(v)),
      makeNumber: (v) => Number(v),
      Math,
      getRemoteAddress: () => spec.remoteAddress,
    };
    const data = {
      ...call.data,
      gtmOnSuccess: () => resolve("success"),
      gtmOnFailure: () => resolve("failure"),
    };
    const require = (name) => {
      if (!(name in apis)) throw new Error(`unshimmed GTM API ${name}`);
      return apis[name];
    };
    new Function("require", "data", code)(require, data);
  });
}

const results = [];
for (const call of spec.calls) results.push(await runOne(call));
console.log(JSON.stringify({ results, cookies }));
