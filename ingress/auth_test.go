package ingress

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// A bcrypt hash of "pw" (cost 4, as htpasswd -nbB -C 4 writes with $2y$).
const pwHash = "$2y$04$yPpzuOAqXnBrstxgGjgleuR07RtAv/xUWkCn0Qcy3hrn8hNjQ.Erq"

func tokenSum(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(s[:])
}

func TestParseAuth(t *testing.T) {
	good := "ci:sha256:" + tokenSum("t0ken")
	cases := []struct {
		labels map[string]string
		want   string // Methods(), or "" for no auth
		err    string
	}{
		{labels: map[string]string{"kr.ingress.80": "https://a.*"}},
		{labels: map[string]string{"kr.ingress.auth": "oidc", "kr.ingress.auth.allow": "Alice@Example.com, *@example.org"}, want: "oidc"},
		{labels: map[string]string{"kr.ingress.auth": "basic", "kr.ingress.auth.basic": "alice:" + pwHash}, want: "basic"},
		{labels: map[string]string{"kr.ingress.auth": "token", "kr.ingress.auth.tokens": good}, want: "token"},
		{labels: map[string]string{"kr.ingress.auth": "oidc, token", "kr.ingress.auth.allow": "*", "kr.ingress.auth.tokens": good}, want: "oidc,token"},
		{labels: map[string]string{"kr.ingress.auth.allow": "*"}, err: "kr.ingress.auth is missing"},
		{labels: map[string]string{"kr.ingress.auth": ""}, err: "empty"},
		{labels: map[string]string{"kr.ingress.auth": "ldap"}, err: `"ldap" is not oidc`},
		{labels: map[string]string{"kr.ingress.auth": "oidc"}, err: "oidc needs an allow list"},
		{labels: map[string]string{"kr.ingress.auth": "oidc", "kr.ingress.auth.alow": "*"}, err: "kr.ingress.auth.alow: unknown"},
		{labels: map[string]string{"kr.ingress.auth": "oidc", "kr.ingress.auth.allow": "al*ce@example.com"}, err: "wildcard"},
		{labels: map[string]string{"kr.ingress.auth": "oidc", "kr.ingress.auth.allow": "*@*.example.com"}, err: "not an address"},
		{labels: map[string]string{"kr.ingress.auth": "oidc", "kr.ingress.auth.allow": "alice"}, err: "not an address"},
		{labels: map[string]string{"kr.ingress.auth": "token", "kr.ingress.auth.allow": "*", "kr.ingress.auth.tokens": good}, err: "allow list is for oidc"},
		{labels: map[string]string{"kr.ingress.auth": "basic"}, err: "basic needs users"},
		{labels: map[string]string{"kr.ingress.auth": "basic", "kr.ingress.auth.basic": "alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="}, err: "not bcrypt"},
		{labels: map[string]string{"kr.ingress.auth": "basic", "kr.ingress.auth.basic": "alice:plain"}, err: "not bcrypt"},
		{labels: map[string]string{"kr.ingress.auth": "basic", "kr.ingress.auth.basic": "alice:" + pwHash + ",alice:" + pwHash}, err: "twice"},
		{labels: map[string]string{"kr.ingress.auth": "oidc", "kr.ingress.auth.allow": "*", "kr.ingress.auth.basic": "alice:" + pwHash}, err: "does not name basic"},
		{labels: map[string]string{"kr.ingress.auth": "token"}, err: "token needs tokens"},
		{labels: map[string]string{"kr.ingress.auth": "token", "kr.ingress.auth.tokens": "ci:md5:abc"}, err: "only sha256"},
		{labels: map[string]string{"kr.ingress.auth": "token", "kr.ingress.auth.tokens": "ci:sha256:abc"}, err: "64 hex digits"},
		{labels: map[string]string{"kr.ingress.auth": "token", "kr.ingress.auth.tokens": "t0ken"}, err: "want name:sha256"},
	}
	for _, c := range cases {
		a, err := ParseAuth(c.labels)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v: error %v, want %q", c.labels, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", c.labels, err)
			continue
		}
		got := ""
		if a != nil {
			got = a.Methods()
		}
		if got != c.want {
			t.Errorf("%v: methods %q, want %q", c.labels, got, c.want)
		}
	}
}

// TestAuthErrorsKeepSecrets: a malformed credential label names the user
// or token, never the secret it may contain.
func TestAuthErrorsKeepSecrets(t *testing.T) {
	for _, l := range []map[string]string{
		{"kr.ingress.auth": "token", "kr.ingress.auth.tokens": "my-plain-secret-token"},
		{"kr.ingress.auth": "basic", "kr.ingress.auth.basic": "my-plain-secret-token"},
	} {
		_, err := ParseAuth(l)
		if err == nil || strings.Contains(err.Error(), "plain-secret") {
			t.Errorf("%v: %v", l, err)
		}
	}
}

func TestAuthLabelsInParseLabels(t *testing.T) {
	base := map[string]string{"kr.ingress.443": "https://app.*", "kr.ingress.auth": "oidc", "kr.ingress.auth.allow": "*@example.com"}
	rules, _, err := ParseLabels("alice", "cloud.test", base)
	if err != nil || len(rules) != 1 || rules[0].Auth == nil || !rules[0].Auth.OIDC {
		t.Fatalf("%+v %v", rules, err)
	}
	// An authenticated pod's routes must all be https.
	base["kr.ingress.80"] = "http://plain.*"
	if _, _, err := ParseLabels("alice", "cloud.test", base); err == nil || !strings.Contains(err.Error(), "must be https") {
		t.Fatalf("http route with auth: %v", err)
	}
	// Keys next to auth that are not auth's are still ports or errors.
	for _, k := range []string{"kr.ingress.authx", "kr.ingress.oidc"} {
		if _, _, err := ParseLabels("alice", "cloud.test", map[string]string{k: "https://a.*"}); err == nil || !strings.Contains(err.Error(), "not a port") {
			t.Errorf("%s: %v", k, err)
		}
	}
	// A broken auth label breaks the pod's routes: never served open.
	if _, _, err := ParseLabels("alice", "cloud.test", map[string]string{"kr.ingress.443": "https://app.*", "kr.ingress.auth": "oidc"}); err == nil {
		t.Fatal("oidc without allow list accepted")
	}
}

// TestBuildAuthConflicts: replicas of a route that disagree on auth do not
// widen it: the earliest pod's rule holds and the other is left out.
func TestBuildAuthConflicts(t *testing.T) {
	tab := Build(Config{Domain: "cloud.test"}, []Backend{
		backend("alice", "locked", 1, "kr.ingress.80", "https://app.*", "kr.ingress.auth", "oidc", "kr.ingress.auth.allow", "a@example.com"),
		backend("alice", "open", 2, "kr.ingress.80", "https://app.*"),
		backend("alice", "same", 3, "kr.ingress.8080", "https://app.*", "kr.ingress.auth", "oidc", "kr.ingress.auth.allow", "a@example.com"),
	})
	r := tab.Lookup("app.alice.cloud.test", "/")
	if r == nil || r.Auth == nil || len(r.Targets) != 2 || r.Targets[0].Pod != "locked" || r.Targets[1].Pod != "same" {
		t.Fatalf("route %+v", r)
	}
	if p := tab.Problems["open"]; len(p) != 1 || !strings.Contains(p[0], "differ") {
		t.Fatalf("problems %v", tab.Problems)
	}
	if !tab.HasOIDC("app.alice.cloud.test") || tab.HasOIDC("other.alice.cloud.test") {
		t.Fatal("HasOIDC")
	}
}

func TestAllows(t *testing.T) {
	a := &Auth{Allow: []string{"*@example.com", "bob@other.org"}}
	for email, want := range map[string]bool{
		"alice@example.com": true, "ALICE@EXAMPLE.COM": true, "bob@other.org": true,
		"eve@other.org": false, "eve@evil-example.com": false, "eve@sub.example.com": false,
		"@example.com": false, "": false, "eve@x@example.com": false,
	} {
		if got := a.allows(email); got != want {
			t.Errorf("allows(%q) = %v", email, got)
		}
	}
	if !(&Auth{Allow: []string{"*"}}).allows("") {
		t.Error("* does not allow a user without email")
	}
}

func FuzzParseAuth(f *testing.F) {
	f.Add("oidc,basic,token", "*@example.com", "alice:"+pwHash, "ci:sha256:"+tokenSum("x"))
	f.Add("oidc", "a@b.c,*", "", "")
	f.Add("basic", "", "x:$2a$10$", "")
	f.Fuzz(func(t *testing.T, methods, allow, basic, tokens string) {
		l := map[string]string{AuthLabel: methods}
		if allow != "" {
			l[AuthAllowLabel] = allow
		}
		if basic != "" {
			l[AuthBasicLabel] = basic
		}
		if tokens != "" {
			l[AuthTokensLabel] = tokens
		}
		a, err := ParseAuth(l)
		if err != nil {
			return
		}
		if a == nil || (!a.OIDC && !a.Basic && !a.Token) {
			t.Fatal("accepted auth with no method")
		}
		if a.OIDC != (len(a.Allow) > 0) || a.Basic != (len(a.Users) > 0) || a.Token != (len(a.Tokens) > 0) {
			t.Fatalf("method without credentials or the reverse: %+v", a)
		}
		for _, u := range a.Users {
			if _, err := bcrypt.Cost(u.Hash); err != nil || u.Name == "" {
				t.Fatalf("user %+v", u)
			}
		}
		for _, e := range a.Allow {
			if e != strings.ToLower(e) || (strings.Contains(e, "*") && e != "*" && !strings.HasPrefix(e, "*@")) {
				t.Fatalf("allow entry %q", e)
			}
		}
	})
}

func FuzzParseHtpasswd(f *testing.F) {
	f.Add("alice:" + pwHash)
	f.Add("bob:$apr1$abc$def")
	f.Add(":")
	f.Fuzz(func(t *testing.T, line string) {
		u, err := ParseHtpasswd(line)
		if err != nil {
			if strings.Contains(line, ":") && len(line) > 20 {
				name, secret, _ := strings.Cut(line, ":")
				if len(secret) > 8 && !strings.Contains(name, secret) && strings.Contains(err.Error(), secret) {
					t.Fatalf("error shows the hash: %v", err)
				}
			}
			return
		}
		if u.Name == "" || strings.ContainsAny(u.Name, ", \t\n") {
			t.Fatalf("name %q", u.Name)
		}
		if _, err := bcrypt.Cost(u.Hash); err != nil {
			t.Fatalf("hash %q", u.Hash)
		}
	})
}
