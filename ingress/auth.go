package ingress

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Labels of authenticated ingress. They apply to every HTTP route of the
// pod that carries them (its kr.ingress.<port> labels), and those routes
// must be https://: credentials and session cookies never cross plain HTTP.
const (
	// AuthLabel lists the ways in, comma-separated: "oidc" (browser login
	// at the provider the server is configured with), "basic" (HTTP basic
	// auth against AuthBasicLabel) and "token" (Authorization: Bearer,
	// against AuthTokensLabel).
	AuthLabel = "kr.ingress.auth"
	// AuthAllowLabel lists who may pass OIDC login, comma-separated:
	// "alice@example.com", "*@example.com" (any verified address of that
	// domain), or "*" (anyone the provider knows). An oidc route needs it.
	AuthAllowLabel = "kr.ingress.auth.allow"
	// AuthBasicLabel lists basic-auth users as htpasswd lines with bcrypt
	// hashes, comma-separated: "alice:$2y$10$...,bob:$2a$12$..." (in a
	// compose file, write each $ as $$).
	AuthBasicLabel = "kr.ingress.auth.basic"
	// AuthTokensLabel lists bearer tokens by name and SHA-256, comma-
	// separated: "ci:sha256:<64 hex digits>". The name is the identity the
	// backend sees; the token itself is never stored.
	AuthTokensLabel = "kr.ingress.auth.tokens"
)

// Auth is what a route asks of a client before it reaches the backend.
type Auth struct {
	OIDC, Basic, Token bool
	// Allow is the OIDC allow list, lower case.
	Allow []string
	// Users are the basic-auth users, by name.
	Users []BasicUser
	// Tokens are the bearer tokens.
	Tokens []TokenHash
}

// BasicUser is one htpasswd line: a user and a bcrypt hash.
type BasicUser struct {
	Name string
	Hash []byte
}

// TokenHash is a bearer token by name and SHA-256.
type TokenHash struct {
	Name string
	Sum  [sha256.Size]byte
}

// key is a canonical form of a, equal for equal rules.
func (a *Auth) key() string {
	if a == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%v %v %v|%s|", a.OIDC, a.Basic, a.Token, strings.Join(a.Allow, ","))
	for _, u := range a.Users {
		fmt.Fprintf(&b, "%s:%s,", u.Name, u.Hash)
	}
	b.WriteString("|")
	for _, t := range a.Tokens {
		fmt.Fprintf(&b, "%s:%x,", t.Name, t.Sum)
	}
	return b.String()
}

// Methods names the ways in, as in AuthLabel.
func (a *Auth) Methods() string {
	var m []string
	if a.OIDC {
		m = append(m, "oidc")
	}
	if a.Basic {
		m = append(m, "basic")
	}
	if a.Token {
		m = append(m, "token")
	}
	return strings.Join(m, ",")
}

// ParseAuth reads a pod's authentication labels; nil when it has none.
// Any other label under AuthLabel is an error, so a misspelt one never
// leaves a route open by accident.
func ParseAuth(labels map[string]string) (*Auth, error) {
	has := false
	for k := range labels {
		if k == AuthLabel || strings.HasPrefix(k, AuthLabel+".") {
			has = true
			switch k {
			case AuthLabel, AuthAllowLabel, AuthBasicLabel, AuthTokensLabel:
			default:
				return nil, fmt.Errorf("label %s: unknown (want %s, %s, %s or %s)", k, AuthLabel, AuthAllowLabel, AuthBasicLabel, AuthTokensLabel)
			}
		}
	}
	if !has {
		return nil, nil
	}
	a := &Auth{}
	methods, ok := labels[AuthLabel]
	if !ok {
		return nil, fmt.Errorf("label %s is missing: say which of oidc, basic, token the route takes", AuthLabel)
	}
	for _, m := range splitList(methods) {
		switch strings.ToLower(m) {
		case "oidc":
			a.OIDC = true
		case "basic":
			a.Basic = true
		case "token":
			a.Token = true
		default:
			return nil, fmt.Errorf("label %s: %q is not oidc, basic or token", AuthLabel, m)
		}
	}
	if !a.OIDC && !a.Basic && !a.Token {
		return nil, fmt.Errorf("label %s: empty: say which of oidc, basic, token the route takes", AuthLabel)
	}
	if v, ok := labels[AuthAllowLabel]; ok {
		if !a.OIDC {
			return nil, fmt.Errorf("label %s: the allow list is for oidc, which %s does not name", AuthAllowLabel, AuthLabel)
		}
		seen := map[string]bool{}
		for _, e := range splitList(v) {
			e = strings.ToLower(e)
			if err := checkAllowEntry(e); err != nil {
				return nil, fmt.Errorf("label %s: %w", AuthAllowLabel, err)
			}
			if !seen[e] {
				seen[e] = true
				a.Allow = append(a.Allow, e)
			}
		}
		sort.Strings(a.Allow)
	}
	if a.OIDC && len(a.Allow) == 0 {
		return nil, fmt.Errorf("label %s: oidc needs an allow list (addresses, *@domain, or * for anyone the provider knows)", AuthAllowLabel)
	}
	if v, ok := labels[AuthBasicLabel]; ok {
		if !a.Basic {
			return nil, fmt.Errorf("label %s: %s does not name basic", AuthBasicLabel, AuthLabel)
		}
		seen := map[string]bool{}
		for _, line := range splitList(v) {
			u, err := ParseHtpasswd(line)
			if err != nil {
				return nil, fmt.Errorf("label %s: %w", AuthBasicLabel, err)
			}
			if seen[u.Name] {
				return nil, fmt.Errorf("label %s: user %q twice", AuthBasicLabel, u.Name)
			}
			seen[u.Name] = true
			a.Users = append(a.Users, u)
		}
		sort.Slice(a.Users, func(i, j int) bool { return a.Users[i].Name < a.Users[j].Name })
	}
	if a.Basic && len(a.Users) == 0 {
		return nil, fmt.Errorf("label %s: basic needs users (user:bcrypt-hash, as htpasswd -B writes)", AuthBasicLabel)
	}
	if v, ok := labels[AuthTokensLabel]; ok {
		if !a.Token {
			return nil, fmt.Errorf("label %s: %s does not name token", AuthTokensLabel, AuthLabel)
		}
		seen := map[string]bool{}
		for _, e := range splitList(v) {
			t, err := parseTokenHash(e)
			if err != nil {
				return nil, fmt.Errorf("label %s: %w", AuthTokensLabel, err)
			}
			if seen[t.Name] {
				return nil, fmt.Errorf("label %s: token %q twice", AuthTokensLabel, t.Name)
			}
			seen[t.Name] = true
			a.Tokens = append(a.Tokens, t)
		}
		sort.Slice(a.Tokens, func(i, j int) bool { return a.Tokens[i].Name < a.Tokens[j].Name })
	}
	if a.Token && len(a.Tokens) == 0 {
		return nil, fmt.Errorf("label %s: token needs tokens (name:sha256:<hex of the token's SHA-256>)", AuthTokensLabel)
	}
	return a, nil
}

// splitList splits a comma-separated label value, dropping empty items.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func checkAllowEntry(e string) error {
	if e == "*" {
		return nil
	}
	if strings.ContainsAny(e, " \t\r\n\"<>()[]\\;:") || e == "" {
		return fmt.Errorf("%q is not an address, *@domain or *", e)
	}
	local, domain, ok := strings.Cut(e, "@")
	if !ok || domain == "" || strings.Contains(domain, "@") || strings.Contains(domain, "*") {
		return fmt.Errorf("%q is not an address, *@domain or *", e)
	}
	if local == "" || (strings.Contains(local, "*") && local != "*") {
		return fmt.Errorf("%q: a wildcard stands for the whole name before the @ only", e)
	}
	return nil
}

// ParseHtpasswd reads one htpasswd line "user:hash" with a bcrypt hash
// ($2a$, $2b$ or $2y$), as `htpasswd -nbB` writes. Other hash schemes
// (MD5-crypt, SHA-1, plain text) are refused.
func ParseHtpasswd(line string) (BasicUser, error) {
	name, hash, ok := strings.Cut(strings.TrimSpace(line), ":")
	if !ok || name == "" {
		return BasicUser{}, fmt.Errorf("%q: want user:bcrypt-hash", redactLine(line))
	}
	for _, c := range name {
		if c <= ' ' || c == 0x7f || c == ',' {
			return BasicUser{}, fmt.Errorf("user %q: no spaces, commas or control characters", name)
		}
	}
	if _, err := bcrypt.Cost([]byte(hash)); err != nil {
		return BasicUser{}, fmt.Errorf("user %q: the hash is not bcrypt ($2y$..., as htpasswd -B writes)", name)
	}
	return BasicUser{Name: name, Hash: []byte(hash)}, nil
}

// redactLine keeps the user of a malformed line, not what may be a secret.
func redactLine(line string) string {
	if name, _, ok := strings.Cut(line, ":"); ok {
		return name + ":..."
	}
	if len(line) > 3 {
		return line[:3] + "..."
	}
	return line
}

func parseTokenHash(e string) (TokenHash, error) {
	name, rest, ok := strings.Cut(e, ":")
	algo, sum, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 || name == "" {
		return TokenHash{}, fmt.Errorf("%q: want name:sha256:<64 hex digits>", redactLine(e))
	}
	for _, c := range name {
		if c <= ' ' || c == 0x7f {
			return TokenHash{}, fmt.Errorf("token name %q: no spaces or control characters", name)
		}
	}
	if strings.ToLower(algo) != "sha256" {
		return TokenHash{}, fmt.Errorf("token %q: hash %q: only sha256", name, algo)
	}
	b, err := hex.DecodeString(sum)
	if err != nil || len(b) != sha256.Size {
		return TokenHash{}, fmt.Errorf("token %q: want 64 hex digits of SHA-256", name)
	}
	t := TokenHash{Name: name}
	copy(t.Sum[:], b)
	return t, nil
}

// allows is true when the OIDC identity (a verified email, or the
// subject when the provider gives no email) is on the allow list.
func (a *Auth) allows(email string) bool {
	email = strings.ToLower(email)
	if strings.Count(email, "@") > 1 {
		email = ""
	}
	for _, e := range a.Allow {
		switch {
		case e == "*":
			return true
		case email == "":
		case e == email:
			return true
		case strings.HasPrefix(e, "*@") && strings.HasSuffix(email, e[1:]) && len(email) > len(e)-1:
			return true
		}
	}
	return false
}
