// Package systest holds Bulkhead's system tests. They build the bulkhead
// binary once and drive it as a user would: a manager process, bootstrap
// tokens from the CLI, one agent process per host of a two-host, six-workload
// data center built from network namespaces with internal/netlab, policy
// applied with `bulkhead apply`, and real TCP, UDP and ICMP connections
// between the workloads, each compared with `bulkhead eval` for the same
// flow and with the flow records `bulkhead flows` shows. They check that
// enforcement survives an agent killed with SIGKILL and a manager that is
// away, and that `bulkhead agent --uninstall` leaves nothing behind.
//
// The tests need root (namespaces, veths, nftables); `go test` skips them
// otherwise. Everything they make is removed when each test ends, passed or
// failed. There is no non-test code here: this file is the package doc.
package systest
