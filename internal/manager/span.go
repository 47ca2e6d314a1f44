package manager

import (
	"context"
	"fmt"

	"github.com/bulkhead/bulkhead/internal/span"
)

// hostSpan computes what one host must enforce at the latest revision:
// only the rules applied to its workloads and the identities they name.
// The revision is left out of the payload so that a revision which does
// not change a host's span sends that host nothing; the agent stamps the
// revision it was given into the kernel.
func (s *Server) hostSpan(ctx context.Context, host string) (int64, string, []byte, error) {
	comp, rev, err := s.evals.spanCompiler(ctx, 0)
	if err != nil {
		return 0, "", nil, err
	}
	st, _, err := comp.Host(host, rev)
	if err != nil {
		return 0, "", nil, fmt.Errorf("host %s: %w", host, err)
	}
	st.Revision = 0
	// The IDS part: nil (left out of the payload) when no IDSProfile
	// applies to the host (ids.go).
	if st.IDS, err = s.hostIDS(ctx, host); err != nil {
		return 0, "", nil, err
	}
	payload, err := span.Encode(st)
	if err != nil {
		return 0, "", nil, fmt.Errorf("host %s: %w", host, err)
	}
	return rev, span.Format, payload, nil
}
