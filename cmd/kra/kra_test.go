package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/macro-cloud/macro/client"
	"github.com/macro-cloud/macro/client/clienttest"
)

var update = flag.Bool("update", false, "rewrite the expected output in testdata/script/*.txtar")

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){"kra": func() { os.Exit(Main()) }})
}

// TestScripts runs testdata/script/*.txtar: kra against a fake macro API
// port (clienttest) started for each script. The scripts see:
//
//	KR_HOST          the fake server, https://127.0.0.1:PORT (also in KR_URL)
//	KR_HOST_PORT     its PORT
//	$WORK/ca.pem     its CA (not trusted until a script says so)
//	CLOSED           https://127.0.0.1:PORT where nothing listens
//	XDG_CONFIG_HOME  $WORK/config; DOCKER_CONFIG $WORK/docker; TZ UTC
//
// and these commands besides testscript's own:
//
//	revoke TOKEN     the server refuses TOKEN from now on
//	revokecerts      the server refuses every client certificate so far
//	perm MODE FILE   FILE has permission bits MODE (octal)
//	mkimage FORMAT PATH REF CONTENT...
//	                 a test image at PATH named REF, a layer per CONTENT:
//	                 FORMAT docker (docker save), oci (layout) or ociarchive
//	busyregistry     the registry refuses uploads with 429 (! busyregistry: no more)
//
// The real docker CLI runs as exec docker (condition [exec:docker]);
// [file:PATH] says PATH exists.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:           "testdata/script",
		UpdateScripts: *update,
		Setup: func(env *testscript.Env) error {
			s := clienttest.NewServer()
			env.Defer(s.Close)
			env.Values["server"] = s
			if err := os.WriteFile(filepath.Join(env.WorkDir, "ca.pem"), s.CAPEM, 0o644); err != nil {
				return err
			}
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			closed := l.Addr().String()
			l.Close()
			env.Setenv("KR_HOST", s.URL)
			env.Setenv("KR_URL", s.URL)
			_, port, _ := net.SplitHostPort(strings.TrimPrefix(s.URL, "https://"))
			env.Setenv("KR_HOST_PORT", port)
			env.Setenv("CLOSED", "https://"+closed)
			env.Setenv("XDG_CONFIG_HOME", filepath.Join(env.WorkDir, "config"))
			env.Setenv("DOCKER_CONFIG", filepath.Join(env.WorkDir, "docker"))
			env.Setenv("HOME", filepath.Join(env.WorkDir, "home"))
			env.Setenv("TZ", "UTC")
			return nil
		},
		// [file:PATH]: PATH exists on this machine.
		Condition: func(cond string) (bool, error) {
			if p, ok := strings.CutPrefix(cond, "file:"); ok {
				_, err := os.Stat(p)
				return err == nil, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"mkimage": cmdMkimage,
			"busyregistry": func(ts *testscript.TestScript, neg bool, args []string) {
				ts.Value("server").(*clienttest.Server).SetRegistryBusy(!neg)
			},
			"revoke": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 1 {
					ts.Fatalf("usage: revoke TOKEN")
				}
				ts.Value("server").(*clienttest.Server).RevokeToken(args[0])
			},
			"revokecerts": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 0 {
					ts.Fatalf("usage: revokecerts")
				}
				ts.Value("server").(*clienttest.Server).RevokeCerts()
			},
			"perm": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 2 {
					ts.Fatalf("usage: perm MODE FILE")
				}
				want, err := strconv.ParseUint(args[0], 8, 32)
				ts.Check(err)
				st, err := os.Stat(ts.MkAbs(args[1]))
				ts.Check(err)
				if got := st.Mode().Perm(); got != os.FileMode(want) {
					ts.Fatalf("%s has mode %#o; want %#o", args[1], got, want)
				}
			},
		},
	})
}

// TestPrintJSONEmpty: an empty listing is [] in JSON, never null, whatever
// the element type (every -o json listing relies on it).
func TestPrintJSONEmpty(t *testing.T) {
	for _, v := range []any{[]client.Namespace(nil), []string(nil), []client.Namespace{}} {
		var b strings.Builder
		if err := printJSON(&b, v); err != nil || b.String() != "[]\n" {
			t.Errorf("printJSON(%#v) = %q, %v", v, b.String(), err)
		}
	}
	var b strings.Builder
	if err := printJSON(&b, (*client.VPC)(nil)); err != nil || b.String() != "null\n" {
		t.Errorf("printJSON of a nil pointer = %q, %v", b.String(), err)
	}
}
