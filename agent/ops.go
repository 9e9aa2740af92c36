package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/macro-cloud/macro/image"
	"github.com/macro-cloud/macro/runtime"
	"github.com/macro-cloud/macro/runtime/logfile"
)

// The imperative operations the API carries to the node that runs a pod.

// Logs reads the pod's log. It works for stopped pods too.
func (a *Agent) Logs(ctx context.Context, id string, opts logfile.Options) iter.Seq2[logfile.Entry, error] {
	return logfile.Read(ctx, filepath.Join(a.podDir(id), "container.log"), opts)
}

// runtimeOf returns the live worker's runtime.
func (a *Agent) runtimeOf(id string) (runtime.Runtime, error) {
	w, err := a.worker(id)
	if err != nil {
		return nil, err
	}
	if w.rt == nil {
		return nil, fmt.Errorf("pod %s has no runtime", id)
	}
	return w.rt, nil
}

// Stdin opens the standard input of a running pod.
func (a *Agent) Stdin(ctx context.Context, id string) (io.WriteCloser, error) {
	rt, err := a.runtimeOf(id)
	if err != nil {
		return nil, err
	}
	return rt.Stdin(ctx, id)
}

// Resize sets the terminal size of a tty pod.
func (a *Agent) Resize(ctx context.Context, id string, s runtime.Size) error {
	rt, err := a.runtimeOf(id)
	if err != nil {
		return err
	}
	return rt.Resize(ctx, id, s)
}

// Exec runs a process in a running pod and returns its exit code.
func (a *Agent) Exec(ctx context.Context, id string, p runtime.Process, stdio runtime.IO) (int, error) {
	rt, err := a.runtimeOf(id)
	if err != nil {
		return -1, err
	}
	// A suspended pod wakes for an exec, as for a request: a frozen one
	// would never run it.
	w, err := a.worker(id)
	if err != nil {
		return -1, err
	}
	w.execs.Add(1)
	defer w.execs.Add(-1)
	if err := a.Wake(ctx, id); err != nil {
		return -1, err
	}
	return rt.Exec(ctx, id, p, stdio)
}

// Signal sends sig to the pod's main process.
func (a *Agent) Signal(ctx context.Context, id string, sig syscall.Signal) error {
	rt, err := a.runtimeOf(id)
	if err != nil {
		return err
	}
	// A frozen process acts on no signal, not even SIGKILL, until thawed.
	if err := a.Wake(ctx, id); err != nil {
		return err
	}
	return rt.Signal(ctx, id, sig)
}

// Stats reports the pod's resource usage.
func (a *Agent) Stats(ctx context.Context, id string) (runtime.Stats, error) {
	rt, err := a.runtimeOf(id)
	if err != nil {
		return runtime.Stats{}, err
	}
	return rt.Stats(ctx, id)
}

// Top lists the pod's processes as `ps psArgs` shows them (default -ef),
// keeping only the pod's own.
func (a *Agent) Top(ctx context.Context, id, psArgs string) ([]string, [][]string, error) {
	rt, err := a.runtimeOf(id)
	if err != nil {
		return nil, nil, err
	}
	pids, err := rt.Pids(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if psArgs == "" {
		psArgs = "-ef"
	}
	out, err := exec.CommandContext(ctx, "ps", strings.Fields(psArgs)...).Output()
	if err != nil {
		return nil, nil, fmt.Errorf("ps %s: %w", psArgs, err)
	}
	return filterPs(out, pids)
}

// filterPs keeps the header and the rows of ps output whose PID is in pids.
func filterPs(out []byte, pids []int) ([]string, [][]string, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	if !sc.Scan() {
		return nil, nil, fmt.Errorf("ps printed nothing")
	}
	titles := strings.Fields(sc.Text())
	pidCol := -1
	for i, t := range titles {
		if t == "PID" {
			pidCol = i
		}
	}
	if pidCol < 0 {
		return nil, nil, fmt.Errorf("couldn't find PID field in ps output")
	}
	want := map[int]bool{}
	for _, p := range pids {
		want[p] = true
	}
	procs := [][]string{}
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) <= pidCol {
			continue
		}
		pid, err := strconv.Atoi(f[pidCol])
		if err != nil || !want[pid] {
			continue
		}
		// The last column (the command) may contain spaces.
		row := append(f[:len(titles)-1:len(titles)-1], strings.Join(f[len(titles)-1:], " "))
		procs = append(procs, row)
	}
	return titles, procs, nil
}

func (a *Agent) rootfs(id string) (string, error) {
	if _, err := a.worker(id); err != nil {
		return "", err
	}
	return filepath.Join(a.podDir(id), "rootfs"), nil
}

// Changes lists what the pod changed in its filesystem.
func (a *Agent) Changes(ctx context.Context, id string) ([]image.Change, error) {
	if _, err := a.worker(id); err != nil {
		return nil, err
	}
	return image.Changes(a.podDir(id))
}

// StatPath describes a path inside the pod's filesystem.
func (a *Agent) StatPath(ctx context.Context, id, path string) (image.PathStat, error) {
	orig := path
	root, path, err := a.pathRoot(ctx, id, path)
	if err != nil {
		return image.PathStat{}, err
	}
	st, err := image.StatPath(root, path)
	st.Name = mountName(st.Name, orig, path)
	return st, err
}

// Archive returns a tar of a path inside the pod's filesystem.
func (a *Agent) Archive(ctx context.Context, id, path string) (io.ReadCloser, image.PathStat, error) {
	orig := path
	root, path, err := a.pathRoot(ctx, id, path)
	if err != nil {
		return nil, image.PathStat{}, err
	}
	rc, st, err := image.ArchivePath(root, path)
	if name := mountName(st.Name, orig, path); err == nil && name != st.Name {
		rc = renameArchive(rc, st.Name, name)
		st.Name = name
	}
	return rc, st, err
}

// Extract unpacks a tar into a directory of the pod's filesystem.
func (a *Agent) Extract(ctx context.Context, id, path string, r io.Reader) error {
	root, path, err := a.pathRoot(ctx, id, path)
	if err != nil {
		return err
	}
	return image.ExtractInto(root, path, r)
}

// Export returns a tar of the pod's whole filesystem.
func (a *Agent) Export(ctx context.Context, id string) (io.ReadCloser, error) {
	root, err := a.ensureRootfs(ctx, id)
	if err != nil {
		return nil, err
	}
	return image.Export(root)
}

// ensureRootfs mounts the pod's rootfs if it is not (a created pod).
func (a *Agent) ensureRootfs(ctx context.Context, id string) (string, error) {
	w, err := a.awaitWorker(ctx, id)
	if err != nil {
		return "", err
	}
	// In the worker's goroutine: a prepare must never run beside another
	// (the worker prepares a created pod as soon as it has it).
	if err := w.call(ctx, func(ctx context.Context) (func(context.Context), error) {
		return nil, w.prepare(ctx)
	}); err != nil {
		return "", err
	}
	return a.rootfs(id)
}

// Size adds up the sizes of the files in the pod's overlay upper layer,
// each hard-linked file once: Docker's SizeRw. A pod that never ran has
// written nothing.
func (a *Agent) Size(ctx context.Context, id string) (int64, error) {
	if _, err := a.worker(id); err != nil {
		return 0, err
	}
	return dirSize(ctx, filepath.Join(a.podDir(id), "upper"))
}

func dirSize(ctx context.Context, dir string) (int64, error) {
	var total int64
	seen := map[uint64]bool{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		if d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil // removed meanwhile
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		total += info.Size()
		return nil
	})
	return total, err
}
