// Package archtest holds the tests that keep the code base's shape: every
// package documented, and the import boundaries between packages.
package archtest
