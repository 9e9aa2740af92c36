package access

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"testing"
)

// AWS's example of a signed streaming upload ("Signature Calculations for
// the Authorization Header: Transferring Payload in Multiple Chunks"):
// 66560 bytes of 'a' in chunks of 64 KiB.
func TestChunkedAWSExample(t *testing.T) {
	s := sigV4{date: "20130524", region: "us-east-1", service: "s3"}
	signer := func() *chunkSigner {
		return &chunkSigner{key: signingKey("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", s), amzDate: "20130524T000000Z", scope: s.scope(),
			prev: "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"}
	}
	body := "10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n" + strings.Repeat("a", 65536) + "\r\n" +
		"400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n" + strings.Repeat("a", 1024) + "\r\n" +
		"0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n"
	got, err := io.ReadAll(newChunkedReader(strings.NewReader(body), signer(), 66560))
	if err != nil || len(got) != 66560 || strings.Trim(string(got), "a") != "" {
		t.Fatalf("%d bytes, %v", len(got), err)
	}
	// One byte changed in the second chunk.
	bad := strings.Replace(body, strings.Repeat("a", 1024), "b"+strings.Repeat("a", 1023), 1)
	if _, err := io.ReadAll(newChunkedReader(strings.NewReader(bad), signer(), -1)); !errors.Is(err, errSignature) {
		t.Fatalf("a changed chunk: %v", err)
	}
	// Chunks dropped from the end.
	short := body[:strings.Index(body, "400;")]
	if _, err := io.ReadAll(newChunkedReader(strings.NewReader(short), signer(), -1)); err == nil {
		t.Fatal("a truncated body read without error")
	}
	if _, err := io.ReadAll(newChunkedReader(strings.NewReader(body), signer(), 66561)); !errors.Is(err, errChunk) {
		t.Fatalf("a wrong decoded length: %v", err)
	}
}

func trailerBody(chunks []string, trailer string) string {
	var b strings.Builder
	for _, c := range chunks {
		fmt.Fprintf(&b, "%x\r\n%s\r\n", len(c), c)
	}
	b.WriteString("0\r\n" + trailer + "\r\n")
	return b.String()
}

func TestChunkedTrailer(t *testing.T) {
	data := []string{"hello ", "world"}
	crc := crc32.NewIEEE()
	crc.Write([]byte("hello world"))
	sum := sha256.Sum256([]byte("hello world"))
	for _, tc := range []struct {
		name, trailer string
		ok            bool
	}{
		{"crc32", "x-amz-checksum-crc32:" + base64.StdEncoding.EncodeToString(crc.Sum(nil)) + "\r\n", true},
		{"sha256", "x-amz-checksum-sha256:" + base64.StdEncoding.EncodeToString(sum[:]) + "\r\n", true},
		{"none", "", true},
		{"unknown algorithm", "x-amz-checksum-crc64nvme:AAAAAAAAAAA=\r\n", true},
		{"wrong crc32", "x-amz-checksum-crc32:AAAAAA==\r\n", false},
		{"bad base64", "x-amz-checksum-crc32:!!\r\n", false},
		{"no colon", "garbage\r\n", false},
	} {
		got, err := io.ReadAll(newChunkedReader(strings.NewReader(trailerBody(data, tc.trailer)), nil, 11))
		if tc.ok != (err == nil) || tc.ok && string(got) != "hello world" {
			t.Errorf("%s: %q %v", tc.name, got, err)
		}
	}
	for _, bad := range []string{"", "zz\r\n", "5\r\nhello", "5\r\nhelloXX0\r\n\r\n", "5;x=y\r\nhello\r\n0\r\n\r\n", "-1\r\n", strings.Repeat("f", 17) + "\r\n"} {
		if _, err := io.ReadAll(newChunkedReader(strings.NewReader(bad), nil, -1)); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}

func FuzzChunked(f *testing.F) {
	f.Add(trailerBody([]string{"abc", "de"}, "x-amz-checksum-crc32:AAAAAA==\r\n"), false)
	f.Add("3;chunk-signature="+strings.Repeat("0", 64)+"\r\nabc\r\n0;chunk-signature="+strings.Repeat("0", 64)+"\r\n\r\n", true)
	f.Add("5\r\nhel", false)
	f.Fuzz(func(t *testing.T, body string, signed bool) {
		var signer *chunkSigner
		if signed {
			signer = &chunkSigner{key: []byte("k"), amzDate: "20250101T000000Z", scope: "s", prev: strings.Repeat("0", 64)}
		}
		got, err := io.ReadAll(newChunkedReader(strings.NewReader(body), signer, -1))
		if err == nil && len(got) > len(body) {
			t.Fatalf("decoded %d bytes out of %d", len(got), len(body))
		}
		if err == nil && !bytes.Contains([]byte(body), got[:min(len(got), 1)]) {
			t.Fatalf("decoded bytes that are not in the body")
		}
	})
}
