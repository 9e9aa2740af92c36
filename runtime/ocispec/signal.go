package ocispec

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"github.com/macro-cloud/macro/types"
)

// DefaultStopSignal is what stops a container whose image and spec name none.
const DefaultStopSignal = syscall.SIGTERM

const (
	sigrtmin = 34
	sigrtmax = 64
)

// signalMap holds Docker's signal names (github.com/moby/sys/signal, Linux),
// without the SIG prefix.
var signalMap = func() map[string]syscall.Signal {
	m := map[string]syscall.Signal{
		"ABRT":   syscall.SIGABRT,
		"ALRM":   syscall.SIGALRM,
		"BUS":    syscall.SIGBUS,
		"CHLD":   syscall.SIGCHLD,
		"CLD":    syscall.SIGCLD,
		"CONT":   syscall.SIGCONT,
		"FPE":    syscall.SIGFPE,
		"HUP":    syscall.SIGHUP,
		"ILL":    syscall.SIGILL,
		"INT":    syscall.SIGINT,
		"IO":     syscall.SIGIO,
		"IOT":    syscall.SIGIOT,
		"KILL":   syscall.SIGKILL,
		"PIPE":   syscall.SIGPIPE,
		"POLL":   syscall.SIGPOLL,
		"PROF":   syscall.SIGPROF,
		"PWR":    syscall.SIGPWR,
		"QUIT":   syscall.SIGQUIT,
		"SEGV":   syscall.SIGSEGV,
		"STKFLT": syscall.SIGSTKFLT,
		"STOP":   syscall.SIGSTOP,
		"SYS":    syscall.SIGSYS,
		"TERM":   syscall.SIGTERM,
		"TRAP":   syscall.SIGTRAP,
		"TSTP":   syscall.SIGTSTP,
		"TTIN":   syscall.SIGTTIN,
		"TTOU":   syscall.SIGTTOU,
		"URG":    syscall.SIGURG,
		"USR1":   syscall.SIGUSR1,
		"USR2":   syscall.SIGUSR2,
		"VTALRM": syscall.SIGVTALRM,
		"WINCH":  syscall.SIGWINCH,
		"XCPU":   syscall.SIGXCPU,
		"XFSZ":   syscall.SIGXFSZ,
		"RTMIN":  sigrtmin,
		"RTMAX":  sigrtmax,
	}
	for i := 1; i <= 15; i++ {
		m["RTMIN+"+strconv.Itoa(i)] = syscall.Signal(sigrtmin + i)
	}
	for i := 1; i <= 14; i++ {
		m["RTMAX-"+strconv.Itoa(i)] = syscall.Signal(sigrtmax - i)
	}
	return m
}()

// ParseSignal parses a signal the way Docker does: a number ("15"), or a
// name with or without the SIG prefix in any case ("SIGTERM", "term",
// "SIGRTMIN+3"). Unlike Docker it also refuses numbers outside 1..64, which
// no kernel would deliver. The error reads "Invalid signal: <s>" as
// Docker's does.
func ParseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > sigrtmax {
			return -1, fmt.Errorf("Invalid signal: %s", s)
		}
		return syscall.Signal(n), nil
	}
	sig, ok := signalMap[strings.TrimPrefix(strings.ToUpper(s), "SIG")]
	if !ok {
		return -1, fmt.Errorf("Invalid signal: %s", s)
	}
	return sig, nil
}

// StopSignal is the signal that stops the container: the spec's, else the
// image's, else SIGTERM.
func StopSignal(spec types.PodSpec, img ImageConfig) (syscall.Signal, error) {
	s := spec.StopSignal
	if s == "" {
		s = img.StopSignal
	}
	if s == "" {
		return DefaultStopSignal, nil
	}
	return ParseSignal(s)
}
