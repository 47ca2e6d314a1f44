// Package dpi identifies the application of a flow from its first payload
// packets, regardless of port: a fixed-size, pointer-free per-flow state
// (Flow) is fed payloads per direction and says when the application and
// the attributes a rule needs (TLS version, SNI, ALPN, HTTP host...) are
// known. It also reads pcap/pcapng captures offline (ReadCapture), which is
// how `bulkhead dpi read` shows what the engine sees and how its accuracy is
// measured. Parsers never allocate on the hot path and never panic on
// truncated or hostile input.
package dpi
