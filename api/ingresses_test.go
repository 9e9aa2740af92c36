package api

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/macro-cloud/macro/types"
)

func TestIngresses(t *testing.T) {
	e := newEnv(t)
	for _, n := range []string{"alice", "bob"} {
		e.call(http.DefaultClient, "POST", e.adminURL("/tenants"), "", map[string]string{"name": n}, nil)
	}
	alice, bob := e.mustToken("alice").Token, e.mustToken("bob").Token
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pod := func(tenant, name string, age int, running bool, labels ...string) {
		l := map[string]string{}
		for i := 0; i+1 < len(labels); i += 2 {
			l[labels[i]] = labels[i+1]
		}
		id := strings.Repeat(string(rune('a'+age)), 64)
		p := &types.Pod{ID: id, Name: name, Tenant: tenant, Namespace: "shop", Created: created.Add(time.Duration(age) * time.Hour), Spec: types.PodSpec{Labels: l}}
		if err := e.st.CreatePod(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		if running {
			e.st.PutStatus(context.Background(), tenant, types.PodStatus{ID: id, Phase: types.PhaseRunning, IPv6: "fd00::1", Node: "n1"})
		}
	}
	pod("alice", "web", 0, true, "kr.ingress.80", "https://app.*")
	pod("alice", "api", 1, false, "kr.ingress.8080", "https://app.*/api")
	pod("alice", "db", 2, true, "kr.ingress.tcp.5432", "15432")
	pod("alice", "thief", 3, true, "kr.ingress.80", "https://app.bob.cloud.test")
	pod("bob", "web", 4, true, "kr.ingress.80", "https://www.*")
	pod("alice", "warm", 5, false, "kr.ingress.80", "https://warm.*")
	e.st.PutStatus(context.Background(), "alice", types.PodStatus{ID: strings.Repeat("f", 64), Phase: types.PhaseRunning, IPv6: "fd00::2",
		Health: &types.Health{Status: "starting"}})

	var list IngressList
	if code, body := e.call(e.client, "GET", e.portURL("/ingresses"), alice, nil, &list); code != 200 {
		t.Fatalf("list: %d %s", code, body)
	}
	if len(list.Routes) != 3 || list.Routes[0].URL != "https://app.alice.cloud.test" || list.Routes[1].URL != "https://app.alice.cloud.test/api" {
		t.Fatalf("routes: %+v", list.Routes)
	}
	if tg := list.Routes[2].Targets; list.Routes[2].URL != "https://warm.alice.cloud.test" || len(tg) != 1 || tg[0].State != "starting" {
		t.Fatalf("a pod whose healthcheck is starting: %+v", list.Routes[2])
	}
	if tg := list.Routes[0].Targets; len(tg) != 1 || tg[0].Pod != "web" || tg[0].Port != 80 || tg[0].State != "ready" || tg[0].Namespace != "shop" || tg[0].Node != "n1" {
		t.Fatalf("targets of /: %+v", tg)
	}
	if tg := list.Routes[1].Targets; len(tg) != 1 || tg[0].State != "down" {
		t.Fatalf("targets of /api: %+v", tg)
	}
	if len(list.TCP) != 1 || list.TCP[0].PublicPort != 15432 {
		t.Fatalf("tcp: %+v", list.TCP)
	}
	if len(list.Problems) != 1 || list.Problems[0].Pod != "thief" || !strings.Contains(list.Problems[0].Problem, "under alice.cloud.test only") {
		t.Fatalf("problems: %+v", list.Problems)
	}
	// Bob sees his own route only.
	if code, _ := e.call(e.client, "GET", e.portURL("/ingresses"), bob, nil, &list); code != 200 || len(list.Routes) != 1 || list.Routes[0].Host != "www.bob.cloud.test" || len(list.TCP) != 0 || len(list.Problems) != 0 {
		t.Fatalf("bob's list: %+v", list)
	}
	if code, _ := e.call(e.client, "GET", e.portURL("/ingresses"), "", nil, nil); code != 401 {
		t.Fatalf("without a token: %d", code)
	}
}
