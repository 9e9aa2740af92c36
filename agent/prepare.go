package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/macro-cloud/macro/image"
	"github.com/macro-cloud/macro/net/router"
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
	if errors.Is(err, image.ErrNotFound) && w.a.cfg.FetchImage != nil {
		if err = w.a.cfg.FetchImage(ctx, pod.Tenant, pod.Spec.ImageID); err == nil {
			img, err = w.a.cfg.Images.LookupID(ctx, pod.Spec.ImageID)
		}
	}
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
	vols, err := w.volumeMounts(pod, rootfs)
	if err != nil {
		return err
	}
	hostname := pod.Spec.Hostname
	if hostname == "" {
		hostname = pod.ID[:12]
	}
	att, err := w.attachNetwork(ctx, pod)
	if err != nil {
		return err
	}
	etc, err := writeEtcFiles(filepath.Join(w.dir, "etc"), hostname, pod.Spec.Domainname, att)
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
		Volumes:  vols,
	})
	if err != nil {
		return err
	}
	if att != nil {
		ocispec.JoinNetns(spec, att.Netns)
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
// /etc/resolv.conf of the container: with att, the pod's addresses and the
// node's DNS server. A file whose content is already right is left alone:
// a running container sees these files as they are rewritten in place.
func writeEtcFiles(dir, hostname, domain string, att *router.Attachment) (ocispec.EtcFiles, error) {
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
	self := "127.0.1.1\t" + fqdn + "\n"
	resolv := resolvConf()
	if att != nil {
		self = podHostsLines(*att, fqdn)
		resolv = podResolvConf(*att)
	}
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n" + self
	if err := writeIfChanged(files.Hosts, []byte(hosts)); err != nil {
		return files, err
	}
	if err := writeIfChanged(files.Hostname, []byte(hostname+"\n")); err != nil {
		return files, err
	}
	if err := writeIfChanged(files.ResolvConf, resolv); err != nil {
		return files, err
	}
	return files, nil
}

func writeIfChanged(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	return os.WriteFile(path, data, 0o644)
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
