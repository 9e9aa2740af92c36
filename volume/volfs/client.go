package volfs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"syscall"
	"time"
)

// retryFor is how long a call is retried while the primary cannot be
// reached (a tunnel or a server coming back): the caller waits, then gets
// EIO.
const retryFor = 30 * time.Second

// do sends the request that mk makes, again while the primary cannot be
// reached (no answer, or 502/503 from a server that cannot reach it).
func (c *Client) do(ctx context.Context, mk func() (*http.Request, error)) (*http.Response, error) {
	deadline := time.Now().Add(retryFor)
	wait := 100 * time.Millisecond
	for {
		req, err := mk()
		if err != nil {
			return nil, err
		}
		resp, err := c.HC.Do(req)
		if err == nil && resp.StatusCode != http.StatusBadGateway && resp.StatusCode != http.StatusServiceUnavailable {
			return resp, nil
		}
		if err == nil {
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			resp.Body.Close()
			err = fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
		}
		if ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			return nil, err
		}
		if c.OnError != nil {
			c.OnError(fmt.Errorf("retrying: %w", err))
		}
		time.Sleep(wait)
		wait = min(2*wait, 2*time.Second)
	}
}

// Client calls a volume's Handler. Base is the URL of the volume (the
// handler's prefix, without a trailing slash); HC carries the requests.
type Client struct {
	HC   *http.Client
	Base string
	// OnError, if set, hears of every failure to reach the primary (the
	// caller sees EIO).
	OnError func(error)
}

func (c *Client) transportErr(err error) error {
	if c.OnError != nil {
		c.OnError(err)
	}
	return syscall.EIO
}

// Op runs one metadata operation. The error is a syscall.Errno: the
// primary's answer, or EIO when it could not be reached.
func (c *Client) Op(ctx context.Context, q Request) (Reply, error) {
	b, _ := json.Marshal(q)
	resp, err := c.do(ctx, func() (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Base+"/op", bytes.NewReader(b))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
		}
		return req, err
	})
	if err != nil {
		return Reply{}, c.transportErr(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return Reply{}, c.transportErr(fmt.Errorf("volfs %s: %s: %s", q.Op, resp.Status, bytes.TrimSpace(msg)))
	}
	var rep Reply
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return Reply{}, c.transportErr(fmt.Errorf("volfs %s: %w", q.Op, err))
	}
	return rep, rep.Err()
}

// errnoReply reads the 409 a data request answers when the primary's
// filesystem refused it.
func (c *Client) errnoReply(resp *http.Response, what string) error {
	if resp.StatusCode == http.StatusConflict {
		var rep Reply
		if json.NewDecoder(resp.Body).Decode(&rep) == nil && rep.Errno != 0 {
			return rep.Err()
		}
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	return c.transportErr(fmt.Errorf("volfs %s: %s: %s", what, resp.Status, bytes.TrimSpace(msg)))
}

// Get copies the contents of the file at p to w.
func (c *Client) Get(ctx context.Context, p string, w io.Writer) (Attr, error) {
	resp, err := c.do(ctx, func() (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, c.Base+"/data?"+url.Values{"path": {p}}.Encode(), nil)
	})
	if err != nil {
		return Attr{}, c.transportErr(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Attr{}, c.errnoReply(resp, "read")
	}
	var a Attr
	if err := json.Unmarshal([]byte(resp.Header.Get(AttrHeader)), &a); err != nil {
		return Attr{}, c.transportErr(fmt.Errorf("volfs read: attributes: %w", err))
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return Attr{}, c.transportErr(fmt.Errorf("volfs read %s: %w", p, err))
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return Attr{}, c.transportErr(fmt.Errorf("volfs read %s: %d of %d bytes", p, n, resp.ContentLength))
	}
	return a, nil
}

// Put replaces the contents of the file at p with the size bytes of r;
// mode, uid and gid are those of a file it makes. It returns once the
// primary has the contents on disk.
func (c *Client) Put(ctx context.Context, p string, r io.ReaderAt, size int64, mode, uid, gid uint32) (Attr, error) {
	q := url.Values{"path": {p}, "mode": {strconv.FormatUint(uint64(mode), 10)},
		"uid": {strconv.FormatUint(uint64(uid), 10)}, "gid": {strconv.FormatUint(uint64(gid), 10)}}
	resp, err := c.do(ctx, func() (*http.Request, error) {
		var body io.Reader = http.NoBody
		if size > 0 {
			body = io.NewSectionReader(r, 0, size)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.Base+"/data?"+q.Encode(), body)
		if err != nil {
			return nil, err
		}
		req.ContentLength = size
		req.Header.Set("Content-Type", "application/octet-stream")
		return req, nil
	})
	if err != nil {
		return Attr{}, c.transportErr(err)
	}
	return c.writeReply(resp, p)
}

// ReadAt reads at most len(buf) bytes of the file at p from off into buf
// (fewer at its end) and returns them with the file's attributes.
func (c *Client) ReadAt(ctx context.Context, p string, buf []byte, off int64) (int, Attr, error) {
	q := url.Values{"path": {p}, "off": {strconv.FormatInt(off, 10)}, "len": {strconv.Itoa(len(buf))}}
	resp, err := c.do(ctx, func() (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, c.Base+"/data?"+q.Encode(), nil)
	})
	if err != nil {
		return 0, Attr{}, c.transportErr(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, Attr{}, c.errnoReply(resp, "read")
	}
	var a Attr
	if err := json.Unmarshal([]byte(resp.Header.Get(AttrHeader)), &a); err != nil {
		return 0, Attr{}, c.transportErr(fmt.Errorf("volfs read: attributes: %w", err))
	}
	n, err := io.ReadFull(resp.Body, buf)
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = nil
	}
	if err == nil && resp.ContentLength >= 0 && int64(n) != resp.ContentLength {
		err = fmt.Errorf("%d of %d bytes", n, resp.ContentLength)
	}
	if err != nil {
		return 0, Attr{}, c.transportErr(fmt.Errorf("volfs read %s: %w", p, err))
	}
	return n, a, nil
}

// Write sends a write batch for the file at p (mk makes its body, again
// for each try) and returns the file's attributes once the primary
// applied it (with BatchSync: once it is on disk there, and on every
// replica in sync).
func (c *Client) Write(ctx context.Context, p string, size int64, mk func() io.Reader) (Attr, error) {
	q := url.Values{"path": {p}}
	resp, err := c.do(ctx, func() (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Base+"/"+OpWrite+"?"+q.Encode(), mk())
		if err != nil {
			return nil, err
		}
		req.ContentLength = size
		req.Header.Set("Content-Type", "application/octet-stream")
		return req, nil
	})
	if err != nil {
		return Attr{}, c.transportErr(err)
	}
	return c.writeReply(resp, p)
}

// writeReply reads the answer to a write of p: the file's attributes
// after it.
func (c *Client) writeReply(resp *http.Response, p string) (Attr, error) {
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Attr{}, c.errnoReply(resp, "write")
	}
	var rep Reply
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return Attr{}, c.transportErr(fmt.Errorf("volfs write: %w", err))
	}
	if err := rep.Err(); err != nil {
		return Attr{}, err
	}
	if rep.Attr == nil {
		return Attr{}, c.transportErr(fmt.Errorf("volfs write %s: no attributes", p))
	}
	return *rep.Attr, nil
}
