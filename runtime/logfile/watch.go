package logfile

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// watcher wakes a follower when the log file (or its directory, before the
// file exists) changes. It uses inotify and falls back to polling; the
// poll interval also bounds the delay after a missed notification.
type watcher struct {
	f    *os.File // inotify fd, nil when unavailable
	ev   chan struct{}
	poll time.Duration
}

func newWatcher(path string, poll time.Duration) *watcher {
	w := &watcher{poll: poll, ev: make(chan struct{}, 1)}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return w
	}
	// Watch the directory: it sees creation, writes and truncation of the file.
	if _, err := unix.InotifyAddWatch(fd, filepath.Dir(path),
		unix.IN_MODIFY|unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE); err != nil {
		unix.Close(fd)
		return w
	}
	w.f = os.NewFile(uintptr(fd), "inotify")
	go w.loop()
	return w
}

func (w *watcher) loop() {
	buf := make([]byte, 4096)
	for {
		_, err := w.f.Read(buf)
		if err != nil {
			return
		}
		select {
		case w.ev <- struct{}{}:
		default:
		}
	}
}

// wait returns true when something may have changed, false when ctx ended.
func (w *watcher) wait(ctx context.Context, done <-chan struct{}) bool {
	t := time.NewTimer(w.poll)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-done:
		return true
	case <-w.ev:
		return true
	case <-t.C:
		return true
	}
}

func (w *watcher) close() {
	if w.f != nil {
		w.f.Close()
	}
}
