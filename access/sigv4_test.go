package access

import (
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The examples of AWS's documentation of Signature V4 for S3
// ("Signature Calculations for the Authorization Header: Transferring
// Payload in a Single Chunk"), checked against our verifier.
func TestSigV4AWSExamples(t *testing.T) {
	const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	now := time.Date(2013, 5, 24, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, target, sig string
		headers           map[string]string
		signed            string
	}{
		{"GET object", "/test.txt", "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
			map[string]string{"Range": "bytes=0-9"}, "host;range;x-amz-content-sha256;x-amz-date"},
		{"list objects", "/?max-keys=2&prefix=J", "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
			nil, "host;x-amz-content-sha256;x-amz-date"},
		{"GET bucket lifecycle", "/?lifecycle", "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
			nil, "host;x-amz-content-sha256;x-amz-date"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tc.target, nil)
			r.Host = "examplebucket.s3.amazonaws.com"
			r.Header.Set("X-Amz-Date", "20130524T000000Z")
			r.Header.Set("X-Amz-Content-Sha256", emptySHA256)
			for k, v := range tc.headers {
				r.Header.Set(k, v)
			}
			h := "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=" + tc.signed + ",Signature=" + tc.sig
			s, err := parseAuthorization(h)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := verifySigV4(r, s, secret, now); err != nil {
				t.Fatalf("the documented signature does not verify: %v", err)
			}
			if _, err := verifySigV4(r, s, secret+"x", now); err != errSignature {
				t.Fatalf("a wrong secret: %v", err)
			}
			if _, err := verifySigV4(r, s, secret, now.Add(16*time.Minute)); err != errSkew {
				t.Fatalf("16 minutes late: %v", err)
			}
			r.Header.Set("X-Amz-Date", "20130524T000001Z")
			if _, err := verifySigV4(r, s, secret, now); err != errSignature {
				t.Fatalf("another date: %v", err)
			}
		})
	}
}

func TestParseAuthorization(t *testing.T) {
	good := "AWS4-HMAC-SHA256 Credential=MK0123/20250501/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + strings.Repeat("ab", 32)
	s, err := parseAuthorization(good)
	if err != nil || s.accessKey != "MK0123" || s.region != "us-east-1" || len(s.signedHeaders) != 2 || s.scope() != "20250501/us-east-1/s3/aws4_request" {
		t.Fatalf("%+v %v", s, err)
	}
	sig := strings.Repeat("ab", 32)
	for _, bad := range []string{
		"",
		"AWS4-HMAC-SHA1 Credential=a/20250501/r/s3/aws4_request, SignedHeaders=host, Signature=" + sig,
		"AWS4-HMAC-SHA256 Credential=a/2025051/r/s3/aws4_request, SignedHeaders=host, Signature=" + sig,
		"AWS4-HMAC-SHA256 Credential=a/20250501/r/ec2/aws4_request, SignedHeaders=host, Signature=" + sig,
		"AWS4-HMAC-SHA256 Credential=a/20250501/r/s3, SignedHeaders=host, Signature=" + sig,
		"AWS4-HMAC-SHA256 Credential=a/20250501/r/s3/aws4_request, SignedHeaders=x-amz-date, Signature=" + sig,
		"AWS4-HMAC-SHA256 Credential=a/20250501/r/s3/aws4_request, SignedHeaders=x-amz-date;host, Signature=" + sig,
		"AWS4-HMAC-SHA256 Credential=a/20250501/r/s3/aws4_request, SignedHeaders=Host, Signature=" + sig,
		"AWS4-HMAC-SHA256 Credential=a/20250501/r/s3/aws4_request, SignedHeaders=host, Signature=zz",
		"AWS4-HMAC-SHA256 Credential=a/20250501/r/s3/aws4_request, SignedHeaders=host",
		"AWS4-HMAC-SHA256 Credential=a/20250501/r/s3/aws4_request, Credential=b/20250501/r/s3/aws4_request, SignedHeaders=host, Signature=" + sig,
		"AWS4-HMAC-SHA256 Credential=a/20250501/r/s3/aws4_request, SignedHeaders=host, Signature=" + sig + ", Extra=1",
	} {
		if s, err := parseAuthorization(bad); err == nil {
			t.Errorf("%q accepted: %+v", bad, s)
		}
	}
}

func TestAWSEscape(t *testing.T) {
	for in, want := range map[string]string{
		"a b/c~d": "a%20b%2Fc~d", "ü": "%C3%BC", "$&+=": "%24%26%2B%3D",
	} {
		if got := awsEscape(in, false); got != want {
			t.Errorf("awsEscape(%q) = %q, want %q", in, got, want)
		}
	}
	if got := awsEscape("/a b/c", true); got != "/a%20b/c" {
		t.Errorf("path: %q", got)
	}
	q, err := canonicalQuery("prefix=J&max-keys=2&list-type=2&a=&b")
	if err != nil || q != "a=&b=&list-type=2&max-keys=2&prefix=J" {
		t.Errorf("canonicalQuery: %q %v", q, err)
	}
	if _, err := canonicalQuery("a=%zz"); err == nil {
		t.Error("a bad escape accepted")
	}
}

// signV4 signs r as an S3 client would (header auth), with the payload
// hash payload.
func signV4(r *http.Request, id, secret, payload string, now time.Time) {
	amzDate := now.UTC().Format(amzDateFormat)
	r.Header.Set("X-Amz-Date", amzDate)
	r.Header.Set("X-Amz-Content-Sha256", payload)
	s := sigV4{accessKey: id, date: amzDate[:8], region: "us-east-1", service: "s3", signedHeaders: []string{"host", "x-amz-content-sha256", "x-amz-date"}}
	canonical, err := canonicalRequest(r, s, payload)
	if err != nil {
		panic(err)
	}
	sig := hex.EncodeToString(hmacSHA256(signingKey(secret, s), stringToSign(amzDate, s, canonical)))
	r.Header.Set("Authorization", sigAlgorithm+" Credential="+id+"/"+s.scope()+", SignedHeaders="+strings.Join(s.signedHeaders, ";")+", Signature="+sig)
}

func FuzzParseAuthorization(f *testing.F) {
	f.Add("AWS4-HMAC-SHA256 Credential=MK0123/20250501/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + strings.Repeat("ab", 32))
	f.Add("AWS4-HMAC-SHA256 Credential=a/b/c/d/e,SignedHeaders=;;,Signature=")
	f.Add("AWS4-HMAC-SHA256 ,,,===")
	f.Fuzz(func(t *testing.T, h string) {
		s, err := parseAuthorization(h)
		if err != nil {
			return
		}
		if s.accessKey == "" || len(s.signature) != 64 || !contains(s.signedHeaders, "host") || s.service != "s3" || len(s.date) != 8 {
			t.Fatalf("accepted %q as %+v", h, s)
		}
		// Whatever was accepted verifies or fails without panicking.
		r := httptest.NewRequest(http.MethodGet, "/b/k?x=1", nil)
		r.Header.Set("X-Amz-Date", s.date+"T000000Z")
		verifySigV4(r, s, "secret", time.Now())
	})
}

func FuzzCanonicalQuery(f *testing.F) {
	for _, s := range []string{"list-type=2&prefix=a%2Fb&delimiter=%2F", "a&b=&=c", "%", "x=%zz", "a=+b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := canonicalQuery(raw)
		if err != nil {
			return
		}
		// Canonical is a fixed point.
		if q2, err := canonicalQuery(q); err != nil || q2 != q {
			t.Fatalf("canonicalQuery(%q) = %q, again %q %v", raw, q, q2, err)
		}
	})
}
