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
)

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
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Base+"/op", bytes.NewReader(b))
	if err != nil {
		return Reply{}, c.transportErr(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.HC.Do(req)
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
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+"/data?"+url.Values{"path": {p}}.Encode(), nil)
	if err != nil {
		return Attr{}, c.transportErr(err)
	}
	resp, err := c.HC.Do(req)
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

// Put replaces the contents of the file at p with size bytes of r; mode,
// uid and gid are those of a file it makes. It returns once the primary
// has the contents on disk.
func (c *Client) Put(ctx context.Context, p string, r io.Reader, size int64, mode, uid, gid uint32) (Attr, error) {
	q := url.Values{"path": {p}, "mode": {strconv.FormatUint(uint64(mode), 10)},
		"uid": {strconv.FormatUint(uint64(uid), 10)}, "gid": {strconv.FormatUint(uint64(gid), 10)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.Base+"/data?"+q.Encode(), io.LimitReader(r, size))
	if err != nil {
		return Attr{}, c.transportErr(err)
	}
	req.ContentLength = size
	if size == 0 {
		req.Body = http.NoBody
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.HC.Do(req)
	if err != nil {
		return Attr{}, c.transportErr(err)
	}
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
