package delta

import "testing"

// TestShared: the requests of one tree get the same object, others (or
// other options) their own; only the last few trees are kept.
func TestShared(t *testing.T) {
	a := SharedReceiver("/a", "/a.state", false, false)
	if SharedReceiver("/a", "/a.state", false, false) != a {
		t.Fatal("a second request of the tree got another receiver")
	}
	if SharedReceiver("/a", "/a.state", false, true) == a {
		t.Fatal("VerifyAll got the receiver made without it")
	}
	s := SharedSource("/a", "/a.state")
	if SharedSource("/a", "/a.state") != s {
		t.Fatal("a second request of the tree got another source")
	}
	for i := range sharedMax + 1 {
		SharedSource("/other", string(rune('a'+i)))
	}
	if SharedSource("/a", "/a.state") == s {
		t.Fatal("a tree used longest ago was kept beyond sharedMax")
	}
	shared.mu.Lock()
	n := len(shared.trees)
	shared.mu.Unlock()
	if n > sharedMax {
		t.Fatalf("%d trees kept, at most %d", n, sharedMax)
	}
}
