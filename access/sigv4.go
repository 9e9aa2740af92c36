package access

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// AWS Signature Version 4, as S3 clients sign requests in the
// Authorization header (presigned URLs are not accepted).

const (
	sigAlgorithm    = "AWS4-HMAC-SHA256"
	amzDateFormat   = "20060102T150405Z"
	unsignedPayload = "UNSIGNED-PAYLOAD"
	emptySHA256     = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	// maxSkew is how far a request's X-Amz-Date may be from the server's clock.
	maxSkew = 15 * time.Minute
)

// sigV4 is a parsed Authorization header.
type sigV4 struct {
	accessKey     string
	date          string // yyyymmdd of the credential scope
	region        string
	service       string
	signedHeaders []string
	signature     string
}

// scope is the credential scope, "date/region/service/aws4_request".
func (s sigV4) scope() string {
	return s.date + "/" + s.region + "/" + s.service + "/aws4_request"
}

// parseAuthorization reads an Authorization header of the form
//
//	AWS4-HMAC-SHA256 Credential=AKID/20130524/us-east-1/s3/aws4_request,
//	SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=<64 hex>
func parseAuthorization(h string) (sigV4, error) {
	var s sigV4
	rest, ok := strings.CutPrefix(h, sigAlgorithm+" ")
	if !ok {
		return s, errors.New("the Authorization header is not AWS4-HMAC-SHA256 (only Signature Version 4 is supported)")
	}
	seen := map[string]bool{}
	for _, part := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || seen[k] {
			return s, fmt.Errorf("malformed Authorization header near %q", part)
		}
		seen[k] = true
		switch k {
		case "Credential":
			f := strings.Split(v, "/")
			if len(f) != 5 || f[0] == "" || f[4] != "aws4_request" {
				return s, errors.New("malformed Credential: want AKID/yyyymmdd/region/s3/aws4_request")
			}
			if len(f[1]) != 8 || !allDigits(f[1]) {
				return s, fmt.Errorf("malformed Credential date %q", f[1])
			}
			if f[3] != "s3" {
				return s, fmt.Errorf("credential scope names service %q, want s3", f[3])
			}
			s.accessKey, s.date, s.region, s.service = f[0], f[1], f[2], f[3]
		case "SignedHeaders":
			s.signedHeaders = strings.Split(v, ";")
			for i, n := range s.signedHeaders {
				if n == "" || n != strings.ToLower(n) || i > 0 && s.signedHeaders[i-1] >= n {
					return s, errors.New("malformed SignedHeaders: want lower-case names, sorted, once each")
				}
			}
		case "Signature":
			if len(v) != 64 || !isHex(v) {
				return s, errors.New("malformed Signature: want 64 hex digits")
			}
			s.signature = v
		default:
			return s, fmt.Errorf("unknown Authorization field %q", k)
		}
	}
	if s.accessKey == "" || s.signedHeaders == nil || s.signature == "" {
		return s, errors.New("the Authorization header needs Credential, SignedHeaders and Signature")
	}
	if !contains(s.signedHeaders, "host") {
		return s, errors.New("the signature must cover the host header")
	}
	return s, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// awsEscape encodes s as SigV4 wants: every byte but A-Z a-z 0-9 - . _ ~
// as %XX (upper case), and '/' too unless keepSlash.
func awsEscape(s string, keepSlash bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' || c == '/' && keepSlash {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// canonicalQuery sorts and re-encodes a raw query string.
func canonicalQuery(raw string) (string, error) {
	type kv struct{ k, v string }
	var kvs []kv
	for _, p := range strings.Split(raw, "&") {
		if p == "" {
			continue
		}
		k, v, _ := strings.Cut(p, "=")
		dk, err := url.QueryUnescape(k)
		if err != nil {
			return "", fmt.Errorf("malformed query: %w", err)
		}
		dv, err := url.QueryUnescape(v)
		if err != nil {
			return "", fmt.Errorf("malformed query: %w", err)
		}
		kvs = append(kvs, kv{awsEscape(dk, false), awsEscape(dv, false)})
	}
	sort.Slice(kvs, func(i, j int) bool {
		if kvs[i].k != kvs[j].k {
			return kvs[i].k < kvs[j].k
		}
		return kvs[i].v < kvs[j].v
	})
	parts := make([]string, len(kvs))
	for i, p := range kvs {
		parts[i] = p.k + "=" + p.v
	}
	return strings.Join(parts, "&"), nil
}

// headerValue is a signed header's canonical value.
func headerValue(r *http.Request, name string) string {
	var vals []string
	switch name {
	case "host":
		vals = []string{r.Host}
	case "content-length":
		vals = r.Header.Values("Content-Length")
		if len(vals) == 0 && r.ContentLength >= 0 {
			vals = []string{strconv.FormatInt(r.ContentLength, 10)}
		}
	default:
		vals = r.Header.Values(name)
	}
	for i, v := range vals {
		vals[i] = strings.Join(strings.Fields(v), " ")
	}
	return strings.Join(vals, ",")
}

// canonicalRequest is the text a request's signature covers.
func canonicalRequest(r *http.Request, s sigV4, payloadHash string) (string, error) {
	q, err := canonicalQuery(r.URL.RawQuery)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(r.Method + "\n")
	b.WriteString(awsEscape(r.URL.Path, true) + "\n")
	b.WriteString(q + "\n")
	for _, h := range s.signedHeaders {
		b.WriteString(h + ":" + headerValue(r, h) + "\n")
	}
	b.WriteString("\n" + strings.Join(s.signedHeaders, ";") + "\n")
	b.WriteString(payloadHash)
	return b.String(), nil
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// signingKey derives the key of one day, region and service.
func signingKey(secret string, s sigV4) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), s.date)
	k = hmacSHA256(k, s.region)
	k = hmacSHA256(k, s.service)
	return hmacSHA256(k, "aws4_request")
}

// stringToSign is what the signing key signs.
func stringToSign(amzDate string, s sigV4, canonical string) string {
	return sigAlgorithm + "\n" + amzDate + "\n" + s.scope() + "\n" + sha256Hex([]byte(canonical))
}

// verifySigV4 checks r's signature with secret; now bounds the skew.
// It returns the payload hash the client declared.
func verifySigV4(r *http.Request, s sigV4, secret string, now time.Time) (string, error) {
	amzDate := r.Header.Get("X-Amz-Date")
	if amzDate == "" {
		return "", errors.New("X-Amz-Date is required")
	}
	t, err := time.Parse(amzDateFormat, amzDate)
	if err != nil {
		return "", fmt.Errorf("malformed X-Amz-Date %q", amzDate)
	}
	if d := now.Sub(t); d > maxSkew || d < -maxSkew {
		return "", errSkew
	}
	if amzDate[:8] != s.date {
		return "", errors.New("the credential's date is not the day of X-Amz-Date")
	}
	if !contains(s.signedHeaders, "x-amz-date") {
		return "", errors.New("the signature must cover x-amz-date")
	}
	payload := r.Header.Get("X-Amz-Content-Sha256")
	if payload == "" && r.ContentLength == 0 {
		payload = emptySHA256 // what a client that does not send the header signed (curl --aws-sigv4)
	}
	switch {
	case payload == unsignedPayload, len(payload) == 64 && isHex(payload), payload == streamingSigned, payload == streamingTrailer:
	case payload == "":
		return "", errors.New("X-Amz-Content-Sha256 is required")
	default:
		return "", errUnsupportedPayload
	}
	canonical, err := canonicalRequest(r, s, payload)
	if err != nil {
		return "", err
	}
	want := hex.EncodeToString(hmacSHA256(signingKey(secret, s), stringToSign(amzDate, s, canonical)))
	if subtle.ConstantTimeCompare([]byte(want), []byte(s.signature)) != 1 {
		return "", errSignature
	}
	return payload, nil
}

var (
	errSignature          = errors.New("the request signature we calculated does not match the signature you provided: check your key and signing method")
	errSkew               = errors.New("the difference between the request time and the server's time is too large")
	errUnsupportedPayload = errors.New("this X-Amz-Content-Sha256 is not supported: send the payload's SHA-256, UNSIGNED-PAYLOAD, " + streamingSigned + " or " + streamingTrailer)
	errPayloadHash        = errors.New("the payload's SHA-256 does not match X-Amz-Content-Sha256")
)

// hashCheck reads a body and fails at its end when its SHA-256 is not the
// one the client signed.
type hashCheck struct {
	r    io.Reader
	h    hash.Hash
	want []byte
}

func checkedBody(body io.Reader, payloadHash string) io.Reader {
	if payloadHash == unsignedPayload {
		return body
	}
	want, _ := hex.DecodeString(payloadHash)
	return &hashCheck{r: body, h: sha256.New(), want: want}
}

func (c *hashCheck) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	if err == io.EOF && !bytes.Equal(c.h.Sum(nil), c.want) {
		return n, errPayloadHash
	}
	return n, err
}
