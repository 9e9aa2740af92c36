package logfile

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func collect(t *testing.T, ctx context.Context, path string, o Options) []Entry {
	t.Helper()
	var out []Entry
	for e, err := range Read(ctx, path, o) {
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		out = append(out, e)
	}
	return out
}

func lines(es []Entry) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "%s:%s", e.Stream[3:], e.Line)
	}
	return b.String()
}

// fixedClock returns times one second apart starting at base.
func fixedClock(base time.Time) func() time.Time {
	var mu sync.Mutex
	n := 0
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		n++
		return base.Add(time.Duration(n) * time.Second)
	}
}

var base = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

func writeLog(t *testing.T, path string) {
	t.Helper()
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w.now = fixedClock(base)
	out, errw := w.Stream(Stdout), w.Stream(Stderr)
	fmt.Fprint(out, "o1\no2\n")         // t+1, t+2
	fmt.Fprint(errw, "e1\n")            // t+3
	fmt.Fprint(out, "o3 partial")       // buffered
	fmt.Fprint(out, " done\nunterm")    // t+4
	fmt.Fprint(errw, "e2\n")            // t+5
	if err := out.Close(); err != nil { // t+6: "unterm"
		t.Fatal(err)
	}
	w.Close()
}

func TestFormatIsDockers(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.now = func() time.Time { return time.Date(2024, 1, 2, 3, 4, 5, 123456789, time.FixedZone("x", 3600)) }
	if err := w.WriteEntry(Stdout, []byte("a<b> \"q\"\n")); err != nil {
		t.Fatal(err)
	}
	want := `{"log":"a\u003cb\u003e \"q\"\n","stream":"stdout","time":"2024-01-02T02:04:05.123456789Z"}` + "\n"
	if buf.String() != want {
		t.Fatalf("got  %s\nwant %s", buf.String(), want)
	}
}

func TestRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	writeLog(t, path)
	ctx := context.Background()
	all := "out:o1\nout:o2\nerr:e1\nout:o3 partial done\nerr:e2\nout:unterm"
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"all", Options{Tail: -1}, all},
		{"tail0", Options{Tail: 0}, ""},
		{"tail2", Options{Tail: 2}, "err:e2\nout:unterm"},
		{"tail99", Options{Tail: 99}, all},
		{"stderr", Options{Tail: -1, Stderr: true}, "err:e1\nerr:e2\n"},
		{"stderr tail1", Options{Tail: 1, Stderr: true}, "err:e2\n"},
		{"stdout tail2", Options{Tail: 2, Stdout: true}, "out:o3 partial done\nout:unterm"},
		{"since", Options{Tail: -1, Since: base.Add(5 * time.Second)}, "err:e2\nout:unterm"},
		{"until", Options{Tail: -1, Until: base.Add(2 * time.Second)}, "out:o1\nout:o2\n"},
		{"window tail", Options{Tail: 1, Since: base.Add(2 * time.Second), Until: base.Add(3 * time.Second)}, "err:e1\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := lines(collect(t, ctx, path, tc.o))
			if got != tc.want {
				t.Fatalf("got %q want %q", got, tc.want)
			}
		})
	}
	es := collect(t, ctx, path, Options{Tail: -1})
	if es[2].Stream != Stderr || !es[2].Time.Equal(base.Add(3*time.Second)) {
		t.Fatalf("entry 2: %+v", es[2])
	}
}

func TestReadMissing(t *testing.T) {
	if es := collect(t, context.Background(), filepath.Join(t.TempDir(), "nope"), Options{Tail: -1}); len(es) != 0 {
		t.Fatal(es)
	}
}

func TestLongLineSplit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, _ := Create(path)
	s := w.Stream(Stdout)
	long := bytes.Repeat([]byte("x"), MaxLine*2+10)
	s.Write(append(long, '\n'))
	s.Close()
	w.Close()
	es := collect(t, context.Background(), path, Options{Tail: -1})
	if len(es) != 3 || len(es[0].Line) != MaxLine || len(es[2].Line) != 11 {
		t.Fatalf("got %d entries", len(es))
	}
}

func TestTailAcrossChunks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, _ := Create(path)
	s := w.Stream(Stdout)
	for i := range 5000 {
		fmt.Fprintf(s, "line %d %s\n", i, strings.Repeat("y", i%300))
	}
	w.Close()
	es := collect(t, context.Background(), path, Options{Tail: 1234})
	if len(es) != 1234 || !strings.HasPrefix(string(es[0].Line), "line 3766 ") {
		t.Fatalf("got %d entries, first %q", len(es), es[0].Line)
	}
}

func TestFollow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan struct{})
	got := make(chan Entry, 100)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for e, err := range Read(ctx, path, Options{Follow: true, Tail: -1, Done: done, PollInterval: 50 * time.Millisecond}) {
			if err != nil {
				t.Error(err)
				return
			}
			got <- e
		}
	}()
	w, err := Create(path) // created after the reader started
	if err != nil {
		t.Fatal(err)
	}
	s := w.Stream(Stderr)
	fmt.Fprint(s, "one\n")
	if e := <-got; string(e.Line) != "one\n" || e.Stream != Stderr {
		t.Fatalf("got %+v", e)
	}
	fmt.Fprint(s, "two\nthree\n")
	close(done) // container exited: the reader must still drain "two", "three"
	<-finished
	w.Close()
	if len(got) != 2 {
		t.Fatalf("want 2 more entries, got %d", len(got))
	}
}

func TestFollowCancel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	os.WriteFile(path, nil, 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for range Read(ctx, path, Options{Follow: true, Tail: -1}) {
		}
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not stop on cancel")
	}
}

func TestConcurrentStreams(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, _ := Create(path)
	var wg sync.WaitGroup
	for _, name := range []string{Stdout, Stderr} {
		wg.Go(func() {
			s := w.Stream(name)
			for i := range 200 {
				fmt.Fprintf(s, "%s %d\n", name, i)
			}
			s.Close()
		})
	}
	wg.Wait()
	w.Close()
	es := collect(t, context.Background(), path, Options{Tail: -1, Stdout: true})
	if len(es) != 200 {
		t.Fatalf("stdout entries: %d", len(es))
	}
}

func FuzzRead(f *testing.F) {
	f.Add([]byte(`{"log":"hi\n","stream":"stdout","time":"2024-01-02T03:04:05Z"}`+"\n"), 1)
	f.Add([]byte("garbage\n\n{\"log\":1}\n{"), -1)
	f.Add([]byte(`{"log":"x","stream":"stderr","time":"bad"}`), 3)
	f.Fuzz(func(t *testing.T, data []byte, tail int) {
		path := filepath.Join(t.TempDir(), "c.log")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, err := range Read(context.Background(), path, Options{Tail: tail % 50}) {
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		all := 0
		for range Read(context.Background(), path, Options{Tail: -1}) {
			all++
		}
		if tail%50 >= 0 && n > tail%50 || n > all {
			t.Fatalf("tail %d yielded %d of %d", tail%50, n, all)
		}
	})
}
