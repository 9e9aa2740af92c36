package router

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
)

// The userspace mesh device runs in a process of its own
// (`macro mesh-device STATEDIR`, MeshDeviceMain), not in the agent's: the
// TUN device wg0 (in the router namespace), the UDP socket (in the host's)
// and the sessions with the other nodes live as long as that process, so
// an agent that restarts (an upgrade, a crash, kill -9) leaves its pods'
// traffic to other nodes flowing. The router configures it only through
// wgctrl, over WireGuard's UAPI socket, exactly as it configures a kernel
// device over netlink (mesh.go).
//
// Its state directory, DIR/mesh-dev (0700), holds config.json, pid, log
// and lock, on which the process holds an exclusive flock for its whole
// life: a router that finds the lock held adopts the device (keys, peers
// and sessions stay); a lock it can take is a process gone. Its UAPI
// socket is /var/run/wireguard/mx<Tag(DIR)>.sock: wgctrl finds userspace
// devices only by listing that directory (and skips anything but
// sockets, so a symbolic link to a socket elsewhere is not found), and
// several nodes share a machine in tests, hence a name per router dir.
// Stopping is SIGTERM: the process removes the device and its socket and
// exits. The node's normal stop leaves it running, as it leaves the pods;
// Destroy and RemoveHostShare (the cleanup paths) end it.

// MeshDeviceCommand is the hidden subcommand that runs MeshDeviceMain.
const MeshDeviceCommand = "mesh-device"

// meshDevConfig is what the device process reads from its config.json.
type meshDevConfig struct {
	Netns  string `json:"netns"`  // the router namespace
	Name   string `json:"name"`   // the TUN interface there
	MTU    int    `json:"mtu"`    // its MTU
	Socket string `json:"socket"` // the UAPI socket's name (wgctrl's device name)
}

// meshSocketDir is where wgctrl (and wg(8)) look for userspace devices.
const meshSocketDir = "/var/run/wireguard"

// meshDevName is the name wgctrl knows the userspace device of the router
// in dir by.
func meshDevName(dir string) string { return "mx" + Tag(dir) }

func meshDevState(dir string) string { return filepath.Join(dir, "mesh-dev") }

// meshDevStopWait is how long a stop waits for the device process before
// it is killed.
const meshDevStopWait = 5 * time.Second

// meshDevAlive tells whether a device process holds the lock of state.
func meshDevAlive(state string) bool {
	f, err := os.OpenFile(filepath.Join(state, "lock"), os.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return true // EWOULDBLOCK: held
	}
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}

// meshDevArgv is the command that runs the device process: Config.MeshDevice,
// else this binary with MeshDeviceCommand.
func (r *Router) meshDevArgv() ([]string, error) {
	if len(r.cfg.MeshDevice) > 0 {
		return r.cfg.MeshDevice, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return []string{exe, MeshDeviceCommand}, nil
}

// startMeshDev starts the device process of the router and waits until it
// serves its UAPI socket (or says why it cannot).
func (r *Router) startMeshDev() error {
	argv, err := r.meshDevArgv()
	if err != nil {
		return err
	}
	state := meshDevState(r.cfg.Dir)
	if meshDevAlive(state) {
		stopMeshDev(r.cfg.Dir, r.log)
	}
	for _, f := range []string{"config.json", "pid"} {
		if err := os.Remove(filepath.Join(state, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := os.MkdirAll(state, 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(meshDevConfig{Netns: r.ns, Name: meshName, MTU: MeshMTU, Socket: meshDevName(r.cfg.Dir)})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(state, "config.json"), b, 0o600); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(state, "log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	defer pr.Close()
	cmd := exec.Command(argv[0], append(argv[1:], state)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{pw} // fd 3: the word that it is ready
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	pw.Close()
	if err != nil {
		return fmt.Errorf("start the mesh device process: %w", err)
	}
	go cmd.Wait() // reaped while this process lives; adopted by init after
	type answer struct {
		line string
		err  error
	}
	ch := make(chan answer, 1)
	go func() {
		line, err := bufio.NewReader(pr).ReadString('\n')
		ch <- answer{strings.TrimSpace(line), err}
	}()
	var ans answer
	select {
	case ans = <-ch:
	case <-time.After(30 * time.Second):
		ans = answer{err: errors.New("no answer in 30 s")}
	}
	if ans.err == nil && ans.line == "ok" {
		return nil
	}
	cmd.Process.Kill()
	stopMeshDev(r.cfg.Dir, r.log)
	msg := ans.line
	if msg == "" {
		msg = fmt.Sprint(ans.err)
		b, _ := os.ReadFile(filepath.Join(state, "log"))
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		msg += ": " + lines[len(lines)-1]
	}
	return fmt.Errorf("mesh device process: %s", strings.TrimPrefix(msg, "error: "))
}

// stopMeshDev ends the device process of the router in dir, if any, and
// removes its state and socket.
func stopMeshDev(dir string, log *slog.Logger) error {
	state := meshDevState(dir)
	b, err := os.ReadFile(filepath.Join(state, "pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err == nil && pid > 0 && meshDevAlive(state) {
		syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(meshDevStopWait)
		for meshDevAlive(state) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if meshDevAlive(state) {
			log.Warn("mesh: the device process did not stop; killed", "pid", pid)
			syscall.Kill(pid, syscall.SIGKILL)
			for i := 0; i < 250 && meshDevAlive(state); i++ {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	if meshDevAlive(state) {
		return fmt.Errorf("the mesh device process of %s does not stop", dir)
	}
	sock := filepath.Join(meshSocketDir, meshDevName(dir)+".sock")
	if err := os.Remove(sock); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.RemoveAll(state)
}

// meshBallast is never read or written: 64 MiB of heap that the garbage
// collector counts as live, so that the device process's small heap is
// not collected every few megabytes. wireguard-go keeps its packet
// buffers in sync.Pools, which every collection empties; refilling them
// costs fresh pages (page faults, zeroing) on the packet path. The
// ballast's pages are never touched, so it costs no memory; what it costs
// is up to 64 MiB more garbage before a collection (GOGC=100). Measured
// in bench/RESULTS.md.
var meshBallast []byte

// MeshDeviceMain is the device process (`macro mesh-device STATEDIR`): it
// makes the TUN device its config.json names in the router namespace and
// a wireguard-go device on it whose UDP socket is in this process's (the
// host's) namespace, serves WireGuard's UAPI socket, says "ok" (or
// "error: ...") on fd 3, and runs until SIGTERM (or until the device
// goes), then removes the socket and exits. Keys, port and peers come
// over the UAPI socket.
func MeshDeviceMain(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: macro "+MeshDeviceCommand+" STATEDIR (started by the node)")
		return 2
	}
	state := args[0]
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("subsystem", "mesh-device")
	ready := os.NewFile(3, "ready")
	fail := func(err error) int {
		log.Error("mesh device", "err", err)
		if ready != nil {
			fmt.Fprintf(ready, "error: %v\n", err)
			ready.Close()
		}
		return 1
	}
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	lock, err := os.OpenFile(filepath.Join(state, "lock"), os.O_CREATE|os.O_RDWR|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return fail(err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return fail(fmt.Errorf("another process serves %s", state))
	}
	defer runtime.KeepAlive(lock) // held until the process ends
	if err := os.WriteFile(filepath.Join(state, "pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		return fail(err)
	}
	var cfg meshDevConfig
	b, err := os.ReadFile(filepath.Join(state, "config.json"))
	if err == nil {
		err = json.Unmarshal(b, &cfg)
	}
	if err == nil && (cfg.Netns == "" || cfg.Name == "" || cfg.Socket == "" || cfg.MTU <= 0) {
		err = errors.New("incomplete")
	}
	if err != nil {
		return fail(fmt.Errorf("config: %w", err))
	}
	meshBallast = make([]byte, 64<<20)
	var td tun.Device
	err = inNetns(cfg.Netns, func() error {
		var err error
		td, err = tun.CreateTUN(cfg.Name, cfg.MTU)
		return err
	})
	if err != nil {
		return fail(fmt.Errorf("TUN device in the router namespace: %w", err))
	}
	logger := &device.Logger{
		Verbosef: func(format string, args ...any) { log.Debug(fmt.Sprintf(format, args...)) },
		Errorf:   func(format string, args ...any) { log.Warn(fmt.Sprintf(format, args...)) },
	}
	// The bind's sockets are opened on the UAPI's goroutines, in this
	// process's namespace (inNetns has given its thread back).
	dev := device.NewDevice(fixedMTU{td, cfg.MTU}, conn.NewStdNetBind(), logger)
	f, err := ipc.UAPIOpen(cfg.Socket)
	if err != nil {
		dev.Close()
		return fail(fmt.Errorf("UAPI socket: %w", err))
	}
	l, err := ipc.UAPIListen(cfg.Socket, f)
	if err != nil {
		dev.Close()
		return fail(fmt.Errorf("UAPI socket: %w", err))
	}
	sock := filepath.Join(meshSocketDir, cfg.Socket+".sock")
	if err := dev.Up(); err != nil {
		l.Close()
		os.Remove(sock)
		dev.Close()
		return fail(fmt.Errorf("up: %w", err))
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go dev.IpcHandle(c)
		}
	}()
	log.Info("serving the mesh device", "pid", os.Getpid(), "socket", sock)
	fmt.Fprintln(ready, "ok")
	ready.Close()
	select {
	case <-dev.Wait():
		log.Info("the device went away")
	case sig := <-stop:
		log.Info("stopping", "signal", sig.String())
	}
	l.Close()
	os.Remove(sock)
	dev.Close()
	runtime.KeepAlive(meshBallast)
	return 0
}

// meshDevUp tells whether the userspace device of the router in dir
// answers on its socket.
func meshDevUp(ctx context.Context, dir string) bool {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", filepath.Join(meshSocketDir, meshDevName(dir)+".sock"))
	if err != nil {
		return false
	}
	c.Close()
	return true
}
