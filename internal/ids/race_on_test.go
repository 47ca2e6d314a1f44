//go:build race

package ids

// raceEnabled: the race detector makes sync.Pool drop items at random,
// so the regexp package's pooled machines are allocated again.
const raceEnabled = true
