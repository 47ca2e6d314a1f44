package apps

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// RDSHConfig is a multi-user remote desktop host ("rdsh"): several people
// logged into one machine, each working on their own.
//
// Every connection a user makes leaves from a source port in that user's
// own range (Ports), the way an RDSH agent that splits the port space by
// session does, so the user of any connection is known from its source
// port. The ranges must not overlap; keep them below 32768 so that they
// never meet the kernel's ephemeral ports (32768-60999 by default), which
// the host's other programs use.
type RDSHConfig struct {
	Env  `yaml:"-"`
	Pace `yaml:",inline"`
	// Users are the people logged in.
	Users []RDSHUser `json:"users" yaml:"users"`
	// UserDN is the directory DN for ldap actions, with %s for the user
	// name; default "uid=%s,ou=people,dc=lab,dc=test".
	UserDN string `json:"userDN,omitempty" yaml:"userDN"`
}

// RDSHUser is one person's session on the host.
type RDSHUser struct {
	Name string `json:"name" yaml:"name"`
	// Ports is the session's source port range, "LO-HI".
	Ports    string `json:"ports" yaml:"ports"`
	Password string `json:"password,omitempty" yaml:"password"`
	// Actions are what the user does, one picked at random per round.
	Actions []RDSHAction `json:"actions" yaml:"actions"`
}

// RDSHAction is one thing a user does; exactly one of HTTP, SSH, LDAP.
type RDSHAction struct {
	// HTTP is a URL to browse (http:// or https://).
	HTTP string `json:"http,omitempty" yaml:"http"`
	// SSH is "HOST:PORT": log in as the user and run Command.
	SSH     string `json:"ssh,omitempty" yaml:"ssh"`
	Command string `json:"command,omitempty" yaml:"command"`
	// LDAP is "HOST:PORT": bind to the directory as the user (a logon).
	LDAP string `json:"ldap,omitempty" yaml:"ldap"`
}

// SetDefaults paces each user's actions every 4s.
func (c *RDSHConfig) SetDefaults() {
	c.Pace.setDefaults(4 * time.Second)
	if c.UserDN == "" {
		c.UserDN = "uid=%s,ou=people,dc=lab,dc=test"
	}
	for i := range c.Users {
		for j := range c.Users[i].Actions {
			if a := &c.Users[i].Actions[j]; a.SSH != "" && a.Command == "" {
				a.Command = "hostname"
			}
		}
	}
}

// Validate checks the configuration.
func (c RDSHConfig) Validate() error {
	errs := []error{c.Pace.validate()}
	if len(c.Users) == 0 {
		errs = append(errs, fieldErr("users", "at least one user"))
	}
	if c.UserDN != "" && strings.Count(c.UserDN, "%s") != 1 {
		errs = append(errs, fieldErr("userDN", "%q: want exactly one %%s for the user name", c.UserDN))
	}
	var ranges []PortRange
	names := map[string]bool{}
	for i, u := range c.Users {
		f := fmt.Sprintf("users[%d]", i)
		if u.Name == "" {
			errs = append(errs, fieldErr(f+".name", "missing"))
		} else if names[u.Name] {
			errs = append(errs, fieldErr(f+".name", "%q twice", u.Name))
		}
		names[u.Name] = true
		r, err := ParsePortRange(u.Ports)
		if err != nil {
			errs = append(errs, &FieldError{Field: f + ".ports", Err: err})
		} else {
			if r.Size() < 16 {
				errs = append(errs, fieldErr(f+".ports", "%s: want at least 16 ports", r))
			}
			for j, o := range ranges {
				if r.Overlaps(o) {
					errs = append(errs, fieldErr(f+".ports", "%s overlaps users[%d]'s %s: the user of a connection would be ambiguous", r, j, o))
				}
			}
			ranges = append(ranges, r)
		}
		if len(u.Actions) == 0 {
			errs = append(errs, fieldErr(f+".actions", "at least one action"))
		}
		for j, a := range u.Actions {
			af := fmt.Sprintf("%s.actions[%d]", f, j)
			n := 0
			if a.HTTP != "" {
				n++
				errs = append(errs, checkURL(af+".http", a.HTTP, "http", "https"))
			}
			if a.SSH != "" {
				n++
				errs = append(errs, checkHostPort(af+".ssh", a.SSH))
				if u.Password == "" {
					errs = append(errs, fieldErr(f+".password", "needed for ssh actions"))
				}
			}
			if a.LDAP != "" {
				n++
				errs = append(errs, checkHostPort(af+".ldap", a.LDAP))
				if u.Password == "" {
					errs = append(errs, fieldErr(f+".password", "needed for ldap actions"))
				}
			}
			if n != 1 {
				errs = append(errs, fieldErr(af, "want exactly one of http, ssh, ldap"))
			}
			if a.Command != "" && a.SSH == "" {
				errs = append(errs, fieldErr(af+".command", "only with ssh"))
			}
		}
	}
	return joinNonNil(errs)
}

// Refs returns every action's target.
func (c *RDSHConfig) Refs() []*string {
	var refs []*string
	for i := range c.Users {
		for j := range c.Users[i].Actions {
			a := &c.Users[i].Actions[j]
			for _, p := range []*string{&a.HTTP, &a.SSH, &a.LDAP} {
				if *p != "" {
					refs = append(refs, p)
				}
			}
		}
	}
	return refs
}

// portPicker hands out a range's ports in turn, so that a port is reused
// only after the whole range has been, long after its TIME_WAIT.
type portPicker struct {
	r    PortRange
	next atomic.Uint32
}

func (p *portPicker) pick() int {
	return p.r.Lo + int(p.next.Add(1)-1)%p.r.Size()
}

// userDialer connects from a port of the user's range; a port still in use
// (another connection, TIME_WAIT towards the same peer) is skipped.
func (e *Env) userDialer(p *portPicker, timeout time.Duration) dialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var lastErr error
		for range 16 {
			port := p.pick()
			d := e.dialer(timeout)
			d.LocalAddr = &net.TCPAddr{Port: port}
			d.Control = func(network, address string, rc syscall.RawConn) error {
				if err := e.control(network, address, rc); err != nil {
					return err
				}
				var serr error
				rc.Control(func(fd uintptr) {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
				})
				return serr
			}
			c, err := d.DialContext(ctx, network, addr)
			if err == nil {
				return c, nil
			}
			lastErr = err
			if !errors.Is(err, syscall.EADDRINUSE) && !errors.Is(err, syscall.EADDRNOTAVAIL) {
				return nil, err
			}
		}
		return nil, fmt.Errorf("no free source port in %s: %w", p.r, lastErr)
	}
}

// RunRDSH runs every user's session, each at its own pace.
func RunRDSH(ctx context.Context, cfg RDSHConfig) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("rdsh: %w", err)
	}
	log := cfg.log().With("client", "rdsh")
	userDN := cfg.UserDN
	if userDN == "" {
		userDN = "uid=%s,ou=people,dc=lab,dc=test"
	}
	var wg sync.WaitGroup
	for _, u := range cfg.Users {
		r, _ := ParsePortRange(u.Ports)
		picker := &portPicker{r: r}
		picker.next.Store(uint32(rand.IntN(r.Size()))) // a restart does not start on the same ports
		dial := cfg.userDialer(picker, cfg.timeout())
		ulog := log.With("user", u.Name, "ports", r.String())
		wg.Go(func() {
			// Users do not all start at the same instant.
			if !sleep(ctx, time.Duration(rand.Int64N(int64(cfg.Interval)+1))) {
				return
			}
			ulog.Info("session start")
			cfg.Pace.loop(ctx, func(ctx context.Context, _ int) {
				a := u.Actions[rand.IntN(len(u.Actions))]
				ctx, cancel := context.WithTimeout(ctx, 3*cfg.timeout())
				defer cancel()
				switch {
				case a.HTTP != "":
					b, err := newBrowser(&ClientTLS{}, a.HTTP, browserUA, cfg.timeout(), dial, ulog)
					if err != nil {
						failed(ctx, ulog, "http", "url", a.HTTP, "err", err)
						return
					}
					b.tr.DisableKeepAlives = true
					b.visit(ctx, a.HTTP, 1, false, "", "")
					b.close()
				case a.SSH != "":
					c, err := dial(ctx, "tcp", a.SSH)
					if err != nil {
						failed(ctx, ulog, "ssh login", "target", a.SSH, "err", err)
						return
					}
					client, err := sshHandshake(c, a.SSH, u.Name, u.Password, "", cfg.timeout())
					if err != nil {
						failed(ctx, ulog, "ssh login", "target", a.SSH, "src", c.LocalAddr().String(), "err", err)
						return
					}
					out, err := sshRun(client, a.Command, cfg.timeout())
					client.Close()
					first, _, _ := strings.Cut(out, "\n")
					if err != nil {
						failed(ctx, ulog, "ssh exec", "target", a.SSH, "cmd", a.Command, "err", err)
						return
					}
					ulog.Info("ssh exec", "target", a.SSH, "src", c.LocalAddr().String(), "cmd", a.Command, "out", first)
				case a.LDAP != "":
					c, err := dial(ctx, "tcp", a.LDAP)
					if err != nil {
						failed(ctx, ulog, "ldap bind", "target", a.LDAP, "err", err)
						return
					}
					dn := fmt.Sprintf(userDN, u.Name)
					err = ldapBindConn(c, dn, u.Password, cfg.timeout())
					ulog.Info("ldap bind", "target", a.LDAP, "src", c.LocalAddr().String(), "dn", dn, "ok", err == nil)
				}
			})
			ulog.Info("session end")
		})
	}
	wg.Wait()
	return nil
}
