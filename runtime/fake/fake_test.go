package fake

import (
	"context"
	"errors"
	"io"
	"syscall"
	"testing"

	"github.com/macro-cloud/macro/runtime"
)

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
		code int
	}{
		{"term", syscall.SIGTERM, 143},
		{"kill", syscall.SIGKILL, 137},
		{"int", syscall.SIGINT, 130},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := New()
			pid, err := r.Start(ctx, runtime.Container{ID: "c", OpenStdin: true, Tty: true})
			if err != nil || pid <= 0 {
				t.Fatal(pid, err)
			}
			if err := r.Pause(ctx, "c"); err != nil {
				t.Fatal(err)
			}
			if st, _ := r.State(ctx, "c"); st.Status != runtime.StatusPaused {
				t.Fatal(st)
			}
			if err := r.Resume(ctx, "c"); err != nil {
				t.Fatal(err)
			}
			w, err := r.Stdin(ctx, "c")
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(w, "hi")
			if r.Input("c") != "hi" {
				t.Fatal(r.Input("c"))
			}
			if err := r.Signal(ctx, "c", tc.sig); err != nil {
				t.Fatal(err)
			}
			st, _ := r.State(ctx, "c")
			if st.Status != runtime.StatusStopped || st.ExitCode != tc.code || st.FinishedAt.IsZero() {
				t.Fatalf("%+v", st)
			}
			if err := r.Signal(ctx, "c", syscall.SIGKILL); !errors.Is(err, runtime.ErrNotRunning) {
				t.Fatal(err)
			}
			r.Delete(ctx, "c")
			if _, err := r.State(ctx, "c"); !errors.Is(err, runtime.ErrNotFound) {
				t.Fatal(err)
			}
		})
	}
}

func TestExit(t *testing.T) {
	ctx := context.Background()
	r := New()
	r.Start(ctx, runtime.Container{ID: "c"})
	if _, err := r.Start(ctx, runtime.Container{ID: "c"}); err == nil {
		t.Fatal("started twice")
	}
	r.Exit("c", 137, true)
	if st, _ := r.State(ctx, "c"); !st.OOMKilled || st.ExitCode != 137 {
		t.Fatal(st)
	}
	if _, err := r.Start(ctx, runtime.Container{ID: "c"}); err != nil {
		t.Fatal("restart:", err)
	}
}
