// Package agentapi is the gRPC contract between the manager and the agent on
// every host: enrollment, workload reports, the desired-state stream, its
// acknowledgements, flow records and IDS alerts. agent.pb.go and agent_grpc.pb.go are
// generated from agent.proto; flows.go converts flow records between the
// wire and internal/flow.
package agentapi

// Regenerate with protoc and the plugins the generated files name in their
// headers (protoc-gen-go v1.36.12, protoc-gen-go-grpc v1.5.1) on PATH:
//
//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative agent.proto

import "crypto/sha256"

// FormatEmpty is the format of a desired state that enforces nothing: the
// host has no policy yet. Its payload is empty.
const FormatEmpty = "empty"

// Digest identifies a desired state by its format and payload, so that both
// ends can tell whether the host already holds it without resending it.
func Digest(format string, payload []byte) []byte {
	h := sha256.New()
	h.Write([]byte(format))
	h.Write([]byte{0})
	h.Write(payload)
	return h.Sum(nil)
}
