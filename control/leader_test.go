package control

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/macro-cloud/macro/store"
)

// TestRunAsLeader runs two candidates on one store: one runs the loop at
// a time, and the other takes over when the first stops.
func TestRunAsLeader(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := store.Open(ctx, store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var running atomic.Int32
	var mu sync.Mutex
	var ran []string
	loop := func(id string) func(context.Context) {
		return func(ctx context.Context) {
			if n := running.Add(1); n != 1 {
				t.Errorf("%d loops run at once", n)
			}
			mu.Lock()
			ran = append(ran, id)
			mu.Unlock()
			<-ctx.Done()
			running.Add(-1)
		}
	}
	ctxA, stopA := context.WithCancel(context.Background())
	doneA := make(chan struct{})
	go func() { RunAsLeader(ctxA, st, LeaderConfig{ID: "a", TTL: time.Second}, loop("a")); close(doneA) }()
	waitUntil(t, "a leads", func() bool { id, _ := st.Leader(context.Background(), Election); return id == "a" })
	ctxB, stopB := context.WithCancel(context.Background())
	doneB := make(chan struct{})
	go func() { RunAsLeader(ctxB, st, LeaderConfig{ID: "b", TTL: time.Second}, loop("b")); close(doneB) }()
	defer func() { stopB(); <-doneB }()
	waitUntil(t, "a runs", func() bool { mu.Lock(); defer mu.Unlock(); return len(ran) == 1 })

	stopA()
	<-doneA
	waitUntil(t, "b takes over", func() bool { id, _ := st.Leader(context.Background(), Election); return id == "b" })
	waitUntil(t, "b runs", func() bool { mu.Lock(); defer mu.Unlock(); return len(ran) == 2 && ran[1] == "b" })
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 30s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
