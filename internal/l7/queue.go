package l7

import "github.com/bulkhead/bulkhead/internal/nfq"

// The queue client is internal/nfq's, shared with the IDS reader; these
// names keep the reader's code short.
type (
	queueConn    = nfq.Conn
	queuedPacket = nfq.Packet
)

const (
	nfqFlagFailOpen = nfq.FlagFailOpen
	nfqFlagGSO      = nfq.FlagGSO

	nfDrop   = nfq.Drop
	nfAccept = nfq.Accept
	nfRepeat = nfq.Repeat
)

func openQueue(q uint16, netns int, flags uint32) (*queueConn, error) {
	return nfq.Open(q, netns, flags)
}
