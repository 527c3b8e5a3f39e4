// Send Bucket/Reflag calls through the real npm SDKs to a trackgate gateway.
//
//   node send.mjs tracking <host> <trackingKey> [--calls '<json>']   # @bucketco/tracking-sdk 2.4.0
//   node send.mjs node <apiBaseUrl> <secretKey> [--calls '<json>']  # @reflag/node-sdk 1.7.1
//
// Each SDK is configured by its base-URL option only (`init(key, {host})`; `new ReflagClient({secretKey,
// apiBaseUrl, flagsSyncMode: "polling"})`: the default "push" mode opens an SSE connection to Reflag's own
// host). Run without NODE_ENV=test: under it the node SDK is offline and sends nothing.
//
// --calls  a JSON array of calls:
//   {"call": "user", "userId", "attributes"?, "context"?}
//   {"call": "company", "companyId", "userId"?, "attributes"?, "context"?}
//   {"call": "track", "userId", "event", "attributes"?, "companyId"?, "context"?}
//   {"call": "feedback", "featureId", "userId", "companyId"?, "score"?, "comment"?}   (tracking only)
//   {"call": "flag", "key", "user": {"id", ...}, "company"?: {"id", ...}}             (node only: getFlag().isEnabled)
//   {"call": "remote", "userId", "companyId"?}                                         (node only: getFlagsRemote)
//
// Prints one JSON object: {"requests": [{method, url, headers, body}], "responses": [{url, status, body}],
// "results": [...], "errors": [...]}. `requests` is what the node SDK passed to fetch (the tracking SDK
// uses its own bundled fetch: only its responses are logged). Exits 1 on an SDK error, a logged SDK
// warning or error, or a non-2xx answer.
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)

function parseArgs(argv) {
  const [sdk, base, key, ...rest] = argv
  if (!['tracking', 'node'].includes(sdk) || !base || !key) {
    console.error('usage: node send.mjs tracking|node <base> <key> [--calls JSON]')
    process.exit(2)
  }
  const options = { sdk, base, key, calls: [] }
  for (let i = 0; i < rest.length; i += 2) {
    const [flag, value] = [rest[i], rest[i + 1]]
    if (flag === '--calls') options.calls = JSON.parse(value)
    else {
      console.error(`unknown option ${flag}`)
      process.exit(2)
    }
  }
  return options
}

const log = { requests: [], responses: [], results: [], errors: [] }

// Everything the SDKs log as a warning or an error is a failure (they log and drop a refused batch).
for (const level of ['warn', 'error']) {
  const original = console[level].bind(console)
  console[level] = (...args) => {
    log.errors.push(`${level}: ${args.map((a) => (a instanceof Error ? a.stack : typeof a === 'string' ? a : JSON.stringify(a))).join(' ')}`)
    original(...args)
  }
}

async function readBody(res) {
  const text = await res.text()
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

async function runTracking({ base, key, calls }) {
  const bucket = require('@bucketco/tracking-sdk')
  bucket.init(key, { host: base })
  for (const call of calls) {
    let res
    switch (call.call) {
      case 'user':
        res = await bucket.user(call.userId, call.attributes, call.context)
        break
      case 'company':
        res = await bucket.company(call.companyId, call.attributes, call.userId, call.context)
        break
      case 'track':
        res = await bucket.track(call.event, call.attributes, call.userId, call.companyId, call.context)
        break
      case 'feedback': {
        const { call: _, ...options } = call
        res = await bucket.feedback(options)
        break
      }
      default:
        throw new Error(`no such call for the tracking SDK: ${call.call}`)
    }
    log.responses.push({ url: res.url, status: res.status, body: await readBody(res) })
  }
}

async function runNode({ base, key, calls }) {
  const realFetch = globalThis.fetch
  globalThis.fetch = async (url, init = {}) => {
    const request = { method: (init.method ?? 'GET').toUpperCase(), url: String(url), headers: init.headers ?? {} }
    if (init.body !== undefined) request.body = JSON.parse(init.body)
    log.requests.push(request)
    const res = await realFetch(url, init)
    log.responses.push({ url: String(url), status: res.status, body: await readBody(res.clone()) })
    return res
  }
  const { ReflagClient } = require('@reflag/node-sdk')
  const client = new ReflagClient({ secretKey: key, apiBaseUrl: base, flagsSyncMode: 'polling' })
  await client.initialize()
  for (const call of calls) {
    switch (call.call) {
      case 'user':
        await client.updateUser(call.userId, { attributes: call.attributes, meta: call.context })
        break
      case 'company':
        await client.updateCompany(call.companyId, {
          attributes: call.attributes,
          userId: call.userId,
          meta: call.context,
        })
        break
      case 'track':
        await client.track(call.userId, call.event, {
          attributes: call.attributes,
          companyId: call.companyId,
          meta: call.context,
        })
        break
      case 'flag': {
        const flag = client.getFlag({ user: call.user, company: call.company }, call.key)
        log.results.push({ key: call.key, isEnabled: flag.isEnabled })
        break
      }
      case 'remote':
        log.results.push(await client.getFlagsRemote(call.userId, call.companyId))
        break
      default:
        throw new Error(`no such call for the node SDK: ${call.call}`)
    }
  }
  await new Promise((resolve) => setTimeout(resolve, 50)) // getFlag's check events are queued async
  await client.flush()
  client.destroy()
}

const options = parseArgs(process.argv.slice(2))
try {
  if (options.sdk === 'tracking') await runTracking(options)
  else await runNode(options)
} catch (err) {
  log.errors.push(String(err?.stack ?? err))
}
process.stdout.write(JSON.stringify(log) + '\n')
const failed = log.errors.length > 0 || log.responses.some((r) => r.status < 200 || r.status >= 300)
// exitCode, not exit(): the node SDK flushes on beforeExit and complains when the process is cut short
process.exitCode = failed ? 1 : 0
