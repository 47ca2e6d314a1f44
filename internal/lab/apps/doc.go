// Package apps holds the lab's applications: servers and clients that speak
// real protocols (HTTP/1.1, HTTP/2, TLS 1.0-1.3, DNS over UDP and TCP, SSH,
// LDAP, a SQL-like and a Redis-like service) inside a workload's network
// namespace, so that flows, DPI, FQDN rules, user identity and the IDS have
// real traffic to work on.
//
// Each application is a function Run*(ctx, cfg) that returns nil when ctx is
// cancelled. Main dispatches by name and decodes the configuration strictly
// from JSON; the hidden `bulkhead lab app NAME --config JSON` command calls it
// inside a workload's namespace.
//
// Servers: http, https, api, db, cache, dns, ssh, ldap.
// Clients: shopper, api-caller, tls-client, ssh-admin, rdsh, dns-client,
// db-client, cache-client, ldap-client, attacker.
//
// Every client is bounded: it acts every Pace.Interval (plus or minus
// Jitter), each action has a timeout, the attacker's phases are
// rate-limited, and one line is logged per action. Every connection goes
// through a dialer that refuses, before connecting, any address outside
// Env.Allow (loopback only when empty), whatever a name resolved to; names
// are resolved by the lab DNS server (Env.Resolver) and nothing else.
package apps
