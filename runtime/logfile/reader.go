package logfile

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"iter"
	"os"
	"time"
)

// Options select what Read yields.
type Options struct {
	// Follow keeps reading as the file grows, until ctx is cancelled or
	// Done is closed.
	Follow bool
	// Since and Until bound entry times (inclusive); zero means unbounded.
	Since, Until time.Time
	// Tail is how many of the last matching entries to start with:
	// negative means all, 0 means none (with Follow: only new entries).
	Tail int
	// Stdout and Stderr pick streams; when both are false, both are read.
	Stdout, Stderr bool
	// Done, when closed, ends a Follow once everything written so far has
	// been read (close it when the container has exited).
	Done <-chan struct{}
	// PollInterval bounds how long a follower sleeps between checks when
	// file notifications are unavailable or missed; default 1s.
	PollInterval time.Duration
}

func (o *Options) match(e *Entry) bool {
	if o.Stdout || o.Stderr {
		if e.Stream == Stdout && !o.Stdout || e.Stream == Stderr && !o.Stderr {
			return false
		}
		if e.Stream != Stdout && e.Stream != Stderr {
			return false
		}
	}
	if !o.Since.IsZero() && e.Time.Before(o.Since) {
		return false
	}
	if !o.Until.IsZero() && e.Time.After(o.Until) {
		return false
	}
	return true
}

// Parse decodes one line of a log file (without or with its newline).
func Parse(line []byte) (Entry, error) {
	var r record
	if err := json.Unmarshal(line, &r); err != nil {
		return Entry{}, err
	}
	if r.Stream == "" {
		return Entry{}, errors.New("log entry without stream")
	}
	return Entry{Stream: r.Stream, Time: r.Time, Line: []byte(r.Log)}, nil
}

// maxScan is the longest line Read accepts; longer garbage is skipped.
const maxScan = 1 << 20

// Read yields the entries of the log file at path that match opts, oldest
// first. Lines that do not parse are skipped. A missing file yields nothing
// (or, with Follow, is waited for). Iteration stops when ctx is cancelled,
// without an error.
func Read(ctx context.Context, path string, opts Options) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		if opts.PollInterval <= 0 {
			opts.PollInterval = time.Second
		}
		var w *watcher
		defer func() {
			if w != nil {
				w.close()
			}
		}()
		var f *os.File
		appeared := false // the file did not exist when we started: read all of it
		for f == nil {
			var err error
			f, err = os.Open(path)
			if err == nil {
				break
			}
			if !errors.Is(err, os.ErrNotExist) {
				yield(Entry{}, err)
				return
			}
			if !opts.Follow || isClosed(opts.Done) {
				return
			}
			appeared = true
			if w == nil {
				w = newWatcher(path, opts.PollInterval)
			}
			if !w.wait(ctx, opts.Done) {
				if ctx.Err() != nil {
					return
				}
			}
		}
		defer f.Close()

		var off int64
		if opts.Tail >= 0 && !appeared {
			st, err := f.Stat()
			if err != nil {
				yield(Entry{}, err)
				return
			}
			off, err = tailOffset(f, st.Size(), opts.Tail, opts.match)
			if err != nil {
				yield(Entry{}, err)
				return
			}
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			yield(Entry{}, err)
			return
		}
		br := bufio.NewReaderSize(f, 64*1024)
		var partial []byte
		for {
			// Drain what is in the file now.
			for {
				chunk, err := br.ReadSlice('\n')
				if len(chunk) > 0 {
					if len(partial)+len(chunk) <= maxScan {
						partial = append(partial, chunk...)
					} else {
						partial = partial[:0]
						if chunk[len(chunk)-1] != '\n' {
							// Skip the rest of an overlong line.
							partial = append(partial, 0)
						}
					}
				}
				if err == bufio.ErrBufferFull {
					continue
				}
				if err != nil && err != io.EOF {
					yield(Entry{}, err)
					return
				}
				if err == io.EOF {
					break
				}
				line := partial
				partial = partial[:0]
				if len(line) > 0 && line[0] == 0 {
					continue // tail of an overlong line
				}
				e, perr := Parse(line)
				if perr != nil {
					continue
				}
				if !opts.Until.IsZero() && e.Time.After(opts.Until) {
					return
				}
				if opts.match(&e) && !yield(e, nil) {
					return
				}
				if ctx.Err() != nil {
					return
				}
			}
			if !opts.Follow {
				// An unterminated last line is still an entry if it parses.
				if len(partial) > 0 {
					if e, err := Parse(partial); err == nil && opts.match(&e) {
						yield(e, nil)
					}
				}
				return
			}
			if ctx.Err() != nil {
				return
			}
			if isClosed(opts.Done) {
				// One last drain after the writer is gone.
				opts.Follow = false
				continue
			}
			if w == nil {
				w = newWatcher(path, opts.PollInterval)
			}
			w.wait(ctx, opts.Done)
			if ctx.Err() != nil {
				return
			}
			// Truncated under us: start over.
			if st, err := f.Stat(); err == nil {
				if pos, err := f.Seek(0, io.SeekCurrent); err == nil && st.Size() < pos-int64(br.Buffered()) {
					f.Seek(0, io.SeekStart)
					br.Reset(f)
					partial = partial[:0]
				}
			}
		}
	}
}

func isClosed(c <-chan struct{}) bool {
	if c == nil {
		return false
	}
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// tailOffset returns the offset of the n-th last line of f (size bytes)
// whose entry satisfies match, reading backwards in chunks.
func tailOffset(f io.ReaderAt, size int64, n int, match func(*Entry) bool) (int64, error) {
	if n == 0 {
		return size, nil
	}
	const chunk = 64 * 1024
	var carry []byte // start of the region already scanned: an incomplete line
	pos := size
	count := 0
	for pos > 0 {
		sz := int64(chunk)
		if pos < sz {
			sz = pos
		}
		pos -= sz
		buf := make([]byte, int(sz)+len(carry))
		if _, err := f.ReadAt(buf[:sz], pos); err != nil && err != io.EOF {
			return 0, err
		}
		copy(buf[sz:], carry)
		end := len(buf)
		for end > 0 {
			contentEnd := end
			if buf[end-1] == '\n' {
				contentEnd = end - 1
			}
			start := bytes.LastIndexByte(buf[:contentEnd], '\n') + 1
			if start == 0 && pos > 0 {
				break // the line may begin in the previous chunk
			}
			if e, err := Parse(buf[start:contentEnd]); err == nil && match(&e) {
				count++
				if count == n {
					return pos + int64(start), nil
				}
			}
			end = start
		}
		carry = buf[:end]
		if len(carry) > maxScan {
			carry = nil // garbage without newlines; drop it
		}
	}
	return 0, nil
}
