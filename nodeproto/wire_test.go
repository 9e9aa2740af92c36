package nodeproto

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"testing"

	"github.com/macro-cloud/macro/agent"
	"github.com/macro-cloud/macro/runtime"
)

func TestFrames(t *testing.T) {
	var b bytes.Buffer
	big := bytes.Repeat([]byte("x"), maxFrame+10)
	for _, f := range []struct {
		kind byte
		p    []byte
	}{{frameStdout, []byte("out")}, {frameStderr, nil}, {frameStdin, big}} {
		if err := writeFrame(&b, f.kind, f.p); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	var buf []byte
	for {
		kind, p, err := readFrame(&b, buf)
		if err != nil {
			break
		}
		got = append(got, fmt.Sprintf("%d:%d", kind, len(p)))
	}
	// A payload over maxFrame is cut into frames that each fit.
	if want := fmt.Sprintf("[1:3 2:0 0:%d 0:10]", maxFrame); fmt.Sprint(got) != want {
		t.Fatalf("frames %v, want %s", got, want)
	}
}

// The errors the API tells apart keep their identity across the wire.
func TestWireErrors(t *testing.T) {
	for _, err := range []error{agent.ErrNoSuchPod, runtime.ErrNotFound, runtime.ErrNotRunning, fs.ErrNotExist, syscall.ESRCH} {
		e := wireError(fmt.Errorf("on the node: %w", err))
		if !errors.Is(e, err) {
			t.Errorf("%v does not survive the wire: %+v", err, e)
		}
	}
	if e := wireError(errors.New("plain")); errors.Is(e, agent.ErrNoSuchPod) || e.Msg != "plain" {
		t.Errorf("a plain error became %+v", e)
	}
}

// A peer's frames never make readFrame panic or allocate past maxFrame.
func FuzzReadFrame(f *testing.F) {
	var b bytes.Buffer
	writeFrame(&b, frameResult, []byte(`{"code":0}`))
	f.Add(b.Bytes())
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for {
			_, p, err := readFrame(r, nil)
			if err != nil {
				return
			}
			if len(p) > maxFrame {
				t.Fatalf("frame of %d bytes", len(p))
			}
		}
	})
}
