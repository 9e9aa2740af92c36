package ocispec

import (
	"strconv"
	"syscall"
	"testing"

	"github.com/macro-cloud/macro/types"
)

func TestParseSignal(t *testing.T) {
	cases := []struct {
		in   string
		want syscall.Signal
		err  bool
	}{
		{"SIGTERM", syscall.SIGTERM, false},
		{"TERM", syscall.SIGTERM, false},
		{"term", syscall.SIGTERM, false},
		{"sigkill", syscall.SIGKILL, false},
		{"15", syscall.SIGTERM, false},
		{"9", syscall.SIGKILL, false},
		{"SIGQUIT", syscall.SIGQUIT, false},
		{"SIGWINCH", syscall.SIGWINCH, false},
		{"SIGRTMIN", 34, false},
		{"SIGRTMIN+3", 37, false},
		{"RTMAX-1", 63, false},
		{"SIGRTMAX", 64, false},
		{"64", 64, false},
		{"0", 0, true},
		{"65", 0, true},
		{"-9", 0, true},
		{"FOO", 0, true},
		{"SIGRTMIN+16", 0, true},
		{"", 0, true},
		{"SIG", 0, true},
	}
	for _, tc := range cases {
		got, err := ParseSignal(tc.in)
		if tc.err {
			if err == nil || err.Error() != "Invalid signal: "+tc.in {
				t.Errorf("ParseSignal(%q) = %v, %v; want Invalid signal", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestStopSignal(t *testing.T) {
	cases := []struct {
		spec, img string
		want      syscall.Signal
		err       bool
	}{
		{"", "", syscall.SIGTERM, false},
		{"", "SIGQUIT", syscall.SIGQUIT, false},
		{"SIGINT", "SIGQUIT", syscall.SIGINT, false},
		{"", "SIGRTMIN+3", 37, false},
		{"BOGUS", "", 0, true},
	}
	for _, tc := range cases {
		got, err := StopSignal(types.PodSpec{StopSignal: tc.spec}, ImageConfig{StopSignal: tc.img})
		if (err != nil) != tc.err || (!tc.err && got != tc.want) {
			t.Errorf("StopSignal(%q, %q) = %v, %v", tc.spec, tc.img, got, err)
		}
	}
}

func FuzzParseSignal(f *testing.F) {
	for _, s := range []string{"SIGTERM", "term", "15", "SIGRTMIN+3", "RTMAX-14", "0", "-1", "9999999999999999999", "sigſ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sig, err := ParseSignal(s)
		if err != nil {
			if err.Error() != "Invalid signal: "+s {
				t.Fatalf("error %q", err)
			}
			return
		}
		if sig < 1 || sig > 64 {
			t.Fatalf("ParseSignal(%q) = %d", s, sig)
		}
		if again, err := ParseSignal(strconv.Itoa(int(sig))); err != nil || again != sig {
			t.Fatalf("number of %q does not round-trip", s)
		}
	})
}
