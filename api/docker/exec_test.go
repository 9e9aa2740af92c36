package docker

import (
	"bytes"
	"net/http/httptest"
	"testing"
)

// execBodies are bodies of POST /containers/{id}/exec as the docker CLI
// sends them (docker exec, -it, -d, -u, -w, -e, --privileged).
var execBodies = []string{
	`{"User":"","Privileged":false,"Tty":false,"ConsoleSize":null,"AttachStdin":false,"AttachStderr":true,"AttachStdout":true,"Detach":false,"DetachKeys":"","Env":null,"WorkingDir":"","Cmd":["true"]}`,
	`{"User":"","Privileged":false,"Tty":true,"ConsoleSize":[24,80],"AttachStdin":true,"AttachStderr":true,"AttachStdout":true,"Detach":false,"DetachKeys":"","Env":null,"WorkingDir":"","Cmd":["sh"]}`,
	`{"User":"","Privileged":false,"Tty":false,"ConsoleSize":null,"AttachStdin":false,"AttachStderr":false,"AttachStdout":false,"Detach":true,"DetachKeys":"","Env":null,"WorkingDir":"","Cmd":["sleep","10"]}`,
	`{"User":"1000:1000","Privileged":false,"Tty":false,"AttachStderr":true,"AttachStdout":true,"Env":["A=1","B"],"WorkingDir":"/tmp","Cmd":["sh","-c","echo $A"]}`,
	`{"Privileged":true,"Cmd":["id"]}`,
	`{"Cmd":[]}`,
	`{"Cmd":null}`,
	`{}`,
	``,
	`{"Cmd":"true"}`,
}

func TestParseExecConfig(t *testing.T) {
	cases := []struct {
		body   string
		status int // 0: accepted
		cmd    []string
	}{
		{execBodies[0], 0, []string{"true"}},
		{execBodies[1], 0, []string{"sh"}},
		{execBodies[3], 0, []string{"sh", "-c", "echo $A"}},
		{execBodies[4], 400, nil},
		{execBodies[5], 400, nil},
		{execBodies[7], 400, nil},
		{execBodies[8], 400, nil},
		{execBodies[9], 400, nil},
	}
	for _, tc := range cases {
		cfg, err := parseExecConfig(httptest.NewRequest("POST", "/containers/x/exec", bytes.NewBufferString(tc.body)))
		switch {
		case tc.status == 0 && err != nil:
			t.Errorf("%s: %v", tc.body, err)
		case tc.status != 0 && err == nil:
			t.Errorf("%s: accepted, want %d", tc.body, tc.status)
		case tc.status != 0 && statusOf(err) != tc.status:
			t.Errorf("%s: status %d (%v), want %d", tc.body, statusOf(err), err, tc.status)
		case tc.status == 0 && !equalStrings(cfg.Cmd, tc.cmd):
			t.Errorf("%s: Cmd %q, want %q", tc.body, cfg.Cmd, tc.cmd)
		}
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzExecBody: any exec body is either refused with a client error or
// gives a command to run; never a server error or a panic.
func FuzzExecBody(f *testing.F) {
	for _, b := range execBodies {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		cfg, err := parseExecConfig(httptest.NewRequest("POST", "/containers/x/exec", bytes.NewReader(body)))
		if err != nil {
			if s := statusOf(err); s < 400 || s >= 500 {
				t.Fatalf("exec body %q: status %d: %v", body, s, err)
			}
			return
		}
		if len(cfg.Cmd) == 0 || cfg.Privileged {
			t.Fatalf("exec body %q accepted with Cmd %q, Privileged %v", body, cfg.Cmd, cfg.Privileged)
		}
	})
}
