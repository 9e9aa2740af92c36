package nodeproto

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/macro-cloud/macro/internal/conns"
)

// dialProto is the Upgrade of a dial: after its 101 the stream carries
// the bytes of a TCP connection to a pod.
const dialProto = "macro-dial"

// dial serves POST /pods/{id}/dial?tenant=T&port=N: the node connects to
// the pod's port (Ops.DialPod checks tenant and pod against its own
// assignment) and the stream becomes that connection.
func (o *opsServer) dial(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	port, err := strconv.Atoi(q.Get("port"))
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, fmt.Errorf("dial: port %q", q.Get("port")))
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), dialProto) {
		writeJSONError(w, http.StatusBadRequest, errors.New("a dial needs Upgrade: "+dialProto))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	pod, err := o.ops.DialPod(ctx, q.Get("tenant"), r.PathValue("id"), port)
	cancel()
	if err != nil {
		writeJSONError(w, statusOf(err), err)
		return
	}
	defer pod.Close()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+dialProto+"\r\n\r\n"); err != nil {
		return
	}
	// Ops are served on the streams of a tunnel: Close is a half-close.
	conns.Join(&dialedStream{bufferedConn{Conn: conn, r: brw.Reader}}, pod)
}

// statusOf is the HTTP status a node's error answers with.
func statusOf(err error) int {
	if e := wireError(err); e.Code == "no-such-pod" || e.Code == "not-found" {
		return http.StatusNotFound
	} else if e.Code == "not-running" {
		return http.StatusConflict
	}
	return http.StatusBadGateway
}

// DialPod connects to port of pod id of tenant on the node, through its
// tunnel: the node dials the pod from its own network and splices.
func (n *Remote) DialPod(ctx context.Context, tenant, id string, port int) (net.Conn, error) {
	st, err := n.tunnels.open(ctx, n.node, 10*time.Second)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		st.SetDeadline(dl)
	}
	q := url.Values{"tenant": {tenant}, "port": {strconv.Itoa(port)}}
	if _, err := fmt.Fprintf(st, "POST /pods/%s/dial?%s HTTP/1.1\r\nHost: node\r\nContent-Length: 0\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n",
		url.PathEscape(id), q.Encode(), dialProto); err != nil {
		st.Close()
		return nil, fmt.Errorf("node %s: %w", n.node, err)
	}
	br := bufio.NewReader(st)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("node %s: %w", n.node, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer st.Close()
		defer resp.Body.Close()
		return nil, readError(resp)
	}
	st.SetDeadline(time.Time{})
	return &dialedStream{bufferedConn{Conn: st, r: br}}, nil
}

// dialedStream is a dial's stream as a connection: Close ends the writing
// side (a yamux stream's Close), as CloseWrite does.
type dialedStream struct{ bufferedConn }

func (d *dialedStream) CloseWrite() error { return d.Conn.Close() }
