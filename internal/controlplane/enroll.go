package controlplane

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bulkhead/bulkhead/internal/agentapi"
	"github.com/bulkhead/bulkhead/internal/store"
)

// hostNameRE is what a host name may look like: it becomes a certificate's
// common name and the prefix of discovered workloads' names, which follow
// the policy naming rules.
var hostNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)

// ValidHostName reports why name cannot be a host name, or "" if it can.
func ValidHostName(name string) string {
	if name == "" {
		return "empty host name"
	}
	if !hostNameRE.MatchString(name) {
		return fmt.Sprintf("host name %q: use 1-63 lowercase letters, digits, \"-\" and \".\", starting and ending with a letter or digit", name)
	}
	return ""
}

// CreateBootstrapToken issues a one-time enrollment token valid for ttl,
// for host only unless host is "", and records it in the audit log as
// actor's.
func (cp *ControlPlane) CreateBootstrapToken(ctx context.Context, host, actor string, ttl time.Duration) (string, store.BootstrapToken, error) {
	if host != "" {
		if why := ValidHostName(host); why != "" {
			return "", store.BootstrapToken{}, fmt.Errorf("controlplane: bootstrap token: %s: %w", why, store.ErrInvalid)
		}
	}
	secret, t, err := cp.cfg.Store.CreateBootstrapToken(ctx, host, actor, ttl)
	if err != nil {
		return "", store.BootstrapToken{}, fmt.Errorf("controlplane: %w", err)
	}
	forHost := "any host"
	if host != "" {
		forHost = "host " + host
	}
	cp.audit(ctx, actor, "bootstrap-token.create", "BootstrapToken/"+t.ID,
		fmt.Sprintf("for %s, expires %s", forHost, t.Expires.Format(time.RFC3339)))
	return secret, t, nil
}

// Revoke revokes a host's certificate and ends its stream; the host must
// enroll again with a new bootstrap token.
func (cp *ControlPlane) Revoke(ctx context.Context, host, actor string) error {
	if err := cp.cfg.Store.RevokeHost(ctx, host); err != nil {
		return fmt.Errorf("controlplane: %w", err)
	}
	cp.disconnect(host, errRevoked)
	cp.audit(ctx, actor, "host.revoke", "Host/"+host, "")
	cp.log.Info("host revoked", "host", host, "by", actor)
	return nil
}

// audit writes one audit entry that changes neither policy nor inventory.
func (cp *ControlPlane) audit(ctx context.Context, actor, action, object, diff string) {
	_, err := cp.cfg.Store.Commit(ctx, store.Commit{Author: actor,
		Audit: []store.AuditEntry{{Actor: actor, Action: action, Object: object, Diff: diff}}})
	if err != nil {
		cp.log.Error("audit write failed", "action", action, "object", object, "err", err)
	}
}

// agentActor is how a host appears in the audit log.
func agentActor(host string) string { return "agent:" + host }

func (cp *ControlPlane) enroll(ctx context.Context, req *agentapi.EnrollRequest) (*agentapi.EnrollResponse, error) {
	name := req.GetHostName()
	if why := ValidHostName(name); why != "" {
		return nil, status.Errorf(codes.InvalidArgument, "enroll: %s", why)
	}
	if req.GetBootstrapToken() == "" {
		return nil, status.Errorf(codes.Unauthenticated, "enroll %s: a bootstrap token is required (bulkhead token create)", name)
	}
	// Sign before spending the token, so that a bad request leaves it
	// usable; the certificate is handed out only if the token is good.
	certPEM, err := cp.cfg.CA.SignCSR(req.GetCsrPem(), name, cp.cfg.CertTTL)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "enroll %s: %v", name, err)
	}
	block, _ := pem.Decode(certPEM)
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "enroll %s: parse issued certificate: %v", name, err)
	}
	h, err := cp.cfg.Store.EnrollHost(ctx, req.GetBootstrapToken(), store.Host{
		Name: name, CertSerial: leaf.SerialNumber.Text(16), CertFingerprint: Fingerprint(leaf),
	})
	if err != nil {
		cp.log.Warn("enrollment refused", "host", name, "err", err)
		return nil, enrollRefusal(name, err)
	}
	// A host that enrolls again invalidates its old certificate: end a
	// stream still open with it.
	cp.disconnect(name, errRevoked)
	cp.mu.Lock()
	delete(cp.hosts, name)
	cp.mu.Unlock()
	cp.audit(ctx, agentActor(name), "host.enroll", "Host/"+name,
		fmt.Sprintf("certificate serial %s, fingerprint %s", h.CertSerial, h.CertFingerprint))
	cp.log.Info("host enrolled", "host", name, "serial", h.CertSerial)
	return &agentapi.EnrollResponse{CertPem: certPEM, CaPem: cp.cfg.CA.CertPEM()}, nil
}

// enrollRefusal turns a store refusal into the status an agent shows its
// operator.
func enrollRefusal(host string, err error) error {
	switch {
	case errors.Is(err, store.ErrTokenUsed):
		return status.Errorf(codes.Unauthenticated, "enroll %s: bootstrap token already used; create a new one with 'bulkhead token create'", host)
	case errors.Is(err, store.ErrTokenExpired):
		return status.Errorf(codes.Unauthenticated, "enroll %s: bootstrap token expired; create a new one with 'bulkhead token create'", host)
	case errors.Is(err, store.ErrTokenHost):
		return status.Errorf(codes.PermissionDenied, "enroll %s: bootstrap token was issued for another host", host)
	case errors.Is(err, store.ErrNotFound):
		return status.Errorf(codes.Unauthenticated, "enroll %s: bootstrap token not recognised", host)
	}
	return status.Errorf(codes.Internal, "enroll %s: cannot record the enrollment", host)
}
