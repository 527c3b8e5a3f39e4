// Send OpenPanel calls through the real npm SDK (@openpanel/sdk) to a trackgate gateway.
//
//   node send.mjs <apiUrl> <clientId> [<clientSecret>] [--calls '<json>']
//
// --calls  a JSON array of [method, ...args] pairs, the args exactly as the SDK's methods take them,
//          e.g. [["identify", {"profileId": "u1"}], ["track", "signup", {"plan": "pro"}]].
//          Default: every call the SDK has (see DEFAULT_CALLS).
//
// Prints one JSON object: {"requests": [{url, headers, body}], "responses": [{url, status, body}],
// "results": [...]}. Exits 1 on any non-200/202 answer.
import { OpenPanel } from '@openpanel/sdk'

const DEFAULT_CALLS = [
  ['track', 'app_opened', { screen: 'home' }],
  ['identify', { profileId: 'user-42', firstName: 'Ada', lastName: 'Lovelace', email: 'ada@example.com', properties: { plan: 'pro' } }],
  ['track', 'signup', { plan: 'pro' }],
  ['increment', { profileId: 'user-42', property: 'stats.logins', value: 2 }],
  ['decrement', { profileId: 'user-42', property: 'credits' }],
  ['upsertGroup', { id: 'org_acme', type: 'company', name: 'Acme Inc', properties: { seats: 25 } }],
  ['setGroup', 'org_acme'],
  ['revenue', 1999, { currency: 'EUR' }],
]

const [apiUrl, clientId, ...rest] = process.argv.slice(2)
let clientSecret
let calls = DEFAULT_CALLS
for (let i = 0; i < rest.length; i++) {
  if (rest[i] === '--calls') calls = JSON.parse(rest[++i])
  else clientSecret = rest[i]
}
if (!apiUrl || !clientId) {
  console.error('usage: node send.mjs <apiUrl> <clientId> [<clientSecret>] [--calls JSON]')
  process.exit(2)
}

const log = { requests: [], responses: [], results: [] }
const realFetch = globalThis.fetch
globalThis.fetch = async (url, init = {}) => {
  log.requests.push({ url: String(url), headers: init.headers, body: init.body ? JSON.parse(init.body) : null })
  const response = await realFetch(url, init)
  const text = await response.clone().text()
  log.responses.push({ url: String(url), status: response.status, body: text })
  return response
}

const op = new OpenPanel({ clientId, clientSecret, apiUrl })
for (const [method, ...args] of calls) {
  log.results.push((await op[method](...args)) ?? null)
}
console.log(JSON.stringify(log))
process.exit(log.responses.every((r) => r.status === 200 || r.status === 202) ? 0 : 1)
