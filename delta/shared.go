package delta

import (
	"sync"
	"time"
)

// A transport (Serve) is handed a Source or Receiver per request, and a
// sync is many requests: its manifest, its wants, a Put or Chunks per
// 64 MiB, its commit. A TreeSource or TreeReceiver made per request
// decodes the tree's index (about 8 MB per GiB of files) at each of them.
// SharedSource and SharedReceiver give the requests of one tree the same
// object instead, kept for a while, so that their caches hold across a
// sync. The caches are guides only, checked against the files as always
// (stamps), so a tree changed by anyone else meanwhile is still synced
// right.

// sharedMax and sharedIdle bound what is kept: a few trees (each holds
// its index in memory), none unused for longer than sharedIdle.
const (
	sharedMax  = 4
	sharedIdle = 5 * time.Minute
)

type sharedKey struct {
	root, state       string
	noSync, verifyAll bool
	source            bool
}

type sharedTree struct {
	key  sharedKey
	obj  any
	used time.Time
}

var shared struct {
	mu    sync.Mutex
	trees []sharedTree // most recently used last
}

func sharedGet(k sharedKey, newTree func() any) any {
	now := time.Now()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	var obj any
	kept := shared.trees[:0]
	for _, t := range shared.trees {
		switch {
		case t.key == k:
			obj = t.obj
		case now.Sub(t.used) < sharedIdle:
			kept = append(kept, t)
		}
	}
	clear(shared.trees[len(kept):])
	shared.trees = kept
	if obj == nil {
		obj = newTree()
	}
	shared.trees = append(shared.trees, sharedTree{key: k, obj: obj, used: now})
	if n := len(shared.trees) - sharedMax; n > 0 {
		clear(shared.trees[:n])
		shared.trees = shared.trees[n:]
	}
	return obj
}

// SharedSource is the TreeSource of root with state, the same object for
// the requests of a sync.
func SharedSource(root, state string) *TreeSource {
	return sharedGet(sharedKey{root: root, state: state, source: true}, func() any {
		return &TreeSource{Root: root, State: state}
	}).(*TreeSource)
}

// SharedReceiver is the TreeReceiver of root with state, the same object
// for the requests of a sync.
func SharedReceiver(root, state string, noSync, verifyAll bool) *TreeReceiver {
	return sharedGet(sharedKey{root: root, state: state, noSync: noSync, verifyAll: verifyAll}, func() any {
		return &TreeReceiver{Root: root, State: state, NoSync: noSync, VerifyAll: verifyAll}
	}).(*TreeReceiver)
}
