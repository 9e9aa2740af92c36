// Package logfile writes and reads container logs in the format of Docker's
// json-file logging driver: one JSON object per line,
//
//	{"log":"hello\n","stream":"stdout","time":"2024-01-02T03:04:05.123456789Z"}
//
// so that a log file written by macro reads like one written by dockerd.
// Writer is used by the runtime shim that copies a container's stdout and
// stderr; Read serves `docker logs` (tail, since, until, follow).
package logfile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Stream names as they appear in the "stream" field.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// MaxLine is the longest log entry a stream writer emits: longer lines are
// split into several entries, the first ones without a trailing newline
// (Docker's json-file driver splits at the same size).
const MaxLine = 16 * 1024

// Entry is one line of a log file.
type Entry struct {
	Stream string
	Time   time.Time
	// Line is the logged bytes, with its trailing newline unless the line
	// was split or unterminated.
	Line []byte
}

// record is the on-disk shape; field order is Docker's.
type record struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

// Writer appends entries to a log file. It is safe for concurrent use by
// several streams: every entry is written with one Write call under a lock.
type Writer struct {
	mu  sync.Mutex
	w   io.Writer
	c   io.Closer
	now func() time.Time
	buf bytes.Buffer
}

// NewWriter returns a Writer that appends entries to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, now: time.Now}
}

// Create opens (creating if needed) the log file at path for appending.
func Create(path string) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	w := NewWriter(f)
	w.c = f
	return w, nil
}

// WriteEntry writes p as a single entry of stream, stamped now.
func (w *Writer) WriteEntry(stream string, p []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writeLocked(stream, p)
}

func (w *Writer) writeLocked(stream string, p []byte) error {
	w.buf.Reset()
	enc := json.NewEncoder(&w.buf) // escapes like Docker: <>& as \u00XX, bad UTF-8 as U+FFFD
	if err := enc.Encode(record{Log: string(p), Stream: stream, Time: w.now().UTC()}); err != nil {
		return err
	}
	_, err := w.w.Write(w.buf.Bytes())
	return err
}

// Close closes the underlying file if the Writer opened it.
func (w *Writer) Close() error {
	if w.c != nil {
		return w.c.Close()
	}
	return nil
}

// Stream returns a writer that splits what is written to it into lines and
// logs each as an entry of the named stream. Close flushes an unterminated
// last line. Each stream writer must be used by one goroutine at a time;
// different streams may be written concurrently.
func (w *Writer) Stream(name string) io.WriteCloser {
	return &streamWriter{w: w, name: name}
}

type streamWriter struct {
	w       *Writer
	name    string
	pending []byte
}

func (s *streamWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		var line []byte
		if i < 0 {
			room := MaxLine - len(s.pending)
			if len(p) < room {
				s.pending = append(s.pending, p...)
				return n, nil
			}
			line, p = append(s.pending, p[:room]...), p[room:]
		} else if len(s.pending)+i+1 > MaxLine {
			room := MaxLine - len(s.pending)
			line, p = append(s.pending, p[:room]...), p[room:]
		} else {
			line, p = append(s.pending, p[:i+1]...), p[i+1:]
		}
		s.pending = s.pending[:0]
		if err := s.w.WriteEntry(s.name, line); err != nil {
			return n - len(p), err
		}
		s.pending = line[:0] // reuse the buffer
	}
	return n, nil
}

// Close writes what is left of an unterminated line.
func (s *streamWriter) Close() error {
	if len(s.pending) == 0 {
		return nil
	}
	err := s.w.WriteEntry(s.name, s.pending)
	s.pending = nil
	return err
}
