package api

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/macro-cloud/macro/access"
	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/types"
)

func TestVolumeKeys(t *testing.T) {
	e := newEnv(t)
	for _, n := range []string{"alice", "bob"} {
		e.call(http.DefaultClient, "POST", e.adminURL("/tenants"), "", map[string]string{"name": n}, nil)
	}
	alice, bob := e.mustToken("alice").Token, e.mustToken("bob").Token
	ctx := context.Background()
	for _, v := range []types.Volume{{Name: "data", Tenant: "alice", Created: time.Now()}, {Name: "logs", Tenant: "alice"}, {Name: "data", Tenant: "bob"}} {
		if err := e.st.CreateVolume(ctx, &v); err != nil {
			t.Fatal(err)
		}
	}
	keys := access.NewKeys(bytes.Repeat([]byte{1}, 32))
	s := New(Config{Store: e.st, Auth: auth.New(auth.Config{Store: e.st}), VolumeKeys: keys})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	url := func(p string) string { return srv.URL + Prefix + p }

	var k VolumeKey
	if code, body := e.call(http.DefaultClient, "POST", url("/volumekeys"), alice, map[string]any{"volume": "data", "readOnly": true, "description": "backup"}, &k); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	if !access.IsKeyID(k.ID) || k.Secret != keys.Secret(k.ID) || !k.ReadOnly || k.Volume != "data" {
		t.Fatalf("created: %+v", k)
	}
	stored, err := e.st.VolumeKey(ctx, k.ID)
	vol, _ := e.st.Volume(ctx, "alice", "data")
	if err != nil || strings.Contains(stored.Hash, k.Secret) || stored.Hash == "" || !stored.VolumeCreated.Equal(vol.Created) || stored.Tenant != "alice" {
		t.Fatalf("stored: %+v %v", stored, err)
	}
	var allKey VolumeKey
	if code, body := e.call(http.DefaultClient, "POST", url("/volumekeys"), alice, map[string]any{"all": true}, &allKey); code != 201 || allKey.Volume != "" {
		t.Fatalf("create for all: %d %s", code, body)
	}
	for _, c := range []struct {
		name   string
		token  string
		body   any
		status int
	}{
		{"no volume", alice, map[string]any{}, 400},
		{"volume and all", alice, map[string]any{"volume": "data", "all": true}, 400},
		{"no such volume", alice, map[string]any{"volume": "nope"}, 404},
		{"a long description", alice, map[string]any{"volume": "data", "description": strings.Repeat("x", 300)}, 400},
		{"unknown field", alice, map[string]any{"volume": "data", "bogus": 1}, 400},
		{"no token", "", map[string]any{"volume": "data"}, 401},
	} {
		if code, body := e.call(http.DefaultClient, "POST", url("/volumekeys"), c.token, c.body, nil); code != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, code, body, c.status)
		}
	}
	var list []VolumeKey
	if code, body := e.call(http.DefaultClient, "GET", url("/volumekeys?volume=data"), alice, nil, &list); code != 200 || len(list) != 1 || list[0].ID != k.ID || list[0].Secret != "" {
		t.Fatalf("list: %d %s", code, body)
	}
	if code, _ := e.call(http.DefaultClient, "GET", url("/volumekeys"), alice, nil, &list); code != 200 || len(list) != 2 {
		t.Fatalf("list all: %+v", list)
	}
	if code, _ := e.call(http.DefaultClient, "GET", url("/volumekeys"), bob, nil, &list); code != 200 || len(list) != 0 {
		t.Fatalf("bob's list: %+v", list)
	}
	if code, _ := e.call(http.DefaultClient, "GET", url("/volumekeys?volume=logs"), bob, nil, nil); code != 404 {
		t.Fatalf("bob lists keys of alice's logs: %d", code)
	}
	if code, _ := e.call(http.DefaultClient, "DELETE", url("/volumekeys/"+k.ID), bob, nil, nil); code != 404 {
		t.Fatalf("bob revokes alice's key: %d", code)
	}
	if code, _ := e.call(http.DefaultClient, "DELETE", url("/volumekeys/"+k.ID), alice, nil, nil); code != 204 {
		t.Fatalf("revoke: %d", code)
	}
	if code, _ := e.call(http.DefaultClient, "DELETE", url("/volumekeys/"+k.ID), alice, nil, nil); code != 404 {
		t.Fatalf("revoke twice: %d", code)
	}
	// A server without keys refuses to make them.
	plain := httptest.NewServer(New(Config{Store: e.st, Auth: auth.New(auth.Config{Store: e.st})}).Handler())
	t.Cleanup(plain.Close)
	if code, _ := e.call(http.DefaultClient, "POST", plain.URL+Prefix+"/volumekeys", alice, map[string]any{"volume": "data"}, nil); code != 501 {
		t.Fatalf("without keys: %d", code)
	}
}
