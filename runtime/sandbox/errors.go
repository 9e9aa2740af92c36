package sandbox

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"github.com/macro-cloud/macro/runtime"
)

// runtimeMessage extracts the error a runtime binary reported from its
// output: the last error of JSON log lines (runc --log-format json),
// logrus text lines (level=error msg="..."), or else the plain text.
func runtimeMessage(out []byte) string {
	var last string
	var plain []string
	for line := range strings.SplitSeq(string(out), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "{") {
			var l struct{ Level, Msg string }
			if json.Unmarshal([]byte(line), &l) == nil {
				if l.Level == "error" || l.Level == "fatal" {
					last = l.Msg
				}
				continue
			}
		}
		if strings.Contains(line, "level=error") || strings.Contains(line, "level=fatal") {
			if i := strings.Index(line, "msg="); i >= 0 {
				m := line[i+4:]
				if s, err := strconv.QuotedPrefix(m); err == nil {
					m, _ = strconv.Unquote(s)
				}
				last = m
				continue
			}
		}
		if strings.Contains(line, "level=") {
			continue // warnings and info
		}
		plain = append(plain, line)
	}
	if last != "" {
		return last
	}
	msg := strings.Join(plain, "; ")
	if len(msg) > 4096 {
		msg = msg[:4096]
	}
	return msg
}

// classify maps a runtime binary's message to the runtime package's errors.
func classify(msg string) error {
	m := strings.ToLower(msg)
	switch {
	case strings.Contains(m, "does not exist"), strings.Contains(m, "not found"),
		strings.Contains(m, "no such file or directory"):
		return runtime.ErrNotFound
	case strings.Contains(m, "not running"), strings.Contains(m, "container is stopped"),
		strings.Contains(m, "not paused"), strings.Contains(m, "is paused"),
		strings.Contains(m, "cannot be paused"), strings.Contains(m, "in state stopped"):
		return runtime.ErrNotRunning
	}
	return nil
}

// cmdError is a failed command of the runtime binary.
type cmdError struct {
	msg string
	err error // sentinel from classify, or nil
}

func (e *cmdError) Error() string { return e.msg }
func (e *cmdError) Unwrap() error { return e.err }

func newCmdError(op string, out []byte, err error) error {
	msg := runtimeMessage(out)
	if msg == "" {
		msg = err.Error()
	}
	return &cmdError{msg: op + ": " + msg, err: classify(msg)}
}

var errNoTerminal = errors.New("container has no terminal")
