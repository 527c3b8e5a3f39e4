// Send Segment calls through the real npm SDK (@segment/analytics-node) to a trackgate gateway.
//
//   node send.mjs <host> <writeKey> [--calls '<json>'] [--path /v1/batch] [--repeat N]
//
// --calls   a JSON array of {"type": "identify"|"track"|"page"|"screen"|"group"|"alias", ...params},
//           the params exactly as the SDK's methods take them (userId, event, properties, messageId, ...);
//           default: one identify, track, page, group and alias.
// --path    the SDK's `path` option (default: the SDK's own, /v1/batch).
// --repeat  send the same calls N times, each time through a new client that is flushed and closed:
//           a batch retried after its response was lost. Give the calls messageIds to make it one.
//
// Prints one JSON object: {"requests": [{url, headers, body}], "responses": [{url, status}]}, where
// `body` is the JSON the SDK sent. Exits 1 on any SDK error or any non-200 answer.
import { Analytics } from '@segment/analytics-node'

const DEFAULT_CALLS = [
  { type: 'identify', userId: 'user-42', anonymousId: 'anon-7', traits: { email: 'ada@example.com', plan: 'pro' } },
  { type: 'track', userId: 'user-42', event: 'Order Completed', properties: { order_id: 'o-1001', revenue: 14.99 } },
  { type: 'page', userId: 'user-42', category: 'Docs', name: 'Pricing', properties: { url: 'https://example.com/pricing' } },
  { type: 'group', userId: 'user-42', groupId: 'org-9', traits: { name: 'Initech', employees: 420 } },
  { type: 'alias', userId: 'user-42', previousId: 'anon-7' },
]

function parseArgs(argv) {
  const [host, writeKey, ...rest] = argv
  if (!host || !writeKey) {
    console.error('usage: node send.mjs <host> <writeKey> [--calls JSON] [--path PATH] [--repeat N]')
    process.exit(2)
  }
  const options = { host, writeKey, calls: DEFAULT_CALLS, path: undefined, repeat: 1 }
  for (let i = 0; i < rest.length; i += 2) {
    const [flag, value] = [rest[i], rest[i + 1]]
    if (flag === '--calls') options.calls = JSON.parse(value)
    else if (flag === '--path') options.path = value
    else if (flag === '--repeat') options.repeat = Number(value)
    else {
      console.error(`unknown option ${flag}`)
      process.exit(2)
    }
  }
  return options
}

async function sendOnce({ host, writeKey, calls, path }, log) {
  const settings = { writeKey, host, maxRetries: 0 }
  if (path) settings.path = path
  const analytics = new Analytics(settings)
  analytics.on('http_request', (req) =>
    log.requests.push({ url: req.url, headers: req.headers, body: JSON.parse(req.body) }),
  )
  analytics.on('http_response', (res) => log.responses.push({ url: res.url, status: res.status }))
  analytics.on('error', (err) => log.errors.push(String(err?.reason ?? err?.message ?? err)))
  for (const { type, ...params } of calls) {
    if (typeof analytics[type] !== 'function') throw new Error(`no such call: ${type}`)
    analytics[type](params)
  }
  await analytics.closeAndFlush({ timeout: 20000 })
}

const options = parseArgs(process.argv.slice(2))
const log = { requests: [], responses: [], errors: [] }
try {
  for (let i = 0; i < options.repeat; i++) await sendOnce(options, log)
} catch (err) {
  log.errors.push(String(err?.stack ?? err))
}
process.stdout.write(JSON.stringify(log) + '\n')
const failed = log.errors.length > 0 || log.responses.some((r) => r.status !== 200)
process.exit(failed ? 1 : 0)
