package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// hostNetFile is where a macro server's node network names what it put in
// the host's network namespace (net/router writes it): the veth to its
// router namespace and an nftables table of the inet family.
const hostNetFile = "net/host.json"

// removeHostNetwork deletes the host's share of the node network of the
// server in dir: its uplink veth (the peer in the router namespace goes
// with it) and its nftables table. Nothing else of it lives outside dir.
func removeHostNetwork(dir string) error {
	removeMeshSocket(dir)
	data, err := os.ReadFile(filepath.Join(dir, hostNetFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var hs struct{ Link, NftTable string }
	if err := json.Unmarshal(data, &hs); err != nil {
		return fmt.Errorf("%s: %w", hostNetFile, err)
	}
	var errs []error
	if hs.Link != "" {
		if _, err := os.Stat(filepath.Join("/sys/class/net", hs.Link)); err == nil {
			if out, err := runTool("ip", "link", "del", hs.Link); err != nil {
				errs = append(errs, fmt.Errorf("ip link del %s: %v %s", hs.Link, err, out))
			}
		}
	}
	if hs.NftTable != "" {
		if out, err := runTool("nft", "list", "tables", "inet"); err == nil && strings.Contains(out, " "+hs.NftTable+"\n") {
			if out, err := runTool("nft", "delete", "table", "inet", hs.NftTable); err != nil {
				errs = append(errs, fmt.Errorf("nft delete table %s: %v %s", hs.NftTable, err, out))
			}
		}
	}
	return errors.Join(errs...)
}

// removeMeshSocket removes the UAPI socket of the node's userspace mesh
// device (net/router/meshdev.go: /var/run/wireguard/mx<router.Tag of
// DIR/net>.sock), whose process killByCmdline has ended (its state dir
// is on its command line).
func removeMeshSocket(dir string) {
	abs, err := filepath.Abs(filepath.Join(dir, "net"))
	if err != nil {
		return
	}
	h := sha256.Sum256([]byte(abs))
	os.Remove(filepath.Join("/var/run/wireguard", "mx"+hex.EncodeToString(h[:4])+".sock"))
}
