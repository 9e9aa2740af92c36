package reference

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/internal/testimages"
)

// pair is dockerd and macro, each with busybox loaded.
type pair struct {
	ref, mac   string // DOCKER_HOST of each
	refDir     string // paths that show up in outputs, normalised away
	macDir     string
	dockerd    *testenv.Dockerd
	macro      *testenv.Server
	busyboxTar string
}

// newPair starts dockerd and a macro server side by side and loads busybox
// into both.
func newPair(t *testing.T) *pair {
	t.Helper()
	testenv.RequireRoot(t)
	p := &pair{busyboxTar: testimages.Busybox(t)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		testenv.Macro(t) // build while dockerd starts
	}()
	p.dockerd = testenv.StartDockerd(t)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	p.macro = testenv.StartServer(t)
	p.ref, p.mac = p.dockerd.Host(), p.macro.Host()
	p.refDir, p.macDir = p.dockerd.Dir, p.macro.DataDir
	p.mustBoth(t, "load", "-i", p.busyboxTar)
	return p
}

// both runs the docker command args against dockerd and against macro, at
// the same time.
func (p *pair) both(t *testing.T, args ...string) (ref, mac testenv.Result) {
	t.Helper()
	return p.bothIn(t, "", args...)
}

func (p *pair) bothIn(t *testing.T, stdin string, args ...string) (ref, mac testenv.Result) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ref = testenv.RunDocker(t, testenv.DockerCmd{Host: p.ref, Stdin: stdin, Args: args})
	}()
	mac = testenv.RunDocker(t, testenv.DockerCmd{Host: p.mac, Stdin: stdin, Args: args})
	wg.Wait()
	return ref, mac
}

// mustBoth is both that fails the test when either exits non-zero.
func (p *pair) mustBoth(t *testing.T, args ...string) (ref, mac string) {
	t.Helper()
	r, m := p.both(t, args...)
	for _, x := range []struct {
		who string
		r   testenv.Result
	}{{"dockerd", r}, {"macro", m}} {
		if x.r.ExitCode != 0 {
			t.Fatalf("%s: docker %s: exit %d\nstdout: %s\nstderr: %s", x.who, strings.Join(args, " "), x.r.ExitCode, x.r.Stdout, x.r.Stderr)
		}
	}
	return strings.TrimSpace(r.Stdout), strings.TrimSpace(m.Stdout)
}

// cleanupBoth force-removes containers in both daemons when the test ends.
func (p *pair) cleanupBoth(t *testing.T, names ...string) {
	t.Cleanup(func() {
		p.both(t, append([]string{"rm", "-f"}, names...)...)
	})
}

// diffs collects the differences one subtest found.
type diffs struct {
	t     *testing.T
	items []string
	newer string // a message in the words of a newer dockerd (newerWording)
}

func newDiffs(t *testing.T) *diffs { return &diffs{t: t} }

func (d *diffs) addf(format string, args ...any) {
	d.items = append(d.items, fmt.Sprintf(format, args...))
}

// equal records a difference when the normalised values differ.
func (d *diffs) equal(what string, ref, mac any) {
	if !reflect.DeepEqual(ref, mac) {
		d.addf("%s:\n    dockerd: %s\n    macro:   %s", what, show(ref), show(mac))
	}
}

func show(v any) string {
	if s, ok := v.(string); ok {
		return fmt.Sprintf("%q", s)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// result compares two command results after normalisation: exit code,
// standard output, standard error.
func (d *diffs) result(p *pair, cmd string, ref, mac testenv.Result) {
	d.equal(cmd+": exit code", ref.ExitCode, mac.ExitCode)
	d.equal(cmd+": stdout", p.norm(ref.Stdout), p.norm(mac.Stdout))
	if want, ok := newerWording[d.t.Name()]; ok && p.norm(mac.Stderr) == want {
		d.newer = fmt.Sprintf("%s: stderr:\n    dockerd 20.10: %q\n    macro (dockerd >= 25): %q", cmd, p.norm(ref.Stderr), want)
		return
	}
	d.equal(cmd+": stderr", p.norm(ref.Stderr), p.norm(mac.Stderr))
}

// done fails the test with every difference, or skips it when it is a
// listed open difference (see openDiffs).
func (d *diffs) done() {
	t := d.t
	t.Helper()
	what, open := openDiffs[t.Name()]
	if len(d.items) == 0 && d.newer != "" {
		t.Skipf("known difference: macro uses the words of dockerd >= 25 where dockerd 20.10 differs\n%s", d.newer)
	}
	if len(d.items) == 0 {
		if open {
			t.Logf("openDiffs lists %q (%s) but dockerd and macro agree now: remove the entry", t.Name(), what)
		}
		return
	}
	msg := strings.Join(d.items, "\n")
	if open && os.Getenv("MACRO_REFERENCE_STRICT") != "1" {
		t.Skipf("DIFF: %s — reported to api/docker owner\n%s", what, msg)
	}
	t.Errorf("dockerd and macro differ:\n%s", msg)
}

// compare runs args on both daemons and compares what the user sees.
func (p *pair) compare(t *testing.T, args ...string) (ref, mac testenv.Result) {
	t.Helper()
	d := newDiffs(t)
	ref, mac = p.both(t, args...)
	d.result(p, "docker "+strings.Join(args, " "), ref, mac)
	d.done()
	return ref, mac
}

var (
	reTime  = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`)
	reTime2 = regexp.MustCompile(`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} \w+`)
	reID64  = regexp.MustCompile(`\b[0-9a-f]{64}\b`)
	reID12  = regexp.MustCompile(`\b[0-9a-f]{12}\b`)
	reAgo   = regexp.MustCompile(`(About a minute|About an hour|Less than a second|\d+ (seconds?|minutes?|hours?)) ago`)
	reUp    = regexp.MustCompile(`Up (About a minute|Less than a second|\d+ (seconds?|minutes?))`)
)

// norm replaces what is bound to differ between two daemons by
// placeholders: container IDs (full and short), times, the daemons'
// directories.
func (p *pair) norm(s string) string {
	s = strings.ReplaceAll(s, p.refDir, "<dir>")
	s = strings.ReplaceAll(s, p.macDir, "<dir>")
	s = reTime.ReplaceAllString(s, "<time>")
	s = reTime2.ReplaceAllString(s, "<time>")
	s = reID64.ReplaceAllString(s, "<id>")
	s = reID12.ReplaceAllString(s, "<id12>")
	s = reAgo.ReplaceAllString(s, "<ago>")
	s = reUp.ReplaceAllString(s, "Up <duration>")
	return s
}

// inspectOne decodes `docker inspect` of one object from the output of
// both daemons.
func (p *pair) inspect(t *testing.T, args ...string) (ref, mac map[string]any) {
	t.Helper()
	r, m := p.mustBoth(t, append([]string{"inspect"}, args...)...)
	return decodeOne(t, "dockerd", r), decodeOne(t, "macro", m)
}

func decodeOne(t *testing.T, who, out string) map[string]any {
	t.Helper()
	var v []map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil || len(v) != 1 {
		t.Fatalf("%s: inspect printed %q: %v", who, out, err)
	}
	return v[0]
}

// field returns the value at a dotted path ("State.Status") of a decoded
// JSON object, and whether it is there.
func field(m map[string]any, path string) (any, bool) {
	var v any = m
	for _, k := range strings.Split(path, ".") {
		o, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = o[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

// keys returns the dotted paths of the objects (not of the array elements)
// in m, down to depth levels.
func keys(m map[string]any, prefix string, depth int) []string {
	var out []string
	for k, v := range m {
		out = append(out, prefix+k)
		if o, ok := v.(map[string]any); ok && depth > 1 {
			out = append(out, keys(o, prefix+k+".", depth-1)...)
		}
	}
	sort.Strings(out)
	return out
}

// runOne runs a docker command against one daemon.
func runOne(t *testing.T, host string, args ...string) testenv.Result {
	t.Helper()
	return testenv.Docker(t, host, args...)
}

// tarList lists the entries of a tar stream: name, type, permission bits,
// owner, size, link target. (dockerd 20.10 also sets the file type bits of
// the mode, 0100644 where macro writes 0644, as Go's archive/tar did before
// Go 1.10; tar readers and `docker cp` ignore them.)
func tarList(t *testing.T, s string) []string {
	var out []string
	tr := tar.NewReader(strings.NewReader(s))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			out = append(out, "error: "+err.Error())
			break
		}
		out = append(out, fmt.Sprintf("%s %c %o %d:%d %d %s", h.Name, h.Typeflag, h.Mode&0o7777, h.Uid, h.Gid, h.Size, h.Linkname))
	}
	return out
}
