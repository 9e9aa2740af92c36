package ocispec

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/macro-cloud/macro/types"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const testID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

var testHost = Host{SwapLimit: true, PingGroupRange: true, UnprivilegedPortStart: true, Nofile: DefaultNofile}

var busybox = ImageConfig{
	Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
	Cmd: []string{"sh"},
}

func fixtureRootfs(t testing.TB) string {
	t.Helper()
	p, err := filepath.Abs("testdata/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestGenerateGolden(t *testing.T) {
	etc := EtcFiles{
		Hosts:      "/var/lib/macro/pods/x/hosts",
		Hostname:   "/var/lib/macro/pods/x/hostname",
		ResolvConf: "/var/lib/macro/pods/x/resolv.conf",
	}
	cases := []struct {
		name  string
		spec  types.PodSpec
		image ImageConfig
		in    func(*Input)
	}{
		{name: "busybox-sh", spec: types.PodSpec{Image: "busybox"}, image: busybox},
		{
			name: "entrypoint-override",
			spec: types.PodSpec{Entrypoint: []string{"/bin/echo"}, Cmd: []string{"hello"}},
			image: ImageConfig{
				Entrypoint: []string{"/docker-entrypoint.sh"},
				Cmd:        []string{"nginx", "-g", "daemon off;"},
				StopSignal: "SIGQUIT",
			},
		},
		{
			name: "env-merge",
			spec: types.PodSpec{
				Env: []string{"B=spec", "C=spec", "REMOVED", "PATH=/spec/bin"},
				Tty: true,
			},
			image: ImageConfig{
				Env: []string{"A=image", "B=image", "REMOVED=image", "PATH=/image/bin"},
				Cmd: []string{"sh"},
			},
		},
		{
			name:  "user-by-name",
			spec:  types.PodSpec{User: "app", WorkingDir: "/home/app"},
			image: ImageConfig{User: "www-data", Cmd: []string{"id"}, WorkingDir: "/var/www"},
		},
		{
			name: "tmpfs",
			spec: types.PodSpec{Tmpfs: map[string]string{
				"/run":      "",
				"/tmp":      "size=64m,exec,mode=1777",
				"/run/lock": "size=5m",
				"/dev/shm":  "size=1g",
			}},
			image: busybox,
		},
		{
			name:  "read-only",
			spec:  types.PodSpec{ReadOnly: true, Tmpfs: map[string]string{"/tmp": ""}},
			image: busybox,
		},
		{
			name: "limits",
			spec: types.PodSpec{Resources: types.Resources{
				MemoryBytes: 256 << 20,
				NanoCPUs:    1500000000,
				CPUShares:   512,
				PidsLimit:   200,
			}},
			image: busybox,
		},
		{
			name:  "limits-no-swap-accounting",
			spec:  types.PodSpec{Resources: types.Resources{MemoryBytes: 256 << 20, MemorySwapBytes: -1}},
			image: busybox,
			in: func(in *Input) {
				h := testHost
				h.SwapLimit = false
				in.Host = &h
			},
		},
		{
			name:  "hostname-domainname-init",
			spec:  types.PodSpec{Hostname: "web", Domainname: "example.org", Init: true},
			image: busybox,
			in:    func(in *Input) { in.InitPath = "/usr/libexec/macro/init" },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := testHost
			in := Input{
				ID:       testID,
				Spec:     tc.spec,
				Image:    tc.image,
				Rootfs:   fixtureRootfs(t),
				EtcFiles: etc,
				Host:     &h,
			}
			if tc.in != nil {
				tc.in(&in)
			}
			s, err := Generate(in)
			if err != nil {
				t.Fatal(err)
			}
			if s.Linux.Seccomp == nil || len(s.Linux.Seccomp.Syscalls) == 0 {
				t.Fatal("no seccomp profile")
			}
			// The seccomp profile depends on the kernel and architecture it
			// is generated on; TestSeccomp looks at it.
			s.Linux.Seccomp = nil
			s.Root.Path = "/ROOTFS"
			got, err := json.MarshalIndent(s, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := filepath.Join("testdata", tc.name+".json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("spec differs from %s (go test -update rewrites it):\n%s", golden, got)
			}
		})
	}
}

func TestSeccomp(t *testing.T) {
	s, err := Generate(Input{ID: testID, Spec: types.PodSpec{}, Image: busybox, Rootfs: fixtureRootfs(t), Host: &testHost})
	if err != nil {
		t.Fatal(err)
	}
	sc := s.Linux.Seccomp
	if sc.DefaultAction != "SCMP_ACT_ERRNO" {
		t.Errorf("default action %q, want SCMP_ACT_ERRNO", sc.DefaultAction)
	}
	allowed := map[string]bool{}
	for _, r := range sc.Syscalls {
		if r.Action == "SCMP_ACT_ALLOW" && len(r.Args) == 0 {
			for _, n := range r.Names {
				allowed[n] = true
			}
		}
	}
	for _, n := range []string{"read", "write", "execve", "chown", "setuid", "chroot"} {
		if !allowed[n] {
			t.Errorf("%s is not allowed", n)
		}
	}
	// Needing capabilities a default container does not have, these stay
	// forbidden.
	for _, n := range []string{"mount", "umount2", "bpf", "init_module", "kexec_load", "reboot", "setns", "unshare", "open_by_handle_at", "swapon"} {
		if allowed[n] {
			t.Errorf("%s is allowed", n)
		}
	}
}

func TestGenerateErrors(t *testing.T) {
	root := fixtureRootfs(t)
	cases := []struct {
		name string
		in   Input
		want string
	}{
		{"no id", Input{Image: busybox, Rootfs: root}, "container id is empty"},
		{"id with slash", Input{ID: "../x", Image: busybox, Rootfs: root}, `invalid container id "../x"`},
		{"relative rootfs", Input{ID: testID, Image: busybox, Rootfs: "rootfs"}, `rootfs "rootfs" is not an absolute path`},
		{"no command", Input{ID: testID, Rootfs: root}, "no command specified"},
		{"unknown user", Input{ID: testID, Image: busybox, Rootfs: root, Spec: types.PodSpec{User: "nobody"}},
			"unable to find user nobody: no matching entries in passwd file"},
		{"relative image workdir", Input{ID: testID, Image: ImageConfig{Cmd: []string{"sh"}, WorkingDir: "app"}, Rootfs: root},
			"the working directory 'app' is invalid, it needs to be an absolute path"},
		{"small memory", Input{ID: testID, Image: busybox, Rootfs: root, Spec: types.PodSpec{Resources: types.Resources{MemoryBytes: 1 << 20}}},
			"Minimum memory limit allowed is 6MB"},
		{"bad tmpfs", Input{ID: testID, Image: busybox, Rootfs: root, Spec: types.PodSpec{Tmpfs: map[string]string{"/x": "bind"}}},
			`invalid tmpfs option "bind"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.Host = &testHost
			_, err := Generate(tc.in)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestDetectHost(t *testing.T) {
	h := DetectHost()
	if h.Nofile == 0 || h.Nofile > DefaultNofile {
		t.Errorf("Nofile = %d", h.Nofile)
	}
	_, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
	if h.SwapLimit != (err == nil) {
		t.Errorf("SwapLimit = %v, stat: %v", h.SwapLimit, err)
	}
}

func TestProcessArgs(t *testing.T) {
	img := ImageConfig{Entrypoint: []string{"/entry"}, Cmd: []string{"default"}}
	cases := []struct {
		name string
		spec types.PodSpec
		img  ImageConfig
		want []string
		err  error
	}{
		{"image only", types.PodSpec{}, img, []string{"/entry", "default"}, nil},
		{"spec cmd", types.PodSpec{Cmd: []string{"a", "b"}}, img, []string{"/entry", "a", "b"}, nil},
		{"spec entrypoint drops image cmd", types.PodSpec{Entrypoint: []string{"/bin/sh"}}, img, []string{"/bin/sh"}, nil},
		{"spec entrypoint and cmd", types.PodSpec{Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"echo"}}, img, []string{"/bin/sh", "-c", "echo"}, nil},
		{"reset entrypoint with cmd", types.PodSpec{Entrypoint: []string{""}, Cmd: []string{"ls"}}, img, []string{"ls"}, nil},
		{"reset entrypoint without cmd", types.PodSpec{Entrypoint: []string{""}}, img, nil, ErrNoCommand},
		{"image cmd only", types.PodSpec{}, ImageConfig{Cmd: []string{"sh"}}, []string{"sh"}, nil},
		{"image entrypoint only", types.PodSpec{}, ImageConfig{Entrypoint: []string{"/e"}}, []string{"/e"}, nil},
		{"nothing", types.PodSpec{}, ImageConfig{}, nil, ErrNoCommand},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ProcessArgs(tc.spec, tc.img)
			if err != tc.err || !slices.Equal(got, tc.want) {
				t.Fatalf("got %q, %v; want %q, %v", got, err, tc.want, tc.err)
			}
		})
	}
	// The image's slices are not modified.
	if _, err := ProcessArgs(types.PodSpec{Cmd: []string{"x"}}, img); err != nil || !slices.Equal(img.Entrypoint, []string{"/entry"}) {
		t.Fatal("image config modified")
	}
}

func TestEnv(t *testing.T) {
	cases := []struct {
		name string
		spec types.PodSpec
		img  ImageConfig
		home string
		want []string
	}{
		{"defaults", types.PodSpec{}, ImageConfig{}, "/root",
			[]string{"PATH=" + DefaultPath, "HOSTNAME=h", "HOME=/root"}},
		{"tty", types.PodSpec{Tty: true}, ImageConfig{}, "/",
			[]string{"PATH=" + DefaultPath, "HOSTNAME=h", "TERM=xterm", "HOME=/"}},
		{"image path replaces default in place", types.PodSpec{}, ImageConfig{Env: []string{"X=1", "PATH=/x"}}, "/",
			[]string{"PATH=/x", "HOSTNAME=h", "X=1", "HOME=/"}},
		{"spec overrides image, spec first", types.PodSpec{Env: []string{"B=s", "C=s"}}, ImageConfig{Env: []string{"A=i", "B=i"}}, "/",
			[]string{"PATH=" + DefaultPath, "HOSTNAME=h", "B=s", "C=s", "A=i", "HOME=/"}},
		{"unset", types.PodSpec{Env: []string{"A", "TERM"}}, ImageConfig{Env: []string{"A=i"}}, "/",
			[]string{"PATH=" + DefaultPath, "HOSTNAME=h", "HOME=/"}},
		{"home from env wins", types.PodSpec{Env: []string{"HOME=/data"}}, ImageConfig{}, "/root",
			[]string{"PATH=" + DefaultPath, "HOSTNAME=h", "HOME=/data"}},
		{"hostname overridable", types.PodSpec{Env: []string{"HOSTNAME=x", "EMPTY="}}, ImageConfig{}, "/",
			[]string{"PATH=" + DefaultPath, "HOSTNAME=x", "EMPTY=", "HOME=/"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Env(tc.spec, tc.img, "h", tc.home)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestWorkingDir(t *testing.T) {
	for _, tc := range []struct {
		spec, img, want string
		err             bool
	}{
		{"", "", "/", false},
		{"", "/img", "/img", false},
		{"/spec", "/img", "/spec", false},
		{"rel", "", "", true},
		{"", "rel", "", true},
	} {
		got, err := WorkingDir(types.PodSpec{WorkingDir: tc.spec}, ImageConfig{WorkingDir: tc.img})
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("WorkingDir(%q, %q) = %q, %v", tc.spec, tc.img, got, err)
		}
	}
}
