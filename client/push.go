package client

// Pushing images to the tenant's registry on the API port (/v2/ beside the
// native API), as `kra push` does. The registry protocol is spoken here,
// over the client's TLS connection (the pinned CA), with the tenant's
// access token as a bearer token on every request: no /v2/token round
// trip, and no short-lived token to expire in the middle of a long push.
//
// For each layer: a layer whose blob digest is known (a compressed layer
// of an OCI layout, or one kra compressed before and remembers in its
// LayerCache) is looked up with HEAD first; a layer the server has is not
// sent again. A plain tar layer (docker save writes them) is gzipped once
// into a temporary file, which gives its digest; then HEAD, and only a blob
// the server lacks is uploaded: POST (a cross-repository mount when the
// cache knows another repository of the tenant that has it), PATCH with
// the blob, PUT with its digest. An upload cut off in the middle resumes
// where the server says it is (GET of the upload). Config and manifest
// last: the image exists on the server only once its manifest is in, so a
// push that fails leaves no image behind.

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// PushLayer is one layer of an image to push.
type PushLayer struct {
	// DiffID is the digest of the layer's uncompressed tar (the image
	// config's rootfs.diff_ids).
	DiffID v1.Hash
	// Blob says Open returns the blob as it is pushed (compressed or not);
	// otherwise Open returns an uncompressed tar, which Push gzips.
	Blob bool
	// Digest, Size and MediaType describe the blob, when Blob and known
	// (an OCI layout's manifest says them). A zero Digest is computed.
	Digest    v1.Hash
	Size      int64
	MediaType types.MediaType
	// Open opens the layer's bytes; it may be called more than once.
	Open func() (io.ReadCloser, error)
}

// PushImage is an image to push.
type PushImage struct {
	Config []byte
	Layers []PushLayer
	// Manifest, when not nil, is pushed as it is (an OCI layout's own
	// manifest, whose digest must not change); every layer then has a
	// known Digest. Otherwise Push writes a Docker schema 2 manifest.
	Manifest          []byte
	ManifestMediaType types.MediaType
}

// PushPhase is where one blob of a push is.
type PushPhase string

// The phases of a blob, in order; a blob ends in PhaseExists, PhaseMounted
// or PhasePushed.
const (
	PhaseWaiting     PushPhase = "waiting"
	PhaseCompressing PushPhase = "compressing"
	PhaseHashing     PushPhase = "hashing"
	PhaseChecking    PushPhase = "checking"
	PhaseUploading   PushPhase = "pushing"
	PhaseExists      PushPhase = "already exists"
	PhaseMounted     PushPhase = "mounted"
	PhasePushed      PushPhase = "pushed"
)

// Done says the phase ends the blob's part of the push.
func (p PushPhase) Done() bool { return p == PhaseExists || p == PhaseMounted || p == PhasePushed }

// PushProgress reports a blob's phase and, while compressing or uploading,
// how far it is.
type PushProgress struct {
	Layer   int    // index in PushImage.Layers; -1 for the config
	ID      string // 12 hex digits of the blob's digest, or of the diffID before it is known
	Phase   PushPhase
	Current int64 // bytes read (compressing) or sent (pushing)
	Total   int64 // of Current's total; 0 when unknown
}

// LayerCache remembers the blob kra made of an uncompressed layer, so that
// the next push of the same layer needs no compression to learn its digest,
// and which repository it went to, for a cross-repository mount.
type LayerCache interface {
	Get(host string, diffID v1.Hash) (blob v1.Descriptor, repo string, ok bool)
	Put(host string, diffID v1.Hash, blob v1.Descriptor, repo string)
}

// PushOptions configures Push.
type PushOptions struct {
	// Progress, when not nil, is called (one call at a time) as blobs move.
	Progress func(PushProgress)
	// Jobs is how many layers are compressed and sent at once (3).
	Jobs  int
	Cache LayerCache
	// TempDir holds the compressed layers while they are pushed
	// (os.TempDir()).
	TempDir string
	// Retries is how many times in a row an upload cut off resumes (3).
	Retries int
	// ChunkSize is the most bytes one request of an upload carries (32
	// MiB): a connection cut off costs at most that much again.
	ChunkSize int64
}

// PushResult says what a push did.
type PushResult struct {
	Digest    string // of the manifest
	Layers    int
	Pushed    int   // layers uploaded
	Existing  int   // layers the server had
	Mounted   int   // layers mounted from another repository of the tenant
	BytesSent int64 // bytes of blobs sent, the config's too (the manifest, a few hundred bytes, aside)
}

// RegistryHost is host:port of the client's registry, the name an image is
// given to run what was pushed (`docker run HOST:PORT/foo:1`).
func (c *Client) RegistryHost() string { return strings.TrimPrefix(c.host, "https://") }

// Push pushes img to repository repo of the tenant's registry under tag.
func (c *Client) Push(ctx context.Context, repo, tag string, img PushImage, opts PushOptions) (*PushResult, error) {
	if c.opts.Token == "" {
		return nil, ErrNoToken
	}
	if _, err := name.NewRepository(c.RegistryHost()+"/"+repo, name.StrictValidation); err != nil || strings.Contains(repo, ":") {
		return nil, fmt.Errorf("invalid repository name %q", repo)
	}
	if _, err := name.NewTag(c.RegistryHost()+"/"+repo+":"+tag, name.StrictValidation); err != nil {
		return nil, fmt.Errorf("invalid tag %q", tag)
	}
	if opts.Jobs <= 0 {
		opts.Jobs = 3
	}
	if opts.Retries <= 0 {
		opts.Retries = 3
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = 32 << 20
	}
	p := &pusher{c: c, repo: repo, opts: opts, res: &PushResult{Layers: len(img.Layers)}}
	// The token first: a refused token says so before any work.
	if err := p.ping(ctx); err != nil {
		return nil, err
	}
	if img.Manifest != nil {
		for i, l := range img.Layers {
			if !l.Blob || l.Digest.Hex == "" {
				return nil, fmt.Errorf("layer %d: an image pushed with its own manifest needs its blobs' digests", i)
			}
		}
	}
	for i := range img.Layers {
		p.report(PushProgress{Layer: i, ID: shortHash(img.Layers[i].DiffID), Phase: PhaseWaiting})
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	descs := make([]v1.Descriptor, len(img.Layers))
	errs := make([]error, len(img.Layers))
	sem := make(chan struct{}, opts.Jobs)
	var wg sync.WaitGroup
	for i := range img.Layers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			defer func() { <-sem }()
			descs[i], errs[i] = p.layer(ctx, i, img.Layers[i])
			if errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	// The error that cancelled the others.
	var first error
	for i, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			first = fmt.Errorf("layer %s: %w", shortHash(img.Layers[i].DiffID), err)
			break
		}
		if err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		return nil, first
	}

	cfgDigest, cfgSize := sha256Hash(img.Config)
	cfg := pushBlob{digest: cfgDigest, size: cfgSize, open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(string(img.Config))), nil }}
	if err := p.blob(ctx, -1, cfg, ""); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}

	manifest, mt := img.Manifest, img.ManifestMediaType
	if manifest == nil {
		m := v1.Manifest{
			SchemaVersion: 2,
			MediaType:     types.DockerManifestSchema2,
			Config:        v1.Descriptor{MediaType: types.DockerConfigJSON, Size: cfgSize, Digest: cfgDigest},
			Layers:        descs,
		}
		var err error
		if manifest, err = json.Marshal(m); err != nil {
			return nil, err
		}
		mt = types.DockerManifestSchema2
	}
	digest, err := p.putManifest(ctx, tag, manifest, mt)
	if err != nil {
		return nil, err
	}
	p.res.Digest = digest
	return p.res, nil
}

// pusher is one Push.
type pusher struct {
	c    *Client
	repo string
	opts PushOptions

	mu  sync.Mutex // guards res and serializes Progress
	res *PushResult
}

func (p *pusher) report(ev PushProgress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.opts.Progress != nil {
		p.opts.Progress(ev)
	}
}

// count changes the result; blob counts are of layers (i >= 0) only.
func (p *pusher) count(i int, f func(r *PushResult)) {
	if i < 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p.res)
}

func shortHash(h v1.Hash) string {
	if len(h.Hex) < 12 {
		return h.Hex
	}
	return h.Hex[:12]
}

func sha256Hash(b []byte) (v1.Hash, int64) {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}, int64(len(b))
}

// pushBlob is a blob ready to go: its digest and size known.
type pushBlob struct {
	digest v1.Hash
	size   int64
	open   func() (io.ReadCloser, error)
}

// layer pushes one layer and returns its descriptor in the manifest.
func (p *pusher) layer(ctx context.Context, i int, l PushLayer) (v1.Descriptor, error) {
	host := p.c.RegistryHost()
	if l.Blob && l.Digest.Hex != "" {
		mt := l.MediaType
		if mt == "" {
			mt = types.DockerLayer
		}
		desc := v1.Descriptor{MediaType: mt, Size: l.Size, Digest: l.Digest}
		return desc, p.blob(ctx, i, pushBlob{digest: l.Digest, size: l.Size, open: l.Open}, "")
	}
	if l.Blob {
		// A blob of unknown digest (a compressed layer of a docker save
		// archive): hash it as it is.
		d, size, err := p.hash(ctx, i, l)
		if err != nil {
			return v1.Descriptor{}, err
		}
		mt := l.MediaType
		if mt == "" {
			mt = types.DockerLayer
		}
		return v1.Descriptor{MediaType: mt, Size: size, Digest: d}, p.blob(ctx, i, pushBlob{digest: d, size: size, open: l.Open}, "")
	}
	// An uncompressed tar: what kra made of it before, if the server has it.
	from := ""
	if p.opts.Cache != nil {
		if d, repo, ok := p.opts.Cache.Get(host, l.DiffID); ok {
			exists, err := p.exists(ctx, i, d.Digest, d.Size)
			if err != nil {
				return v1.Descriptor{}, err
			}
			if exists {
				p.count(i, func(r *PushResult) { r.Existing++ })
				p.report(PushProgress{Layer: i, ID: shortHash(d.Digest), Phase: PhaseExists, Current: d.Size, Total: d.Size})
				return d, nil
			}
			if repo != p.repo {
				from = repo
			}
		}
	}
	tmp, d, size, err := p.compress(ctx, i, l)
	if err != nil {
		return v1.Descriptor{}, err
	}
	defer os.Remove(tmp)
	desc := v1.Descriptor{MediaType: types.DockerLayer, Size: size, Digest: d}
	open := func() (io.ReadCloser, error) { return os.Open(tmp) }
	if err := p.blob(ctx, i, pushBlob{digest: d, size: size, open: open}, from); err != nil {
		return desc, err
	}
	if p.opts.Cache != nil {
		p.opts.Cache.Put(host, l.DiffID, desc, p.repo)
	}
	return desc, nil
}

// progressReader counts what is read through it and reports it, at most
// every 100 ms.
type progressReader struct {
	r        io.Reader
	n, total int64
	last     time.Time
	report   func(n, total int64)
}

func (pr *progressReader) Read(b []byte) (int, error) {
	n, err := pr.r.Read(b)
	pr.n += int64(n)
	if now := time.Now(); now.Sub(pr.last) >= 100*time.Millisecond || err == io.EOF {
		pr.last = now
		pr.report(pr.n, pr.total)
	}
	return n, err
}

// ctxReader stops reading when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(b)
}

// sizeOf is the size of what rc reads, when it is a file; else 0.
func sizeOf(rc io.ReadCloser) int64 {
	type sizer interface{ Size() int64 }
	if s, ok := rc.(sizer); ok {
		return s.Size()
	}
	if f, ok := rc.(*os.File); ok {
		if st, err := f.Stat(); err == nil {
			return st.Size()
		}
	}
	return 0
}

func (p *pusher) hash(ctx context.Context, i int, l PushLayer) (v1.Hash, int64, error) {
	rc, err := l.Open()
	if err != nil {
		return v1.Hash{}, 0, err
	}
	defer rc.Close()
	id := shortHash(l.DiffID)
	pr := &progressReader{r: ctxReader{ctx, rc}, total: sizeOf(rc), report: func(n, total int64) {
		p.report(PushProgress{Layer: i, ID: id, Phase: PhaseHashing, Current: n, Total: total})
	}}
	pr.report(0, pr.total)
	h := sha256.New()
	n, err := io.Copy(h, pr)
	if err != nil {
		return v1.Hash{}, 0, err
	}
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}, n, nil
}

// compress gzips an uncompressed layer into a temporary file and returns
// the file, the blob's digest and its size.
func (p *pusher) compress(ctx context.Context, i int, l PushLayer) (string, v1.Hash, int64, error) {
	rc, err := l.Open()
	if err != nil {
		return "", v1.Hash{}, 0, err
	}
	defer rc.Close()
	f, err := os.CreateTemp(p.opts.TempDir, "kra-layer-*.tar.gz")
	if err != nil {
		return "", v1.Hash{}, 0, fmt.Errorf("a temporary file for the compressed layer: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	id := shortHash(l.DiffID)
	pr := &progressReader{r: ctxReader{ctx, rc}, total: sizeOf(rc), report: func(n, total int64) {
		p.report(PushProgress{Layer: i, ID: id, Phase: PhaseCompressing, Current: n, Total: total})
	}}
	pr.report(0, pr.total)
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, h)}
	// As go-containerregistry compresses (crane push of the same archive
	// makes the same blob, so either finds the other's layers there).
	zw, err := gzip.NewWriterLevel(cw, gzip.BestSpeed)
	if err != nil {
		return "", v1.Hash{}, 0, err
	}
	diff := sha256.New()
	if _, err := io.Copy(zw, io.TeeReader(pr, diff)); err != nil {
		return "", v1.Hash{}, 0, fmt.Errorf("reading the layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return "", v1.Hash{}, 0, err
	}
	if err := f.Close(); err != nil {
		return "", v1.Hash{}, 0, err
	}
	if got := "sha256:" + hex.EncodeToString(diff.Sum(nil)); l.DiffID.Hex != "" && got != l.DiffID.String() {
		return "", v1.Hash{}, 0, fmt.Errorf("the layer's content is %s, the image config says %s: the image is damaged", got, l.DiffID)
	}
	ok = true
	return f.Name(), v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}, cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// --- the registry protocol ---

// regURL is the URL of a path under /v2/<repo>/.
func (p *pusher) regURL(path string) string {
	return p.c.host + "/v2/" + p.repo + path
}

// send sends one registry request with the token.
func (p *pusher) send(ctx context.Context, method, u string, body io.Reader, size int64, hdr ...string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		if c, ok := body.(io.Closer); ok {
			c.Close() // as the transport would have
		}
		return nil, err
	}
	if body != nil {
		req.ContentLength = size
		if size == 0 {
			req.Body = http.NoBody
		}
	}
	req.Header.Set("User-Agent", p.c.agent)
	req.Header.Set("Authorization", "Bearer "+p.c.opts.Token)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := p.c.http.Do(req)
	if err != nil {
		return nil, p.c.transportError(err)
	}
	return resp, nil
}

// registryError reads an error answer of the registry: its OCI error
// codes and messages as an *Error with the status.
func (p *pusher) registryError(resp *http.Response) error {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &Error{Status: resp.StatusCode, Method: resp.Request.Method, Path: resp.Request.URL.Path, Host: p.c.host}
	if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && n > 0 {
		e.RetryAfter = n
	}
	var body struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &body) == nil {
		var parts []string
		for _, x := range body.Errors {
			parts = append(parts, strings.TrimSpace(x.Code+": "+x.Message))
		}
		e.Message = strings.Join(parts, "; ")
		if e.Message == "" {
			e.Message = body.Message
		}
	}
	if e.Message == "" && resp.Request.Method != http.MethodHead {
		e.Message = fmt.Sprintf("%s %s: %d %s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	return e
}

func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// ping checks that the registry is there and takes the token.
func (p *pusher) ping(ctx context.Context) error {
	resp, err := p.send(ctx, http.MethodGet, p.c.host+"/v2/", nil, 0)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return p.registryError(resp)
	}
	drain(resp)
	return nil
}

// exists asks whether the tenant has the blob (of that size).
func (p *pusher) exists(ctx context.Context, i int, d v1.Hash, size int64) (bool, error) {
	p.report(PushProgress{Layer: i, ID: shortHash(d), Phase: PhaseChecking})
	resp, err := p.send(ctx, http.MethodHead, p.regURL("/blobs/"+d.String()), nil, 0)
	if err != nil {
		return false, err
	}
	defer drain(resp)
	switch resp.StatusCode {
	case http.StatusOK:
		return size <= 0 || resp.ContentLength < 0 || resp.ContentLength == size, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, p.registryError(resp)
}

// blob makes sure the tenant has b in the repository: HEAD, then a mount
// from repository from (if not empty) or an upload.
func (p *pusher) blob(ctx context.Context, i int, b pushBlob, from string) error {
	id := shortHash(b.digest)
	exists, err := p.exists(ctx, i, b.digest, b.size)
	if err != nil {
		return err
	}
	if exists {
		p.count(i, func(r *PushResult) { r.Existing++ })
		p.report(PushProgress{Layer: i, ID: id, Phase: PhaseExists, Current: b.size, Total: b.size})
		return nil
	}
	q := url.Values{}
	if from != "" {
		q.Set("mount", b.digest.String())
		q.Set("from", from)
	}
	u := p.regURL("/blobs/uploads/")
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	resp, err := p.send(ctx, http.MethodPost, u, nil, 0)
	if err != nil {
		return err
	}
	switch resp.StatusCode {
	case http.StatusCreated:
		drain(resp)
		p.count(i, func(r *PushResult) { r.Mounted++ })
		p.report(PushProgress{Layer: i, ID: id, Phase: PhaseMounted, Current: b.size, Total: b.size})
		return nil
	case http.StatusAccepted:
	default:
		return p.registryError(resp)
	}
	drain(resp)
	loc, err := location(resp)
	if err != nil {
		return err
	}
	if err := p.upload(ctx, i, id, b, loc); err != nil {
		p.cancelUpload(ctx, loc)
		return err
	}
	p.count(i, func(r *PushResult) { r.Pushed++ })
	p.report(PushProgress{Layer: i, ID: id, Phase: PhasePushed, Current: b.size, Total: b.size})
	return nil
}

// cancelUpload deletes an upload that failed, even when ctx has ended (an
// interrupted push), so that it does not hold the tenant's room for uploads
// until it expires. Best effort: the registry expires it anyway.
func (p *pusher) cancelUpload(ctx context.Context, loc *url.URL) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if resp, err := p.send(ctx, http.MethodDelete, loc.String(), nil, 0); err == nil {
		drain(resp)
	}
}

// location is the absolute URL of a response's Location header.
func location(resp *http.Response) (*url.URL, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil, fmt.Errorf("%s %s: the registry gave no upload location", resp.Request.Method, resp.Request.URL.Path)
	}
	u, err := resp.Request.URL.Parse(loc)
	if err != nil {
		return nil, fmt.Errorf("the registry's upload location %q: %w", loc, err)
	}
	return u, nil
}

// upload sends the blob to the upload at loc in chunks (PATCH with
// Content-Range) and finishes it with its digest. When a chunk is cut off,
// it asks the registry where the upload is (GET) and goes on from there:
// a broken connection costs at most a chunk.
func (p *pusher) upload(ctx context.Context, i int, id string, b pushBlob, loc *url.URL) error {
	rc, err := b.open()
	if err != nil {
		return err
	}
	defer func() { rc.Close() }()
	var pos, offset int64 // where rc is; where the upload is
	failures := 0
	p.report(PushProgress{Layer: i, ID: id, Phase: PhaseUploading, Current: 0, Total: b.size})
	for offset < b.size {
		if pos != offset {
			if rc, err = seekTo(rc, b.open, pos, offset); err != nil {
				return err
			}
			pos = offset
		}
		end := min(offset+p.opts.ChunkSize, b.size)
		next, n, err := p.patch(ctx, i, id, rc, loc, offset, end, b.size)
		pos += n
		if err == nil {
			loc, offset, failures = next, end, 0
			continue
		}
		// The registry's refusals are final; a connection cut off is not.
		var refused *Error
		if failures++; ctx.Err() != nil || failures > p.opts.Retries || errors.As(err, &refused) {
			return err
		}
		// Where is the upload? Go on from there.
		resp, serr := p.send(ctx, http.MethodGet, loc.String(), nil, 0)
		if serr != nil {
			return err
		}
		if resp.StatusCode != http.StatusNoContent {
			return p.registryError(resp)
		}
		drain(resp)
		offset = 0
		if r := resp.Header.Get("Range"); r != "" {
			_, last, ok := strings.Cut(strings.TrimPrefix(r, "bytes="), "-")
			// "0-0" is an empty upload: chunks are larger than a byte.
			if n, perr := strconv.ParseInt(last, 10, 64); ok && perr == nil && n > 0 && n < b.size {
				offset = n + 1
			}
		}
		if l, lerr := location(resp); lerr == nil {
			loc = l
		}
	}
	q := loc.Query()
	q.Set("digest", b.digest.String())
	loc.RawQuery = q.Encode()
	resp, err := p.send(ctx, http.MethodPut, loc.String(), strings.NewReader(""), 0)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusCreated {
		return p.registryError(resp)
	}
	drain(resp)
	return nil
}

// seekTo moves rc, at pos, to offset: it seeks, skips ahead, or opens the
// blob again.
func seekTo(rc io.ReadCloser, open func() (io.ReadCloser, error), pos, offset int64) (io.ReadCloser, error) {
	if s, ok := rc.(io.Seeker); ok {
		_, err := s.Seek(offset, io.SeekStart)
		return rc, err
	}
	if offset < pos {
		rc.Close()
		nrc, err := open()
		if err != nil {
			return nopCloser{}, err
		}
		rc, pos = nrc, 0
	}
	_, err := io.CopyN(io.Discard, rc, offset-pos)
	return rc, err
}

// watchedBody is a request body that tells when the transport is done
// with it (it closes a request's body when it has written it, or given up).
type watchedBody struct {
	r      io.Reader
	once   sync.Once
	closed chan struct{}
}

func (b *watchedBody) Read(p []byte) (int, error) { return b.r.Read(p) }

func (b *watchedBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

// wait waits until the transport closed the body; a transport that never
// does is given a minute.
func (b *watchedBody) wait() {
	select {
	case <-b.closed:
	case <-time.After(time.Minute):
	}
}

type nopCloser struct{ io.Reader }

func (nopCloser) Close() error { return nil }

// patch sends bytes [offset, end) of the blob, read from r, to the upload
// at loc; it returns the upload's next location and how much it read.
func (p *pusher) patch(ctx context.Context, i int, id string, r io.Reader, loc *url.URL, offset, end, size int64) (*url.URL, int64, error) {
	pr := &progressReader{r: io.LimitReader(r, end-offset), n: offset, total: size, report: func(n, total int64) {
		p.report(PushProgress{Layer: i, ID: id, Phase: PhaseUploading, Current: n, Total: total})
	}}
	body := &watchedBody{r: pr, closed: make(chan struct{})}
	resp, err := p.send(ctx, http.MethodPatch, loc.String(), body, end-offset,
		"Content-Type", "application/octet-stream", "Content-Range", fmt.Sprintf("%d-%d", offset, end-1))
	// The transport may still be reading the body after an early answer:
	// r is ours again only once it closed it.
	body.wait()
	read := pr.n - offset
	p.mu.Lock()
	p.res.BytesSent += read
	p.mu.Unlock()
	if err != nil {
		return nil, read, err
	}
	if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusNoContent {
		return nil, read, p.registryError(resp)
	}
	drain(resp)
	next, err := location(resp)
	return next, read, err
}

func (p *pusher) putManifest(ctx context.Context, tag string, body []byte, mt types.MediaType) (string, error) {
	resp, err := p.send(ctx, http.MethodPut, p.regURL("/manifests/"+tag), strings.NewReader(string(body)), int64(len(body)), "Content-Type", string(mt))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusCreated {
		return "", p.registryError(resp)
	}
	drain(resp)
	d, _ := sha256Hash(body)
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != d.String() {
		return "", fmt.Errorf("the registry stored manifest %s, kra sent %s", got, d)
	}
	return d.String(), nil
}
