package auth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

func TestCheckJoinToken(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := store.Open(ctx, store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)
	server, srec, err := NewJoinToken(types.JoinServer, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	node, nrec, err := NewJoinToken(types.JoinNode, 0, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range []types.JoinToken{srec, nrec} {
		if err := st.CreateJoinToken(ctx, &rec); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.HasPrefix(server, "kj_") || strings.Contains(srec.Hash, server[len("kj_")+17:]) || !srec.Expires.Equal(now.Add(time.Hour)) || !nrec.Expires.IsZero() {
		t.Fatalf("tokens %q %+v %+v", server, srec, nrec)
	}
	id, secret, _ := ParseJoinToken(server)
	wrongSecret := "kj_" + id + "_" + strings.Repeat("0", len(secret))
	unknown, _, _ := NewJoinToken(types.JoinServer, 0, now)
	cases := []struct {
		name, kind, token string
		at                time.Time
		want              error // nil: valid
	}{
		{"server token", types.JoinServer, server, now, nil},
		{"with spaces", types.JoinServer, " " + server + "\n", now, nil},
		{"node token", types.JoinNode, node, now.Add(1000 * time.Hour), nil},
		{"wrong kind", types.JoinNode, server, now, ErrJoinTokenKind},
		{"node as server", types.JoinServer, node, now, ErrJoinTokenKind},
		{"expired", types.JoinServer, server, now.Add(time.Hour), ErrJoinTokenExpired},
		{"wrong secret", types.JoinServer, wrongSecret, now, ErrJoinTokenUnknown},
		{"unknown", types.JoinServer, unknown, now, ErrJoinTokenUnknown},
		{"access token", types.JoinServer, "kr_" + server[3:], now, ErrJoinTokenShape},
		{"empty", types.JoinServer, "", now, ErrJoinTokenShape},
		{"garbage", types.JoinServer, "kj_../../x_y", now, ErrJoinTokenShape},
	}
	for _, c := range cases {
		got, err := checkJoinToken(ctx, st, c.kind, c.token, c.at)
		switch {
		case c.want == nil && (err != nil || got.Kind != c.kind):
			t.Errorf("%s: %+v %v", c.name, got, err)
		case c.want != nil && !errors.Is(err, c.want):
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
	}
	if err := st.DeleteJoinToken(ctx, srec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckJoinToken(ctx, st, types.JoinServer, server); !errors.Is(err, ErrJoinTokenUnknown) {
		t.Fatalf("removed token: %v", err)
	}
	if _, _, err := NewJoinToken("agent", 0, now); err == nil {
		t.Fatal("kind agent accepted")
	}
}

func FuzzParseJoinToken(f *testing.F) {
	tok, _, _ := NewJoinToken(types.JoinNode, 0, time.Now())
	for _, s := range []string{tok, "", "kj_", "kj__", "kj_0123456789abcdef_", "kr_" + tok[3:], tok + "_x", strings.ToUpper(tok)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, secret, ok := ParseJoinToken(s)
		if !ok {
			return
		}
		if s != "kj_"+id+"_"+secret || len(id) != tokenIDLen || len(secret) != tokenSecretLen || strings.ContainsAny(id+secret, "/._") {
			t.Fatalf("ParseJoinToken(%q) = %q %q", s, id, secret)
		}
	})
}
