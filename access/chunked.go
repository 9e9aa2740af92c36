package access

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"strconv"
	"strings"
)

// aws-chunked bodies: what SDKs send instead of one hashed payload when
// they stream. Two forms are read:
//
//	STREAMING-AWS4-HMAC-SHA256-PAYLOAD: each chunk is
//	  <hex size>;chunk-signature=<64 hex>\r\n<data>\r\n
//	and ends with a chunk of size 0; each signature chains from the
//	previous one (the request's first) and covers the chunk's SHA-256.
//
//	STREAMING-UNSIGNED-PAYLOAD-TRAILER: each chunk is
//	  <hex size>\r\n<data>\r\n
//	and the chunk of size 0 is followed by trailer lines, such as
//	x-amz-checksum-crc32:<base64>, and an empty line; a checksum of a
//	known algorithm is verified.

const (
	streamingSigned   = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
	streamingTrailer  = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
	maxChunkLine      = 4096
	maxChunkSize      = 1 << 30
	chunkAlgorithm    = "AWS4-HMAC-SHA256-PAYLOAD"
	maxTrailers       = 16
	maxDecodedPayload = 5 << 40
)

var errChunk = errors.New("malformed aws-chunked body")

// chunkSigner chains the signatures of a signed streaming body.
type chunkSigner struct {
	key     []byte
	amzDate string
	scope   string
	prev    string
}

func (c *chunkSigner) next(chunkHash string) string {
	s := chunkAlgorithm + "\n" + c.amzDate + "\n" + c.scope + "\n" + c.prev + "\n" + emptySHA256 + "\n" + chunkHash
	c.prev = hex.EncodeToString(hmacSHA256(c.key, s))
	return c.prev
}

// chunkedReader decodes an aws-chunked body.
type chunkedReader struct {
	r       *bufio.Reader
	signer  *chunkSigner // nil: the unsigned form with trailers
	left    int64        // bytes left in the current chunk
	h       hash.Hash    // SHA-256 of the current chunk (signed form)
	sig     string       // the current chunk's signature
	whole   []hash.Hash  // candidate checksums of the whole body (unsigned form)
	total   int64
	want    int64 // x-amz-decoded-content-length, -1 when not given
	err     error
	started bool
}

func newChunkedReader(body io.Reader, signer *chunkSigner, decodedLen int64) *chunkedReader {
	c := &chunkedReader{r: bufio.NewReaderSize(body, 64<<10), signer: signer, want: decodedLen}
	if signer == nil {
		c.whole = []hash.Hash{crc32.NewIEEE(), crc32.New(crc32.MakeTable(crc32.Castagnoli)), sha1.New(), sha256.New()}
	}
	return c
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	for c.left == 0 {
		if c.started {
			if err := c.endChunk(); err != nil {
				c.err = err
				return 0, err
			}
		}
		c.started = true
		last, err := c.header()
		if err != nil {
			c.err = err
			return 0, err
		}
		if last {
			c.err = c.finish()
			return 0, c.err
		}
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	c.total += int64(n)
	if c.h != nil {
		c.h.Write(p[:n])
	}
	for _, h := range c.whole {
		h.Write(p[:n])
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		c.err = err
	}
	return n, err
}

func (c *chunkedReader) line() (string, error) {
	var b []byte
	for {
		part, isPrefix, err := c.r.ReadLine()
		if err != nil {
			if err == io.EOF {
				return "", io.ErrUnexpectedEOF
			}
			return "", err
		}
		b = append(b, part...)
		if len(b) > maxChunkLine {
			return "", errChunk
		}
		if !isPrefix {
			return string(b), nil
		}
	}
}

// header reads a chunk's header line; last is true for the chunk of size 0.
func (c *chunkedReader) header() (last bool, err error) {
	l, err := c.line()
	if err != nil {
		return false, err
	}
	size, ext, _ := strings.Cut(l, ";")
	if size == "" || len(size) > 16 {
		return false, errChunk
	}
	n, err := strconv.ParseInt(size, 16, 64)
	if err != nil || n < 0 || n > maxChunkSize {
		return false, errChunk
	}
	if c.signer != nil {
		sig, ok := strings.CutPrefix(ext, "chunk-signature=")
		if !ok || len(sig) != 64 || !isHex(sig) {
			return false, errChunk
		}
		c.sig, c.h = sig, sha256.New()
	} else if ext != "" {
		return false, errChunk
	}
	c.left = n
	if n == 0 {
		if c.signer != nil {
			if err := c.checkSig(); err != nil {
				return true, err
			}
		}
		return true, nil
	}
	return false, nil
}

func (c *chunkedReader) checkSig() error {
	want := c.signer.next(hex.EncodeToString(c.h.Sum(nil)))
	if !hmac.Equal([]byte(want), []byte(c.sig)) {
		return errSignature
	}
	return nil
}

// endChunk checks the signature of the chunk just read and its CRLF.
func (c *chunkedReader) endChunk() error {
	if c.signer != nil {
		if err := c.checkSig(); err != nil {
			return err
		}
	}
	l, err := c.line()
	if err != nil {
		return err
	}
	if l != "" {
		return errChunk
	}
	return nil
}

// finish reads what follows the last chunk: an empty line (signed), or
// the trailers and an empty line.
func (c *chunkedReader) finish() error {
	if c.want >= 0 && c.total != c.want {
		return fmt.Errorf("%w: %d bytes, x-amz-decoded-content-length says %d", errChunk, c.total, c.want)
	}
	for i := 0; ; i++ {
		l, err := c.line()
		if err != nil {
			return err
		}
		if l == "" {
			break
		}
		if c.signer != nil || i >= maxTrailers {
			return errChunk
		}
		name, val, ok := strings.Cut(l, ":")
		if !ok {
			return errChunk
		}
		if err := c.checkTrailer(strings.ToLower(strings.TrimSpace(name)), strings.TrimSpace(val)); err != nil {
			return err
		}
	}
	return io.EOF
}

// checkTrailer verifies a checksum trailer of a known algorithm.
func (c *chunkedReader) checkTrailer(name, val string) error {
	idx := map[string]int{"x-amz-checksum-crc32": 0, "x-amz-checksum-crc32c": 1, "x-amz-checksum-sha1": 2, "x-amz-checksum-sha256": 3}
	i, ok := idx[name]
	if !ok {
		return nil // another trailer, or a checksum this server does not compute
	}
	want, err := base64.StdEncoding.DecodeString(val)
	if err != nil {
		return errChunk
	}
	if !hmac.Equal(c.whole[i].Sum(nil), want) { // CRCs sum big-endian, as S3 sends them
		return errPayloadHash
	}
	return nil
}
