// Package router chooses the upstream candidate and provider key for each
// attempt, and records the outcome of attempts so that failing candidates
// and keys cool down for a while. Every gateway and worker process shares
// that state through Redis.
//
// # Choice
//
// Plan takes the candidates of a logical model from the catalog and groups
// them by priority, highest tier first. Inside a tier it orders them by a
// weighted shuffle. Each position is drawn from the remaining candidates
// with probability Weight / (sum of the remaining weights). A candidate
// with weight 3 therefore comes first three times as often as one with
// weight 1.
// Plan leaves out candidates that are cooling down and candidates whose
// provider has keys of which none is usable. When it has to leave out every
// candidate, it returns a *CooldownError that wraps ErrAllCoolingDown and
// carries the earliest time at which one of them comes back, for a
// Retry-After header.
//
// Acquire chooses a key of the candidate's provider by the same weighted
// draw, among the keys that are not cooling down and are below their MaxQPS
// in the current second. A provider without keys is called with its
// Provider.APIKey.
//
// # Outcomes
//
// Report classifies the error of an attempt by providers.ErrorKind:
//
//   - rate_limited (HTTP 429) puts the candidate into cooldown for the
//     upstream's Retry-After, or Options.RateLimitCooldown without one.
//   - upstream_error, upstream_timeout, upstream_unreachable,
//     malformed_response and a stream_cut before the first delta count as
//     failures. Options.FailureThreshold failures within
//     Options.FailureWindow put the candidate into cooldown for
//     Options.FailureCooldown, doubled for each further cooldown in a row up
//     to Options.MaxCooldown. A stream cut after text was delivered does not
//     count, because the upstream had answered.
//   - upstream_auth (HTTP 401 or 403) puts the key into cooldown for
//     Options.AuthCooldown at once and asks Options.DisableKey to disable it
//     in the database. A provider without keys has its candidate cooled
//     instead.
//   - upstream_bad_request changes nothing: the request, not the upstream,
//     was at fault.
//
// A success resets the candidate's failure count and cooldown streak.
//
// CoolDownProvider puts every candidate of one provider into cooldown at
// once. The worker's probe schedule calls it for a provider whose health
// probe failed.
//
// # Shared state and speed
//
// Redis is the source of truth. Cooldowns live in one hash, field
// "c:<provider>|<model>" for a candidate and "k:<key id>" for a provider
// key, with the end of the cooldown in Unix milliseconds as the value.
// Provider IDs cannot contain "|", so the field names are unambiguous.
// Failure counts and streaks are string keys with a TTL, and the per-second
// request counters of keys with MaxQPS expire after two seconds. Each new
// cooldown and failure is written by a Lua script that also publishes it on
// one Pub/Sub channel, so the write and its message cost one round trip and
// cannot be split. Clearing a cooldown or a failure count sends the delete
// and its message in one pipeline.
//
// The gateway path has a budget of about a millisecond per request, so
// Plan and Acquire avoid Redis when they can. Run subscribes to the
// channel, loads the whole hash, and then applies each published change to
// a local mirror. While that subscription is confirmed, Plan and Acquire
// read only the mirror. That costs no round trip, plus one round trip per
// key with MaxQPS > 0 that Acquire tries. Before Run has loaded the hash,
// after it ends, and while its connection is down, they read the cooldowns
// of the candidates at hand with one HMGET each. Run reloads the hash
// after every reconnect and every Options.ResyncInterval, which repairs
// any message lost in between. A silently dead connection is noticed by a
// PING without a PONG within Options.PingInterval, so the mirror can lag by
// about two ping intervals at most before Plan switches to reading Redis.
//
// Report writes to Redis only on failures and when a success has a failure
// count to clear. The mirror marks the candidates with a count, from the
// process's own failures and, while Run is live, from the messages of other
// processes. A count that no success clears expires after FailureWindow, or
// after the cooldown it caused plus FailureWindow.
//
// Redis errors never fail a request: Plan and Acquire then treat nothing as
// cooling down, and Report logs and drops the update. After a failed call
// the router leaves Redis alone for a second, so that an outage does not
// add a dial timeout to every request.
package router
