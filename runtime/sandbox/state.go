package sandbox

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/macro-cloud/macro/internal/atomicfile"
)

// Files in a container's StateDir.
const (
	shimConfigFile = "shim.json"  // what the shim runs, written by Start
	shimStateFile  = "state.json" // what the shim observed, written by the shim
	shimLogFile    = "shim.log"   // the shim's own stdout/stderr
	runtimeLogFile = "runc.log"   // --log of the runtime binary (json)
	pidFile        = "init.pid"   // --pid-file of create

	stdinSock   = "in.sock"
	ctlSock     = "ctl.sock"
	consoleSock = "con.sock"
)

// shimConfig is handed from Start to the shim through StateDir/shim.json.
type shimConfig struct {
	ID         string   `json:"id"`
	Bundle     string   `json:"bundle"`
	LogPath    string   `json:"logPath"`
	Tty        bool     `json:"tty,omitempty"`
	OpenStdin  bool     `json:"openStdin,omitempty"`
	StdinOnce  bool     `json:"stdinOnce,omitempty"`
	Binary     string   `json:"binary"`
	Root       string   `json:"root"`
	GlobalArgs []string `json:"globalArgs,omitempty"`
	// RuntimeLog makes the runtime binary log to StateDir/runc.log (runc).
	RuntimeLog bool `json:"runtimeLog,omitempty"`
}

// shimState is what the shim records; the file is replaced atomically.
type shimState struct {
	ShimPid   int    `json:"shimPid"`
	ShimStart uint64 `json:"shimStart"` // start time of the shim in clock ticks (/proc/pid/stat)
	Pid       int    `json:"pid,omitempty"`
	// Cgroups maps a cgroup v1 controller to the container's path in it.
	Cgroups    map[string]string `json:"cgroups,omitempty"`
	StartedAt  time.Time         `json:"startedAt,omitzero"`
	Exited     bool              `json:"exited,omitempty"`
	ExitCode   int               `json:"exitCode,omitempty"`
	OOMKilled  bool              `json:"oomKilled,omitempty"`
	FinishedAt time.Time         `json:"finishedAt,omitzero"`
	Error      string            `json:"error,omitempty"`
}

func writeJSONAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b, 0o600)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func readShimState(dir string) (shimState, error) {
	var st shimState
	err := readJSON(filepath.Join(dir, shimStateFile), &st)
	return st, err
}

// sockDir is where a container's unix sockets live: StateDir itself when
// its paths fit in sun_path (108 bytes), else a short directory named by a
// hash of StateDir, so that every Runtime value finds the same one.
func sockDir(stateDir string) string {
	if len(stateDir)+1+len(consoleSock) < 100 {
		return stateDir
	}
	h := sha256.Sum256([]byte(stateDir))
	return filepath.Join(shortSockRoot, hex.EncodeToString(h[:8]))
}

const shortSockRoot = "/run/macro-sock"

// procStart returns the start time of pid (field 22 of /proc/pid/stat),
// which tells a process apart from a later one that reuses its pid.
func procStart(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name is in parentheses and may contain anything.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("bad /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); start time is field 22.
	if len(f) < 20 {
		return 0, errors.New("short /proc stat")
	}
	if f[0] == "Z" || f[0] == "X" {
		return 0, errors.New("zombie")
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// shimAlive reports whether the shim recorded in st still runs.
func shimAlive(st shimState) bool {
	if st.ShimPid <= 0 {
		return false
	}
	start, err := procStart(st.ShimPid)
	return err == nil && start == st.ShimStart
}

// cgroupsOf parses /proc/pid/cgroup (v1) into controller -> path.
func cgroupsOf(pid int) (map[string]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || parts[1] == "" {
			continue
		}
		for c := range strings.SplitSeq(parts[1], ",") {
			m[c] = parts[2]
		}
	}
	return m, nil
}
