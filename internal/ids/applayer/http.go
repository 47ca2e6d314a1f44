package applayer

import (
	"bytes"

	"github.com/bulkhead/bulkhead/internal/ids/rules"
	"github.com/bulkhead/bulkhead/internal/ids/stream"
)

// HTTP/1.x. What the parser does, where signatures could care:
//
//   - Requests may be pipelined; blank lines between messages are skipped.
//     A request's Tx is emitted when its body is complete, when the body
//     reaches maxBody (the rest of it is consumed uninspected), or at Close.
//   - Bodies: Content-Length or chunked (decoded; chunk extensions and
//     trailers dropped); a response without either runs until the
//     connection closes. Content-Encoding (gzip) is NOT decoded.
//   - http.uri is the request target normalized: an absolute-form target
//     ("http://host/p") reduced to its path and query, %XX decoded in the
//     path and the query, "." and ".." segments removed after decoding (so
//     "%2e%2e/" is collapsed too). "//" is kept, as is "\".
//   - http.header is "Name: value\r\n" per header in order, names as sent,
//     without Cookie and Set-Cookie, ending with one more "\r\n"; folded
//     lines are joined with a space. http.header.raw is the header lines as
//     sent (start line excluded, final blank line included); http.start is
//     the whole head as sent. A header that appears twice gives its first
//     value to the single-header buffers (http.user_agent, ...).
//   - A response is paired with the oldest request not yet answered (up to
//     maxQueued waiting; beyond, responses stay unpaired until the backlog
//     is answered); its Tx carries that request's buffers (method,
//     uri, host, user agent, request line) beside its own, and its EVE info
//     the request's URL. 1xx responses other than 101 are skipped; 101 and
//     a successful CONNECT end parsing (the connection is a tunnel then).
//   - A head longer than maxHead, a bad chunk size or a start line that is
//     not HTTP ends parsing of that direction; what was read is emitted.

const (
	maxHead    = 32 << 10
	maxBody    = 64 << 10
	maxQueued  = 4
	maxLine    = 1 << 10 // chunk-size and trailer lines
	maxHeaders = 256
	maxTrailer = 8 << 10
)

type httpState uint8

const (
	stHead httpState = iota
	stBody
	stChunkSize
	stChunkData
	stChunkEnd
	stTrailer
	stUntilClose
	stDead
)

type header struct{ name, value []byte }

// scratch is where a head's headers are split into; one per direction.
type scratch struct {
	hdrs []header
	fold []byte
}

// headView is a parsed head: views into its bytes (and the scratch).
type headView struct {
	head    []byte // the whole head
	first   []byte // the start line
	a, b, c []byte // method, target, protocol; or protocol, code, message
	lines   []byte // the header lines, blank line included
	hdrs    []header
}

func (v *headView) get(lower string) []byte {
	for _, h := range v.hdrs {
		if equalFold(h.name, lower) {
			return h.value
		}
	}
	return nil
}

// reqEntry is a request waiting for its response.
type reqEntry struct {
	id     uint64
	head   []byte
	method methodKind
	info   HTTPInfo
}

type methodKind uint8

const (
	methodOther methodKind = iota
	methodHEAD
	methodCONNECT
)

type httpHalf struct {
	state   httpState
	head    []byte // the head being read, then the current message's
	line    []byte // a chunk-size or trailer line being read
	trailer int
	remain  int64
	body    []byte
	bodyLen int
	emitted bool // the Tx was emitted when the body reached maxBody
	id      uint64
	// Response side: the request it answers (req.head nil: unpaired).
	req    reqEntry
	status int
}

type httpConn struct {
	half   [2]httpHalf
	sc     [2]scratch
	queue  [maxQueued]reqEntry
	qFirst int
	qLen   int
	// overflow counts requests not queued; as many responses after the
	// queued ones are unpaired.
	overflow int
	nextID   uint64
	arena    []byte
	tmp      []byte
	info     HTTPInfo
	cache    struct{ host, url, ua, ctype, referer textCache }
}

func (c *Conn) httpState() *httpConn {
	if c.http == nil {
		c.http = &httpConn{}
	}
	return c.http
}

// reset readies hc for a new connection, keeping its buffers.
func (hc *httpConn) reset() {
	for i := range hc.half {
		h := &hc.half[i]
		*h = httpHalf{head: h.head[:0], line: h.line[:0], body: h.body[:0], req: reqEntry{head: h.req.head[:0]}}
	}
	for i := range hc.queue {
		hc.queue[i] = reqEntry{head: hc.queue[i].head[:0]}
	}
	hc.qFirst, hc.qLen, hc.nextID, hc.overflow = 0, 0, 0, 0
}

// stream consumes in-order bytes of direction dir.
func (hc *httpConn) stream(c *Conn, dir stream.Dir, data []byte, emit func(*Tx)) {
	h := &hc.half[dir]
	for len(data) > 0 {
		switch h.state {
		case stDead:
			return
		case stHead:
			data = hc.headBytes(c, dir, data, emit)
		case stBody:
			n := int(min(int64(len(data)), h.remain))
			hc.bodyBytes(c, dir, data[:n], emit)
			data, h.remain = data[n:], h.remain-int64(n)
			if h.remain == 0 {
				hc.done(c, dir, emit)
			}
		case stUntilClose:
			hc.bodyBytes(c, dir, data, emit)
			data = nil
		case stChunkSize:
			var l []byte
			var ok bool
			if l, data, ok = h.readLine(data); !ok {
				break
			}
			size, valid := chunkSize(l)
			switch {
			case !valid:
				hc.fail(c, dir, emit)
			case size == 0:
				h.state, h.trailer = stTrailer, 0
			default:
				h.state, h.remain = stChunkData, size
			}
		case stChunkData:
			n := int(min(int64(len(data)), h.remain))
			hc.bodyBytes(c, dir, data[:n], emit)
			data, h.remain = data[n:], h.remain-int64(n)
			if h.remain == 0 {
				h.state = stChunkEnd
			}
		case stChunkEnd:
			var ok bool
			if _, data, ok = h.readLine(data); ok {
				h.state = stChunkSize
			}
		case stTrailer:
			var l []byte
			var ok bool
			before := len(data)
			if l, data, ok = h.readLine(data); !ok {
				break
			}
			h.trailer += before - len(data)
			if len(l) == 0 {
				hc.done(c, dir, emit)
			} else if h.trailer > maxTrailer {
				hc.fail(c, dir, emit)
			}
		}
		if c.dead {
			return
		}
	}
}

// readLine reads a line ending in LF; ok when it is complete (l without
// its CR LF). A line longer than maxLine ends the direction.
func (h *httpHalf) readLine(data []byte) (l, rest []byte, ok bool) {
	i := bytes.IndexByte(data, '\n')
	if i < 0 {
		if len(h.line)+len(data) > maxLine {
			h.state = stDead
			return nil, nil, false
		}
		h.line = append(h.line, data...)
		return nil, nil, false
	}
	if len(h.line) > 0 {
		if len(h.line)+i > maxLine {
			h.state = stDead
			return nil, nil, false
		}
		h.line = append(h.line, data[:i]...)
		l = h.line
		h.line = h.line[:0]
	} else {
		l = data[:i]
	}
	return bytes.TrimSuffix(l, []byte{'\r'}), data[i+1:], true
}

// chunkSize reads a chunk-size line: hex digits, then extensions.
func chunkSize(l []byte) (int64, bool) {
	l = trimBlankLeft(l)
	var n int64
	digits := 0
	for _, ch := range l {
		var d byte
		switch {
		case '0' <= ch && ch <= '9':
			d = ch - '0'
		case 'a' <= ch && ch <= 'f':
			d = ch - 'a' + 10
		case 'A' <= ch && ch <= 'F':
			d = ch - 'A' + 10
		case ch == ';' || ch == ' ' || ch == '\t':
			return n, digits > 0
		default:
			return 0, false
		}
		if digits++; digits > 15 {
			return 0, false
		}
		n = n<<4 | int64(d)
	}
	return n, digits > 0
}

// headBytes reads head bytes and returns what follows the head.
func (hc *httpConn) headBytes(c *Conn, dir stream.Dir, data []byte, emit func(*Tx)) []byte {
	h := &hc.half[dir]
	if len(h.head) == 0 {
		// Blank lines between pipelined messages.
		for len(data) > 0 && (data[0] == '\r' || data[0] == '\n') {
			data = data[1:]
		}
		if len(data) == 0 {
			return nil
		}
		if end := headEnd(data, 0); end > 0 && end <= maxHead {
			h.head = append(h.head, data[:end]...)
			hc.headDone(c, dir, emit)
			return data[end:]
		}
	}
	start := len(h.head)
	take := min(maxHead-start, len(data))
	h.head = append(h.head, data[:take]...)
	end := headEnd(h.head, max(0, start-3))
	if end < 0 {
		if len(h.head) >= maxHead {
			// Too long a head: judge what came and stop reading.
			hc.headDone(c, dir, emit)
			hc.fail(c, dir, nil)
		}
		return data[take:]
	}
	h.head = h.head[:end]
	hc.headDone(c, dir, emit)
	return data[end-start:]
}

// headEnd returns the offset after a head's blank line, or -1.
func headEnd(b []byte, from int) int {
	for i := from; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		k := i + j + 1
		if k < len(b) && b[k] == '\n' {
			return k + 1
		}
		if k+1 < len(b) && b[k] == '\r' && b[k+1] == '\n' {
			return k + 2
		}
		i = k
	}
	return -1
}

// parseHead splits a head into its start line and headers.
func parseHead(head []byte, sc *scratch, response bool) (v headView, ok bool) {
	v.head = head
	first, rest := head, []byte(nil)
	if i := bytes.IndexByte(head, '\n'); i >= 0 {
		first, rest = head[:i], head[i+1:]
	}
	first = bytes.TrimSuffix(first, []byte{'\r'})
	v.first, v.lines = first, rest
	if response {
		if !bytes.HasPrefix(first, []byte("HTTP/")) {
			return v, false
		}
		v.a, v.b = cut(first)
		v.b, v.c = cut(v.b)
	} else {
		var target []byte
		v.a, target = cut(first)
		if len(v.a) == 0 || len(target) == 0 {
			return v, false
		}
		v.b = target
		if i := bytes.LastIndexAny(target, " \t"); i > 0 && bytes.HasPrefix(target[i+1:], []byte("HTTP/")) {
			v.b, v.c = trimBlankRight(target[:i]), target[i+1:]
		}
		for _, ch := range v.a {
			if ch <= ' ' || ch >= 0x7f {
				return v, false
			}
		}
	}
	if cap(sc.fold) < len(head) {
		sc.fold = make([]byte, 0, len(head)+64)
	}
	sc.hdrs, sc.fold = sc.hdrs[:0], sc.fold[:0]
	foldLast := false // the last header's value is at the end of fold
	for len(rest) > 0 {
		var l []byte
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			l, rest = rest[:i], rest[i+1:]
		} else {
			l, rest = rest, nil
		}
		l = bytes.TrimSuffix(l, []byte{'\r'})
		if len(l) == 0 {
			break
		}
		if (l[0] == ' ' || l[0] == '\t') && len(sc.hdrs) > 0 {
			last := &sc.hdrs[len(sc.hdrs)-1]
			if !foldLast {
				start := len(sc.fold)
				sc.fold = append(sc.fold, last.value...)
				last.value = sc.fold[start:]
				foldLast = true
			}
			start := len(sc.fold) - len(last.value)
			sc.fold = append(sc.fold, ' ')
			sc.fold = append(sc.fold, bytes.TrimSpace(l)...)
			last.value = sc.fold[start:len(sc.fold)]
			continue
		}
		colon := bytes.IndexByte(l, ':')
		if colon <= 0 || len(sc.hdrs) >= maxHeaders {
			continue
		}
		sc.hdrs = append(sc.hdrs, header{trimBlankRight(l[:colon]), bytes.TrimSpace(l[colon+1:])})
		foldLast = false
	}
	v.hdrs = sc.hdrs
	return v, true
}

// cut splits at the first run of blanks.
func cut(b []byte) (before, after []byte) {
	i := bytes.IndexAny(b, " \t")
	if i < 0 {
		return b, b[len(b):]
	}
	return b[:i], trimBlankLeft(b[i+1:])
}

// headDone acts on a complete head: a request is queued for its response
// and its body framing read; a response is paired.
func (hc *httpConn) headDone(c *Conn, dir stream.Dir, emit func(*Tx)) {
	h := &hc.half[dir]
	h.body, h.bodyLen, h.emitted, h.remain = h.body[:0], 0, false, 0
	if dir == stream.ToServer {
		v, ok := parseHead(h.head, &hc.sc[dir], false)
		if !ok {
			hc.fail(c, dir, nil)
			return
		}
		if string(v.a) == "PRI" && string(v.c) == "HTTP/2.0" {
			// The HTTP/2 preface: frames follow, which are not parsed.
			c.dead = true
			return
		}
		h.id = hc.nextID
		hc.nextID++
		hc.enqueue(&v, h.id)
		hc.framing(c, dir, &v, false, emit)
		return
	}
	v, ok := parseHead(h.head, &hc.sc[dir], true)
	if !ok {
		hc.fail(c, dir, nil)
		return
	}
	h.status = atoi3(v.b)
	if h.status >= 100 && h.status < 200 && h.status != 101 {
		h.head = h.head[:0] // interim: the final response follows
		return
	}
	hc.dequeue(h)
	tunnel := h.status == 101 || (h.req.method == methodCONNECT && h.status >= 200 && h.status < 300)
	noBody := h.req.method == methodHEAD || h.status == 204 || h.status == 304 || h.status == 101
	hc.framing(c, dir, &v, !noBody, emit)
	if tunnel {
		c.dead = true
	}
}

// framing picks how the message's body is delimited; a message without
// one is done now.
func (hc *httpConn) framing(c *Conn, dir stream.Dir, v *headView, untilClose bool, emit func(*Tx)) {
	h := &hc.half[dir]
	if !untilClose && dir == stream.ToClient {
		hc.done(c, dir, emit)
		return
	}
	if te := v.get("transfer-encoding"); te != nil && containsFold(te, "chunked") {
		h.state = stChunkSize
		return
	}
	if cl := v.get("content-length"); cl != nil {
		if n, ok := atoi(cl); ok {
			if n == 0 {
				hc.done(c, dir, emit)
				return
			}
			h.state, h.remain = stBody, n
			return
		}
	}
	if untilClose {
		h.state = stUntilClose
		return
	}
	hc.done(c, dir, emit)
}

// bodyBytes collects body bytes up to maxBody; the Tx goes out when the
// cap is reached.
func (hc *httpConn) bodyBytes(c *Conn, dir stream.Dir, b []byte, emit func(*Tx)) {
	h := &hc.half[dir]
	h.bodyLen += len(b)
	if h.emitted {
		return
	}
	room := maxBody - len(h.body)
	h.body = append(h.body, b[:min(room, len(b))]...)
	if len(h.body) >= maxBody {
		hc.emit(c, dir, emit)
		h.emitted = true
	}
}

// done ends the current message: its Tx goes out unless it went at the
// cap, and the direction reads the next head.
func (hc *httpConn) done(c *Conn, dir stream.Dir, emit func(*Tx)) {
	h := &hc.half[dir]
	if !h.emitted {
		hc.emit(c, dir, emit)
	}
	h.state, h.head, h.body, h.emitted, h.bodyLen = stHead, h.head[:0], h.body[:0], false, 0
	if dir == stream.ToClient {
		h.req.head = h.req.head[:0]
	}
}

// fail stops parsing a direction, emitting what it has when emit is set.
func (hc *httpConn) fail(c *Conn, dir stream.Dir, emit func(*Tx)) {
	h := &hc.half[dir]
	if emit != nil && h.state != stHead && !h.emitted {
		hc.emit(c, dir, emit)
	}
	h.state = stDead
}

func (hc *httpConn) close(c *Conn, emit func(*Tx)) {
	for d := range hc.half {
		dir := stream.Dir(d)
		h := &hc.half[d]
		switch h.state {
		case stHead:
			if len(h.head) > 0 && headEnd(h.head, 0) < 0 {
				// A head cut by the end of the connection: judge it.
				hc.headDone(c, dir, emit)
				if h := &hc.half[d]; h.state != stHead && h.state != stDead && !h.emitted {
					hc.emit(c, dir, emit)
					h.emitted = true
				}
			}
		case stDead:
		default:
			if !h.emitted {
				hc.emit(c, dir, emit)
				h.emitted = true
			}
		}
		h.state = stDead
	}
}

func (hc *httpConn) enqueue(v *headView, id uint64) {
	if hc.qLen == maxQueued || hc.overflow > 0 {
		// Too many unanswered: this one's response, and to keep the order
		// those of the requests after it until the backlog is answered,
		// will be unpaired (pairing them with other requests would be
		// worse).
		hc.overflow++
		return
	}
	e := &hc.queue[(hc.qFirst+hc.qLen)%maxQueued]
	hc.qLen++
	e.id = id
	e.head = append(e.head[:0], v.head...)
	switch string(v.a) {
	case "HEAD":
		e.method = methodHEAD
	case "CONNECT":
		e.method = methodCONNECT
	default:
		e.method = methodOther
	}
	e.info = hc.requestInfo(v)
}

// dequeue pairs the response being read with the oldest open request.
func (hc *httpConn) dequeue(h *httpHalf) {
	if hc.qLen == 0 {
		if hc.overflow > 0 {
			hc.overflow--
		}
		h.req.head, h.req.method, h.req.info = h.req.head[:0], methodOther, HTTPInfo{}
		h.req.id = hc.nextID
		hc.nextID++
		return
	}
	e := &hc.queue[hc.qFirst]
	hc.qFirst = (hc.qFirst + 1) % maxQueued
	hc.qLen--
	// Swap buffers instead of copying the head.
	e.head, h.req.head = h.req.head[:0], e.head
	h.req.id, h.req.method, h.req.info = e.id, e.method, e.info
}

// requestInfo is the EVE part a request gives its transactions.
func (hc *httpConn) requestInfo(v *headView) HTTPInfo {
	info := HTTPInfo{
		Method:   knownString(v.a, methodNames[:]),
		Protocol: knownString(v.c, protocolNames[:]),
		URL:      hc.cache.url.get(v.b),
	}
	if hr := v.get("host"); hr != nil {
		hc.tmp = appendHost(hc.tmp[:0], hr)
		info.Hostname = hc.cache.host.get(hc.tmp)
	}
	if ua := v.get("user-agent"); ua != nil {
		info.UserAgent = hc.cache.ua.get(ua)
	}
	if r := v.get("referer"); r != nil {
		info.Referer = hc.cache.referer.get(r)
	}
	return info
}

var (
	methodNames   = [...]string{"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE"}
	protocolNames = [...]string{"HTTP/1.1", "HTTP/1.0", "HTTP/0.9"}
)

// knownString returns b as a string, without allocating when it is one
// of known.
func knownString(b []byte, known []string) string {
	for _, k := range known {
		if string(b) == k {
			return k
		}
	}
	return string(b)
}

// emit builds and hands over the Tx of direction dir's current message.
func (hc *httpConn) emit(c *Conn, dir stream.Dir, emit func(*Tx)) {
	if emit == nil {
		return
	}
	h := &hc.half[dir]
	tx := c.newTx(dir)
	tx.Proto = rules.ProtoHTTP
	need := 4*len(h.head) + 256
	if dir == stream.ToClient {
		need += 4 * len(h.req.head)
	}
	if cap(hc.arena) < need {
		hc.arena = make([]byte, 0, need)
	}
	a := hc.arena[:0]
	if dir == stream.ToServer {
		v, ok := parseHead(h.head, &hc.sc[0], false)
		if !ok {
			return
		}
		a = hc.requestBufs(tx, &v, a)
		a = headerBufs(tx, &v, a)
		tx.Buf[rules.BufHTTPProtocol] = v.c
		// Request-only buffers (see Tx.Buf): not in requestBufs, which
		// the response's Tx uses too.
		tx.Buf[rules.BufHTTPAcceptEnc] = v.get("accept-encoding")
		tx.Buf[rules.BufHTTPAcceptLang] = v.get("accept-language")
		if h.state != stHead || len(h.body) > 0 {
			tx.Buf[rules.BufHTTPRequestBody] = h.body
		}
		hc.info = hc.requestInfo(&v)
		tx.ID = h.id
	} else {
		if len(h.req.head) > 0 {
			if rv, ok := parseHead(h.req.head, &hc.sc[0], false); ok {
				a = hc.requestBufs(tx, &rv, a)
			}
		}
		v, ok := parseHead(h.head, &hc.sc[1], true)
		if !ok {
			return
		}
		a = headerBufs(tx, &v, a)
		tx.Buf[rules.BufHTTPProtocol] = v.a
		tx.Buf[rules.BufHTTPStatCode] = v.b
		tx.Buf[rules.BufHTTPStatMsg] = v.c
		tx.Buf[rules.BufHTTPResponseLine] = v.first
		tx.Buf[rules.BufHTTPServer] = v.get("server")
		tx.Buf[rules.BufHTTPLocation] = v.get("location")
		tx.Buf[rules.BufHTTPCookie] = v.get("set-cookie")
		if h.state != stHead || len(h.body) > 0 {
			tx.Buf[rules.BufHTTPResponseBody] = h.body
		}
		hc.info = h.req.info
		hc.info.Status = h.status
		hc.info.Length = h.bodyLen
		if ct := v.get("content-type"); ct != nil {
			hc.info.ContentType = hc.cache.ctype.get(ct)
		}
		tx.ID = h.req.id
	}
	hc.arena = a
	tx.HTTP = &hc.info
	emit(tx)
}

// requestBufs fills the request's own buffers.
func (hc *httpConn) requestBufs(tx *Tx, v *headView, a []byte) []byte {
	tx.Buf[rules.BufHTTPMethod] = v.a
	tx.Buf[rules.BufHTTPURIRaw] = v.b
	tx.Buf[rules.BufHTTPRequestLine] = v.first
	start := len(a)
	hc.tmp = hc.tmp[:0]
	a, hc.tmp = appendURI(a, hc.tmp, v.b)
	tx.Buf[rules.BufHTTPURI] = a[start:len(a):len(a)]
	if hr := v.get("host"); hr != nil {
		tx.Buf[rules.BufHTTPHostRaw] = hr
		start := len(a)
		a = appendHost(a, hr)
		tx.Buf[rules.BufHTTPHost] = a[start:len(a):len(a)]
	}
	tx.Buf[rules.BufHTTPUserAgent] = v.get("user-agent")
	tx.Buf[rules.BufHTTPCookie] = v.get("cookie")
	tx.Buf[rules.BufHTTPReferer] = v.get("referer")
	tx.Buf[rules.BufHTTPAccept] = v.get("accept")
	return a
}

// headerBufs fills the buffers both requests and responses have from
// their own head.
func headerBufs(tx *Tx, v *headView, a []byte) []byte {
	tx.Buf[rules.BufHTTPStart] = v.head
	tx.Buf[rules.BufHTTPHeaderRaw] = v.lines
	tx.Buf[rules.BufHTTPContentType] = v.get("content-type")
	tx.Buf[rules.BufHTTPContentLen] = v.get("content-length")
	tx.Buf[rules.BufHTTPConnection] = v.get("connection")
	start := len(a)
	for _, h := range v.hdrs {
		if equalFold(h.name, "cookie") || equalFold(h.name, "set-cookie") {
			continue
		}
		a = append(a, h.name...)
		a = append(a, ':', ' ')
		a = append(a, h.value...)
		a = append(a, '\r', '\n')
	}
	a = append(a, '\r', '\n')
	tx.Buf[rules.BufHTTPHeader] = a[start:len(a):len(a)]
	start = len(a)
	a = append(a, '\r', '\n')
	for _, h := range v.hdrs {
		a = append(a, h.name...)
		a = append(a, '\r', '\n')
	}
	a = append(a, '\r', '\n')
	tx.Buf[rules.BufHTTPHeaderNames] = a[start:len(a):len(a)]
	return a
}

// appendHost appends a Host value lowercased, without its port.
func appendHost(dst, h []byte) []byte {
	h = bytes.TrimSpace(h)
	if i := bytes.LastIndexByte(h, ':'); i >= 0 && bytes.IndexByte(h[i:], ']') < 0 {
		digits := true
		for _, ch := range h[i+1:] {
			digits = digits && '0' <= ch && ch <= '9'
		}
		if digits {
			h = h[:i]
		}
	}
	for _, ch := range h {
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		dst = append(dst, ch)
	}
	return dst
}

// appendURI appends the normalized form of a request target; tmp is
// scratch space, returned for reuse.
func appendURI(dst, tmp, target []byte) ([]byte, []byte) {
	if hasPrefixFold(target, "http://") || hasPrefixFold(target, "https://") {
		rest := target[bytes.Index(target, []byte("//"))+2:]
		if i := bytes.IndexAny(rest, "/?"); i >= 0 {
			target = rest[i:]
		} else {
			target = []byte("/")
		}
	}
	path, query, hasQuery := bytes.Cut(target, []byte{'?'})
	tmp = appendUnescaped(tmp[:0], path)
	dst = appendDotless(dst, tmp)
	if hasQuery {
		dst = append(dst, '?')
		dst = appendUnescaped(dst, query)
	}
	return dst, tmp
}

func appendUnescaped(dst, s []byte) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if hi, ok := unhex(s[i+1]); ok {
				if lo, ok := unhex(s[i+2]); ok {
					dst = append(dst, hi<<4|lo)
					i += 2
					continue
				}
			}
		}
		dst = append(dst, s[i])
	}
	return dst
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// appendDotless appends path with "." and ".." segments removed (RFC 3986
// remove_dot_segments); a path not starting with "/" is kept as it is.
func appendDotless(dst, p []byte) []byte {
	if len(p) == 0 || p[0] != '/' {
		return append(dst, p...)
	}
	base := len(dst)
	for len(p) > 0 {
		p = p[1:]
		i := bytes.IndexByte(p, '/')
		if i < 0 {
			i = len(p)
		}
		seg := p[:i]
		p = p[i:]
		last := len(p) == 0
		switch string(seg) {
		case ".":
			if last {
				dst = append(dst, '/')
			}
		case "..":
			if j := bytes.LastIndexByte(dst[base:], '/'); j >= 0 {
				dst = dst[:base+j]
			}
			if last {
				dst = append(dst, '/')
			}
		default:
			dst = append(dst, '/')
			dst = append(dst, seg...)
		}
	}
	if len(dst) == base {
		dst = append(dst, '/')
	}
	return dst
}

func trimBlankLeft(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

func trimBlankRight(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func atoi(b []byte) (int64, bool) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			return 0, false
		}
		n = n*10 + int64(ch-'0')
	}
	return n, true
}

func atoi3(b []byte) int {
	if len(b) != 3 {
		return 0
	}
	n, _ := atoi(b)
	return int(n)
}

func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, ch := range b {
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		if ch != lower[i] {
			return false
		}
	}
	return true
}

func hasPrefixFold(b []byte, lower string) bool {
	return len(b) >= len(lower) && equalFold(b[:len(lower)], lower)
}

func containsFold(b []byte, lower string) bool {
	for i := 0; i+len(lower) <= len(b); i++ {
		if equalFold(b[i:i+len(lower)], lower) {
			return true
		}
	}
	return false
}
