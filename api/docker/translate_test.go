package docker

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/macro-cloud/macro/image"
	"github.com/macro-cloud/macro/types"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// testImage is a busybox-like image with a config worth merging.
func testImage() image.Image {
	return image.Image{
		ID:       "sha256:" + strings.Repeat("ab", 32),
		RepoTags: []string{"busybox:latest"},
		Config: v1.ConfigFile{
			Architecture: "amd64", OS: "linux",
			Config: v1.Config{
				Env:          []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"},
				Cmd:          []string{"sh"},
				WorkingDir:   "/srv",
				Labels:       map[string]string{"org.example.image": "yes"},
				ExposedPorts: map[string]struct{}{"80/tcp": {}},
			},
		},
	}
}

// The create requests below are what the docker CLI 28.2 sends for the
// command in each comment.
var translateCases = []struct {
	name string
	body string
}{
	// docker create busybox
	{"plain", `{"Image":"busybox","HostConfig":{}}`},
	// docker create -e A=1 -e LANG=en -w /tmp -u 1000:1000 --hostname box -l team=blue busybox echo hi
	{"env-workdir-user", `{"Image":"busybox","Env":["A=1","LANG=en"],"WorkingDir":"/tmp","User":"1000:1000","Hostname":"box","Labels":{"team":"blue"},"Cmd":["echo","hi"],"HostConfig":{}}`},
	// docker create --entrypoint /bin/true busybox
	{"entrypoint-drops-image-cmd", `{"Image":"busybox","Entrypoint":["/bin/true"],"HostConfig":{}}`},
	// docker create -m 64m --cpus 0.5 --pids-limit 20 --restart on-failure:3 --read-only --tmpfs /run:size=1m busybox
	{"limits", `{"Image":"busybox","HostConfig":{"Memory":67108864,"NanoCpus":500000000,"PidsLimit":20,"RestartPolicy":{"Name":"on-failure","MaximumRetryCount":3},"ReadonlyRootfs":true,"Tmpfs":{"/run":"size=1m"}}}`},
	// docker create -it --rm --stop-signal USR1 --stop-timeout 3 --runtime gvisor busybox
	{"tty-rm-signal-gvisor", `{"Image":"busybox","Tty":true,"OpenStdin":true,"StdinOnce":true,"AttachStdin":true,"StopSignal":"USR1","StopTimeout":3,"HostConfig":{"AutoRemove":true,"Runtime":"gvisor"}}`},
	// docker create --health-cmd 'exit 0' --health-interval 1s busybox
	{"healthcheck", `{"Image":"busybox","Healthcheck":{"Test":["CMD-SHELL","exit 0"],"Interval":1000000000},"HostConfig":{}}`},
	// docker create -v data:/data:ro -v /anon --mount type=volume,src=cache,dst=/cache,volume-subpath=sub,volume-nocopy --mount type=tmpfs,dst=/scratch,tmpfs-size=1m busybox
	{"volumes", `{"Image":"busybox","Volumes":{"/anon":{}},"HostConfig":{"Binds":["data:/data:ro"],"Mounts":[{"Type":"volume","Source":"cache","Target":"/cache","VolumeOptions":{"NoCopy":true,"Subpath":"sub"}},{"Type":"tmpfs","Target":"/scratch","TmpfsOptions":{"SizeBytes":1048576}}]}}`},
	// what docker compose v2.40 sends for service web of project shop with
	// networks: default: {aliases: [www], ipv4_address: 10.5.0.9}
	{"compose-network", `{"Image":"busybox","Labels":{"com.docker.compose.project":"shop","com.docker.compose.service":"web"},"HostConfig":{"NetworkMode":"shop_default","Init":true},"NetworkingConfig":{"EndpointsConfig":{"shop_default":{"Aliases":["shop-web-1","web","www"],"IPAMConfig":{"IPv4Address":"10.5.0.9"}}}}}`},
}

func TestTranslateGolden(t *testing.T) {
	created := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	for _, tc := range translateCases {
		t.Run(tc.name, func(t *testing.T) {
			var req createRequest
			if err := json.Unmarshal([]byte(tc.body), &req); err != nil {
				t.Fatal(err)
			}
			spec, err := podFromCreate(&req, testImage(), "", "sandbox")
			if err != nil {
				t.Fatal(err)
			}
			p := types.Pod{ID: strings.Repeat("c", 64), Name: "test", Tenant: "t", Namespace: "default", Created: created, Spec: spec, Node: "node1"}
			st := types.PodStatus{ID: p.ID, Phase: types.PhaseExited, ExitCode: 3, StartedAt: created.Add(time.Second), FinishedAt: created.Add(2 * time.Second), Exits: 1, Run: 1}
			s := &Server{info: Info{DataDir: "/var/lib/macro"}}
			got := map[string]any{"spec": p.Spec, "inspect": s.inspect(p, st)}
			checkGolden(t, filepath.Join("testdata", "translate", tc.name+".json"), got)
		})
	}
}

func checkGolden(t *testing.T, path string, v any) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	if *update {
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from what the code produces now (go test -update rewrites it):\n%s", path, got)
	}
}

func TestTranslateErrors(t *testing.T) {
	tests := []struct {
		body   string
		status int
		msg    string
	}{
		{`{"Image":"busybox","HostConfig":{"RestartPolicy":{"Name":"sometimes"}}}`, 400, "invalid restart policy: unknown policy 'sometimes'"},
		{`{"Image":"busybox","HostConfig":{"RestartPolicy":{"Name":"always","MaximumRetryCount":2}}}`, 400, "maximum retry count can only be used with 'on-failure'"},
		{`{"Image":"busybox","HostConfig":{"AutoRemove":true,"RestartPolicy":{"Name":"always"}}}`, 409, "cannot specify both --restart and --rm"},
		{`{"Image":"busybox","HostConfig":{"Memory":1048576}}`, 400, "Minimum memory limit allowed is 6MB"},
		{`{"Image":"busybox","WorkingDir":"relative","HostConfig":{}}`, 400, "needs to be an absolute path"},
		{`{"Image":"busybox","StopSignal":"NOPE","HostConfig":{}}`, 400, "Invalid signal: NOPE"},
		{`{"Image":"busybox","HostConfig":{"Privileged":true}}`, 400, "privileged"},
		{`{"Image":"busybox","HostConfig":{"NetworkMode":"host"}}`, 400, "host"},
		{`{"Image":"busybox","HostConfig":{"Binds":["/etc"]}}`, 400, "invalid volume specification"},
		{`{"Image":"busybox","HostConfig":{"Binds":["data:relative"]}}`, 400, "must be absolute"},
		{`{"Image":"busybox","HostConfig":{"Binds":["data:/d:shared"]}}`, 400, "propagation shared"},
		{`{"Image":"busybox","HostConfig":{"Binds":["data:/d","other:/d"]}}`, 400, "Duplicate mount point: /d"},
		{`{"Image":"busybox","HostConfig":{"Binds":["data/../x:/d"]}}`, 400, "subpath"},
		{`{"Image":"busybox","HostConfig":{"VolumesFrom":["other"]}}`, 400, "volumes_from"},
		{`{"Image":"busybox","HostConfig":{"Mounts":[{"Type":"npipe","Source":"x","Target":"/x"}]}}`, 400, "mount type \"npipe\" is not supported"},
		{`{"Image":"busybox","HostConfig":{"Mounts":[{"Type":"volume","Source":"xx","Target":"/x","VolumeOptions":{"Subpath":"/abs"}}]}}`, 400, "subpath"},
		{`{"Image":"busybox","HostConfig":{"Mounts":[{"Type":"tmpfs","Source":"x","Target":"/x"}]}}`, 400, "Source must not be specified"},
		{`{"Image":"busybox","HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":"8080"}]}}}`, 400, "published ports (-p, compose ports:)"},
		{`{"Image":"busybox","HostConfig":{"CapAdd":["NET_ADMIN"],"ExtraHosts":["a:1.2.3.4"]}}`, 400, "cap_add (--cap-add); extra_hosts (--add-host)"},
		{`{"Image":"busybox","HostConfig":{"MemoryReservation":1000000}}`, 400, "deploy.resources.reservations.memory"},
		{`{"Image":"busybox","HostConfig":{"LogConfig":{"Type":"syslog"}}}`, 400, "logging driver syslog"},
		{`{"Image":"busybox","HostConfig":{"NetworkMode":"shop_default"},"NetworkingConfig":{"EndpointsConfig":{"shop_default":{"Links":["db"]}}}}`, 400, "links are not supported"},
		{`{"Image":"busybox","HostConfig":{"NetworkMode":"shop_default"},"NetworkingConfig":{"EndpointsConfig":{"shop_default":{"IPAMConfig":{"IPv4Address":"fd00::1"}}}}}`, 400, "invalid IPv4 address"},
		{`{"Image":"busybox","HostConfig":{"NetworkMode":"none"},"NetworkingConfig":{"EndpointsConfig":{"shop_default":{}}}}`, 400, "cannot be disconnected"},
		{`{"Image":"busybox","Entrypoint":[],"HostConfig":{}}`, 400, "No command specified"},
	}
	for _, tt := range tests {
		var req createRequest
		if err := json.Unmarshal([]byte(tt.body), &req); err != nil {
			t.Fatal(err)
		}
		_, err := podFromCreate(&req, testImage(), "", "sandbox")
		if err == nil || statusOf(err) != tt.status || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: got %v (status %d), want %d %q", tt.body, err, statusOf(err), tt.status, tt.msg)
		}
	}
}

// FuzzCreateBody feeds arbitrary create bodies through decoding and
// translation: never a panic, and every refusal is a client error.
func FuzzCreateBody(f *testing.F) {
	for _, tc := range translateCases {
		f.Add([]byte(tc.body))
	}
	f.Add([]byte(`{"Image":"busybox","Tmpfs":{"/x":"size=-1"},"HostConfig":{"Tmpfs":{"relative":"mode=99999"}}}`))
	f.Add([]byte(`{"Image":"","HostConfig":null}`))
	f.Add([]byte(`{"Image":"busybox","Healthcheck":{"Test":[]},"HostConfig":{"PidsLimit":-5,"NanoCpus":-1}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req createRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return
		}
		_, err := podFromCreate(&req, testImage(), "", "sandbox")
		if err != nil && statusOf(err) >= 500 {
			t.Fatalf("create body %q: server error %v", body, err)
		}
	})
}
