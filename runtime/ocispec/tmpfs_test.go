package ocispec

import (
	"slices"
	"strings"
	"testing"
)

func TestParseTmpfsOptions(t *testing.T) {
	cases := []struct {
		in   string
		want []string
		err  bool
	}{
		{"", []string{"noexec", "nosuid", "nodev", "rprivate"}, false},
		{"size=64m", []string{"noexec", "nosuid", "nodev", "rprivate", "size=64m"}, false},
		{"exec", []string{"nosuid", "nodev", "rprivate", "exec"}, false},
		{"rw,noexec,nosuid,size=65536k", []string{"nodev", "rprivate", "rw", "noexec", "nosuid", "size=65536k"}, false},
		{"size=1m,size=2m", []string{"noexec", "nosuid", "nodev", "rprivate", "size=2m"}, false},
		{"ro,rw,ro", []string{"noexec", "nosuid", "nodev", "rprivate", "ro"}, false},
		{"mode=1777,uid=1000,gid=1000", []string{"noexec", "nosuid", "nodev", "rprivate", "mode=1777", "uid=1000", "gid=1000"}, false},
		{"shared", []string{"noexec", "nosuid", "nodev", "shared"}, false},
		{"defaults,size=50%", []string{"noexec", "nosuid", "nodev", "rprivate", "size=50%"}, false},
		{"nr_inodes=1k,mpol=bind=static:0-3", []string{"noexec", "nosuid", "nodev", "rprivate", "nr_inodes=1k", "mpol=bind=static:0-3"}, false},
		{"mpol=interleave", []string{"noexec", "nosuid", "nodev", "rprivate", "mpol=interleave"}, false},
		{"bind", nil, true},
		{"rbind", nil, true},
		{"remount", nil, true},
		{"size=", nil, true},
		{"size=lots", nil, true},
		{"mode=999", nil, true},
		{"uid=-1", nil, true},
		{"uid=1,", nil, true},
		{"nr_inodes=10%", nil, true},
		{"mpol=local:1", nil, true},
		{"mpol=bind=sometimes:1", nil, true},
		{"foo=bar", nil, true},
		{"context=system_u:object_r:tmp_t", nil, true},
	}
	for _, tc := range cases {
		got, err := ParseTmpfsOptions(tc.in)
		if tc.err {
			if err == nil {
				t.Errorf("ParseTmpfsOptions(%q) = %q, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParseTmpfsOptions(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func FuzzParseTmpfsOptions(f *testing.F) {
	for _, s := range []string{"", "size=64m", "exec,mode=1777", "ro,rw", "size=1m,size=2m", "mpol=prefer:1", "bind", "=,=", "size=99999999999999999999k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		opts, err := ParseTmpfsOptions(data)
		if err != nil {
			return
		}
		for _, o := range opts {
			if o == "bind" || o == "rbind" || o == "remount" || o == "" || strings.Contains(o, ",") {
				t.Fatalf("option %q from %q", o, data)
			}
		}
		// Parsing the result again changes nothing.
		again, err := ParseTmpfsOptions(strings.Join(opts, ","))
		if err != nil || !slices.Equal(again, opts) {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", data, opts, again, err)
		}
	})
}
