package e2e

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/internal/testimages"
)

// Images in a cluster, checked inside TestClusterFailover (its three
// servers, one of which is killed): an image loaded through one server is
// listed through the others, a tag made through one is seen through
// another, and a second server holds a copy before the first dies; after
// the kill the third server copies it from the second, the image still
// runs through a survivor, and `docker rmi` through another removes it
// everywhere.

// imagesOf is `docker images` through s: "repo:tag id" lines, sorted.
func imagesOf(t *testing.T, s *clusterServer) []string {
	t.Helper()
	out := testenv.MustDocker(t, s.srv.Host(), "images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").Stdout
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if lines[0] == "" {
		lines = nil
	}
	sort.Strings(lines)
	return lines
}

// holds says whether s's own image store has image id (its record on
// disk): the copies are the point, and asking a server through the API
// for an image it lacks would make it fetch one.
func holds(s *clusterServer, id string) bool {
	_, err := os.Stat(filepath.Join(s.srv.DataDir, "images", "images", strings.TrimPrefix(id, "sha256:")+".json"))
	return err == nil
}

// clusterImagesBefore loads busybox through holder, checks the names
// through the others, and waits until a second server holds a copy. It
// returns the image ID.
func clusterImagesBefore(t *testing.T, servers []*clusterServer, holder *clusterServer) string {
	start := time.Now()
	testenv.MustDocker(t, holder.srv.Host(), "load", "-i", testimages.Busybox(t))
	id := strings.TrimSpace(testenv.MustDocker(t, holder.srv.Host(), "image", "inspect", "--format", "{{.ID}}", "busybox").Stdout)
	want := []string{"busybox:latest " + id}
	var others []*clusterServer
	for _, s := range servers {
		if s != holder {
			others = append(others, s)
		}
	}
	for _, s := range others {
		if got := imagesOf(t, s); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("docker images through %s (loaded through %s): %q, want %q", s.name, holder.name, got, want)
		}
	}
	// A second server holds a copy (--image-copies 2), made in the
	// background (listing made none): the loss of the first loses
	// nothing. One copy is enough: the third server makes none.
	waitFor(t, time.Minute, func() bool { return holds(others[0], id) || holds(others[1], id) })
	copied := time.Since(start)
	n := 0
	for _, s := range servers {
		if holds(s, id) {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d servers hold the image, want 2", n)
	}
	// A tag through one server names the image through another (through
	// the copy's holder, so that the third server still holds none).
	tagger := others[0]
	if !holds(tagger, id) {
		tagger = others[1]
	}
	testenv.MustDocker(t, tagger.srv.Host(), "tag", "busybox", "bb:v1")
	want = []string{"bb:v1 " + id, "busybox:latest " + id}
	for _, s := range servers {
		if got := imagesOf(t, s); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("docker images through %s after a tag through %s: %q, want %q", s.name, tagger.name, got, want)
		}
	}
	t.Logf("images: load through %s, listed through every server, a second copy within %v", holder.name, copied.Round(time.Millisecond))
	return id
}

// clusterImagesAfter waits until both survivors hold the image again
// (the one that had no copy copies it from the other), runs it through
// survivors[0] and removes it through survivors[1]: it is gone from every
// survivor's listing and store. Then a dangling image loaded through one
// is pruned through the other.
func clusterImagesAfter(t *testing.T, survivors []*clusterServer, id string) {
	start := time.Now()
	// The survivor that held no copy makes one: two live servers hold
	// the image again.
	waitFor(t, time.Minute, func() bool { return holds(survivors[0], id) && holds(survivors[1], id) })
	t.Logf("images: both survivors hold the image %v after the checks of the failover", time.Since(start).Round(time.Millisecond))
	if got := strings.TrimSpace(testenv.MustDocker(t, survivors[0].srv.Host(), "run", "--rm", "bb:v1", "echo", "still here").Stdout); got != "still here" {
		t.Fatalf("docker run through %s after the holder died: %q", survivors[0].name, got)
	}
	out := testenv.MustDocker(t, survivors[1].srv.Host(), "rmi", "busybox", "bb:v1").Stdout
	if !strings.Contains(out, "Deleted: "+id) {
		t.Fatalf("docker rmi through %s: %s", survivors[1].name, out)
	}
	for _, s := range survivors {
		if got := imagesOf(t, s); len(got) != 0 {
			t.Fatalf("docker images through %s after rmi through %s: %q", s.name, survivors[1].name, got)
		}
	}
	waitFor(t, 30*time.Second, func() bool { return !holds(survivors[0], id) && !holds(survivors[1], id) })
	if r := testenv.Docker(t, survivors[0].srv.Host(), "image", "inspect", "busybox"); r.ExitCode == 0 {
		t.Fatalf("image inspect through %s after rmi: %s", survivors[0].name, r.Stdout)
	}
	t.Logf("images: run through %s after the holder died, rmi through %s gone everywhere, in %v", survivors[0].name, survivors[1].name, time.Since(start).Round(time.Millisecond))

	// A dangling image loaded through one survivor is pruned through the
	// other, wherever it is held.
	untagged := filepath.Join(t.TempDir(), "untagged.tar")
	if err := testimages.WriteDockerArchiveFile(untagged, testimages.BusyboxImage(t)); err != nil {
		t.Fatal(err)
	}
	testenv.MustDocker(t, survivors[0].srv.Host(), "load", "-i", untagged)
	if got := imagesOf(t, survivors[1]); len(got) != 1 || got[0] != "<none>:<none> "+id {
		t.Fatalf("docker images through %s after an untagged load through %s: %q", survivors[1].name, survivors[0].name, got)
	}
	if out := testenv.MustDocker(t, survivors[1].srv.Host(), "image", "prune", "-f").Stdout; !strings.Contains(out, "deleted: "+id) {
		t.Fatalf("docker image prune through %s: %s", survivors[1].name, out)
	}
	for _, s := range survivors {
		if got := imagesOf(t, s); len(got) != 0 {
			t.Fatalf("docker images through %s after prune: %q", s.name, got)
		}
	}
	waitFor(t, 30*time.Second, func() bool { return !holds(survivors[0], id) && !holds(survivors[1], id) })
}

// staleCopyBefore, in TestClusterPartitionLeader before a server (down)
// stops: an image loaded through down, copied to a second server, is
// removed through the server that holds no copy (which fetches it to
// apply Docker's rules, then removes it everywhere) while down is
// stopped. It returns the image ID, for staleCopyAfter.
func staleCopyBefore(t *testing.T, servers []*clusterServer, down *clusterServer) (id string, rmi func()) {
	testenv.MustDocker(t, down.srv.Host(), "load", "-i", testimages.Busybox(t))
	id = strings.TrimSpace(testenv.MustDocker(t, down.srv.Host(), "image", "inspect", "--format", "{{.ID}}", "busybox").Stdout)
	var others []*clusterServer
	for _, s := range servers {
		if s != down {
			others = append(others, s)
		}
	}
	waitFor(t, time.Minute, func() bool { return holds(others[0], id) || holds(others[1], id) })
	lacking := others[0]
	if holds(lacking, id) {
		lacking = others[1]
	}
	return id, func() {
		out := testenv.MustDocker(t, lacking.srv.Host(), "rmi", "busybox").Stdout
		if !strings.Contains(out, "Deleted: "+id) {
			t.Fatalf("docker rmi through %s, which held no copy: %s", lacking.name, out)
		}
		for _, s := range others {
			if got := imagesOf(t, s); len(got) != 0 {
				t.Fatalf("docker images through %s after rmi through %s: %q", s.name, lacking.name, got)
			}
		}
		t.Logf("images: rmi through %s (no copy there) while %s was down", lacking.name, down.name)
	}
}

// staleCopyAfter: the server that was down when its image was removed
// drops its stale copy once it is back.
func staleCopyAfter(t *testing.T, back *clusterServer, id string) {
	waitFor(t, time.Minute, func() bool { return !holds(back, id) })
	if got := imagesOf(t, back); len(got) != 0 {
		t.Fatalf("docker images through %s, back after the rmi: %q", back.name, got)
	}
}
