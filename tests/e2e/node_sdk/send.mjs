// Sends calls with the official Segment Node SDK, unmodified, for tests/e2e/test_stock_sdks.py.
//
// stdin: {"writeKey": "...", "host": "http://127.0.0.1:PORT", "calls": [{"call": "track", ...}]}
// stdout: {"sent": [{"call", "messageId", "error"} per call, in order], "errors": [...]}, once
// every call's callback has run (closeAndFlush waits for them, retries included). Exits
// non-zero only on a crash.
import { Analytics } from '@segment/analytics-node'

const chunks = []
for await (const chunk of process.stdin) chunks.push(chunk)
const input = JSON.parse(Buffer.concat(chunks).toString('utf8'))

const analytics = new Analytics({
  writeKey: input.writeKey,
  host: input.host,
  maxRetries: 3,
  flushInterval: 200,
  httpRequestTimeout: 5000,
})
const errors = []
analytics.on('error', (err) => errors.push(String(err?.reason ?? err)))

// In call order; a call whose callback never ran stays null.
const sent = input.calls.map(() => null)
input.calls.forEach(({ call, ...params }, index) => {
  analytics[call](params, (err, ctx) => {
    sent[index] = {
      call,
      messageId: ctx?.event?.messageId ?? null,
      error: err ? String(err?.reason ?? err) : null,
    }
  })
})
await analytics.closeAndFlush({ timeout: 30000 })
process.stdout.write(JSON.stringify({ sent, errors }))
