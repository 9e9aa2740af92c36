package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/macro-cloud/macro/runtime/ocispec"
	"github.com/macro-cloud/macro/types"
)

// prepare mounts the pod's rootfs and writes its OCI bundle (config.json
// and the /etc files) into the pod directory. It is idempotent.
func (w *worker) prepare(ctx context.Context) error {
	pod, _ := w.snapshot()
	if err := os.MkdirAll(w.dir, 0o711); err != nil {
		return err
	}
	img, err := w.a.cfg.Images.LookupID(ctx, pod.Spec.ImageID)
	if err != nil {
		return fmt.Errorf("image %s: %w", pod.Spec.Image, err)
	}
	if pod.Spec.Init && w.a.cfg.InitPath == "" {
		return fmt.Errorf("--init is not available on node %s: no tini installed", w.a.cfg.Node.Name)
	}
	rootfs, err := w.a.cfg.Images.Prepare(ctx, img.ID, w.dir)
	if err != nil {
		return fmt.Errorf("prepare rootfs: %w", err)
	}
	hostname := pod.Spec.Hostname
	if hostname == "" {
		hostname = pod.ID[:12]
	}
	etc, err := writeEtcFiles(filepath.Join(w.dir, "etc"), hostname, pod.Spec.Domainname)
	if err != nil {
		return err
	}
	spec, err := ocispec.Generate(ocispec.Input{
		ID:   pod.ID,
		Spec: pod.Spec,
		// The API merged the image's config into the spec at create time,
		// with Docker's rules; the spec alone decides.
		Image:    ocispec.ImageConfig{},
		Rootfs:   rootfs,
		Hostname: hostname,
		EtcFiles: etc,
		InitPath: w.a.cfg.InitPath,
	})
	if err != nil {
		return err
	}
	data, err := json.MarshalIndent(spec, "", "\t")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(w.dir, "config.json"), data); err != nil {
		return err
	}
	w.mu.Lock()
	w.prepared = true
	w.mu.Unlock()
	return nil
}

// writeEtcFiles writes the files bound over /etc/hosts, /etc/hostname and
// /etc/resolv.conf of the container.
func writeEtcFiles(dir, hostname, domain string) (ocispec.EtcFiles, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return ocispec.EtcFiles{}, err
	}
	fqdn := hostname
	if domain != "" {
		fqdn = hostname + "." + domain + " " + hostname
	}
	files := ocispec.EtcFiles{
		Hosts:      filepath.Join(dir, "hosts"),
		Hostname:   filepath.Join(dir, "hostname"),
		ResolvConf: filepath.Join(dir, "resolv.conf"),
	}
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n127.0.1.1\t" + fqdn + "\n"
	if err := os.WriteFile(files.Hosts, []byte(hosts), 0o644); err != nil {
		return files, err
	}
	if err := os.WriteFile(files.Hostname, []byte(hostname+"\n"), 0o644); err != nil {
		return files, err
	}
	if err := os.WriteFile(files.ResolvConf, resolvConf(), 0o644); err != nil {
		return files, err
	}
	return files, nil
}

// resolvConf is the host's resolver configuration without loopback
// nameservers, which mean nothing inside a pod's network namespace.
func resolvConf() []byte {
	data, _ := os.ReadFile("/etc/resolv.conf")
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" && (strings.HasPrefix(f[1], "127.") || f[1] == "::1") {
			continue
		}
		out = append(out, line)
	}
	return []byte(strings.TrimSpace(strings.Join(out, "\n")) + "\n")
}

func stopSignal(p types.Pod) syscall.Signal {
	if sig, err := ocispec.ParseSignal(p.Desired.StopSignal); p.Desired.StopSignal != "" && err == nil {
		return sig
	}
	if sig, err := ocispec.StopSignal(p.Spec, ocispec.ImageConfig{}); err == nil && sig != 0 {
		return sig
	}
	return syscall.SIGTERM
}

// exitCodeOf maps a start failure to Docker's exit codes: 127 for a command
// that does not exist, 126 for one that cannot be run.
func exitCodeOf(err error) int {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "not found") || strings.Contains(msg, "no such file"):
		return 127
	case strings.Contains(msg, "permission denied") || strings.Contains(msg, "is a directory"):
		return 126
	}
	return 128
}
