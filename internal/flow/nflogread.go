package flow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/florianl/go-nflog/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// OpenNFLog binds an NFLOG group as cfg says (NetNS by descriptor) and
// asks the kernel to report lost messages (ENOBUFS) instead of dropping
// them silently. what names the reader in errors and logs.
func OpenNFLog(cfg *nflog.Config, what string, log *slog.Logger) (*nflog.Nflog, error) {
	nf, err := nflog.Open(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: nflog group %d: %w", what, cfg.Group, err)
	}
	if err := nf.SetOption(netlink.NoENOBUFS, false); err != nil {
		log.Debug(what+": nflog: ENOBUFS reporting", "err", err)
	}
	return nf, nil
}

// NFLogErrors is the error function every NFLOG reader gives go-nflog:
// messages the kernel lost because the reader was slow (ENOBUFS) are
// counted in overruns and logged at powers of two, timeouts and temporary
// errors are ignored, and anything else ends the reading: fatal gets it
// once. After ctx is done every error ends the reading quietly.
func NFLogErrors(ctx context.Context, what string, group uint16, overruns *atomic.Uint64, log *slog.Logger, fatal func(error)) func(error) int {
	var once sync.Once
	return func(err error) int {
		if ctx.Err() != nil {
			return 1
		}
		if errors.Is(err, unix.ENOBUFS) {
			if n := overruns.Add(1); n&(n-1) == 0 {
				log.Warn(what+": nflog messages lost: reader too slow", "group", group, "overruns", n)
			}
			return 0
		}
		var op *netlink.OpError
		if errors.As(err, &op) && (op.Timeout() || op.Temporary()) {
			return 0
		}
		once.Do(func() { fatal(err) })
		return 1
	}
}
