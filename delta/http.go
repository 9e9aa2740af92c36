package delta

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
)

// The HTTP transport: a Remote (client) speaks to Serve (server), which
// hands each request to a Source or a Receiver:
//
//	GET  BASE/manifest  -> the source's manifest (encoded)
//	POST BASE/manifest  the receiver's group hashes -> the compact manifest
//	POST BASE/chunks    refs -> frames of the chunks
//	POST BASE/known     -> the receiver's group hashes
//	POST BASE/want      manifest (full or compact) -> the receiver's want list
//	POST BASE/put       frames -> 204
//	POST BASE/commit    the manifest's ID (hex) -> 204
//
// Errors are {"message": ...}; a commit that lacks chunks is 409 with
// {"message", "missing": [hex...]}.

// Bounds of request bodies.
const (
	maxManifestBytes = 1 << 30
	maxRefsBytes     = 64 << 20
)

// Pender is a Receiver that keeps the manifest of the sync under way
// between requests (TreeReceiver, Store).
type Pender interface {
	Receiver
	Pending() (*Manifest, error)
}

// Serve answers one request of the transport, op being the last element
// of its path (manifest, chunks, want, put, commit). src or recv may be
// nil when the caller serves only one direction.
func Serve(w http.ResponseWriter, r *http.Request, op string, src Source, recv Pender) {
	if err := serve(w, r, op, src, recv); err != nil {
		writeHTTPError(w, err)
	}
}

// HTTPError is an error with the status to answer it with, or the one a
// Remote got.
type HTTPError struct {
	Status  int
	Message string
	Missing []string `json:"missing,omitempty"`
}

func (e *HTTPError) Error() string { return e.Message }

func httpErrorf(status int, format string, args ...any) error {
	return &HTTPError{Status: status, Message: fmt.Sprintf(format, args...)}
}

func serve(w http.ResponseWriter, r *http.Request, op string, src Source, recv Pender) error {
	ctx := r.Context()
	method := http.MethodPost
	if op == "manifest" && r.Method == http.MethodGet {
		method = http.MethodGet
	}
	if r.Method != method {
		return httpErrorf(http.StatusMethodNotAllowed, "method %s not allowed on %s", r.Method, r.URL.Path)
	}
	switch op {
	case "manifest", "chunks":
		if src == nil {
			return httpErrorf(http.StatusNotFound, "page not found: %s", r.URL.Path)
		}
	case "known", "want", "put", "commit":
		if recv == nil {
			return httpErrorf(http.StatusNotFound, "page not found: %s", r.URL.Path)
		}
	default:
		return httpErrorf(http.StatusNotFound, "page not found: %s", r.URL.Path)
	}
	switch op {
	case "manifest":
		var known idSet
		if r.Method == http.MethodPost {
			b, err := readBody(r, maxManifestBytes)
			if err != nil {
				return err
			}
			if known, err = DecodeKnown(b); err != nil {
				return err
			}
		}
		m, err := src.Manifest(ctx)
		if err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		if known != nil {
			_, err = w.Write(m.EncodeCompactFrom(known.has, groupsBefore(src)))
		} else {
			_, err = w.Write(m.Encode())
		}
		return err
	case "known":
		gk, ok := recv.(GroupKnower)
		var ids []ID
		if ok {
			groups, err := gk.KnownGroups(ctx)
			if err != nil {
				return err
			}
			for h := range groups {
				ids = append(ids, h)
			}
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		_, err := w.Write(EncodeKnown(ids))
		return err
	case "chunks":
		b, err := readBody(r, maxRefsBytes)
		if err != nil {
			return err
		}
		refs, err := DecodeRefs(b)
		if err != nil {
			return err
		}
		rc, err := src.Chunks(ctx, refs)
		if err != nil {
			return err
		}
		defer rc.Close()
		// The first bytes decide between an error and a stream.
		var first [1]byte
		n, err := io.ReadFull(rc, first[:])
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(first[:n])
		if _, err := io.Copy(w, rc); err != nil {
			// Too late for a status: cut the stream, which the
			// receiver sees as a truncated frame.
			panic(http.ErrAbortHandler)
		}
		return nil
	case "want":
		b, err := readBody(r, maxManifestBytes)
		if err != nil {
			return err
		}
		var m *Manifest
		if gk, ok := recv.(GroupKnower); ok && (bytes.HasPrefix(b, compactMagic) || bytes.HasPrefix(b, compactMagic1)) {
			groups, err := gk.KnownGroups(ctx)
			if err != nil {
				return err
			}
			m, err = DecodeCompact(b, groups)
			if err != nil {
				return err
			}
		} else if m, err = DecodeManifest(b); err != nil {
			return err
		}
		ids, err := recv.Want(ctx, m)
		if err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		_, err = w.Write(EncodeWant(ids))
		return err
	case "put":
		if err := recv.Put(ctx, r.Body); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	default: // commit
		b, err := readBody(r, 128)
		if err != nil {
			return err
		}
		id, err := ParseID(strings.TrimSpace(string(b)))
		if err != nil {
			return httpErrorf(http.StatusBadRequest, "%v", err)
		}
		m, err := recv.Pending()
		if err != nil {
			return httpErrorf(http.StatusConflict, "%v", err)
		}
		if ManifestID(m.Encode()) != id {
			return httpErrorf(http.StatusConflict, "manifest %s is not the one of the sync under way: send it again", id)
		}
		if tr, ok := recv.(*TreeReceiver); ok && r.URL.Query().Get("verify") == "all" {
			recv = &TreeReceiver{Root: tr.Root, State: tr.State, NoSync: tr.NoSync, VerifyAll: true}
		}
		if err := recv.Commit(ctx, m); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

func readBody(r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, httpErrorf(http.StatusBadRequest, "reading the body: %v", err)
	}
	if int64(len(b)) > limit {
		return nil, httpErrorf(http.StatusRequestEntityTooLarge, "body larger than %d bytes", limit)
	}
	return b, nil
}

// StatusOf is the HTTP status that says what err is.
func StatusOf(err error) int {
	var he *HTTPError
	var missing *MissingError
	switch {
	case errors.As(err, &he):
		return he.Status
	case errors.As(err, &missing), errors.Is(err, ErrSourceChanged):
		return http.StatusConflict
	case errors.Is(err, ErrCorrupt):
		return http.StatusBadRequest
	case errors.Is(err, context.Canceled):
		return 499
	}
	return http.StatusInternalServerError
}

func writeHTTPError(w http.ResponseWriter, err error) {
	body := HTTPError{Status: StatusOf(err), Message: err.Error()}
	var missing *MissingError
	if errors.As(err, &missing) {
		for _, id := range missing.IDs {
			body.Missing = append(body.Missing, id.String())
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(body.Status)
	json.NewEncoder(w).Encode(map[string]any{"message": body.Message, "missing": body.Missing})
}

// Remote is the client side of the transport: a Source and a Receiver at
// URL (the BASE above). It counts the bytes of the bodies it sends and
// receives.
type Remote struct {
	URL    string
	Client *http.Client // http.DefaultClient when nil
	Header http.Header  // added to every request (credentials)
	// VerifyAll asks a TreeReceiver to read and hash every chunk of the
	// new tree at Commit (commit?verify=all; TreeReceiver.VerifyAll).
	VerifyAll bool

	sent, received atomic.Int64
}

var (
	_ Source        = (*Remote)(nil)
	_ CompactSource = (*Remote)(nil)
	_ Receiver      = (*Remote)(nil)
)

// Bytes are the body bytes sent and received so far.
func (c *Remote) Bytes() (sent, received int64) { return c.sent.Load(), c.received.Load() }

func (c *Remote) do(ctx context.Context, method, op string, body io.Reader) (*http.Response, error) {
	if body != nil {
		body = &countReader{r: body, n: &c.sent}
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.URL, "/")+"/"+op, body)
	if err != nil {
		return nil, err
	}
	for k, v := range c.Header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	hc := c.Client
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{&countReader{r: resp.Body, n: &c.received}, resp.Body}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	var e struct {
		Message string   `json:"message"`
		Missing []string `json:"missing"`
	}
	if json.Unmarshal(b, &e) != nil || e.Message == "" {
		e.Message = strings.TrimSpace(string(b))
		if len(e.Message) > 200 {
			e.Message = e.Message[:200]
		}
	}
	if resp.StatusCode == http.StatusConflict && len(e.Missing) > 0 {
		m := &MissingError{}
		for _, s := range e.Missing {
			id, err := ParseID(s)
			if err != nil {
				return nil, &HTTPError{Status: resp.StatusCode, Message: e.Message}
			}
			m.IDs = append(m.IDs, id)
		}
		return nil, m
	}
	return nil, &HTTPError{Status: resp.StatusCode, Message: e.Message}
}

func (c *Remote) Manifest(ctx context.Context) (*Manifest, error) {
	resp, err := c.do(ctx, http.MethodGet, "manifest", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestBytes+1))
	if err != nil {
		return nil, err
	}
	return DecodeManifest(b)
}

// CompactManifest asks the source for its manifest with the groups of
// known sent by hash, and expands it.
func (c *Remote) CompactManifest(ctx context.Context, known map[ID][]Chunk) (*Manifest, error) {
	ids := make([]ID, 0, len(known))
	for h := range known {
		ids = append(ids, h)
	}
	resp, err := c.do(ctx, http.MethodPost, "manifest", bytes.NewReader(EncodeKnown(ids)))
	if he := (*HTTPError)(nil); errors.As(err, &he) && he.Status == http.StatusBadRequest {
		// A source that does not read this list (an earlier version):
		// the full manifest.
		return c.Manifest(ctx)
	}
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestBytes+1))
	if err != nil {
		return nil, err
	}
	return DecodeCompact(b, known)
}

func (c *Remote) Chunks(ctx context.Context, refs []Ref) (io.ReadCloser, error) {
	resp, err := c.do(ctx, http.MethodPost, "chunks", bytes.NewReader(EncodeRefs(refs)))
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Want sends m compact: first it asks which groups the receiver holds.
func (c *Remote) Want(ctx context.Context, m *Manifest) ([]ID, error) {
	return c.wantFrom(ctx, m, nil)
}

// wantFrom is Want with the source's groups of before, for the runs of a
// compact manifest (EncodeCompactFrom).
func (c *Remote) wantFrom(ctx context.Context, m *Manifest, before map[ID][]Chunk) ([]ID, error) {
	resp, err := c.do(ctx, http.MethodPost, "known", nil)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestBytes+1))
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	known, err := DecodeKnown(b)
	if err != nil {
		return nil, err
	}
	resp, err = c.do(ctx, http.MethodPost, "want", bytes.NewReader(m.EncodeCompactFrom(known.has, before)))
	var he *HTTPError
	if errors.As(err, &he) && he.Status == http.StatusBadRequest {
		// A group taken for another (compact.go), or a receiver that
		// does not read this form (an earlier version): the full
		// manifest.
		resp, err = c.do(ctx, http.MethodPost, "want", bytes.NewReader(m.Encode()))
	}
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if b, err = io.ReadAll(io.LimitReader(resp.Body, maxManifestBytes)); err != nil {
		return nil, err
	}
	return DecodeWant(b)
}

func (c *Remote) Put(ctx context.Context, frames io.Reader) error {
	resp, err := c.do(ctx, http.MethodPost, "put", frames)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

func (c *Remote) Commit(ctx context.Context, m *Manifest) error {
	op := "commit"
	if c.VerifyAll {
		op += "?verify=all"
	}
	resp, err := c.do(ctx, http.MethodPost, op, strings.NewReader(ManifestID(m.Encode()).String()))
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

type countReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
