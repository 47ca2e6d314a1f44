package nfq

import (
	"fmt"

	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// IfName resolves the interface indexes a queued packet carries (in and
// out device) to names in the namespace of fd (0: the caller's), one
// rtnetlink handle per call; readers cache the answers.
func IfName(fd int) func(uint32) (string, error) {
	return func(index uint32) (string, error) {
		var (
			h   *vnl.Handle
			err error
		)
		if fd != 0 {
			h, err = vnl.NewHandleAt(netns.NsHandle(fd))
		} else {
			h, err = vnl.NewHandle()
		}
		if err != nil {
			return "", fmt.Errorf("netlink: %w", err)
		}
		defer h.Close()
		l, err := h.LinkByIndex(int(index))
		if err != nil {
			return "", fmt.Errorf("interface %d: %w", index, err)
		}
		return l.Attrs().Name, nil
	}
}
