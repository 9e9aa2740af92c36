package ocispec

import (
	"fmt"
	"testing"

	"github.com/macro-cloud/macro/types"
)

func TestValidate(t *testing.T) {
	res := func(r types.Resources) types.PodSpec { return types.PodSpec{Resources: r} }
	restart := func(policy string, max int, autoRemove bool) types.PodSpec {
		return types.PodSpec{Restart: types.Restart{Policy: policy, MaxRetries: max}, AutoRemove: autoRemove}
	}
	cases := []struct {
		name string
		spec types.PodSpec
		want string // "" means valid
	}{
		{"empty", types.PodSpec{}, ""},
		{"memory 6MB", res(types.Resources{MemoryBytes: 6 << 20}), ""},
		{"memory below 6MB", res(types.Resources{MemoryBytes: 6<<20 - 1}), "Minimum memory limit allowed is 6MB"},
		{"negative memory", res(types.Resources{MemoryBytes: -1}), "Minimum memory limit allowed is 6MB"},
		{"swap below memory", res(types.Resources{MemoryBytes: 64 << 20, MemorySwapBytes: 32 << 20}), "Minimum memoryswap limit should be larger than memory limit, see usage"},
		{"swap without memory", res(types.Resources{MemorySwapBytes: 64 << 20}), "You should always set the Memory limit when using Memoryswap limit, see usage"},
		{"unlimited swap", res(types.Resources{MemoryBytes: 64 << 20, MemorySwapBytes: -1}), ""},
		{"bad swap", res(types.Resources{MemoryBytes: 64 << 20, MemorySwapBytes: -2}), "invalid memory swap limit -2: use -1 for unlimited"},
		{"cpus", res(types.Resources{NanoCPUs: 1e7}), ""},
		{"negative cpus", res(types.Resources{NanoCPUs: -1}), "range of CPUs is from 0.01 to the number of CPUs available"},
		{"tiny cpus", res(types.Resources{NanoCPUs: 1e7 - 1}), "range of CPUs is from 0.01 to the number of CPUs available"},
		{"negative shares", res(types.Resources{CPUShares: -1}), "invalid CPU shares (-1): value must be a positive integer"},
		{"restart always", restart("always", 0, false), ""},
		{"restart on-failure:3", restart("on-failure", 3, false), ""},
		{"on-failure negative", restart("on-failure", -1, false), "invalid restart policy: maximum retry count cannot be negative"},
		{"always with retries", restart("always", 3, false), "invalid restart policy: maximum retry count can only be used with 'on-failure'"},
		{"no with negative retries", restart("no", -3, false), "invalid restart policy: maximum retry count can only be used with 'on-failure' and cannot be negative"},
		{"unknown policy", restart("sometimes", 0, false), "invalid restart policy: unknown policy 'sometimes'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"},
		{"autoremove no", restart("no", 0, true), ""},
		{"autoremove always", restart("always", 0, true), "can't create 'AutoRemove' container with restart policy"},
		{"autoremove unless-stopped", restart("unless-stopped", 0, true), "can't create 'AutoRemove' container with restart policy"},
		{"empty env name", types.PodSpec{Env: []string{"=x"}}, "invalid environment variable: =x"},
		{"relative workdir", types.PodSpec{WorkingDir: "app"}, "the working directory 'app' is invalid, it needs to be an absolute path"},
		{"bad stop signal", types.PodSpec{StopSignal: "SIGFOO"}, "Invalid signal: SIGFOO"},
		{"relative tmpfs", types.PodSpec{Tmpfs: map[string]string{"tmp": ""}}, "invalid mount path: 'tmp' mount path must be absolute"},
		{"root tmpfs", types.PodSpec{Tmpfs: map[string]string{"/": ""}}, "invalid specification: destination can't be '/'"},
		{"bad tmpfs option", types.PodSpec{Tmpfs: map[string]string{"/tmp": "size=big"}}, `invalid tmpfs option "size=big"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.spec)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || err.Error() != tc.want {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if !IsInvalid(fmt.Errorf("wrapped: %w", err)) {
				t.Fatal("not an InvalidError")
			}
		})
	}
}
