package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// cmdTimeout bounds one ip/nft/unshare command.
const cmdTimeout = 30 * time.Second

// run runs a tool in the network namespace at ns ("" for this process's),
// with stdin, and returns its combined output.
func run(ctx context.Context, ns, stdin string, tool string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	argv := append([]string{tool}, args...)
	if ns != "" {
		argv = append([]string{"nsenter", "--net=" + ns, "--"}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// ipBatch runs ip commands, one per line, in ns; with force, failing lines
// do not stop the others (deleting what may not exist).
func ipBatch(ctx context.Context, ns string, force bool, lines ...string) error {
	return ipBatchArgs(ctx, ns, force, nil, lines...)
}

// ipBatchArgs is ipBatch with options before -batch ("-6").
func ipBatchArgs(ctx context.Context, ns string, force bool, opts []string, lines ...string) error {
	args := append(append([]string{}, opts...), "-batch", "-")
	if force {
		args = append([]string{"-force"}, args...)
	}
	_, err := run(ctx, ns, strings.Join(lines, "\n")+"\n", "ip", args...)
	if force {
		return nil // deletions of what may not exist are expected to fail
	}
	return err
}

// bridgeBatch runs bridge commands (fdb), one per line, in ns, as
// ipBatch does ip commands.
func bridgeBatch(ctx context.Context, ns string, force bool, lines ...string) error {
	args := []string{"-batch", "-"}
	if force {
		args = append([]string{"-force"}, args...)
	}
	_, err := run(ctx, ns, strings.Join(lines, "\n")+"\n", "bridge", args...)
	if force {
		return nil
	}
	return err
}

// nftApply loads an nft script in ns.
func nftApply(ctx context.Context, ns, script string) error {
	_, err := run(ctx, ns, script, "nft", "-f", "-")
	return err
}

// linkExists reports whether ns has a link called name.
func linkExists(ctx context.Context, ns, name string) bool {
	_, err := run(ctx, ns, "", "ip", "link", "show", "dev", name)
	return err == nil
}

const nsfsMagic = 0x6e736673

// isNetns reports whether path is a bind-mounted network namespace.
func isNetns(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == nsfsMagic
}

// newNetns makes a network namespace that lives as long as the bind mount
// at path (a file created here), like `ip netns add` does under /run/netns,
// and reports whether it made one (false: path already was one).
func newNetns(ctx context.Context, path string) (bool, error) {
	if isNetns(path) {
		return false, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY, 0o444)
	if err != nil {
		return false, err
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		// This thread gets the new namespace and is never unlocked: Go
		// ends it with the goroutine instead of reusing it elsewhere.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		if err := unix.Mount(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), path, "", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind mount %s: %w", path, err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return false, err
	}
	return true, nil
}

// removeNetns unmounts the namespace at path and removes the file; the
// namespace and its interfaces go once no process is in it.
func removeNetns(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// inNetns runs fn on a thread that has entered the network namespace at
// path: sockets fn opens belong to that namespace for good.
func inNetns(path string, fn func() error) error {
	target, err := os.Open(path)
	if err != nil {
		return err
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it ends with this goroutine
			// instead of serving others in the wrong namespace.
			errc <- errors.Join(ferr, fmt.Errorf("setns back: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
