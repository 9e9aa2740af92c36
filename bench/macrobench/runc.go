package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// runcMain is the floor: raw runc on the very config.json macro generated
// for a busybox container, copied with its rootfs and /etc files into a
// bundle of our own, run with a fresh cgroupsPath each time and the global
// flags macro's shim passes. It times `runc run -d` and, as the shim does
// it, `runc create` then `runc start`.
func runcMain(args []string) error {
	fs := flag.NewFlagSet("runc", flag.ExitOnError)
	sock := fs.String("socket", "", "Docker API unix socket")
	dataDir := fs.String("data-dir", "", "macro's data dir (to find the pod's bundle)")
	work := fs.String("work", "", "directory for the bundle and runc's state (cleaned up by run.sh)")
	n := fs.Int("n", 200, "timed runs of each")
	warm := fs.Int("warmup", 10, "untimed runs first")
	img := fs.String("image", "busybox", "image")
	runc := fs.String("runc", "runc", "runc binary")
	cgParent := fs.String("cgroup-parent", "/macro-bench", "parent of the per-run cgroupsPath")
	fs.Parse(args)
	if *work == "" || *dataDir == "" {
		return fmt.Errorf("-work and -data-dir are required")
	}
	a := newAPI(*sock)
	bundle := filepath.Join(*work, "bundle")
	if err := copyBundle(a, *img, *dataDir, bundle); err != nil {
		return err
	}
	root := filepath.Join(*work, "runc-root")
	if err := os.MkdirAll(root, 0o700); err != nil {
		return err
	}
	cfgPath := filepath.Join(bundle, "config.json")
	var cfg map[string]any
	if err := readJSON(cfgPath, &cfg); err != nil {
		return err
	}
	// macro's bundle joins the pod's network namespace, which the node
	// network made and removes with the pod: the floor gets a new one
	// (runc's own cost, without the node network's).
	if linux, ok := cfg["linux"].(map[string]any); ok {
		if nss, ok := linux["namespaces"].([]any); ok {
			for _, ns := range nss {
				if m, ok := ns.(map[string]any); ok && m["type"] == "network" {
					delete(m, "path")
				}
			}
		}
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer devnull.Close()
	// The container inherits runc's stdout and stderr, as it inherits the
	// shim's pipes in macro: a file, so that nothing here waits for it.
	out, err := os.OpenFile(filepath.Join(*work, "runc.out"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	logPath := filepath.Join(*work, "runc.log")
	tool := func(args ...string) error {
		argv := append([]string{"--root", root, "--log", logPath, "--log-format", "json"}, args...)
		cmd := exec.Command(*runc, argv...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, out, out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("runc %s: %v (see %s)", strings.Join(args, " "), err, logPath)
		}
		return nil
	}
	seq := 0
	fresh := func() (string, error) {
		seq++
		id := fmt.Sprintf("mb-%d-%d", os.Getpid(), seq)
		cfg["linux"].(map[string]any)["cgroupsPath"] = *cgParent + "/" + id
		return id, writeJSON(cfgPath, cfg)
	}
	// execd waits until the container's process has exec'd its command:
	// runc returns once the init process is released, a moment before it
	// calls execve.
	execd := func() error {
		pid, err := readPid(filepath.Join(*work, "pid"))
		if err != nil {
			return err
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			comm, err := readComm(pid)
			if err != nil {
				return err
			}
			if comm == "sleep" {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("pid %d still runs %q 5s after runc returned", pid, comm)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
	var run, runExec, create, start, both []time.Duration
	var machineCPU float64 // over the timed create+start pairs
	for i := 0; i < *warm+*n; i++ {
		// runc run -d
		id, err := fresh()
		if err != nil {
			return err
		}
		pidFile := filepath.Join(*work, "pid")
		os.Remove(pidFile)
		t0 := time.Now()
		if err := tool("run", "-d", "--bundle", bundle, "--pid-file", pidFile, id); err != nil {
			return err
		}
		d := time.Since(t0)
		if err := execd(); err != nil {
			return err
		}
		de := time.Since(t0)
		if err := tool("delete", "--force", id); err != nil {
			return err
		}
		// runc create; runc start
		if id, err = fresh(); err != nil {
			return err
		}
		os.Remove(pidFile)
		m0 := machineBusy()
		t0 = time.Now()
		if err := tool("create", "--bundle", bundle, "--pid-file", pidFile, id); err != nil {
			return err
		}
		t1 := time.Now()
		if err := tool("start", id); err != nil {
			return err
		}
		if err := execd(); err != nil {
			return err
		}
		t2 := time.Now()
		m1 := machineBusy()
		if err := tool("delete", "--force", id); err != nil {
			return err
		}
		if i >= *warm {
			run = append(run, d)
			runExec = append(runExec, de)
			create = append(create, t1.Sub(t0))
			start = append(start, t2.Sub(t1))
			both = append(both, t2.Sub(t0))
			machineCPU += m1 - m0
		}
	}
	printTable("raw runc on macro's bundle (the floor; fresh cgroupsPath per run)", []row{
		{"runc run -d (until runc returns)", run},
		{"runc run -d (until the command runs)", runExec},
		{"runc create", create},
		{"runc start (until the command runs)", start},
		{"runc create + runc start", both},
	})
	fmt.Printf("  CPU per create+start: whole machine (every process and the kernel, /proc/stat) %.1f ms\n", 1000*machineCPU/float64(*n))
	return nil
}

// copyBundle creates and starts a container through the API, copies its
// config.json, its rootfs (the merged overlay view) and the files its
// mounts take from the pod directory into dst, points config.json at the
// copies, and removes the container.
func copyBundle(a *api, img, dataDir, dst string) error {
	id, err := a.create(img, "sleep", "600")
	if err != nil {
		return err
	}
	defer a.remove(id)
	if err := a.start(id); err != nil {
		return err
	}
	pod := filepath.Join(dataDir, "pods", id)
	var cfg map[string]any
	if err := readJSON(filepath.Join(pod, "config.json"), &cfg); err != nil {
		return err
	}
	os.RemoveAll(dst)
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	rootfs := cfg["root"].(map[string]any)["path"].(string)
	if out, err := exec.Command("cp", "-a", rootfs, filepath.Join(dst, "rootfs")).CombinedOutput(); err != nil {
		return fmt.Errorf("copy rootfs: %v: %s", err, out)
	}
	cfg["root"].(map[string]any)["path"] = filepath.Join(dst, "rootfs")
	mounts, _ := cfg["mounts"].([]any)
	for _, m := range mounts {
		m := m.(map[string]any)
		src, _ := m["source"].(string)
		rel, err := filepath.Rel(pod, src)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		to := filepath.Join(dst, "files", rel)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return err
		}
		if out, err := exec.Command("cp", "-a", src, to).CombinedOutput(); err != nil {
			return fmt.Errorf("copy %s: %v: %s", src, err, out)
		}
		m["source"] = to
	}
	b, _ := json.Marshal(cfg)
	if strings.Contains(string(b), pod) {
		return fmt.Errorf("config.json still refers to %s after the copy", pod)
	}
	return writeJSON(filepath.Join(dst, "config.json"), cfg)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}
