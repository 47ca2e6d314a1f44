package applayer

import (
	"bytes"

	"github.com/bulkhead/bulkhead/internal/ids/rules"
	"github.com/bulkhead/bulkhead/internal/ids/stream"
)

// SSH: each side's identification line "SSH-2.0-OpenSSH_9.2p1 Debian-2"
// gives one Tx: ssh.proto "2.0", ssh.software "OpenSSH_9.2p1" (up to the
// first space, the comment excluded). A server may send other lines first
// (RFC 4253); up to maxPreBanner of them are skipped. After both banners
// the connection is encrypted and no longer parsed.

const (
	maxBannerLine = 255
	maxPreBanner  = 8
)

type sshConn struct {
	line  [2][]byte
	lines [2]int
	done  [2]bool
	peers [2]SSHPeer
	info  SSHInfo
}

func (c *Conn) sshState() *sshConn {
	if c.ssh == nil {
		c.ssh = &sshConn{}
	}
	return c.ssh
}

func (s *sshConn) stream(c *Conn, dir stream.Dir, data []byte, emit func(*Tx)) {
	for len(data) > 0 && !s.done[dir] {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			if len(s.line[dir])+len(data) > maxBannerLine {
				s.done[dir] = true
				break
			}
			s.line[dir] = append(s.line[dir], data...)
			return
		}
		if len(s.line[dir])+i > maxBannerLine {
			s.done[dir] = true
			break
		}
		l := append(s.line[dir], data[:i]...)
		s.line[dir] = l[:0]
		data = data[i+1:]
		l = bytes.TrimSuffix(l, []byte{'\r'})
		if !bytes.HasPrefix(l, []byte("SSH-")) {
			if s.lines[dir]++; s.lines[dir] > maxPreBanner {
				s.done[dir] = true
			}
			continue
		}
		s.done[dir] = true
		s.banner(c, dir, l, emit)
	}
	if s.done[0] && s.done[1] {
		c.dead = true
	}
}

func (s *sshConn) banner(c *Conn, dir stream.Dir, l []byte, emit func(*Tx)) {
	rest := l[4:]
	proto, soft, ok := bytes.Cut(rest, []byte{'-'})
	if !ok {
		return
	}
	if i := bytes.IndexByte(soft, ' '); i >= 0 {
		soft = soft[:i]
	}
	s.peers[dir] = SSHPeer{ProtoVersion: string(proto), SoftwareVersion: string(soft)}
	s.info = SSHInfo{}
	if s.peers[0].ProtoVersion != "" {
		s.info.Client = &s.peers[0]
	}
	if s.peers[1].ProtoVersion != "" {
		s.info.Server = &s.peers[1]
	}
	tx := c.newTx(dir)
	tx.Proto = rules.ProtoSSH
	tx.ID = uint64(dir)
	tx.Buf[rules.BufSSHProto] = proto
	tx.Buf[rules.BufSSHSoftware] = soft
	tx.SSH = &s.info
	emit(tx)
}
