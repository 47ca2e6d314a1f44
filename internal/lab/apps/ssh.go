package apps

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// DefaultSSHVersion is the banner the lab's SSH server and clients send,
// the one a Debian 12 host sends, so that DPI sees a familiar software.
const DefaultSSHVersion = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"

// SSHConfig is the SSH server ("ssh"): password logins from Users, and a
// trivial shell that answers a few commands and echoes the others.
type SSHConfig struct {
	Env `yaml:"-"`
	// Port to listen on; 0 picks a free one. Default 22.
	Port int `json:"port" yaml:"port"`
	// Users are the accounts, name: password.
	Users map[string]string `json:"users" yaml:"users"`
	// Version is the server's identification string.
	Version string `json:"version,omitempty" yaml:"version"`
	// Hostname appears in prompts and in `hostname`.
	Hostname string `json:"hostname,omitempty" yaml:"hostname"`
	// HostKeyPEM is the host key (OpenSSH or PKCS#8 PEM); empty: an Ed25519
	// key made at start.
	HostKeyPEM string `json:"hostKeyPEM,omitempty" yaml:"-"`
}

// SetDefaults fills in port 22 and the banner.
func (c *SSHConfig) SetDefaults() {
	if c.Port == 0 {
		c.Port = 22
	}
	if c.Version == "" {
		c.Version = DefaultSSHVersion
	}
}

// Validate checks the configuration.
func (c SSHConfig) Validate() error {
	errs := []error{checkPort("port", c.Port)}
	if len(c.Users) == 0 {
		errs = append(errs, fieldErr("users", "at least one user (name: password)"))
	}
	for u, pw := range c.Users {
		if u == "" || pw == "" {
			errs = append(errs, fieldErr("users", "user %q: empty name or password", u))
		}
	}
	if c.Version != "" && !strings.HasPrefix(c.Version, "SSH-2.0-") {
		errs = append(errs, fieldErr("version", "%q must start with SSH-2.0-", c.Version))
	}
	return joinNonNil(errs)
}

// RunSSH serves SSH until ctx is cancelled.
func RunSSH(ctx context.Context, cfg SSHConfig) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("ssh: %w", err)
	}
	log := cfg.log().With("server", "ssh")
	var signer ssh.Signer
	var err error
	if cfg.HostKeyPEM != "" {
		signer, err = ssh.ParsePrivateKey([]byte(cfg.HostKeyPEM))
	} else {
		var key ed25519.PrivateKey
		_, key, err = ed25519.GenerateKey(rand.Reader)
		if err == nil {
			signer, err = ssh.NewSignerFromKey(key)
		}
	}
	if err != nil {
		return fmt.Errorf("ssh: host key: %w", err)
	}
	version := cfg.Version
	if version == "" {
		version = DefaultSSHVersion
	}
	hostname := cfg.Hostname
	if hostname == "" {
		hostname = "lab"
	}
	sc := &ssh.ServerConfig{
		ServerVersion: version,
		MaxAuthTries:  3,
		PasswordCallback: func(md ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			want, ok := cfg.Users[md.User()]
			if ok && want == string(pw) {
				log.Info("login", "user", md.User(), "ok", true, "remote", md.RemoteAddr().String(), "client", string(md.ClientVersion()))
				return &ssh.Permissions{}, nil
			}
			log.Info("login", "user", md.User(), "ok", false, "remote", md.RemoteAddr().String(), "client", string(md.ClientVersion()))
			return nil, errors.New("wrong user or password")
		},
	}
	sc.AddHostKey(signer)
	ln, err := cfg.listen(ctx, cfg.Port)
	if err != nil {
		return fmt.Errorf("ssh: %w", err)
	}
	log.Info("listening", "addr", ln.Addr().String(), "hostkey", ssh.FingerprintSHA256(signer.PublicKey()))
	return serveConns(ctx, ln, func(ctx context.Context, c net.Conn) {
		c.SetDeadline(time.Now().Add(30 * time.Second))
		sconn, chans, reqs, err := ssh.NewServerConn(c, sc)
		if err != nil {
			log.Debug("handshake", "remote", c.RemoteAddr().String(), "err", err)
			return
		}
		c.SetDeadline(time.Time{})
		defer sconn.Close()
		go ssh.DiscardRequests(reqs)
		for nc := range chans {
			if nc.ChannelType() != "session" {
				nc.Reject(ssh.UnknownChannelType, "only sessions here")
				continue
			}
			ch, creqs, err := nc.Accept()
			if err != nil {
				continue
			}
			go session(ch, creqs, sconn.User(), hostname, c.RemoteAddr().String(), log)
		}
	})
}

// session runs one session channel: exec runs one command, shell reads
// lines until "exit".
func session(ch ssh.Channel, reqs <-chan *ssh.Request, user, hostname, remote string, log *slog.Logger) {
	defer ch.Close()
	for req := range reqs {
		switch req.Type {
		case "pty-req", "env", "window-change":
			req.Reply(true, nil)
		case "exec":
			var p struct{ Command string }
			if err := ssh.Unmarshal(req.Payload, &p); err != nil {
				req.Reply(false, nil)
				return
			}
			req.Reply(true, nil)
			log.Info("exec", "user", user, "cmd", p.Command, "remote", remote)
			io.WriteString(ch, shellOutput(p.Command, user, hostname))
			ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
			return
		case "shell":
			req.Reply(true, nil)
			go func() {
				for r := range reqs {
					r.Reply(r.Type == "window-change", nil)
				}
			}()
			prompt := fmt.Sprintf("%s@%s:~$ ", user, hostname)
			io.WriteString(ch, "Linux "+hostname+" 6.1.0-lab #1 SMP x86_64\r\n"+prompt)
			sc := bufio.NewScanner(ch)
			sc.Buffer(make([]byte, 4096), 4096)
			for sc.Scan() {
				line := strings.TrimSpace(sc.Text())
				if line == "exit" || line == "logout" {
					break
				}
				log.Info("shell", "user", user, "cmd", line, "remote", remote)
				io.WriteString(ch, strings.ReplaceAll(shellOutput(line, user, hostname), "\n", "\r\n")+prompt)
			}
			ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
			return
		default:
			req.Reply(false, nil)
		}
	}
}

// shellOutput is what the trivial shell prints for cmd.
func shellOutput(cmd, user, hostname string) string {
	switch f := strings.Fields(cmd); {
	case len(f) == 0:
		return ""
	case f[0] == "hostname":
		return hostname + "\n"
	case f[0] == "whoami":
		return user + "\n"
	case f[0] == "id":
		return fmt.Sprintf("uid=1000(%s) gid=1000(%s) groups=1000(%s)\n", user, user, user)
	case f[0] == "uptime":
		return " 10:00:00 up 42 days,  3:14,  1 user,  load average: 0.08, 0.03, 0.01\n"
	case f[0] == "uname":
		return "Linux " + hostname + " 6.1.0-lab #1 SMP PREEMPT_DYNAMIC x86_64 GNU/Linux\n"
	case f[0] == "date":
		return time.Now().UTC().Format("Mon Jan _2 15:04:05 UTC 2006") + "\n"
	case cmd == "cat /etc/os-release":
		return "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n"
	case f[0] == "df":
		return "Filesystem      Size  Used Avail Use% Mounted on\n/dev/vda1        20G  6.1G   13G  33% /\n"
	case f[0] == "echo":
		return strings.Join(f[1:], " ") + "\n"
	}
	return "you ran: " + cmd + "\n"
}

// sshDial connects to addr and logs in with a password.
func sshDial(ctx context.Context, env *Env, addr, user, pw, version string, timeout time.Duration) (*ssh.Client, error) {
	c, err := env.dialer(timeout).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return sshHandshake(c, addr, user, pw, version, timeout)
}

func sshHandshake(c net.Conn, addr, user, pw, version string, timeout time.Duration) (*ssh.Client, error) {
	if version == "" {
		version = DefaultSSHVersion
	}
	cc := &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.Password(pw)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), //nolint:gosec // lab hosts make their keys at start
		ClientVersion:   version,
		Timeout:         timeout,
	}
	c.SetDeadline(time.Now().Add(timeout))
	conn, chans, reqs, err := ssh.NewClientConn(c, addr, cc)
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return ssh.NewClient(conn, chans, reqs), nil
}

// sshRun runs cmd in a new session of client, bounded by timeout.
func sshRun(client *ssh.Client, cmd string, timeout time.Duration) (string, error) {
	s, err := client.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	type res struct {
		out []byte
		err error
	}
	done := make(chan res, 1)
	go func() {
		out, err := s.Output(cmd)
		done <- res{out, err}
	}()
	select {
	case r := <-done:
		return string(r.out), r.err
	case <-time.After(timeout):
		return "", errors.New("command timed out")
	}
}

// SSHAdminConfig is an administrator on a jump host ("ssh-admin"): each
// round it logs into the next target and runs the commands.
type SSHAdminConfig struct {
	Env  `yaml:"-"`
	Pace `yaml:",inline"`
	// Targets are "HOST:PORT" SSH servers, visited in turn.
	Targets  []string `json:"targets" yaml:"targets"`
	User     string   `json:"user" yaml:"user"`
	Password string   `json:"password" yaml:"password"`
	Commands []string `json:"commands,omitempty" yaml:"commands"`
	// Version is the client's identification string.
	Version string `json:"version,omitempty" yaml:"version"`
}

// SetDefaults paces a login every 20s.
func (c *SSHAdminConfig) SetDefaults() {
	c.Pace.setDefaults(20 * time.Second)
	if len(c.Commands) == 0 {
		c.Commands = []string{"uptime", "df -h", "systemctl status --no-pager"}
	}
}

// Validate checks the configuration.
func (c SSHAdminConfig) Validate() error {
	errs := []error{c.Pace.validate()}
	if len(c.Targets) == 0 {
		errs = append(errs, fieldErr("targets", "at least one target"))
	}
	for i, t := range c.Targets {
		errs = append(errs, checkHostPort(fmt.Sprintf("targets[%d]", i), t))
	}
	if c.User == "" {
		errs = append(errs, fieldErr("user", "missing"))
	}
	if len(c.Commands) == 0 {
		errs = append(errs, fieldErr("commands", "at least one command"))
	}
	return joinNonNil(errs)
}

// Refs returns the targets.
func (c *SSHAdminConfig) Refs() []*string {
	refs := make([]*string, len(c.Targets))
	for i := range c.Targets {
		refs[i] = &c.Targets[i]
	}
	return refs
}

// RunSSHAdmin logs into one target per round and runs every command.
func RunSSHAdmin(ctx context.Context, cfg SSHAdminConfig) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("ssh-admin: %w", err)
	}
	log := cfg.log().With("client", "ssh-admin")
	return cfg.Pace.loop(ctx, func(ctx context.Context, n int) {
		target := cfg.Targets[(n-1)%len(cfg.Targets)]
		runSSHCommands(ctx, &cfg.Env, log, target, cfg.User, cfg.Password, cfg.Version, cfg.Commands, cfg.timeout())
	})
}

func runSSHCommands(ctx context.Context, env *Env, log *slog.Logger, target, user, pw, version string, cmds []string, timeout time.Duration) {
	client, err := sshDial(ctx, env, target, user, pw, version, timeout)
	if err != nil {
		failed(ctx, log, "ssh login", "target", target, "user", user, "err", err)
		return
	}
	defer client.Close()
	log.Info("ssh login", "target", target, "user", user, "server", string(client.ServerVersion()))
	for _, cmd := range cmds {
		out, err := sshRun(client, cmd, timeout)
		if err != nil {
			failed(ctx, log, "ssh exec", "target", target, "user", user, "cmd", cmd, "err", err)
			continue
		}
		first, _, _ := strings.Cut(out, "\n")
		log.Info("ssh exec", "target", target, "user", user, "cmd", cmd, "out", first)
	}
}
