// Command wgraw is raw wireguard-go for bench/mesh.sh: one WireGuard device
// on a TUN interface in the current network namespace, with one peer, and
// nothing else (no router namespace, no nftables, no veths): the floor the
// VPC mesh is measured against. It uses the same wireguard-go module and
// version as macro. It runs until killed.
//
//	wgraw -key HEX -peer HEX -port 51900 -endpoint 10.0.0.2:51900 -addr 192.168.77.1/24 -addr6 fd00:77::1/64
package main

import (
	"encoding/hex"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/macro-cloud/macro/net/mesh"
)

func main() {
	name := flag.String("name", "wgraw0", "interface name")
	key := flag.String("key", "", "private key, base64 (macro's mesh key format)")
	peer := flag.String("peer", "", "the peer's public key, base64")
	port := flag.Int("port", 51900, "UDP listen port")
	endpoint := flag.String("endpoint", "", "the peer's IP:PORT")
	addr := flag.String("addr", "", "IPv4 address/prefix of the interface")
	addr6 := flag.String("addr6", "", "IPv6 address/prefix of the interface")
	pub := flag.Bool("pub", false, "print the public key of -key and exit")
	genkey := flag.Bool("genkey", false, "print a new private key and exit")
	flag.Parse()
	if *genkey {
		k, err := mesh.NewPrivateKey()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(k)
		return
	}
	k, ok := mesh.ParseKey(*key)
	if !ok {
		log.Fatal("-key: want a base64 key")
	}
	if *pub {
		fmt.Println(k.Public())
		return
	}
	pk, ok := mesh.ParseKey(*peer)
	if !ok {
		log.Fatal("-peer: want a base64 key")
	}
	td, err := tun.CreateTUN(*name, 1420)
	if err != nil {
		log.Fatal(err)
	}
	// The interface is up before the peer's first packet can arrive.
	for _, args := range [][]string{
		{"addr", "add", *addr, "dev", *name},
		{"-6", "addr", "add", *addr6, "dev", *name, "nodad"},
		{"link", "set", *name, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			log.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	dev := device.NewDevice(td, conn.NewStdNetBind(), device.NewLogger(device.LogLevelError, "wgraw: "))
	cfg := fmt.Sprintf("private_key=%s\nlisten_port=%d\npublic_key=%s\nendpoint=%s\nallowed_ip=0.0.0.0/0\nallowed_ip=::/0\n",
		hex.EncodeToString(k[:]), *port, hex.EncodeToString(pk[:]), *endpoint)
	if err := dev.IpcSet(cfg); err != nil {
		log.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		log.Fatal(err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	dev.Close()
}
