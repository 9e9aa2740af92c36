// Package nodeproto carries the node protocol over the network, so that an
// agent can run on another machine than the servers (another rack, an
// outpost behind NAT). The agent always dials: it registers its node,
// follows its pod assignments as a stream of JSON lines, reports statuses,
// fetches images, and keeps one tunnel open (yamux over an upgraded HTTPS
// connection) through which the servers reach the node for the imperative
// operations of the Docker API: logs, attach, exec, signals, top, stats,
// files, volumes, wake. Every request carries a node join token.
//
// The server side (Handler) sits behind the API port; the agent side
// (Client, ServeOps) is what `macro agent` runs. Neither imports the store:
// the server side is handed the control plane's node API, the agent side
// an agent.
package nodeproto

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"syscall"

	"github.com/macro-cloud/macro/agent"
	"github.com/macro-cloud/macro/image"
	"github.com/macro-cloud/macro/runtime"
)

// Prefix is where the node protocol lives on the API port.
const Prefix = "/node/v1/"

// Frames multiplex several streams on one HTTP body: one type byte, a
// 4-byte big-endian length, the payload.
const (
	frameStdin  byte = 0
	frameStdout byte = 1
	frameStderr byte = 2
	frameResize byte = 3 // JSON runtime.Size
	frameClose  byte = 4 // end of stdin
	frameResult byte = 5 // JSON result: the end of a stream
)

// maxFrame bounds one frame's payload, so a peer cannot make us allocate
// without bound.
const maxFrame = 1 << 20

func writeFrame(w io.Writer, kind byte, p []byte) error {
	for {
		n := min(len(p), maxFrame)
		var hdr [5]byte
		hdr[0] = kind
		binary.BigEndian.PutUint32(hdr[1:], uint32(n))
		if _, err := w.Write(hdr[:]); err != nil {
			return err
		}
		if _, err := w.Write(p[:n]); err != nil {
			return err
		}
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		p = p[n:]
		if len(p) == 0 {
			return nil
		}
	}
}

// readFrame reads one frame into buf (grown as needed).
func readFrame(r io.Reader, buf []byte) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("node protocol: frame of %d bytes exceeds %d", n, maxFrame)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, fmt.Errorf("node protocol: short frame: %w", err)
	}
	return hdr[0], buf, nil
}

// frameWriter writes everything as frames of one kind.
type frameWriter struct {
	mu   *lockedWriter
	kind byte
}

func (f frameWriter) Write(p []byte) (int, error) {
	if err := f.mu.frame(f.kind, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Error is an error that crossed the wire. Code keeps the sentinel errors
// the API tells apart (errors.Is works on the far side), Status the HTTP
// status an error carried.
type Error struct {
	Code   string `json:"code,omitempty"`
	Status int    `json:"status,omitempty"`
	Msg    string `json:"message"`
}

func (e *Error) Error() string { return e.Msg }

// HTTPStatus is the status the error had on the node, if it had one.
func (e *Error) HTTPStatus() int { return e.Status }

// sentinels are the errors whose identity crosses the wire.
var sentinels = map[string]error{
	"no-such-pod":     agent.ErrNoSuchPod,
	"not-found":       runtime.ErrNotFound,
	"not-running":     runtime.ErrNotRunning,
	"no-such-image":   image.ErrNotFound,
	"no-such-file":    fs.ErrNotExist,
	"no-such-process": syscall.ESRCH,
}

// Is matches the sentinel the error was made from on the node.
func (e *Error) Is(target error) bool {
	s, ok := sentinels[e.Code]
	if !ok {
		return false
	}
	if target == s {
		return true
	}
	// ENOENT and fs.ErrNotExist are one condition.
	return e.Code == "no-such-file" && target == syscall.ENOENT
}

// wireError describes err for the far side.
func wireError(err error) *Error {
	if err == nil {
		return nil
	}
	e := &Error{Msg: err.Error()}
	for code, s := range sentinels {
		if errors.Is(err, s) {
			e.Code = code
			break
		}
	}
	var hs interface{ HTTPStatus() int }
	if errors.As(err, &hs) {
		e.Status = hs.HTTPStatus()
	}
	return e
}

// writeJSONError answers a plain request with err.
func writeJSONError(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(wireError(err))
}

// readError turns a non-2xx answer into an error.
func readError(resp *http.Response) error {
	var e Error
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(body, &e) != nil || e.Msg == "" {
		e = Error{Msg: fmt.Sprintf("node protocol: %s: %s", resp.Status, body)}
	}
	if e.Status == 0 && resp.StatusCode != http.StatusInternalServerError && resp.StatusCode != http.StatusBadGateway {
		e.Status = resp.StatusCode
	}
	return &e
}
